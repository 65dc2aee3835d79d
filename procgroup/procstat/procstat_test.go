package procstat

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/proctree"
	"golang.org/x/sys/unix"
)

// fakeProc is a copy of /proc's layout that a test writes, with the
// processes' CPU clocks and the time since boot.
type fakeProc struct {
	t    *testing.T
	root string
	now  time.Duration
	cpu  map[int]time.Duration
	// procs are the stat fields written, by pid.
	procs map[int]fakeStat
	// onCPU, when set, runs as a process's CPU clock is read, before
	// the read: a pass that is slow, and takes time, at that process.
	onCPU func(pid int)
	// ended counts the processes gone.
	ended int
}

type fakeStat struct {
	ppid, threads int
	start         uint64
}

// fakeSelf is the sampler's pid in a fake /proc: the parent of the
// processes it samples.
const fakeSelf = 1

func newFake(t *testing.T) (*fakeProc, *Sampler) {
	f := &fakeProc{t: t, root: t.TempDir(), cpu: map[int]time.Duration{}, procs: map[int]fakeStat{}}
	s := newSampler(f.root, fakeSelf, func() time.Duration { return f.now }, func(pid int) (time.Duration, bool) {
		if f.onCPU != nil {
			f.onCPU(pid)
		}
		d, ok := f.cpu[pid]
		return d, ok
	})
	t.Cleanup(s.Close)
	return f, s
}

// proc writes pid's stat file (parent, threads, start in ticks since
// boot, under a command name with spaces and parentheses) and its statm
// (RSS in pages).
func (f *fakeProc) proc(pid, ppid, threads int, start uint64, rssPages int64) {
	f.t.Helper()
	dir := filepath.Join(f.root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	f.procs[pid] = fakeStat{ppid, threads, start}
	f.rss(pid, rssPages)
}

// rss rewrites pid's stat and statm in place, as the kernel does: a file
// kept open reads the new text.
func (f *fakeProc) rss(pid int, pages int64) {
	f.t.Helper()
	dir := filepath.Join(f.root, strconv.Itoa(pid))
	st := f.procs[pid]
	line := fmt.Sprintf("%d (a (b) c) S %d %d %d 0 -1 4194560 100 0 0 0 7 8 0 0 20 0 %d 0 %d 1000 %d 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
		pid, st.ppid, pid, pid, st.threads, st.start, pages)
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
		f.t.Fatal(err)
	}
	line = fmt.Sprintf("%d %d 100 10 0 200 0\n", pages*4, pages)
	if err := os.WriteFile(filepath.Join(dir, "statm"), []byte(line), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// gone makes pid's files read as those of a process gone: a real one
// fails with ESRCH, these have nothing to read. They are moved away, so
// that a new process on the pid has new files, and the files open stay
// bound to the old one, as in /proc.
func (f *fakeProc) gone(pid int) {
	f.t.Helper()
	dir := filepath.Join(f.root, strconv.Itoa(pid))
	for _, name := range []string{"stat", "statm"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	f.ended++
	if err := os.Rename(dir, filepath.Join(f.root, fmt.Sprintf("gone-%d", f.ended))); err != nil {
		f.t.Fatal(err)
	}
	delete(f.cpu, pid)
	delete(f.procs, pid)
}

// children writes the children file of pid's thread tid.
func (f *fakeProc) children(pid, tid int, kids ...int) {
	f.t.Helper()
	dir := filepath.Join(f.root, strconv.Itoa(pid), "task", strconv.Itoa(tid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	var b strings.Builder
	for _, k := range kids {
		fmt.Fprintf(&b, "%d ", k)
	}
	if err := os.WriteFile(filepath.Join(dir, "children"), []byte(b.String()), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func sec(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }

func one(t *testing.T, s *Sampler, pid int) Sample {
	t.Helper()
	out := sampleAll(s, pid)
	if len(out) != 1 {
		t.Fatalf("%d samples for one pid", len(out))
	}
	return out[0]
}

// sampleAll samples pids, each with the start time its stat shows now
// (as the caller knows it: the process it spawned).
func sampleAll(s *Sampler, pids ...int) []Sample {
	ts := make([]Target, len(pids))
	for i, pid := range pids {
		st, _ := s.stat(pid)
		ts[i] = Target{pid, st.Start}
	}
	return s.Sample(ts)
}

func near(a, b float64) bool { return a-b < 0.01 && b-a < 0.01 }

// CPU is of one core: its first sample measures since the process
// started (as ps), the next ones since the previous sample at least
// MinWindow older; RSS is in bytes.
func TestSampleCPUAndRSS(t *testing.T) {
	f, s := newFake(t)
	// Started 10 s after boot, 20 s ago; 5 s of CPU since.
	f.now = sec(30)
	f.proc(42, 1, 1, 1000, 256)
	f.cpu[42] = sec(5)
	got := one(t, s, 42)
	if !got.OK || !near(got.CPUPercent, 25) || got.RSS != 256*int64(os.Getpagesize()) || got.TreeRSS != 0 {
		t.Fatalf("first sample: %+v, want 25%% (5 s over 20 s) and 256 pages", got)
	}
	// 2 s later, 3 s more CPU: 150%, two cores busy half the time.
	f.now, f.cpu[42] = sec(32), sec(8)
	f.rss(42, 300)
	if got := one(t, s, 42); !near(got.CPUPercent, 150) || got.RSS != 300*int64(os.Getpagesize()) {
		t.Fatalf("second sample: %+v, want 150%% and 300 pages", got)
	}
	// 100 ms later, 10 ms more: too short a window to say anything by
	// itself, so measured from the sample before (3.01 s over 2.1 s).
	f.now, f.cpu[42] = sec(32.1), sec(8.01)
	if got := one(t, s, 42); !near(got.CPUPercent, 301.0/2.1) {
		t.Fatalf("sample 100ms later: %v%%, want %v", got.CPUPercent, 301.0/2.1)
	}
	// A second after the last full sample, idle since: 10 ms over 1.1 s.
	f.now = sec(33.1)
	if got := one(t, s, 42); !near(got.CPUPercent, 1/1.1) {
		t.Fatalf("idle: %v%%, want %v", got.CPUPercent, 1/1.1)
	}
	// A clock that cannot be read: RSS, and no CPU figure.
	delete(f.cpu, 42)
	f.now = sec(40)
	if got := one(t, s, 42); !got.OK || got.CPUPercent != 0 {
		t.Fatalf("without a CPU clock: %+v", got)
	}
}

// A process first sampled younger than MinWindow has no CPU figure yet:
// 14 ms run in its first 10 ms would read as 140%.
func TestSampleYoungProcessHasNoCPUFigure(t *testing.T) {
	f, s := newFake(t)
	f.proc(42, fakeSelf, 1, 1000, 256) // started at 10 s
	f.now, f.cpu[42] = sec(10.1), sec(0.14)
	got := one(t, s, 42)
	if !got.OK || got.RSS == 0 || got.CPUPercent != 0 || got.CPUWindow != 0 {
		t.Fatalf("100 ms old: %+v, want its RSS and no CPU figure", got)
	}
	// Past MinWindow, measured from its start.
	f.now, f.cpu[42] = sec(11.5), sec(0.75)
	if got := one(t, s, 42); !near(got.CPUPercent, 50) || got.CPUWindow != sec(1.5) {
		t.Fatalf("1.5 s old: %+v, want 50%% over 1.5 s", got)
	}
}

// The time is read next to each process's clock: a pass slow at one
// process does not add its length to the windows of those read after.
func TestSampleSlowPass(t *testing.T) {
	f, s := newFake(t)
	f.proc(42, fakeSelf, 1, 1000, 1)
	f.proc(43, fakeSelf, 1, 1000, 1) // busy on one core since 10 s
	f.now = sec(20)
	f.onCPU = func(pid int) {
		switch pid {
		case 42:
			f.now += sec(3) // 3 s stuck reading 42
		case 43:
			f.cpu[43] = f.now - sec(10)
		}
	}
	f.cpu[42] = 0
	got := sampleAll(s, 42, 43)
	if !near(got[1].CPUPercent, 100) {
		t.Fatalf("busy process read after a 3 s stall: %v%%, want 100", got[1].CPUPercent)
	}
}

// Tick moves the CPU samples on without reading descendants: a status 8 h
// after the last one measures over the last seconds, not over 8 h.
func TestTickKeepsTheWindowRecent(t *testing.T) {
	f, s := newFake(t)
	f.proc(42, fakeSelf, 1, 1000, 1)
	f.children(42, 42, 43)
	f.proc(43, 42, 1, 1100, 1)
	f.now, f.cpu[42] = sec(20), 0
	if got := one(t, s, 42); got.CPUWindow != sec(10) {
		t.Fatalf("first sample: %+v, want a window from the start", got)
	}
	ts := []Target{{42, 1000}}
	// Idle for 8 h, then busy on one core for the last 5 s.
	for f.now < sec(20+8*3600) {
		f.now += TickEvery
		if f.now > sec(20+8*3600-5) {
			f.cpu[42] += TickEvery
		}
		s.Tick(ts)
	}
	if n := s.tracked; n != 1 {
		t.Errorf("%d descendants followed after ticks, want 1 (ticks do not look)", n)
	}
	f.now += sec(0.5)
	f.cpu[42] += sec(0.5)
	got := one(t, s, 42)
	if got.CPUWindow < MinWindow || got.CPUWindow > TickEvery+MinWindow || !near(got.CPUPercent, 100) {
		t.Fatalf("after 8 h of ticks: %v%% over %s, want 100%% over at most %s", got.CPUPercent, got.CPUWindow, TickEvery+MinWindow)
	}
}

// A pid reused by another process starts afresh, from the new process's
// start: never the difference with the other's CPU time.
func TestSamplePidReuse(t *testing.T) {
	f, s := newFake(t)
	f.now = sec(100)
	f.proc(42, 1, 1, 1000, 512)
	f.cpu[42] = sec(90) // 90 s over 90 s
	if got := one(t, s, 42); !near(got.CPUPercent, 100) {
		t.Fatalf("first process: %v%%", got.CPUPercent)
	}
	f.gone(42)
	f.now = sec(109)
	if got := one(t, s, 42); got.OK {
		t.Fatalf("a process gone sampled: %+v", got)
	}
	if n := s.Open(); n != 0 {
		t.Errorf("%d files open for a process gone", n)
	}
	// The new process on the same pid started at 108 s; 1 s of CPU at
	// 110 s. It is sampled the first time at 110 s.
	f.now = sec(110)
	f.proc(42, 1, 1, 10800, 64)
	f.cpu[42] = sec(1)
	got := one(t, s, 42)
	if !near(got.CPUPercent, 50) || got.RSS != 64*int64(os.Getpagesize()) {
		t.Fatalf("the new process: %+v, want 50%% (1 s over 2 s) and its own 64 pages", got)
	}
	// Gone and replaced between two samples: the same.
	f.gone(42)
	f.proc(42, 1, 1, 10900, 32)
	f.cpu[42] = sec(0.5)
	f.now = sec(111)
	got = one(t, s, 42)
	if !near(got.CPUPercent, 25) || got.RSS != 32*int64(os.Getpagesize()) {
		t.Fatalf("replaced between samples: %+v, want 25%% (0.5 s over 2 s) and 32 pages", got)
	}
	if n := s.Open(); n != 1 {
		t.Errorf("%d files open, want 1", n)
	}
}

// TreeRSS sums the descendants found through the children files, of
// every thread, down the tree; a listed child that is not (or no longer)
// the parent's is left out; a member gone drops out at the next sample,
// one appearing is found at the next look.
func TestSampleTree(t *testing.T) {
	f, s := newFake(t)
	page := int64(os.Getpagesize())
	f.now = sec(50)
	f.proc(10, 1, 2, 100, 100) // two threads
	f.children(10, 10, 11)
	f.children(10, 12, 13, 14) // 14 was re-parented meanwhile
	f.proc(11, 10, 1, 200, 10)
	f.proc(13, 10, 1, 200, 20)
	f.proc(14, 1, 1, 200, 1000)
	f.children(13, 13, 15)
	f.proc(15, 13, 1, 300, 5)
	got := one(t, s, 10)
	if got.RSS != 100*page || got.TreeRSS != 135*page || got.Untracked != 0 {
		t.Fatalf("tree: %+v, want own 100 pages, tree 135", got)
	}
	if n, m := s.Open(), s.tracked; n != 1 || m != 3 {
		t.Errorf("%d files open, %d descendants followed: want 1 (10's) and 3 (11, 13, 15)", n, m)
	}
	// 15 exits: out before the next look.
	f.now = sec(51)
	f.gone(15)
	f.rss(11, 30) // 11 grew
	f.children(11, 11, 16)
	f.proc(16, 11, 1, 5000, 8) // and forked
	if got := one(t, s, 10); got.TreeRSS != 150*page {
		t.Fatalf("after 15 left: tree %d pages, want 150", got.TreeRSS/page)
	}
	if n, m := s.Open(), s.tracked; n != 1 || m != 2 {
		t.Errorf("%d files open, %d descendants followed: want 1 and 2", n, m)
	}
	// At the next look 16 is found; 15's pid, still listed by 13, is
	// now another process's, and left out.
	f.proc(15, 1, 1, 5000, 7)
	f.now = sec(50) + TreeEvery*3/2
	if got := one(t, s, 10); got.TreeRSS != 158*page {
		t.Fatalf("after the next look: tree %d pages, want 158 (16 found)", got.TreeRSS/page)
	}
	// 10 started in a thread-group of one: the children of its one
	// thread are read without listing its threads.
	f.proc(20, 1, 1, 100, 1)
	f.children(20, 20, 21)
	f.proc(21, 20, 1, 200, 2)
	if got := sampleAll(s, 10, 20); got[1].TreeRSS != 3*page {
		t.Fatalf("single thread: %+v, want a tree of 3 pages", got[1])
	}
}

// Files of processes no longer sampled are closed; a process gone has no
// figures.
func TestSampleCloses(t *testing.T) {
	f, s := newFake(t)
	f.proc(4, 1, 1, 1, 1)
	f.proc(2, 1, 1, 1, 1)
	f.children(2, 2, 3)
	f.proc(3, 2, 1, 2, 1)
	out := sampleAll(s, 4, 0, 2, 99)
	if !out[0].OK || out[1].OK || !out[2].OK || out[3].OK {
		t.Fatalf("samples: %+v", out)
	}
	if n, m := s.Open(), s.tracked; n != 2 || m != 1 {
		t.Fatalf("%d files open, %d descendants followed: want 2 and 1", n, m)
	}
	sampleAll(s, 4)
	if n, m := s.Open(), s.tracked; n != 1 || m != 0 {
		t.Fatalf("after 2 left: %d files open, %d descendants followed, want 1 and 0", n, m)
	}
	s.Close()
	if n, m := s.Open(), s.tracked; n != 0 || m != 0 {
		t.Fatalf("after Close: %d files open, %d descendants followed", n, m)
	}
}

// A pid whose process is not the caller's child, or started at another
// time than the caller says, is refused: its pid went stale and was
// reused.
func TestSampleRefusesAStalePid(t *testing.T) {
	f, s := newFake(t)
	f.now = sec(100)
	f.proc(42, fakeSelf, 1, 1000, 10)
	f.cpu[42] = sec(1)
	f.proc(43, 7, 1, 1000, 10) // another's child
	f.cpu[43] = sec(1)
	out := s.Sample([]Target{{42, 999}, {43, 1000}})
	if out[0].OK || out[1].OK {
		t.Fatalf("stale pids sampled: %+v", out)
	}
	if n := s.Open(); n != 0 {
		t.Fatalf("%d files open for stale pids", n)
	}
	// Sampled as the right process, then the caller's process on that
	// pid changes: the files of the earlier one are not read for it.
	if got := s.Sample([]Target{{42, 1000}}); !got[0].OK {
		t.Fatalf("our child not sampled: %+v", got[0])
	}
	if got := s.Sample([]Target{{42, 1001}}); got[0].OK || s.Open() != 0 {
		t.Fatalf("another start time on the same pid sampled: %+v, %d files open", got[0], s.Open())
	}
}

// Looks for descendants are spread: with a sample every second, each
// looks for the descendants of a few processes, not of all of them every
// TreeEvery; and every process's are looked for within 1.5 TreeEvery.
func TestSampleSpreadsLooks(t *testing.T) {
	f, s := newFake(t)
	const n = 100
	var pids []int
	for i := range n {
		pid := 1000 + i
		f.proc(pid, fakeSelf, 1, 100, 1)
		pids = append(pids, pid)
	}
	f.now = sec(10)
	sampleAll(s, pids...)
	if s.looks != n {
		t.Fatalf("%d looks at the first sample, want %d", s.looks, n)
	}
	most, total := 0, 0
	for range 30 {
		f.now += time.Second
		before := s.looks
		sampleAll(s, pids...)
		most, total = max(most, s.looks-before), total+s.looks-before
	}
	// 30 s: 6 looks each, at most 7 (one TreeEvery/2 early at the first).
	if total < 5*n || total > 7*n {
		t.Errorf("%d looks over 30 s of samples every second, want about %d", total, 6*n)
	}
	if most > n/2 {
		t.Errorf("a sample looked for the descendants of %d of %d processes: not spread", most, n)
	}
}

// A children list over its bound is cut, and counted.
func TestSampleChildrenBound(t *testing.T) {
	f, s := newFake(t)
	f.proc(10, 1, 1, 1, 1)
	var kids []int
	for i := 0; i < ChildrenMax/7+10; i++ {
		kids = append(kids, 100000+i)
	}
	f.children(10, 10, kids...)
	f.proc(100000, 10, 1, 1, 1)
	got := one(t, s, 10)
	if got.Cut != 1 || got.Untracked != 0 || got.TreeRSS == 0 {
		t.Fatalf("cut list: %+v, want the one child found and the cut list counted", got)
	}
}

// startTree starts sh running n sleeps in the background, in a process
// group of its own, and returns once they are forked. Cleanup kills the
// whole group and waits until no member is left: the sleeps are not the
// test's children, and would outlive a kill of sh alone.
func startTree(t testing.TB, n int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", strings.Repeat("sleep 1000 & ", n)+"echo started; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killGroup(t, cmd) })
	// "started": the sleeps are forked.
	if _, err := out.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// killGroup kills cmd's process group, reaps cmd and waits until every
// child of it has exited (is gone, or a zombie its new parent has yet to
// reap).
func killGroup(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	sh := cmd.Process.Pid
	kids := proctree.Children(sh)
	_ = syscall.Kill(-sh, syscall.SIGKILL)
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range kids {
		for !proctree.Exited(pid) {
			if time.Now().After(deadline) {
				t.Errorf("pid %d, sh's child, still runs 30 s after SIGKILL", pid)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitTree samples pid until its tree is larger than itself: a child
// forked, not yet through its exec, may show no RSS.
func waitTree(t *testing.T, s *Sampler, pid int) Sample {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := one(t, s, pid)
		if got.OK && got.TreeRSS > got.RSS {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: %+v 30 s on, want a tree larger than the process", pid, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openFiles counts this process's open descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// On the real /proc: a shell with a sleeping child shows its own RSS, and
// a tree larger than it; once killed, it has no figures and its files are
// closed.
func TestSampleRealProcess(t *testing.T) {
	cmd := startTree(t, 1)
	s := New()
	defer s.Close()
	pid := cmd.Process.Pid
	got := waitTree(t, s, pid)
	if !got.OK || got.RSS <= 0 {
		t.Fatalf("sh with a child: %+v, want RSS and a larger tree RSS", got)
	}
	killGroup(t, cmd)
	for _, p := range sampleAll(s, pid) {
		if p.OK {
			t.Fatalf("a reaped process sampled: %+v", p)
		}
	}
	if n := s.Open(); n != 0 {
		t.Errorf("%d files open after it was reaped", n)
	}
}

// Descendants, which gosup does not own, hold no descriptor of the
// daemon's: one file stays open per owned process, whatever its tree
// (descriptors are what spawns and accepts need).
func TestSampleKeepsNoFileOfDescendants(t *testing.T) {
	cmd := startTree(t, 3)
	s := New()
	defer s.Close()
	before := openFiles(t)
	waitTree(t, s, cmd.Process.Pid)
	if n := openFiles(t) - before; n != 1 {
		t.Errorf("%d descriptors more after a sample of sh and its 3 children, want 1 (sh's)", n)
	}
	if n := s.Open(); n != 1 {
		t.Errorf("Open: %d, want 1", n)
	}
}

// startChildren starts n children of the test process running argv and
// returns them as targets.
func startChildren(b *testing.B, n int, argv ...string) []Target {
	b.Helper()
	ts := make([]Target, 0, n)
	for range n {
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		st, err := proctree.Stat(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		ts = append(ts, Target{cmd.Process.Pid, st.Start})
	}
	return ts
}

// BenchmarkTick is the daemon's background tick over 100 and 500 sleeping
// children: a CPU clock read and one pread each.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{100, 500} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			ts := startChildren(b, n, "sleep", "1000")
			s := New()
			defer s.Close()
			s.Tick(ts)
			for b.Loop() {
				s.Tick(ts)
			}
			if s.Open() != n {
				b.Fatalf("%d open, want %d", s.Open(), n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/process")
		})
	}
}

// TestMain runs the test binary as an idle Go program when asked to: a
// child with the threads a Go runtime starts (BenchmarkSampleGoChildren).
func TestMain(m *testing.M) {
	if os.Getenv("PROCSTAT_TEST_IDLE") == "1" {
		// A few goroutines blocked in syscalls: threads, as a Go server
		// has.
		for range 4 {
			go func() {
				var b [1]byte
				_, _ = os.Stdin.Read(b[:])
			}()
		}
		select {}
	}
	os.Exit(m.Run())
}

// BenchmarkSampleGoChildren samples 100 idle multi-threaded Go programs
// (this test binary), whose descendants are looked for through each
// thread's children file. look-each: every sample looks for every
// process's descendants (the cost of one look, per process). every-1s:
// samples 1 s apart (ctl top), the looks spread over TreeEvery by the
// pids' phases; max-ms is the dearest sample of the run.
func BenchmarkSampleGoChildren(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	const n = 100
	ts := make([]Target, 0, n)
	for range n {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "PROCSTAT_TEST_IDLE=1")
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			in.Close()
			cmd.Process.Kill()
			cmd.Wait()
		})
		ts = append(ts, Target{Pid: cmd.Process.Pid})
	}
	threads := 0
	for i := range ts {
		// Wait for the runtime's threads: a started program has 1.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			st, err := proctree.Stat(ts[i].Pid)
			if err != nil {
				b.Fatal(err)
			}
			ts[i].Start = st.Start
			if st.Threads >= 4 || time.Now().After(deadline) {
				threads += st.Threads
				break
			}
		}
	}
	for _, c := range []struct {
		name string
		step time.Duration
	}{{"look-each", TreeEvery}, {"every-1s", time.Second}} {
		b.Run(c.name, func(b *testing.B) {
			now := sinceBoot()
			s := newSampler("/proc", os.Getpid(), func() time.Duration { return now }, cpuClock)
			defer s.Close()
			s.Sample(ts)
			var most time.Duration
			for b.Loop() {
				now += c.step
				t0 := time.Now()
				for _, p := range s.Sample(ts) {
					if !p.OK {
						b.Fatal("a child not sampled")
					}
				}
				most = max(most, time.Since(t0))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/process")
			b.ReportMetric(float64(most.Microseconds())/1000, "max-ms")
			b.ReportMetric(float64(threads)/n, "threads/process")
		})
	}
}

// BenchmarkSample100 samples 100 real processes without children, as a
// status of 100 does (ns/op over 100 is the cost of one).
func BenchmarkSample100(b *testing.B) {
	var pids []int
	for range 100 {
		cmd := exec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		pids = append(pids, cmd.Process.Pid)
	}
	s := New()
	defer s.Close()
	ts := make([]Target, len(pids))
	for i, pid := range pids {
		st, _ := s.stat(pid)
		ts[i] = Target{pid, st.Start}
	}
	s.Sample(ts)
	b.ResetTimer()
	for b.Loop() {
		for _, p := range s.Sample(ts) {
			if !p.OK {
				b.Fatal("a sleeper not sampled")
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/process")
}

// Only the daemon's own children are sampled: a pid that names another
// process (the caller's pid went stale, and was reused) is refused, its
// figures, files and tree never read. Any user may read any process's CPU
// clock, so nothing else would stop it.
func TestSampleRefusesWhatIsNotOurChild(t *testing.T) {
	cmd := startTree(t, 1)
	sh := cmd.Process.Pid
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", sh, sh))
	sleep, err := strconv.Atoi(strings.TrimSpace(string(kids)))
	if err != nil {
		t.Fatalf("sh's children %q: %v", kids, err)
	}
	s := New()
	defer s.Close()
	for _, c := range []struct {
		what string
		pid  int
	}{{"the test's own pid", os.Getpid()}, {"a grandchild", sleep}, {"init", 1}} {
		if got := one(t, s, c.pid); got.OK {
			t.Errorf("%s (pid %d) sampled: %+v", c.what, c.pid, got)
		}
	}
	if n := s.Open(); n != 0 {
		t.Errorf("%d files open for processes refused", n)
	}
}

// SampleFDs counts a real child's open files, as its /proc/PID/fd lists
// them, both by the directory's size (Linux 6.2 on) and by reading it
// (before); Sample does not count them.
func TestSampleFDsRealProcess(t *testing.T) {
	cmd := exec.Command("sh", "-c", "exec 7</dev/null 8</dev/null 9</dev/null; echo started; exec sleep 1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killGroup(t, cmd) })
	if _, err := out.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Count once the shell has become sleep and sleep sleeps: its files
	// change until then (the dynamic loader opens and closes libc after
	// the exec has renamed the process).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		sc, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
		nr, _, _ := strings.Cut(string(sc), " ")
		if string(comm) == "sleep\n" && (nr == strconv.Itoa(unix.SYS_CLOCK_NANOSLEEP) || nr == strconv.Itoa(unix.SYS_NANOSLEEP)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shell did not exec sleep, or sleep did not sleep (comm %q, syscall %q)", comm, sc)
		}
	}
	s := New()
	defer s.Close()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := len(entries) // 0, 1, 2, 7, 8, 9 (maybe more the shell left)
	if want < 6 {
		t.Fatalf("%s lists %d files, want at least 6", dir, want)
	}
	st, _ := s.stat(pid)
	got := s.SampleFDs([]Target{{pid, st.Start}})[0]
	if !got.OK || !got.FDsOK || got.FDs != want {
		t.Errorf("SampleFDs: %+v, want %d files", got, want)
	}
	if n := s.Open(); n != 2 {
		t.Errorf("%d files open, want 2: statm and the fd directory", n)
	}
	if n, ok := s.readFDs(s.procs[pid].fdDir); !ok || n != want {
		t.Errorf("reading %s: %d files (%v), want %d", dir, n, ok, want)
	}
	if got := s.Sample([]Target{{pid, st.Start}})[0]; got.FDsOK || !got.CPUOK {
		t.Errorf("Sample: %+v, want no file count, a CPU time", got)
	}
	if n := s.Sample(nil); len(n) != 0 || s.Open() != 0 {
		t.Errorf("%d files open once the process is not listed, want 0", s.Open())
	}
}

// SampleFDs takes a process's CPU time and RSS from the last reading (the
// daemon's Tick) while it is at most Fresh old, and reads them again
// after; Sample always reads them.
func TestSampleFDsReusesAFreshReading(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	now := sinceBoot()
	clock := func() time.Duration { return now }
	reads := 0
	cpu := func(pid int) (time.Duration, bool) {
		reads++
		return cpuClock(pid)
	}
	s := newSampler("/proc", os.Getpid(), clock, cpu)
	defer s.Close()
	pid := cmd.Process.Pid
	st, ok := s.stat(pid)
	if !ok {
		t.Fatal("no stat")
	}
	ts := []Target{{pid, st.Start}}
	if got := s.SampleFDs(ts)[0]; !got.OK || !got.FDsOK || reads != 1 {
		t.Fatalf("first SampleFDs: %+v, %d clock reads, want 1", got, reads)
	}
	s.Tick(ts)
	now += Fresh
	if got := s.SampleFDs(ts)[0]; !got.OK || !got.FDsOK || got.RSS == 0 || reads != 2 {
		t.Errorf("SampleFDs after a Tick: %+v, %d clock reads, want the tick's 2", got, reads)
	}
	now++
	if got := s.SampleFDs(ts)[0]; !got.OK || reads != 3 {
		t.Errorf("SampleFDs past Fresh: %+v, %d clock reads, want 3", got, reads)
	}
	s.Sample(ts)
	if reads != 4 {
		t.Errorf("Sample: %d clock reads, want 4", reads)
	}
}

// SampleRecent (the status) takes the figures of the last Tick and the
// descendants it found: it reads no CPU clock and looks for no
// descendants of a process Tick read less than Fresh ago, and the tree's
// members are read again (their RSS is now's). A process Tick has not
// read, or read too long ago, is read now.
func TestSampleRecentTakesTheTicksReading(t *testing.T) {
	f, s := newFake(t)
	page := int64(os.Getpagesize())
	const n = 50
	var ts []Target
	for i := range n {
		pid := 1000 + i
		f.proc(pid, fakeSelf, 1, 100, 10)
		f.cpu[pid] = sec(1)
		ts = append(ts, Target{pid, 100})
	}
	// 1000 has a child, 5000.
	f.children(1000, 1000, 5000)
	f.proc(5000, 1000, 1, 150, 7)
	reads := 0
	f.onCPU = func(int) { reads++ }
	f.now = sec(10)
	s.Tick(ts)
	if reads != n || s.looks != n {
		t.Fatalf("the first Tick read %d clocks and looked %d times, want %d each", reads, s.looks, n)
	}
	f.rss(1001, 20)
	f.rss(5000, 9)
	f.now += TickEvery
	reads, looks := 0, s.looks
	out := s.SampleRecent(nil, ts)
	if reads != 0 || s.looks != looks {
		t.Errorf("SampleRecent after a Tick read %d clocks and looked %d times, want none", reads, s.looks-looks)
	}
	if !out[1].OK || out[1].RSS != 10*page {
		t.Errorf("1001: %+v, want the Tick's RSS %d", out[1], 10*page)
	}
	if !out[0].OK || out[0].TreeRSS != 10*page+9*page {
		t.Errorf("1000: tree RSS %d, want its own at the Tick and its child's now: %d", out[0].TreeRSS, 19*page)
	}
	// Too long after the Tick: read now.
	f.now += Fresh
	reads = 0
	out = s.SampleRecent(nil, ts)
	if reads != n || out[1].RSS != 20*page {
		t.Errorf("SampleRecent %s after the Tick read %d clocks, RSS of 1001 %d: want %d clocks and %d", Fresh+TickEvery, reads, out[1].RSS, n, 20*page)
	}
}
