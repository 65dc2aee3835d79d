package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/procgroup/procstat"
	"github.com/gosup/gosup/supervisor/api"
)

// A process replaced after a crash shows its own RSS at once, not what
// memmon last sampled of the pid before it: memmon here samples once an
// hour (the test takes one sample by hand), so the old figure would stay
// for the whole hour.
func TestStatusRSSIsTheNewPidsOwn(t *testing.T) {
	dir := t.TempDir()
	flag, pidfile := filepath.Join(dir, "flag"), filepath.Join(dir, "pid")
	file := writeConfig(t, program("w", "hog-once 96 "+flag+" "+pidfile, 1, "")+`
[memmon]
interval = "1h"
any = "10GB"
`)
	s, cl, _ := startSupervisor(t, file)
	old := readPidfile(t, pidfile) // written once the 96 MiB are held
	s.mu.RLock()
	w := s.watchdog
	s.mu.RUnlock()
	var wg sync.WaitGroup
	w.Tick(context.Background(), &wg)
	wg.Wait()
	st := waitStatus(t, cl, "w:w_0", "showing the 96 MiB held", func(p api.ProcStatus) bool { return p.Pid == old && p.RSSBytes >= 96<<20 })
	if st.TreeRSSBytes != 0 {
		t.Errorf("tree RSS %d for a process without descendants, want 0", st.TreeRSSBytes)
	}
	if err := unix.Kill(old, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = waitNewPid(t, cl, "w:w_0", old)
	// The new process holds nothing: its RSS is the Go runtime's few MiB.
	if st.RSSBytes <= 0 || st.RSSBytes >= 48<<20 {
		t.Errorf("new pid %d shows RSS %d, want its own (a few MiB; the old pid held 96 MiB)", st.Pid, st.RSSBytes)
	}
}

// Without [memmon], status shows every running process's RSS.
func TestStatusFiguresWithoutMemmon(t *testing.T) {
	file := writeConfig(t, program("hog", "hog 64", 1, "")+program("idle", "sleep", 1, ""))
	_, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	waitStatus(t, cl, "hog:hog_0", "showing the 64 MiB it holds", func(p api.ProcStatus) bool { return p.RSSBytes >= 64<<20 })
	st := waitStatus(t, cl, "idle:idle_0", "showing its RSS", func(p api.ProcStatus) bool { return p.RSSBytes > 0 })
	if st.RSSBytes >= 64<<20 || st.TreeRSSBytes != 0 {
		t.Errorf("idle: RSS %d, tree %d: want its own few MiB, and no tree", st.RSSBytes, st.TreeRSSBytes)
	}
}

// The CPU status shows is over the last few seconds, however long ago the
// last status was: the daemon reads every child's CPU clock every
// procstat.TickEvery. Without it, a first status 10 s after the spawn
// measured over the whole 10 s (and two statuses 8 h apart, over 8 h).
func TestStatusCPUWindowIsRecent(t *testing.T) {
	file := writeConfig(t, program("idle", "sleep", 1, ""))
	s, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	// Wait for 10 s of uptime without asking for a status (which
	// samples): through the process's own status.
	p := s.all()[0]
	deadline := time.Now().Add(60 * time.Second)
	for st := p.Status(); st.Pid == 0 || time.Since(st.StartedAt) < 10*time.Second; st = p.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("no 10 s of uptime in 60 s: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := waitStatus(t, cl, "idle:idle_0", "sampled", func(p api.ProcStatus) bool { return p.Sampled })
	// TickEvery + 1 s at most, with room for a slow machine; never the
	// 10 s of its life.
	if st.CPUWindowS < 1 || st.CPUWindowS > 7 {
		t.Errorf("CPU measured over %.1f s at the first status 10 s after the spawn, want between 1 s and %s + 1 s", st.CPUWindowS, procstat.TickEvery)
	}
}

// The warning under the table says what the tree figures leave out, and
// why: descendants beyond the number followed, lists cut at their bound
// (whose count of processes left out is unknown), or both.
func TestUntrackedWarning(t *testing.T) {
	for _, c := range []struct {
		n, untracked, cut int
		want              string
	}{
		{2, 10, 0, "tree RSS of 2 processes leaves out 10 descendants beyond the 4096 gosup follows over all processes"},
		{1, 0, 1, "tree RSS of 1 processes leaves out the processes past the bound of 1 lists of children or threads (32 KiB a list, 4096 threads a process)"},
		{3, 5, 2, "tree RSS of 3 processes leaves out 5 descendants beyond the 4096 gosup follows over all processes, and the processes past the bound of 2 lists of children or threads (32 KiB a list, 4096 threads a process)"},
	} {
		if got := untrackedWarning(c.n, c.untracked, c.cut); got != c.want {
			t.Errorf("untrackedWarning(%d, %d, %d):\n got %q\nwant %q", c.n, c.untracked, c.cut, got, c.want)
		}
	}
}

// memmon (not cumulative) reads RSS through the status sampler's files:
// one statm file open per process, not one for each.
func TestMemmonSharesTheSamplersFiles(t *testing.T) {
	file := writeConfig(t, program("w", "sleep", 2, "")+`
[memmon]
interval = "1h"
any = "10GB"
`)
	s, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	s.mu.RLock()
	w := s.watchdog
	s.mu.RUnlock()
	var wg sync.WaitGroup
	w.Tick(context.Background(), &wg)
	wg.Wait()
	sts := waitStatus(t, cl, "w:w_0", "sampled", func(p api.ProcStatus) bool { return p.Sampled })
	if _, ok := w.Sample("w:w_0"); !ok {
		t.Fatal("memmon has no sample of w:w_0")
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("/proc/%d/statm", sts.Pid)
	n := 0
	for _, fd := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); l == want {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d descriptors open on %s, want 1 (the status sampler's, which memmon reads too)", n, want)
	}
}
