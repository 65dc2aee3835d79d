// Package imagepages takes the executable's read-only pages out of the
// process's page tables once start-up no longer needs them, leaving alone
// any page the process holds a private copy of.
package imagepages

import (
	"bufio"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Drop unmaps the pages of the executable's read-only private mappings
// (code, constant data) from the process's page tables, as reclaim would:
// MADV_DONTNEED on a private file mapping drops the mapping of the file's
// pages, which stay in the page cache and come back at the next touch.
//
// It drops nothing of a mapping holding a private copy of a page
// (Anonymous in smaps): in a position-independent build the dynamic
// loader writes the relocations of .data.rel.ro and then makes it read
// only (RELRO), and MADV_DONTNEED would throw those written pages away,
// leaving the file's unrelocated bytes in their place. A writable mapping
// (.data) is its own for the same reason. It returns the mappings dropped.
func Drop() int {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for _, m := range Mappings(f, exe) {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m[0], m[1]-m[0], unix.MADV_DONTNEED); e == 0 {
			n++
		}
	}
	return n
}

// Mappings lists the [start, end) of the read-only private mappings of
// file exe in a /proc/PID/smaps listing that hold no private (anonymous)
// page.
func Mappings(r io.Reader, exe string) [][2]uintptr {
	var out [][2]uintptr
	var cur [2]uintptr
	in := false
	flush := func() {
		if in {
			out = append(out, cur)
		}
		in = false
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && len(fields[1]) == 4 {
			// A mapping's header: start-end perms offset dev inode [path]
			flush()
			if len(fields) != 6 || fields[5] != exe || strings.Contains(fields[1], "w") || fields[1][3] != 'p' {
				continue
			}
			lo, hi, _ := strings.Cut(fields[0], "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil && a < b {
				cur, in = [2]uintptr{uintptr(a), uintptr(b)}, true
			}
			continue
		}
		// A private copy of a page: written (relocated) since the file
		// was mapped; dropping it would lose what was written.
		if in && len(fields) == 3 && fields[0] == "Anonymous:" && fields[1] != "0" {
			in = false
		}
	}
	if sc.Err() != nil {
		return nil // a listing cut short says nothing of the rest
	}
	flush()
	return out
}
