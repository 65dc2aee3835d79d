package memmon

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/gosup/gosup/procgroup/proctree"
)

// entry is what one /proc/PID/stat says.
type entry struct {
	ppid int
	rss  int64 // bytes
}

// Table is one reading of the process table.
type Table struct {
	procs    map[int]entry
	children map[int][]int
}

// reader reads process tables under a /proc root. It keeps each process's
// stat file open between ticks and re-reads it with one pread: a third of
// the cost of open, read and close. An open /proc/PID file stays bound to
// its process: once that process is gone, the read fails (ESRCH) even if
// the pid has been reused, so a sample never mixes two processes.
type reader struct {
	root     string
	file     string // "stat" (ppid and rss) or "statm" (rss only, cheaper)
	pageSize int64
	buf      []byte
	fds      map[int]int // pid → open stat file
	seen     map[int]bool
}

// newReader reads stat files when the tree matters (cumulative), else the
// cheaper statm.
func newReader(root string, tree bool) *reader {
	file := "statm"
	if tree {
		file = "stat"
	}
	return &reader{root: root, file: file, pageSize: int64(os.Getpagesize()), buf: make([]byte, 1024), fds: map[int]int{}, seen: map[int]bool{}}
}

// prune closes the files of processes not read since the last prune.
func (r *reader) prune() {
	for pid, fd := range r.fds {
		if !r.seen[pid] {
			syscall.Close(fd)
			delete(r.fds, pid)
		}
	}
	clear(r.seen)
}

// close closes every cached file.
func (r *reader) close() {
	clear(r.seen)
	r.prune()
}

// readAll reads /proc/*/stat once: every process, with the parent → children
// map that cumulative sampling needs. One open and one read per process.
func (r *reader) readAll() (*Table, error) {
	d, err := os.Open(r.root)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	t := &Table{procs: make(map[int]entry, len(names)), children: make(map[int][]int, len(names)/4)}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if e, ok := r.read(pid); ok {
			t.procs[pid] = e
			t.children[e.ppid] = append(t.children[e.ppid], pid)
		}
	}
	r.prune()
	return t, nil
}

// readSome reads only the given pids (no descendants): enough when
// sampling is not cumulative.
func (r *reader) readSome(pids []int) *Table {
	t := &Table{procs: make(map[int]entry, len(pids))}
	for _, pid := range pids {
		if e, ok := r.read(pid); ok {
			t.procs[pid] = e
		}
	}
	r.prune()
	return t
}

func (r *reader) read(pid int) (entry, bool) {
	fd, ok := r.fds[pid]
	if !ok {
		var err error
		fd, err = syscall.Open(filepath.Join(r.root, strconv.Itoa(pid), r.file), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return entry{}, false
		}
		r.fds[pid] = fd
	}
	n, err := syscall.Pread(fd, r.buf, 0)
	if err != nil || n <= 0 {
		syscall.Close(fd)
		delete(r.fds, pid)
		return entry{}, false
	}
	r.seen[pid] = true
	if r.file == "statm" {
		return parseStatm(r.buf[:n], r.pageSize)
	}
	return parseStat(r.buf[:n], r.pageSize)
}

// parseStatm reads the resident pages (field 2) of /proc/PID/statm.
func parseStatm(b []byte, pageSize int64) (entry, bool) {
	f := field(b, 2)
	if f == nil {
		return entry{}, false
	}
	return entry{rss: atoi(f) * pageSize}, true
}

// field returns the n-th space-separated field of b (1-based), without allocating.
func field(b []byte, n int) []byte {
	for i := 1; ; i++ {
		for len(b) > 0 && b[0] == ' ' {
			b = b[1:]
		}
		if len(b) == 0 {
			return nil
		}
		end := bytes.IndexByte(b, ' ')
		if end < 0 {
			end = len(b)
		}
		if i == n {
			return bytes.TrimSpace(b[:end])
		}
		b = b[end:]
	}
}

// atoi parses the decimal digits of b (no sign, no allocation).
func atoi(b []byte) int64 {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// parseStat reads ppid and rss from a /proc/PID/stat line.
func parseStat(b []byte, pageSize int64) (entry, bool) {
	p, ok := proctree.ParseStat(b)
	if !ok {
		return entry{}, false
	}
	return entry{ppid: p.PPid, rss: p.RSSPages * pageSize}, true
}

// RSS is pid's resident set, with all its descendants when cumulative.
// It returns false when pid is not in the table.
func (t *Table) RSS(pid int, cumulative bool) (int64, bool) {
	e, ok := t.procs[pid]
	if !ok {
		return 0, false
	}
	if !cumulative {
		return e.rss, true
	}
	total := int64(0)
	stack := []int{pid}
	seen := map[int]bool{}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		total += t.procs[p].rss
		stack = append(stack, t.children[p]...)
	}
	return total, true
}
