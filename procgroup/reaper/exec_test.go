package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// execHelperEnv, set in a helper's environment, makes the test binary run
// the exec helper (execHelper) in that mode instead of the tests.
const execHelperEnv = "REAPER_EXEC_HELPER"

// The exec helper must spawn from, and exec on, the main thread, as the
// daemon does: lock the main goroutine to it before TestMain runs.
func init() {
	if os.Getenv(execHelperEnv) != "" {
		runtime.LockOSThread()
	}
}

// procStat is the state letter and parent pid of pid (/proc/PID/stat).
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 2 {
		return 0, 0, fmt.Errorf("pid %d: bad stat %q", pid, b)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err
}

// waitFor polls cond every 10 ms until it holds, or fails after a
// generous deadline (the machine may be slow and shared).
func waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// fdPath is what descriptor fd of this process names, "" if it is closed.
func fdPath(fd int) string {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return ""
	}
	return p
}

// execHelper runs one side of TestExecKeepsEveryChild. Mode "before" is the
// old image, "after" the new one (same pid) that the old execs.
func execHelper(mode string, args []string) int {
	var err error
	switch mode {
	case "before":
		err = execBefore(args[0])
	case "after":
		err = execAfter(args)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Println("FAIL:", err)
		return 1
	}
	return 0
}

func sleeper(pdeath bool) (*os.Process, error) {
	attr := &os.ProcAttr{Sys: &syscall.SysProcAttr{}}
	if pdeath {
		attr.Sys.Pdeathsig = syscall.SIGKILL
	}
	return os.StartProcess("/bin/sleep", []string{"sleep", "3600"}, attr)
}

// execBefore runs on the main goroutine, locked to the main thread: it
// runs the Reaper there (so that it spawns from the main thread), and
// drives it from another goroutine, which ends in the Exec.
func execBefore(dir string) error {
	rp, err := New()
	if err != nil {
		return err
	}
	failed := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		failed <- execDrive(rp, dir)
		cancel()
	}()
	rp.Run(ctx)
	return <-failed
}

func execDrive(rp *Reaper, dir string) error {
	// Leader is true once Run has locked its thread: wait for a spawn.
	if _, _, err := rp.Start(func() (*os.Process, error) { return nil, errors.New("nothing") }); err == nil {
		return errors.New("a failing spawn did not fail")
	}
	if !rp.Leader() {
		return errors.New("the spawning thread is not the main thread")
	}
	// kept: a child of the spawning thread, with the parent-death signal.
	kept, _, err := rp.Start(func() (*os.Process, error) { return sleeper(true) })
	if err != nil {
		return err
	}
	// doomed: the same, forked from another thread (the hazard the
	// Reaper avoids): that thread ends in the exec, and the signal fires.
	doomedC := make(chan int)
	errC := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives until the exec
		p, err := sleeper(true)
		if err != nil {
			errC <- err
			return
		}
		doomedC <- p.Pid
		select {}
	}()
	var doomed int
	select {
	case doomed = <-doomedC:
	case err := <-errC:
		return err
	}
	// zombie: exits while reaping is held (the handover window) and is
	// left for the next image.
	release, err := rp.Hold(context.Background())
	if err != nil {
		return err
	}
	defer release()
	zombie, _, err := rp.Start(func() (*os.Process, error) {
		return os.StartProcess("/bin/sh", []string{"sh", "-c", "exit 7"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}})
	})
	if err != nil {
		return err
	}
	if err := waitFor("the held child to be a zombie", func() bool {
		st, _, err := procStat(zombie.Pid)
		return err == nil && st == 'Z'
	}); err != nil {
		return err
	}
	// Descriptors: one kept across the exec, one not.
	keepF, err := os.Create(filepath.Join(dir, "kept"))
	if err != nil {
		return err
	}
	dropF, err := os.Create(filepath.Join(dir, "dropped"))
	if err != nil {
		return err
	}
	keepFD, dropFD := int(keepF.Fd()), int(dropF.Fd())
	// An exec that fails changes nothing: the kept descriptor is
	// close-on-exec again.
	if err := rp.Exec(filepath.Join(dir, "no-such-binary"), []string{"x"}, nil, []int{keepFD}, nil); err == nil || !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("exec of a missing binary: %v", err)
	}
	if fl, err := unix.FcntlInt(uintptr(keepFD), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
		return fmt.Errorf("after a failed exec, fd %d flags %#x (%v): want FD_CLOEXEC", keepFD, fl, err)
	}
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, execHelperEnv+"=") })
	env = append(env, execHelperEnv+"=after")
	argv := []string{os.Args[0], dir}
	for _, n := range []int{os.Getpid(), kept.Pid, doomed, zombie.Pid, keepFD, dropFD} {
		argv = append(argv, strconv.Itoa(n))
	}
	ran := false
	err = rp.Exec("/proc/self/exe", argv, env, []int{keepFD}, func() { ran = true })
	return fmt.Errorf("exec returned (beforeExec ran: %t): %w", ran, err)
}

// execAfter is the new image: it checks what it inherited.
func execAfter(args []string) error {
	dir := args[0]
	var n []int
	for _, a := range args[1:] {
		i, err := strconv.Atoi(a)
		if err != nil {
			return err
		}
		n = append(n, i)
	}
	self, kept, doomed, zombie, keepFD, dropFD := n[0], n[1], n[2], n[3], n[4], n[5]
	if os.Getpid() != self {
		return fmt.Errorf("pid %d after the exec, %d before", os.Getpid(), self)
	}
	// The child of the spawning thread lives on, still our child.
	if err := unix.Kill(kept, 0); err != nil {
		return fmt.Errorf("kept child %d: %w", kept, err)
	}
	if st, ppid, err := procStat(kept); err != nil || st == 'Z' || ppid != self {
		return fmt.Errorf("kept child %d: state %c, parent %d (%v)", kept, st, ppid, err)
	}
	// The child of the other thread got its parent-death signal.
	var ws unix.WaitStatus
	if err := waitFor("the other thread's child to die", func() bool {
		pid, err := unix.Wait4(doomed, &ws, unix.WNOHANG, nil)
		return err == nil && pid == doomed
	}); err != nil {
		return err
	}
	if !ws.Signaled() || ws.Signal() != unix.SIGKILL {
		return fmt.Errorf("child of another thread: status %#x, want killed by SIGKILL", ws)
	}
	// Descriptors: the kept one is open (and names its file), the other closed.
	if p := fdPath(keepFD); p != filepath.Join(dir, "kept") {
		return fmt.Errorf("kept fd %d is %q", keepFD, p)
	}
	if p := fdPath(dropFD); p == filepath.Join(dir, "dropped") {
		return fmt.Errorf("fd %d, not kept, is still open on %s", dropFD, p)
	}
	rp, err := New()
	if err != nil {
		return err
	}
	if _, err := rp.Adopt(os.Getppid()); err == nil {
		return fmt.Errorf("adopted our parent %d", os.Getppid())
	}
	zombieC, err := rp.Adopt(zombie)
	if err != nil {
		return err
	}
	if _, err := rp.Adopt(zombie); err == nil {
		return errors.New("adopted a pid twice")
	}
	keptC, err := rp.Adopt(kept)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rp.Run(ctx)
	select {
	case ex := <-zombieC:
		if ex.Pid != zombie || ex.Code() != 7 {
			return fmt.Errorf("zombie's exit: pid %d %s", ex.Pid, ex)
		}
	case <-time.After(60 * time.Second):
		return errors.New("the exit of the child that died in the exec window never came")
	}
	if err := unix.Kill(kept, unix.SIGKILL); err != nil {
		return err
	}
	select {
	case ex := <-keptC:
		if ex.Pid != kept || !ex.Status.Signaled() || ex.Status.Signal() != unix.SIGKILL {
			return fmt.Errorf("adopted child's exit: pid %d %s", ex.Pid, ex)
		}
	case <-time.After(60 * time.Second):
		return errors.New("the exit of the adopted child never came")
	}
	fmt.Println("OK")
	return nil
}

// The crux of an in-place upgrade: a Reaper that spawns on the main thread
// and execs from it keeps every child alive across the exec (same pid,
// still our child), while a child forked by any other thread is killed by
// its parent-death signal when execve ends that thread. Kept descriptors
// stay open, others close; a failed Exec re-arms close-on-exec; a child
// that exits while reaping is held stays a zombie across the exec, and the
// new image adopts it and gets its exit.
func TestExecKeepsEveryChild(t *testing.T) {
	dir := t.TempDir()
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	attr := &os.ProcAttr{
		Env:   append(os.Environ(), execHelperEnv+"=before"),
		Files: []*os.File{nil, out, out},
	}
	p, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess(os.Args[0], []string{os.Args[0], dir}, attr)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	var ex Exit
	select {
	case ex = <-exitC:
	case <-time.After(3 * time.Minute):
		_ = p.Kill()
		t.Fatal("the helper did not exit")
	}
	b, _ := os.ReadFile(out.Name())
	if ex.Code() != 0 || strings.TrimSpace(string(b)) != "OK" {
		t.Fatalf("helper: %s, output:\n%s", ex, b)
	}
}

// While reaping is held, a child that exits stays a zombie; on release its
// exit arrives.
func TestHoldKeepsAnExitUntilRelease(t *testing.T) {
	release, err := testReaper.Hold(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	attr := &os.ProcAttr{Env: append(os.Environ(), "REAPER_HELPER=3")}
	p, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess(os.Args[0], []string{os.Args[0]}, attr)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	if err := waitFor("the child to exit", func() bool {
		st, _, err := procStat(p.Pid)
		return err != nil || st == 'Z'
	}); err != nil {
		t.Fatal(err)
	}
	// A zombie: nobody reaped it.
	if st, _, err := procStat(p.Pid); err != nil || st != 'Z' {
		t.Fatalf("child %d while reaping is held: state %c (%v), want a zombie", p.Pid, st, err)
	}
	select {
	case ex := <-exitC:
		t.Fatalf("exit delivered while reaping is held: %s", ex)
	default:
	}
	release()
	select {
	case ex := <-exitC:
		if ex.Pid != p.Pid || ex.Code() != 3 {
			t.Fatalf("exit: pid %d %s, want pid %d exit status 3", ex.Pid, ex, p.Pid)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the exit never came after release")
	}
}

// Adopt refuses what is not an unreaped child of ours.
func TestAdoptRefusesStrangers(t *testing.T) {
	for _, pid := range []int{0, -1, 1, os.Getppid()} {
		if _, err := testReaper.Adopt(pid); err == nil {
			t.Errorf("adopted pid %d", pid)
		}
	}
}
