package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// One reaper per process: the tests share it.
var testReaper *Reaper

func TestMain(m *testing.M) {
	if mode := os.Getenv(execHelperEnv); mode != "" {
		os.Exit(execHelper(mode, os.Args[1:]))
	}
	if mode := os.Getenv("REAPER_HELPER"); mode != "" {
		code, _ := strconv.Atoi(mode)
		os.Exit(code)
	}
	r, err := New()
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	testReaper = r
	code := m.Run()
	cancel()
	os.Exit(code)
}

// Children that exit at once, spawned from many goroutines on every
// spawning thread, each report their own exit code exactly once.
func TestInstantExitsAreNeverMissed(t *testing.T) {
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			code := i % 50
			attr := &os.ProcAttr{Env: append(os.Environ(), "REAPER_HELPER="+strconv.Itoa(code))}
			p, exitC, err := testReaper.Start(func() (*os.Process, error) {
				p, err := os.StartProcess(os.Args[0], []string{os.Args[0]}, attr)
				// Return late: the child has exited (and SIGCHLD fired)
				// before the reaper could know its pid.
				time.Sleep(100 * time.Millisecond)
				return p, err
			})
			if err != nil {
				errs <- err.Error()
				return
			}
			select {
			case ex := <-exitC:
				if ex.Pid != p.Pid || ex.Code() != code {
					errs <- "pid " + strconv.Itoa(ex.Pid) + ": want code " + strconv.Itoa(code) + ", have " + ex.String()
				}
			case <-time.After(10 * time.Second):
				errs <- "exit of pid " + strconv.Itoa(p.Pid) + " never reported"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestExitString(t *testing.T) {
	killed := Exit{Status: 9}      // WaitStatus: terminated by signal 9
	exited := Exit{Status: 3 << 8} // exit status 3
	if killed.String() != "terminated by SIGKILL" || killed.Code() != 137 {
		t.Errorf("killed: %s, %d", killed, killed.Code())
	}
	if exited.String() != "exit status 3" || exited.Code() != 3 {
		t.Errorf("exited: %s, %d", exited, exited.Code())
	}
}

// Ping answers while the reaping loop is free, and not while it is stuck
// in a reap: here a spawn that does not return holds every pid lookup,
// and a child's exit sends the loop into one.
func TestPingAnswersOnlyAFreeLoop(t *testing.T) {
	ctx := context.Background()
	if err := testReaper.Ping(ctx); err != nil {
		t.Fatalf("idle reaper: %v", err)
	}
	release := make(chan struct{})
	spawned := make(chan struct{})
	go func() {
		_, _, _ = testReaper.Start(func() (*os.Process, error) {
			close(spawned)
			<-release
			return nil, os.ErrInvalid
		})
	}()
	<-spawned
	// Still free: nothing to reap yet.
	if err := testReaper.Ping(ctx); err != nil {
		t.Fatalf("reaper with a spawn in flight: %v", err)
	}
	// A child that exits at once: its reap waits for the spawn in flight.
	attr := &os.ProcAttr{Env: append(os.Environ(), "REAPER_HELPER=0")}
	child, err := os.StartProcess(os.Args[0], []string{os.Args[0]}, attr)
	if err != nil {
		t.Fatal(err)
	}
	defer child.Release()
	// The loop is stuck once it has reaped the child: it takes the exit
	// (the child's /proc entry goes: nobody else waits for it) and then
	// waits for the spawn in flight before it can look the pid up. Wait for
	// that, not for a ping that happens to be slow.
	stat := fmt.Sprintf("/proc/%d/stat", child.Pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(stat); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reaper did not reap the child")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Now no ping is answered, however long it waits.
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err = testReaper.Ping(pctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stuck reaper answered a ping: %v", err)
	}
	close(release)
	pctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := testReaper.Ping(pctx); err != nil {
		t.Fatalf("reaper after the spawn returned: %v", err)
	}
}

// A reading of the children made after a child's reap shows what that
// child left running (re-parented to the subreaper), even when an older
// reading was kept; later exits reaped before a reading share it.
func TestChildrenAfterShowsWhatAReapedChildLeft(t *testing.T) {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	attr := &os.ProcAttr{Files: []*os.File{stdinR, outW, os.Stderr}}
	p, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess("/bin/sh", []string{"sh", "-c", "sleep 60 </dev/null >/dev/null & echo $!; read x"}, attr)
	})
	stdinR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 32)
	n, err := outR.Read(line)
	if err != nil {
		t.Fatal(err)
	}
	left, err := strconv.Atoi(string(line[:n-1]))
	if err != nil {
		t.Fatalf("the shell's grandchild: %q: %v", line[:n], err)
	}
	defer syscall.Kill(left, syscall.SIGKILL)
	if slices.Contains(testReaper.ChildrenAfter(0), left) {
		t.Fatalf("pid %d is a child before the shell %d exits", left, p.Pid)
	}
	stdinW.Close() // the shell reads EOF and exits, leaving sleep behind
	var ex Exit
	select {
	case ex = <-exitC:
	case <-time.After(30 * time.Second):
		t.Fatal("the shell's exit was never reported")
	}
	kids := testReaper.ChildrenAfter(ex.Seq)
	if !slices.Contains(kids, left) {
		t.Fatalf("after reap %d: children %v, want %d (left by the shell) among them", ex.Seq, kids, left)
	}
	if again := testReaper.ChildrenAfter(ex.Seq); &again[0] != &kids[0] {
		t.Fatal("a second exit reaped before the reading read the children again")
	}
}
