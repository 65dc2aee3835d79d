package reaper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	p, exitC, err := testReaper.Spawn(&Cmd{
		Path:  "/bin/sh",
		Argv:  []string{"sh", "-c", "sleep 60 </dev/null >/dev/null & echo $!; read x"},
		Files: []*os.File{stdinR, outW, os.Stderr},
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

// The spawning thread forks from a descriptor table of its own: however
// many descriptors the process holds (a daemon's children's log pipes),
// that table holds stdin, stdout, stderr and a few of the runtime's, and a
// child gets exactly the files its spawn names, from the process's table.
func TestSpawningThreadHasATableOfItsOwn(t *testing.T) {
	<-testReaper.ready // Run has bound the thread
	if !testReaper.own {
		t.Fatal("the spawning thread shares the process's descriptor table (unshare refused?)")
	}
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	for range 100 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r, w)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	p, exitC, err := testReaper.Spawn(&Cmd{
		Path:  "/bin/sh",
		Argv:  []string{"sh", "-c", "ls /proc/$$/fd; readlink /proc/$$/fd/1"},
		Files: []*os.File{nil, outW, os.Stderr},
	})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	out, err := io.ReadAll(outR)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ex := <-exitC:
		if ex.Code() != 0 {
			t.Fatalf("child: %s, output %q", ex, out)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the child's exit never came")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(outR.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	// The shell lists 1 and 2 (0 is closed: a nil file), and the
	// descriptor it reads the directory with; fd 1 is our pipe.
	lines := strings.Fields(string(out))
	if want := fmt.Sprintf("pipe:[%d]", st.Ino); len(lines) < 2 || lines[len(lines)-1] != want || slices.Contains(lines[:len(lines)-1], "0") {
		t.Fatalf("child's descriptors and its stdout %q, want no 0, and stdout %s", out, want)
	}
	for _, fd := range lines[:len(lines)-1] {
		if n, err := strconv.Atoi(fd); err != nil || n > 3 {
			t.Fatalf("child holds descriptor %s (%q): inherited", fd, out)
		}
	}
	own, err := os.ReadDir(fmt.Sprintf("/proc/self/task/%d/fd", testReaper.thread.Load()))
	if err != nil {
		t.Fatal(err)
	}
	if len(own) > 8 {
		t.Fatalf("the spawning thread's table holds %d descriptors with the process holding %d more: want a handful", len(own), len(held))
	}
}
