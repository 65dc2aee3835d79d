package proctree

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseStatOddName(t *testing.T) {
	// A command name may hold spaces and parentheses: fields are counted
	// from the last ')'.
	line := []byte("4242 (a) b (c) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615\n")
	p, ok := ParseStat(line)
	if !ok {
		t.Fatal("not parsed")
	}
	want := Proc{PPid: 17, Pgrp: 4242, State: 'S', Start: 987654, Threads: 1, RSSPages: 10}
	if p != want {
		t.Fatalf("parsed %+v, want %+v", p, want)
	}
	for _, short := range []string{"1 (x) S 0 1", "4242 (a) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000"} {
		if _, ok := ParseStat([]byte(short)); ok {
			t.Fatalf("a truncated line parsed: %q", short)
		}
	}
}

// envMatch finds an entry whatever the chunks the file comes in: an entry
// may be split across reads anywhere, a prefix or an extension of kv is
// not kv.
func TestEnvMatchChunks(t *testing.T) {
	env := "A=1\x00GOSUP_X=ab\x00\x00GOSUP_X=abc\x00B=2"
	cases := map[string]bool{"A=1": true, "GOSUP_X=ab": true, "GOSUP_X=abc": true, "B=2": true,
		"GOSUP_X=a": false, "X=ab": false, "=1": false, "B=": false, "B=22": false, "A=1\x00GOSUP_X=ab": false, "": false}
	for size := 1; size <= len(env)+1; size++ {
		for kv, want := range cases {
			m, got := envMatch{kv: kv}, false
			for rest := env; !got; {
				n := min(size, len(rest))
				if n == 0 {
					got = m.end()
					break
				}
				got, rest = m.feed([]byte(rest[:n])), rest[n:]
			}
			if got != want {
				t.Errorf("chunks of %d: %q found %v, want %v", size, kv, got, want)
			}
		}
	}
}

// HasEnv finds a marker in a real process's environment of 1.5 MiB,
// where it spans two reads, and the one at its very end, and reads it
// through its bounded buffer: a check allocates far less than the
// environment's size.
func TestHasEnvLargeEnvironment(t *testing.T) {
	head := "PAD=" + strings.Repeat("x", envChunk-4-1-3) // its NUL at envChunk-4: the marker spans the first two reads
	var env []string
	env = append(env, head, "PROCTREE_MARK="+t.Name())
	for i := range 12 {
		env = append(env, fmt.Sprintf("BIG%d=%s", i, strings.Repeat("y", 128<<10-16)))
	}
	env = append(env, "PROCTREE_LAST="+t.Name())
	cmd := exec.Command("/bin/sleep", "60")
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for !HasEnv(pid, "PROCTREE_LAST="+t.Name()) { // as of exec
		if time.Now().After(deadline) {
			t.Fatal("the child's last entry never showed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !HasEnv(pid, "PROCTREE_MARK="+t.Name()) {
		t.Error("a marker split across two reads was missed")
	}
	if HasEnv(pid, "PROCTREE_MARK="+t.Name()+"x") || HasEnv(pid, "PROCTREE_MARK=") {
		t.Error("an entry that is not the marker matched")
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		HasEnv(pid, "PROCTREE_ABSENT=1")
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 256<<10 {
		t.Errorf("10 checks of a 1.5 MiB environment allocated %d bytes: the environment is read whole", n)
	}
}

// TestRealChild reads a real child's entry: parent, group, start time,
// marker, and its exit.
func TestRealChild(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "60")
	cmd.Env = []string{"PROCTREE_TEST=" + t.Name()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	p, err := Stat(pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid != pid || p.PPid != os.Getpid() || p.Pgrp != pid || p.Start == 0 {
		t.Fatalf("stat of child %d: %+v (our pid %d)", pid, p, os.Getpid())
	}
	if st, _ := StartTime(pid); st != p.Start {
		t.Fatalf("StartTime %d, Stat %d", st, p.Start)
	}
	if i := slices.IndexFunc(Scan(), func(q Proc) bool { return q.Pid == pid }); i < 0 {
		t.Fatal("Scan misses the child")
	}
	// The environment is read as of exec: wait for it to be the child's.
	deadline := time.Now().Add(30 * time.Second)
	for !HasEnv(pid, "PROCTREE_TEST="+t.Name()) {
		if time.Now().After(deadline) {
			t.Fatal("the child's marker never showed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if HasEnv(pid, "PROCTREE_TEST=other") {
		t.Fatal("HasEnv matched another value")
	}
	if got := Marked("PROCTREE_TEST=" + t.Name()); !slices.Equal(got, []int{pid}) {
		t.Fatalf("Marked = %v, want [%d]", got, pid)
	}
	if Exited(pid) {
		t.Fatal("a sleeping child counted as exited")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Until Wait it is a zombie, and that is exited already.
	for !Exited(pid) {
		if time.Now().After(deadline) {
			t.Fatal("killed child never counted as exited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_ = cmd.Wait()
	if !Exited(pid) {
		t.Fatal("a reaped child is not exited")
	}
}

func BenchmarkScan(b *testing.B) {
	n := len(Scan())
	b.ReportMetric(float64(n), "procs")
	for b.Loop() {
		Scan()
	}
}

// Signal hits the process found only: not one whose start time differs
// from the one found (a recycled pid), nor one without the marker; the
// pidfd it returns tells when the process has gone.
func TestSignalChecksThroughThePidfd(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	cmd.Env = []string{"GOSUP_TEST_MARK=yes"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	pid := cmd.Process.Pid
	start, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if fd := Signal(pid, start+1, "GOSUP_TEST_MARK=yes", syscall.SIGKILL); fd >= 0 {
		t.Error("signalled a process whose start time differs")
	}
	if fd := Signal(pid, start, "GOSUP_TEST_MARK=no", syscall.SIGKILL); fd >= 0 {
		t.Error("signalled a process without the marker")
	}
	select {
	case err := <-done:
		t.Fatalf("the child ended: %v", err)
	default:
	}
	fd := Signal(pid, start, "GOSUP_TEST_MARK=yes", syscall.SIGKILL)
	if fd < 0 {
		t.Fatal("did not signal the process found")
	}
	defer syscall.Close(fd)
	WaitExit(context.Background(), []int{fd}, time.Now().Add(30*time.Second))
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("the child ended with %v, want killed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the child was not killed")
	}
}

// ChildrenAt reads each list through the buffer given: a longer one is
// cut, its split last pid left out; threads past the bound are too.
func TestChildrenAtBounds(t *testing.T) {
	root := t.TempDir()
	write := func(tid int, list string) {
		dir := filepath.Join(root, "10", "task", strconv.Itoa(tid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "children"), []byte(list), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(10, "11 22 333 ")
	got, cut := ChildrenAt(root, 10, 1, 8, make([]byte, 8), nil)
	if !cut || !slices.Equal(got, []int{11, 22}) {
		t.Errorf("8-byte buffer: %v (cut %v), want [11 22], cut", got, cut)
	}
	got, cut = ChildrenAt(root, 10, 1, 8, make([]byte, 64), nil)
	if cut || !slices.Equal(got, []int{11, 22, 333}) {
		t.Errorf("64-byte buffer: %v (cut %v), want [11 22 333]", got, cut)
	}
	write(12, "44 ")
	write(13, "55 ")
	got, cut = ChildrenAt(root, 10, 3, 2, make([]byte, 64), nil)
	if !cut || len(got) < 2 {
		t.Errorf("3 threads, 2 listed: %v (cut %v), want two threads' children, cut", got, cut)
	}
	got, cut = ChildrenAt(root, 10, 3, 8, make([]byte, 64), nil)
	slices.Sort(got)
	if cut || !slices.Equal(got, []int{11, 22, 44, 55, 333}) {
		t.Errorf("3 threads: %v (cut %v), want all 5", got, cut)
	}
}

// TestStartBetween: the start time a fork between two clock reads has,
// when both are in one tick well inside it, and a refusal otherwise.
func TestStartBetween(t *testing.T) {
	const tick = int64(10 * time.Millisecond)
	for _, c := range []struct {
		before, after int64
		start         uint64
		ok            bool
	}{
		{5*tick + tick/2, 5*tick + tick/2 + 1000, 5, true},
		{5*tick + startMargin + 1, 6*tick - startMargin - 1, 5, true},
		{5*tick + startMargin - 1, 5*tick + tick/2, 0, false}, // too near the tick's start
		{5*tick + tick/2, 6*tick - startMargin + 1, 0, false}, // too near its end
		{5*tick + tick/2, 6*tick + tick/2, 0, false},          // straddles
		{5*tick + tick/2, 5*tick + tick/4, 0, false},          // after before before
		{0, tick / 2, 0, false},                               // a failed read
	} {
		if start, ok := StartBetween(c.before, c.after); start != c.start || ok != c.ok {
			t.Errorf("StartBetween(%d, %d) = %d, %v; want %d, %v", c.before, c.after, start, ok, c.start, c.ok)
		}
	}
}

// TestStartBetweenRealForks: for real children, the start time
// StartBetween gives from clock reads around their fork is the one /proc
// shows, every time it gives one.
func TestStartBetweenRealForks(t *testing.T) {
	exact := 0
	for range 40 {
		cmd := exec.Command("/bin/sleep", "60")
		before := BootNanos()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		after := BootNanos()
		got, ok := StartBetween(before, after)
		want, err := StartTime(cmd.Process.Pid)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			exact++
			if got != want {
				t.Fatalf("StartBetween(%d, %d) = %d; /proc shows %d", before, after, got, want)
			}
		}
	}
	if exact == 0 {
		t.Fatal("40 forks, none with both clock reads in one tick: nothing was checked")
	}
	t.Logf("%d of 40 forks had their start time from the clock", exact)
}

// BenchmarkStartTime is a child's start time as a spawn learns it: read
// from /proc/PID/stat, or from the two clock reads around its fork.
func BenchmarkStartTime(b *testing.B) {
	cmd := exec.Command("/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	b.Run("proc", func(b *testing.B) {
		for b.Loop() {
			if _, err := StartTime(cmd.Process.Pid); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("clock", func(b *testing.B) {
		for b.Loop() {
			before := BootNanos()
			after := BootNanos()
			_, _ = StartBetween(before, after)
		}
	})
}
