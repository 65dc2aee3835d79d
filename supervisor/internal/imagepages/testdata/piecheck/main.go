// piecheck drops its image's pages, then runs code that reads what the
// dynamic loader relocated in a position-independent build (type and
// itab pointers, string headers): it prints "ok", or crashes.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/gosup/gosup/supervisor/internal/imagepages"
)

func main() {
	n := imagepages.Drop()
	if n == 0 {
		fmt.Println("dropped no mapping")
		os.Exit(1)
	}
	xs := []any{1, "two", 3.5, errors.New("four"), map[string]int{"five": 5}, []byte("six")}
	var b strings.Builder
	for _, x := range xs {
		switch v := x.(type) {
		case error:
			fmt.Fprintf(&b, "error %v;", v)
		case fmt.Stringer:
			fmt.Fprintf(&b, "stringer %v;", v)
		default:
			fmt.Fprintf(&b, "%T %v;", v, v)
		}
	}
	keys := []string{"c", "a", "b"}
	sort.Strings(keys)
	runtime.GC()
	fmt.Printf("%s %v\n", b.String(), keys)
	fmt.Println("ok")
}
