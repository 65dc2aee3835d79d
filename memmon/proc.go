package memmon

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// entry is what one /proc/PID/stat says.
type entry struct {
	ppid  int
	rss   int64 // bytes
	start uint64
}

// Table is one reading of the process table.
type Table struct {
	procs    map[int]entry
	children map[int][]int
}

// reader reads process tables under a /proc root with one reused buffer.
type reader struct {
	root     string
	pageSize int64
	buf      []byte
}

func newReader(root string) *reader {
	return &reader{root: root, pageSize: int64(os.Getpagesize()), buf: make([]byte, 1024)}
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
	return t
}

func (r *reader) read(pid int) (entry, bool) {
	path := filepath.Join(r.root, strconv.Itoa(pid), "stat")
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return entry{}, false
	}
	n, err := syscall.Read(fd, r.buf)
	syscall.Close(fd)
	if err != nil || n <= 0 {
		return entry{}, false
	}
	return parseStat(r.buf[:n], r.pageSize)
}

// parseStat reads ppid (field 4), start time (22) and rss in pages (24)
// from a /proc/PID/stat line; the command name (field 2) may hold spaces
// and parentheses, so fields are counted after its last ')'.
func parseStat(b []byte, pageSize int64) (entry, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return entry{}, false
	}
	var e entry
	field := 2
	for _, f := range bytes.Fields(b[i+1:]) {
		field++
		switch field {
		case 4:
			e.ppid, _ = strconv.Atoi(string(f))
		case 22:
			e.start, _ = strconv.ParseUint(string(f), 10, 64)
		case 24:
			pages, _ := strconv.ParseInt(string(f), 10, 64)
			e.rss = pages * pageSize
			return e, true
		}
	}
	return entry{}, false
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

// Start is pid's start time in clock ticks since boot (identity check).
func (t *Table) Start(pid int) uint64 { return t.procs[pid].start }
