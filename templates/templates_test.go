package templates

import (
	"testing"

	sprig "github.com/go-task/slim-sprig/v3"
)

// The hint for a missing function names only functions slim-sprig really
// lacks: if a later slim-sprig provides one, the list must lose it.
func TestNotProvidedAreMissing(t *testing.T) {
	funcs := sprig.TxtFuncMap()
	for _, f := range notProvided {
		if _, ok := funcs[f]; ok {
			t.Errorf("%s is in notProvided but slim-sprig provides it", f)
		}
		if _, err := Parse("t", "{{ "+f+" }}"); err == nil {
			t.Errorf("a template calling %s parsed", f)
		}
	}
	for _, f := range []string{"upper", "replace", "join", "default", "toJson", "sha256sum", "add1"} {
		if _, ok := funcs[f]; !ok {
			t.Errorf("slim-sprig lacks %s", f)
		}
	}
}
