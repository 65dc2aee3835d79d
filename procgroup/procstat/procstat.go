// Package procstat samples the CPU use and resident memory of the
// processes gosup owns, and the resident memory of their descendants.
//
// It reads only those processes: a /proc/PID/statm file is kept open for
// each owned process and re-read with one pread at each sample (a third
// of the cost of open, read and close), and its CPU time is read from its
// CPU clock (clock_gettime of the process's CPUCLOCK_SCHED, the
// nanoseconds its threads have run); descendants are found through
// /proc/PID/task/TID/children, never by a scan of /proc, and their
// /proc/PID/stat is read (open, read, close) at each sample: no
// descriptor is kept for a process gosup does not own. An open
// /proc/PID file stays bound to its process: once that process is gone
// the read fails (ESRCH), even if the pid has been reused. The CPU clock
// is named by pid, so it is read before the bound file: if that read
// succeeds, the pid still named the same process when the clock was read.
// Each process's figures are kept with its start time, from
// /proc/PID/stat when it is first seen, so a sample never mixes two
// processes.
//
// SampleFDs, the metrics' scrape, also counts each owned process's open
// files through a /proc/PID/fd directory it keeps open (fstat gives the
// count since Linux 6.2: no path to walk), and takes the CPU time and RSS
// of the daemon's last Tick when that is at most Fresh old rather than
// reading them again: a scrape of 500 processes then costs one fstat
// each.
//
// A pid is sampled only if it names a child of the caller (its parent in
// /proc/PID/stat is the caller's pid: every child the daemon spawned, and
// every one an earlier image of it handed over across an exec) started at
// the time the caller gives: a stale pid, reused by another process, is
// refused, and its CPU clock (which any user may read), files and tree
// are never read.
package procstat

import (
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/procgroup/proctree"
)

const (
	// ticksPerSecond is USER_HZ, the unit of the start time in
	// /proc/PID/stat: 100 on every architecture Go runs Linux on (it is
	// part of the ABI, whatever the kernel's own HZ).
	ticksPerSecond = 100
	// MinWindow is the shortest interval CPU use is measured over: a
	// sample taken sooner after the previous one measures from the one
	// before, so that two status calls in a row do not divide a
	// scheduler tick by a few microseconds.
	MinWindow = time.Second
	// TickEvery is how often the daemon calls Tick, which keeps the
	// window CPU is measured over recent (see Sample.CPUWindow).
	TickEvery = 2 * time.Second
	// Fresh is how old a reading (a Tick's, a Sample's) SampleFDs takes
	// as it is: a tick's period and a margin for a late tick.
	Fresh = TickEvery + TickEvery/2
	// TreeEvery is how often the descendants of a process are looked for
	// again; between two looks the ones known are read at each sample,
	// and those gone drop out at once. Each process's looks fall due at
	// its own phase of TreeEvery (from its pid), so that frequent samples
	// (ctl top, every second) spread them instead of looking for every
	// process's descendants at once every TreeEvery.
	TreeEvery = 5 * time.Second
	// MaxTracked bounds the descendants followed over all processes (each
	// costs a read of its stat at each sample); those beyond are counted
	// in Sample.Untracked.
	MaxTracked = 4096
	// ChildrenMax bounds one read of a children file: 4096 pids of up to
	// 7 digits and a space. A fuller list is cut (and counted).
	ChildrenMax = 32 << 10
	// ThreadsMax bounds the threads of one process whose children are
	// looked at.
	ThreadsMax = 4096
)

// Target names one process to sample: its pid, and its start time (field
// 22 of /proc/PID/stat, clock ticks since boot) as the caller knows it; a
// process with another start time on that pid is not sampled. Start 0
// (not known) samples nothing.
type Target struct {
	Pid   int
	Start uint64
}

// Sample is one process's figures.
type Sample struct {
	// OK: the process was read. A process gone, or not readable, has
	// no figures.
	OK bool
	// CPUPercent is its CPU use in percent of one core (as top: 200 is
	// two cores busy) over the last CPUWindow: from the last sample (or
	// Tick) at least MinWindow older, or from its start at its first
	// sample. CPUWindow is 0, and there is no CPU figure, for a process
	// younger than MinWindow, or whose CPU clock could not be read.
	CPUPercent float64
	CPUWindow  time.Duration
	// RSS is its own resident set in bytes; TreeRSS that of it and its
	// descendants when it has any, else 0.
	RSS, TreeRSS int64
	// Untracked counts the descendants left out of TreeRSS because
	// MaxTracked were followed already; Cut counts the children lists
	// (and lists of threads) over their bound, whose pids past it (and
	// their descendants) are left out too, unknown in number.
	Untracked, Cut int
	// CPU is the CPU time it has used since it started (its threads',
	// live and ended), when CPUOK: its clock could be read.
	CPU   time.Duration
	CPUOK bool
	// FDs is how many files it has open, when FDsOK (SampleFDs only).
	FDs   int
	FDsOK bool
}

// point is a process's CPU time at a moment.
type point struct {
	cpu, at time.Duration // CPU time; when, since boot
}

// proc is an owned process: its open statm file and its last samples.
type proc struct {
	fd    int // statm
	fdDir int // its /proc/PID/fd, opened by SampleFDs (-1: not open)
	last  reading
	start uint64 // ticks since boot: with the pid, the process's name
	// old and cur are the last two samples at least MinWindow apart
	// (both the start, with no CPU time, before the first).
	old, cur point
	tree     []*member // descendants, as last looked for
	nextLook time.Duration
	looked   bool // tree was looked for
	lost     int  // descendants not tracked at the last look
	cut      int  // lists cut at the last look
	gen      uint64
}

// member is a descendant of an owned process: no file of it is kept
// open.
type member struct {
	pid   int
	start uint64
	rss   int64 // bytes, when last read
}

// Sampler samples processes. It is safe for concurrent use; samples are
// taken one at a time.
type Sampler struct {
	mu       sync.Mutex
	root     string // "/proc", or a copy of its layout in tests
	self     int    // the pid whose children are sampled
	pageSize int64
	now      func() time.Duration // since boot
	// cpu is a process's CPU time (its CPU clock); false when it cannot
	// be read.
	cpu     func(pid int) (time.Duration, bool)
	procs   map[int]*proc
	fdDirs  int // procs with their fdDir open
	tracked int // members, over all processes
	gen     uint64
	looks   int    // looks for descendants, ever (for tests)
	buf     []byte // proctree.StatMax: a stat or statm
	cbuf    []byte // ChildrenMax
}

// New returns a Sampler reading /proc.
func New() *Sampler {
	return newSampler("/proc", os.Getpid(), sinceBoot, cpuClock)
}

func newSampler(root string, self int, now func() time.Duration, cpu func(int) (time.Duration, bool)) *Sampler {
	return &Sampler{root: root, self: self, pageSize: int64(os.Getpagesize()), now: now, cpu: cpu, procs: map[int]*proc{},
		buf: make([]byte, proctree.StatMax), cbuf: make([]byte, ChildrenMax)}
}

// sinceBoot reads CLOCK_BOOTTIME: the clock /proc's start times count in.
func sinceBoot() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// cpuClock reads the CPU clock of process pid: the time all its threads,
// live and ended, have run (clock_getcpuclockid(3): CPUCLOCK_SCHED of
// pid, which any process may read).
func cpuClock(pid int) (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(int32(^pid<<3|2), &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

func ticks(t uint64) time.Duration {
	return time.Duration(t) * (time.Second / ticksPerSecond)
}

// Sample reads the processes ts, in one pass, and returns their figures
// in the same order (pid 0 has none, nor a process that is not the
// caller's child started at Start). They should be all the processes the
// caller owns: the files of processes not listed are closed, and their
// CPU baselines forgotten.
func (s *Sampler) Sample(ts []Target) []Sample {
	return s.sampleAll(nil, ts, readNow)
}

// SampleRecent is Sample as the status shows it: a process's CPU time
// and RSS are those of the last reading (the daemon's Tick) when that is
// at most Fresh old, read now otherwise, and its descendants are those
// Tick last found (looked for now only for a process never looked at),
// their RSS read now. It reads no file of a process without descendants
// that Tick has read: a status of 1,000 such processes is a pass over
// memory, not 1,000 reads of /proc. The figures are appended to dst
// (its elements overwritten), so that a status reuses the slice of the
// one before.
func (s *Sampler) SampleRecent(dst []Sample, ts []Target) []Sample {
	return s.sampleAll(dst, ts, recent)
}

// SampleFDs is Sample, and counts each process's open files too (see
// Sample.FDs): an fstat of its /proc/PID/fd, kept open, whose size is
// that count since Linux 6.2 (a read of the directory before). A
// process's CPU time and RSS are the last reading's when that is at most
// Fresh old (the daemon's Tick): its CPU window is not moved on.
func (s *Sampler) SampleFDs(ts []Target) []Sample {
	return s.sampleAll(nil, ts, withFDs)
}

// mode is what a sample reads: see Sample, SampleFDs and SampleRecent.
type mode int

const (
	readNow mode = iota
	withFDs
	recent
)

// sampleAll samples ts in one pass, appending the figures to dst.
func (s *Sampler) sampleAll(dst []Sample, ts []Target, m mode) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	dst = slices.Grow(dst, len(ts))
	out := dst[len(dst) : len(dst)+len(ts)]
	// One clock read for the pass (CLOCK_BOOTTIME is a system call):
	// what a reading's age is measured against.
	now := s.now()
	for i, t := range ts {
		if t.Pid > 0 && t.Start > 0 {
			out[i] = s.sample(t, m, now)
		} else {
			out[i] = Sample{} // dst's slack may hold an older one
		}
	}
	s.dropUnseen()
	return dst[:len(dst)+len(ts)]
}

// Tick reads the CPU clock and the statm file of each process in ts, so
// that the CPU window at the next Sample is recent (between MinWindow and
// TickEvery+MinWindow), whenever the last Sample was, and looks for the
// descendants of those whose look is due (each TreeEvery, at its own
// phase), or that were never looked at. Processes not listed are dropped,
// as by Sample.
func (s *Sampler) Tick(ts []Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for _, t := range ts {
		if t.Pid > 0 && t.Start > 0 {
			if p, r := s.read(t); p != nil && (!p.looked || r.at >= p.nextLook) {
				// The looks fall due at each process's phase of
				// TreeEvery: SampleRecent (the status) finds them done.
				s.look(t.Pid, p, r.threads)
				p.looked, p.nextLook = true, nextLook(t.Pid, r.at)
			}
		}
	}
	s.dropUnseen()
}

// RSS reads the own RSS of the processes ts (and moves their CPU samples
// on), through the files Sample and Tick keep, opening those of the ones
// not known yet. It drops no other process: the next Sample or Tick
// does. A process not read has OK false.
func (s *Sampler) RSS(ts []Target) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Sample, len(ts))
	for i, t := range ts {
		if t.Pid > 0 && t.Start > 0 {
			if p, r := s.read(t); p != nil {
				out[i] = Sample{OK: true, RSS: r.rss}
			}
		}
	}
	return out
}

func (s *Sampler) dropUnseen() {
	for pid, p := range s.procs {
		if p.gen != s.gen {
			s.drop(pid, p)
		}
	}
}

// Close closes every file.
func (s *Sampler) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pid, p := range s.procs {
		s.drop(pid, p)
	}
}

// Open reports the files open: one per owned process sampled, and one
// more for each SampleFDs counted the files of.
func (s *Sampler) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.procs) + s.fdDirs
}

// reading is one read of an owned process: its RSS, and its CPU time at
// a moment (cpuOK false: its clock could not be read).
type reading struct {
	rss     int64
	cpu, at time.Duration
	cpuOK   bool
	threads int // its threads, when it was first seen now; else -1
}

// read reads t's CPU clock, the time, and its statm (opening it if t is
// not known yet), and moves its CPU samples on. It returns nil if t is
// gone or not the caller's child started at t.Start.
func (s *Sampler) read(t Target) (*proc, reading) {
	pid := t.Pid
	p := s.procs[pid]
	if p != nil && p.start != t.Start {
		// The caller's process on this pid is another one now.
		s.drop(pid, p)
		p = nil
	}
	r := reading{threads: -1}
	if p != nil {
		// The clock first, then the bound file: see the package
		// comment. The time next to the clock: a slow pass does not
		// stretch the windows of the processes read last.
		r.cpu, r.cpuOK = s.cpu(pid)
		r.at = s.now()
		var ok bool
		if r.rss, ok = s.statm(p.fd); !ok {
			// Gone, and maybe its pid reused: a new process.
			s.drop(pid, p)
			p = nil
		}
	}
	if p == nil {
		fd, st, ok := s.open(t)
		if !ok {
			return nil, r
		}
		// The clock now that the file names the process.
		r.cpu, r.cpuOK = s.cpu(pid)
		r.at = s.now()
		if r.rss, ok = s.statm(fd); !ok {
			unix.Close(fd)
			return nil, r
		}
		born := point{at: ticks(st.Start)}
		p = &proc{fd: fd, fdDir: -1, start: st.Start, old: born, cur: born}
		s.procs[pid] = p
		r.threads = st.Threads
	}
	p.gen = s.gen
	p.last = r
	p.last.threads = -1
	if r.cpuOK && r.at-p.cur.at >= MinWindow {
		p.old, p.cur = p.cur, point{cpu: r.cpu, at: r.at}
	}
	return p, r
}

func (s *Sampler) sample(t Target, m mode, now time.Duration) Sample {
	var p *proc
	var r reading
	fds := m == withFDs
	if q := s.procs[t.Pid]; m != readNow && q != nil && q.start == t.Start && (q.fdDir >= 0 || m == recent) && now-q.last.at <= Fresh {
		// The last reading, recent: the pid is the caller's child
		// (t.Start) not reaped yet, whose files were open then.
		p, r = q, q.last
		p.gen = s.gen
	} else if p, r = s.read(t); p == nil {
		return Sample{}
	}
	out := Sample{OK: true, RSS: r.rss, CPU: r.cpu, CPUOK: r.cpuOK}
	if fds {
		out.FDs, out.FDsOK = s.countFDs(t.Pid, p)
	}
	// From the older of the last two samples: at least MinWindow long,
	// unless the process is younger than that, which has no figure yet.
	if dt := r.at - p.old.at; r.cpuOK && dt >= MinWindow && r.cpu >= p.old.cpu {
		out.CPUPercent = float64(r.cpu-p.old.cpu) / float64(dt) * 100
		out.CPUWindow = dt
	}
	if !p.looked || m != recent && r.at >= p.nextLook {
		// Each member is read as it is found.
		s.look(t.Pid, p, r.threads)
		p.looked, p.nextLook = true, nextLook(t.Pid, r.at)
	} else {
		s.refresh(p)
	}
	tree := out.RSS
	for _, m := range p.tree {
		tree += m.rss
	}
	if len(p.tree) > 0 {
		out.TreeRSS = tree
	}
	out.Untracked, out.Cut = p.lost, p.cut
	return out
}

// countFDs counts the open files of pid, p: the size of its
// /proc/PID/fd, opened the first time (Linux 6.2 on), or else the
// entries of that directory, read through s.cbuf. false: it cannot be
// read (gone, or not ours to look at).
func (s *Sampler) countFDs(pid int, p *proc) (int, bool) {
	if p.fdDir < 0 {
		fd, err := unix.Open(s.root+"/"+strconv.Itoa(pid)+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return 0, false
		}
		// Opened by pid: the bound statm file read after it says the
		// pid still named p's process then.
		if _, ok := s.statm(p.fd); !ok {
			unix.Close(fd)
			return 0, false
		}
		p.fdDir = fd
		s.fdDirs++
	}
	var st unix.Stat_t
	if err := unix.Fstat(p.fdDir, &st); err != nil {
		return 0, false
	}
	if st.Size > 0 {
		return int(st.Size), true
	}
	return s.readFDs(p.fdDir)
}

// readFDs counts the entries of fd, an open /proc/PID/fd, from its
// start, through s.cbuf.
func (s *Sampler) readFDs(fd int) (int, bool) {
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return 0, false
	}
	n := 0
	for {
		k, err := unix.Getdents(fd, s.cbuf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, false
		}
		if k <= 0 {
			return n, true
		}
		_, count, _ := unix.ParseDirent(s.cbuf[:k], -1, nil)
		n += count
	}
}

// nextLook is when the next look for pid's descendants falls due after
// one at now: the first time, at least TreeEvery/2 on, when pid's phase
// of TreeEvery comes round. Looks are TreeEvery apart while samples are
// frequent, and the pids' phases spread them over TreeEvery.
func nextLook(pid int, now time.Duration) time.Duration {
	phase := time.Duration(uint64(pid) * 2654435761 % uint64(TreeEvery))
	t := now + TreeEvery/2 + phase
	return t - t%TreeEvery + TreeEvery - phase
}

// refresh reads p's members again, and drops those gone (or whose pid
// names another process now).
func (s *Sampler) refresh(p *proc) {
	live := p.tree[:0]
	for _, m := range p.tree {
		st, ok := s.stat(m.pid)
		if !ok || st.Start != m.start {
			s.tracked--
			continue
		}
		m.rss = st.RSSPages * s.pageSize
		live = append(live, m)
	}
	clear(p.tree[len(live):])
	p.tree = live
}

// look finds p's descendants again, breadth first from pid: the children
// of each thread of each (threads: pid's, or -1 if not known), each read
// (its stat: parent, start, RSS) as it is found.
func (s *Sampler) look(pid int, p *proc, threads int) {
	if threads < 0 {
		st, ok := s.stat(pid)
		if !ok || st.Start != p.start {
			return // gone: the next sample drops it
		}
		threads = st.Threads
	}
	s.looks++
	known := make(map[int]*member, len(p.tree))
	for _, m := range p.tree {
		known[m.pid] = m
	}
	tree := p.tree[:0:0]
	lost, cuts := 0, 0
	type node struct{ pid, threads int }
	queue := []node{{pid, threads}}
	seen := map[int]bool{pid: true}
	var kids []int
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		var cut bool
		kids, cut = s.children(n.pid, n.threads, kids[:0])
		if cut {
			cuts++
		}
		for _, c := range kids {
			if seen[c] {
				continue
			}
			seen[c] = true
			m := known[c]
			delete(known, c)
			if m == nil && s.tracked >= MaxTracked {
				lost++
				continue
			}
			st, ok := s.stat(c)
			if !ok || st.PPid != n.pid || m != nil && st.Start != m.start {
				// Gone, listed before it was re-parented, or its pid
				// reused.
				if m != nil {
					s.tracked--
				}
				continue
			}
			if m == nil {
				m = &member{pid: c, start: st.Start}
				s.tracked++
			}
			m.rss = st.RSSPages * s.pageSize
			tree = append(tree, m)
			queue = append(queue, node{c, st.Threads})
		}
	}
	s.tracked -= len(known)
	p.tree, p.lost, p.cut = tree, lost, cuts
}

// children appends to out the children of pid's threads (see
// proctree.ChildrenAt), each list through s.cbuf.
func (s *Sampler) children(pid, threads int, out []int) ([]int, bool) {
	return proctree.ChildrenAt(s.root, pid, threads, ThreadsMax, s.cbuf, out)
}

// open opens t's statm file, then reads its stat: the file is bound to
// the process the stat describes if a read of the file succeeds after. It
// fails unless that process is the caller's child started at t.Start.
func (s *Sampler) open(t Target) (int, proctree.Proc, bool) {
	fd, ok := s.openStatm(t.Pid)
	if !ok {
		return -1, proctree.Proc{}, false
	}
	st, ok := s.stat(t.Pid)
	if !ok || st.PPid != s.self || st.Start != t.Start {
		unix.Close(fd)
		return -1, proctree.Proc{}, false
	}
	return fd, st, true
}

func (s *Sampler) openStatm(pid int) (int, bool) {
	fd, err := unix.Open(s.root+"/"+strconv.Itoa(pid)+"/statm", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	return fd, err == nil
}

// stat reads /proc/PID/stat (open, read, close): when a process is first
// seen, at each look for descendants, and of each descendant at each
// sample.
func (s *Sampler) stat(pid int) (proctree.Proc, bool) {
	st, err := proctree.ReadStat(s.root, pid, s.buf)
	return st, err == nil
}

// statm re-reads an open statm file with one pread: the resident set
// (its second field, in pages), in bytes. It fails once the process is
// gone.
func (s *Sampler) statm(fd int) (int64, bool) {
	n, ok := s.pread(fd)
	if !ok {
		return 0, false
	}
	b := s.buf[:n]
	i := 0
	for i < len(b) && b[i] != ' ' { // size
		i++
	}
	if i == len(b) {
		return 0, false
	}
	var pages int64
	for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		pages = pages*10 + int64(b[i]-'0')
	}
	return pages * s.pageSize, true
}

func (s *Sampler) pread(fd int) (int, bool) {
	for {
		n, err := unix.Pread(fd, s.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err == nil && n > 0
	}
}

func (s *Sampler) drop(pid int, p *proc) {
	unix.Close(p.fd)
	if p.fdDir >= 0 {
		unix.Close(p.fdDir)
		s.fdDirs--
	}
	s.tracked -= len(p.tree)
	delete(s.procs, pid)
}
