// Package proctree reads the Linux process table from /proc: the stat
// fields of one process or of all of them (pid, parent, process group,
// state, start time), whether a process carries an environment entry (the
// markers gosup gives its children), and whether a process has exited;
// and it acts on one process found there through a pidfd (Open, Signal,
// FdExited, WaitExit), so that a pid reused meanwhile is never hit.
//
// Everything here reads a live table that changes under it: a process
// listed may be gone by the time it is looked at again, and a pid may be
// reused. Callers that act on a pid check its start time.
package proctree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Proc is one process's entry in /proc/PID/stat.
type Proc struct {
	Pid  int
	PPid int // field 4: the parent (a subreaper after re-parenting)
	Pgrp int // field 5: the process group
	// State is field 3: R, S, D, Z (zombie), T, ...
	State byte
	// Start is field 22, clock ticks since boot: with the pid, it names
	// one process for good.
	Start uint64
	// Threads is field 20; RSSPages is field 24, the resident set in
	// pages.
	Threads  int
	RSSPages int64
}

// StatMax bounds one read of /proc/PID/stat: 52 numeric fields and a
// command name of at most 64 bytes fit in well under 1 KiB.
const StatMax = 1024

// Stat reads /proc/PID/stat.
func Stat(pid int) (Proc, error) {
	var buf [StatMax]byte
	return stat(pid, buf[:])
}

func stat(pid int, buf []byte) (Proc, error) {
	return ReadStat("/proc", pid, buf)
}

// ReadStat reads root/PID/stat (root: "/proc", or a copy of its layout)
// with one read into buf (StatMax bytes hold any), without allocating
// but for an error.
func ReadStat(root string, pid int, buf []byte) (Proc, error) {
	path := root + "/" + strconv.Itoa(pid) + "/stat"
	n, err := readInto(path, buf)
	if err != nil {
		return Proc{}, err
	}
	p, ok := ParseStat(buf[:n])
	if !ok {
		return Proc{}, fmt.Errorf("malformed %s", path)
	}
	p.Pid = pid
	return p, nil
}

// readInto reads the file at path into buf with one read: /proc files
// are generated whole on the first read of a small buffer.
func readInto(path string, buf []byte) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "read", Path: path, Err: err}
		}
		return n, nil
	}
}

// ParseStat parses a /proc/PID/stat line (all but the pid, which the
// caller knows). The command name, in parentheses, may itself hold spaces
// and parentheses: fields are counted from the last ')'. It does not
// allocate.
func ParseStat(b []byte) (Proc, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Proc{}, false
	}
	var p Proc
	// Fields from 3 on, separated by single spaces.
	rest := b[i+1:]
	for field := 3; field <= 24; field++ {
		rest = bytes.TrimLeft(rest, " ")
		j := bytes.IndexAny(rest, " \n")
		if j < 0 {
			j = len(rest)
		}
		f := rest[:j]
		rest = rest[j:]
		if len(f) == 0 {
			return Proc{}, false
		}
		switch field {
		case 3:
			p.State = f[0]
		case 4:
			p.PPid = atoi(f)
		case 5:
			p.Pgrp = atoi(f)
		case 20:
			p.Threads = atoi(f)
		case 22:
			n, err := strconv.ParseUint(string(f), 10, 64)
			if err != nil {
				return Proc{}, false
			}
			p.Start = n
		case 24:
			p.RSSPages = int64(atoi(f))
		}
	}
	return p, true
}

// atoi parses a decimal int, negative or not, without allocating; junk is 0.
func atoi(b []byte) int {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n
	}
	return n
}

// Scan lists every process /proc shows. /proc lists pids in increasing
// order, so a process that lives through the whole scan is never missed;
// one that starts or ends meanwhile may or may not be listed.
func Scan() []Proc {
	return ScanInto(nil)
}

// ScanInto is Scan appending to out[:0], reusing its storage.
func ScanInto(out []Proc) []Proc {
	out = out[:0]
	pids, _ := Pids()
	var buf [StatMax]byte
	for _, pid := range pids {
		if p, err := stat(pid, buf[:]); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Pids lists the pids in /proc (processes, not threads), in increasing order.
func Pids() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	out := make([]int, 0, len(names))
	for _, name := range names {
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		if pid, err := strconv.Atoi(name); err == nil {
			out = append(out, pid)
		}
	}
	return out, err
}

// ticksPerSecond is USER_HZ, the unit of a start time (field 22 of
// /proc/PID/stat): 100, fixed by the kernel's ABI for every architecture
// Go runs Linux on (sysconf(_SC_CLK_TCK)).
const ticksPerSecond = 100

// tickNanos is one start time tick in nanoseconds.
const tickNanos = int64(time.Second / ticksPerSecond)

// startMargin is how far from a tick's edge both clock reads of
// StartBetween must be: room for any disagreement between the clock read
// here (vDSO) and the kernel's own read at the fork, which share one
// clocksource and should agree to the nanosecond.
const startMargin = int64(100 * time.Microsecond)

// BootNanos reads CLOCK_BOOTTIME in nanoseconds: the clock the kernel
// stamps a new process with at its fork, and that its start time counts
// in. 0 if it cannot be read (StartBetween then declines).
func BootNanos() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// StartBetween is the start time (field 22 of /proc/PID/stat) of a
// process forked between two reads of BootNanos, before and after, without
// reading /proc: the kernel stamps a process with CLOCK_BOOTTIME in its
// fork (copy_process: start_boottime, in the clone system call of the
// caller, so between the two reads) and /proc shows that stamp cut down to
// whole ticks (nsec_to_clock_t, with the reader's time namespace offset,
// as BootNanos reads it). When both reads fall in one tick, well inside
// it (startMargin), that tick is the start time; ok is false otherwise
// (the reads straddle a tick's edge, or a read failed): read /proc then.
func StartBetween(before, after int64) (start uint64, ok bool) {
	if before <= startMargin || after < before {
		return 0, false
	}
	lo, hi := (before-startMargin)/tickNanos, (after+startMargin)/tickNanos
	if lo != hi {
		return 0, false
	}
	return uint64(lo), true
}

// StartTime is pid's start time (field 22 of /proc/PID/stat).
func StartTime(pid int) (uint64, error) {
	p, err := Stat(pid)
	return p.Start, err
}

// Exited reports whether pid is gone or a zombie whose threads have all
// exited: a thread group leader turns Z before its other threads have
// closed the files they share, sockets included.
func Exited(pid int) bool {
	p, err := Stat(pid)
	return err != nil || Gone(p)
}

// Gone reports whether the process p, as Stat read it, has exited: it is
// a zombie whose threads have all exited. A zombie thread group leader
// whose other threads still run is not gone: they hold its files, and can
// fork.
func Gone(p Proc) bool {
	if p.State != 'Z' {
		return false
	}
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(p.Pid) + "/task")
	return err != nil || len(tasks) <= 1
}

// HasEnv reports whether pid's environment (as it was at exec, in
// /proc/PID/environ) holds the entry kv ("NAME=value") exactly. A process
// that cannot be read (gone, or not ours to read) does not. It streams
// the file through a buffer of envChunk bytes, however large the
// environment (several MiB at most), and stops at the entry.
func HasEnv(pid int, kv string) bool {
	var buf [envChunk]byte
	return hasEnv(pid, kv, buf[:])
}

// envChunk is the buffer HasEnv reads /proc/PID/environ through: a page,
// which holds a usual environment whole.
const envChunk = 4096

func hasEnv(pid int, kv string, buf []byte) bool {
	path := "/proc/" + strconv.Itoa(pid) + "/environ"
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	m := envMatch{kv: kv}
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false
		case n == 0:
			return m.end()
		case m.feed(buf[:n]):
			return true
		}
	}
}

// envMatch looks for the entry kv in NUL-separated entries fed to it chunk
// by chunk: an entry may span chunks.
type envMatch struct {
	kv  string
	pos int // bytes of the current entry, all equal to kv's so far; -1: it is not kv
}

// feed takes the next chunk, and reports whether an entry that ended in
// it is kv.
func (m *envMatch) feed(b []byte) bool {
	kv := m.kv
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		seg := b
		if i >= 0 {
			seg = b[:i]
		}
		if m.pos >= 0 {
			if len(seg) <= len(kv)-m.pos && string(seg) == kv[m.pos:m.pos+len(seg)] {
				m.pos += len(seg)
			} else {
				m.pos = -1
			}
		}
		if i < 0 {
			break
		}
		if m.pos == len(kv) && kv != "" {
			return true
		}
		m.pos, b = 0, b[i+1:]
	}
	return false
}

// end reports whether the last entry, without its NUL, is kv.
func (m *envMatch) end() bool {
	return m.kv != "" && m.pos == len(m.kv)
}

// Marked lists the processes, other than the caller, whose environment
// holds the entry kv.
func Marked(kv string) []int {
	pids, _ := Pids()
	self := os.Getpid()
	var out []int
	var buf [envChunk]byte
	for _, pid := range pids {
		if pid != self && hasEnv(pid, kv, buf[:]) {
			out = append(out, pid)
		}
	}
	return out
}

// Children lists pid's children: those of each of its threads, from
// /proc/PID/task/TID/children. It reads only pid's own entries, so it
// costs the same whether the machine runs ten processes or ten thousand. A
// child that starts or ends while it reads may or may not be listed, and
// so may (rarely) one whose earlier sibling ends meanwhile: a caller that
// must miss nothing looks again once what it found has been dealt with.
//
// It is bounded too: each list is read through a buffer of 4 KiB,
// doubled (and the lists read again) while one does not fit, up to childrenListMax (4 MiB: over
// 500,000 pids), and at most childrenThreadsMax threads are listed; what
// is past those bounds is left out.
func Children(pid int) []int {
	for size := 4 << 10; ; size *= 2 {
		out, cut := ChildrenAt("/proc", pid, 0, childrenThreadsMax, make([]byte, size), nil)
		if !cut || size >= childrenListMax {
			return out
		}
	}
}

const (
	childrenListMax    = 4 << 20
	childrenThreadsMax = 1 << 16
)

// ChildrenAt appends to out the children of pid's threads, from
// root/PID/task/TID/children (root: "/proc", or a copy of its layout).
// threads is pid's thread count if known: 1 reads the one thread's list
// without listing the threads; otherwise at most maxThreads are listed.
// Each list is read through buf: a list longer than buf is cut (a pid
// split at its end left out). cut reports a list, or the threads, cut.
func ChildrenAt(root string, pid, threads, maxThreads int, buf []byte, out []int) ([]int, bool) {
	dir := root + "/" + strconv.Itoa(pid) + "/task/"
	if threads == 1 {
		// The usual worker: its one thread has the pid's number.
		return childrenOf(dir+strconv.Itoa(pid)+"/children", buf, out)
	}
	d, err := os.Open(dir)
	if err != nil {
		return out, false
	}
	defer d.Close()
	cut := false
	for seen := 0; seen < maxThreads; {
		tids, err := d.Readdirnames(min(256, maxThreads-seen))
		for _, tid := range tids {
			var c bool
			out, c = childrenOf(dir+tid+"/children", buf, out)
			cut = cut || c
		}
		seen += len(tids)
		if err != nil {
			return out, cut
		}
	}
	if more, _ := d.Readdirnames(1); len(more) > 0 {
		cut = true
	}
	return out, cut
}

// childrenOf appends the pids in one children file, read through buf, to
// out.
func childrenOf(path string, buf []byte, out []int) ([]int, bool) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return out, false
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		k, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || k <= 0 {
			break
		}
		n += k
	}
	b := buf[:n]
	cut := n == len(buf)
	if cut {
		// The last pid may be cut in two: leave it out.
		for len(b) > 0 && b[len(b)-1] != ' ' {
			b = b[:len(b)-1]
		}
	}
	pid := 0
	for _, c := range b {
		if c >= '0' && c <= '9' {
			pid = pid*10 + int(c-'0')
			continue
		}
		if pid > 0 {
			out = append(out, pid)
		}
		pid = 0
	}
	if pid > 0 {
		out = append(out, pid)
	}
	return out, cut
}

// ErrGone is Open's error for a process that is gone, or that is not the
// one found any more (its pid reused, or without the environment entry).
var ErrGone = errors.New("process gone")

// Open opens a pidfd on pid, which names one process for good, then
// checks on the process it names that it is the one found: its start time
// (unless start is 0) and that its environment holds the entry kv
// (unless kv is ""). Acting through the pidfd, a caller never hits a pid
// recycled between a /proc scan and the act. The error is ErrGone when
// the process is gone or is another, or says why it could not be checked
// (EMFILE, ENFILE, ...): the process may still be there.
func Open(pid int, start uint64, kv string) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return -1, ErrGone
	case err != nil:
		return -1, fmt.Errorf("pidfd of pid %d: %w", pid, err)
	}
	st, err := StartTime(pid)
	switch {
	case err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH):
		unix.Close(fd)
		return -1, fmt.Errorf("start time of pid %d: %w", pid, err)
	case err != nil, start != 0 && st != start, kv != "" && !HasEnv(pid, kv):
		unix.Close(fd)
		return -1, ErrGone
	}
	return fd, nil
}

// Send sends sig to the process behind the pidfd fd.
func Send(fd int, sig unix.Signal) error {
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// Signal sends sig to pid only if pid is still the process that was
// found (see Open), through a pidfd. It returns the pidfd (for the caller
// to wait on, see WaitExit, and close), or -1 if nothing was sent.
func Signal(pid int, start uint64, kv string, sig unix.Signal) int {
	fd, err := Open(pid, start, kv)
	if err != nil {
		return -1
	}
	if err := Send(fd, sig); err != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}

// FdExited reports whether the process behind the pidfd fd has exited
// (its whole thread group: a zombie holds no files, ports included).
func FdExited(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	return err == nil && n > 0
}

// WaitExit waits until the processes behind the pidfds have exited,
// until deadline, or until ctx ends. It closes nothing.
func WaitExit(ctx context.Context, fds []int, deadline time.Time) {
	pfds := make([]unix.PollFd, 0, len(fds))
	for _, fd := range fds {
		pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	for len(pfds) > 0 {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return
		}
		// Wake at least every 100 ms to notice ctx.
		n, err := unix.Poll(pfds, int(min(left, 100*time.Millisecond)/time.Millisecond)+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if n <= 0 {
			continue
		}
		pfds = slices.DeleteFunc(pfds, func(p unix.PollFd) bool { return p.Revents != 0 })
		for i := range pfds {
			pfds[i].Revents = 0
		}
	}
}
