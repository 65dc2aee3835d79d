package supervisor

import (
	"bufio"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// settleMemory runs once the daemon serves (its start has made its
// spawns): it gives back to the kernel what the start no longer needs.
//
//   - The start's garbage (a burst of spawns, the configuration's parse):
//     the heap grew to twice what stays live, and the runtime returns
//     freed pages only slowly; debug.FreeOSMemory collects and returns
//     them at once.
//   - The executable's pages: the start runs code and reads constant data
//     that an idle daemon never touches again (every package's init, the
//     configuration's parse and checks, the spawn path), and the kernel
//     maps them 64 kB around each page touched (fault-around), so about
//     14 MB of a 25 MB binary stayed in the daemon's RSS. dropImagePages
//     unmaps them: they stay in the page cache (clean, shared with any
//     other gosup, reclaimable as they were), and what the daemon runs
//     from then on is mapped again at its first touch, a minor fault.
//     RSS then shows what the daemon uses (about 7 MB of it at rest).
func settleMemory() {
	debug.FreeOSMemory()
	dropImagePages()
}

// dropImagePages unmaps the pages of the executable's read-only mappings
// (code, constant data) from the daemon's page tables, as reclaim would:
// MADV_DONTNEED on a private file mapping never written drops nothing but
// the mapping. A writable mapping (.data: pages written are the process's
// own) is left alone. It returns the mappings it dropped.
func dropImagePages() int {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for _, m := range imageMappings(f, exe) {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m[0], m[1]-m[0], unix.MADV_DONTNEED); e == 0 {
			n++
		}
	}
	return n
}

// imageMappings lists the [start, end) of the read-only mappings of file
// exe in a /proc/PID/maps listing.
func imageMappings(r io.Reader, exe string) [][2]uintptr {
	var out [][2]uintptr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) != 6 || fields[5] != exe || strings.Contains(fields[1], "w") || !strings.HasSuffix(fields[1], "p") {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		a, err1 := strconv.ParseUint(lo, 16, 64)
		b, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && a < b {
			out = append(out, [2]uintptr{uintptr(a), uintptr(b)})
		}
	}
	return out
}
