package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/guard/guardtest"
	"github.com/gosup/gosup/procgroup/pathtrust/pathtrusttest"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// rm -rf of a running daemon's socket directory (a /tmp cleaner, logout
// removing $XDG_RUNTIME_DIR): a second daemon on the same socket is still
// refused, naming the first one's pid, and the first one recreates its
// directory, lock and socket, so ctl reaches it again, saying so once in
// its log.
func TestRemovedSocketDirKeepsSecondDaemonOut(t *testing.T) {
	file := writeConfig(t, program("a", "sleep", 1, ""))
	var pause, resume func()
	_, cl, logs := guardedDaemon(t, file, func(s *Supervisor) { pause, resume = pauseSocketWatch(s) })
	before := waitAll(t, cl, "RUNNING")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(cfg.Supervisor.Socket)
	pause()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	// The lock file is gone (the watch waits): the abstract socket
	// refuses it.
	secondDaemonRefused(t, cfg, "on the socket whose directory was removed")
	if _, err := os.Stat(cfg.Supervisor.Socket + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the lock file came back while the watch was paused: %v", err)
	}
	resume()

	// The first daemon is reachable again (by a new connection: an
	// open one still reaches the old socket), with its lock file back.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c := api.NewClient(cl.Socket)
		_, err := c.Info(context.Background())
		c.Close()
		if err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the first daemon never recreated its socket: %v", err)
		}
	}
	cl = api.NewClient(cl.Socket)
	after := waitAll(t, cl, "RUNNING")
	if after[0].Pid != before[0].Pid {
		t.Errorf("the first daemon's child changed: %d → %d", before[0].Pid, after[0].Pid)
	}
	b, err := os.ReadFile(cfg.Supervisor.Socket + ".lock")
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file after the repair: %q, %v", b, err)
	}
	// The state file is rewritten at the next change.
	if _, err := cl.Action(context.Background(), "restart", api.ActionRequest{Patterns: []string{"all"}}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, "the state file to come back", func() bool {
		b, err := os.ReadFile(cfg.Supervisor.Socket + ".state")
		return err == nil && strings.Contains(string(b), `"a:a_0"`)
	})
	if n := strings.Count(logs.String(), "level=WARN msg=\"the socket directory"); n != 1 {
		t.Errorf("want one warning about the removed socket directory, have %d:\n%s", n, logs)
	}

	// And a third daemon, now that everything is back, is refused too.
	err = New(cfg, Options{Reaper: testReaper, Logger: slog.New(slog.DiscardHandler)}).Run(context.Background())
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("third daemon: %v", err)
	}
}

// The abstract name held by another user (a squatter, since a daemon of
// another user refuses our socket directory) does not keep the daemon
// from starting: it says so and relies on the lock file.
func TestAbstractNameOfAnotherUserDoesNotBlock(t *testing.T) {
	sock := filepath.Join(writeDir(t), "s", "gosup.sock")
	squat(t, sock)
	logs := &guardtest.LogBuffer{}
	in, err := claim(sock, 0o700, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("a squatter (uid 65534) on the abstract name kept the daemon out: %v", err)
	}
	in.release()
	if !strings.Contains(logs.String(), "held by another user") || !strings.Contains(logs.String(), "uid=65534") {
		t.Errorf("no warning about the squatter: %s", logs)
	}
}

// squat binds the abstract name of the daemon on sock as uid 65534, as
// anyone can (the name is computed from the socket's path).
func squat(t *testing.T, sock string) {
	t.Helper()
	pathtrusttest.NeedRoot(t)
	dir := writeDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pr, _ := spawnAsNobody(t, dir, "bind", abstractName(sock))
	line, err := bufio.NewReader(pr).ReadString('\n')
	if line != "bound: <nil>\n" {
		t.Fatalf("helper as uid 65534 did not bind %s: %q %v", abstractName(sock), line, err)
	}
}

// secondDaemonRefused runs a second daemon on cfg and wants it refused
// within 20 s: ErrAlreadyRunning naming this process (the first daemon)
// and saying each of want. where says where it ran, if it did.
func secondDaemonRefused(t *testing.T, cfg *config.Config, where string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	second := New(cfg, Options{Reaper: testReaper, Logger: discardLog()})
	go func() { done <- second.Run(ctx) }()
	select {
	case err := <-done:
		want = append(want, fmt.Sprintf("(pid %d)", os.Getpid()))
		if !errors.Is(err, ErrAlreadyRunning) {
			t.Fatalf("second daemon: want ErrAlreadyRunning saying %q, have %v", want, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("second daemon: want ErrAlreadyRunning saying %q, have %v", want, err)
			}
		}
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("a second daemon ran for 20 s %s (it returned %v once cancelled)", where, <-done)
	}
}

// Another user squatting the abstract name, then rm -rf of the socket
// directory: a second daemon is still refused, naming the first one,
// and the first one repairs its directory once, with no fight over the
// lock file and the socket.
func TestSquattedNameAndRemovedDirKeepSecondDaemonOut(t *testing.T) {
	file := writeConfig(t, program("a", "sleep", 1, ""))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	squat(t, cfg.Supervisor.Socket)
	var pause, resume func()
	_, cl, logs := guardedDaemon(t, file, func(s *Supervisor) { pause, resume = pauseSocketWatch(s) })
	waitAll(t, cl, "RUNNING")
	pause()
	if err := os.RemoveAll(filepath.Dir(cfg.Supervisor.Socket)); err != nil {
		t.Fatal(err)
	}
	// Neither the lock file (gone: the watch waits) nor the abstract
	// name (squatted) refuses it: /proc does.
	secondDaemonRefused(t, cfg, "beside a squatted abstract name and a removed socket directory", "holding the lock of a removed socket directory")
	resume()
	waitLog(t, "the first daemon's repair", func() bool { return strings.Contains(logs.String(), "recreated them") })
	c := api.NewClient(cl.Socket)
	defer c.Close()
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatalf("the first daemon is not reachable after its repair: %v", err)
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"the socket directory"); n != 1 || strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("want one warning about the removed socket directory and no error, have %d:\n%s", n, logs)
	}
}

// pauseSocketWatch has the daemon's socket watch wait, before its next
// check, until resume is called: what a second daemon meets then is the
// removed directory, not one the watch already repaired.
func pauseSocketWatch(s *Supervisor) (pause func(), resume func()) {
	var mu sync.Mutex
	entered := make(chan struct{}, 1)
	s.hooks.socketCheck = func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		mu.Lock()
		defer mu.Unlock()
	}
	pause = func() {
		mu.Lock()
		select {
		case <-entered:
		default:
		}
		<-entered // a check that began after mu was taken: it waits
	}
	return pause, mu.Unlock
}

// BenchmarkSocketCheck is what the socket watch costs each second when
// nothing was removed: the lock file and the socket are still there.
func BenchmarkSocketCheck(b *testing.B) {
	dir, err := os.MkdirTemp("", "gs")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s", "gosup.sock")
	in, err := claim(sock, 0o700, discardLog())
	if err != nil {
		b.Fatal(err)
	}
	defer in.release()
	ln, err := listen(sock, 0o600, "", discardLog())
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	for b.Loop() {
		if in.lockLost() || ln.gone(sock) {
			b.Fatal("lock or socket reported gone")
		}
	}
}

// A lock file that another process holds at our lock's path (a second
// daemon that got in while our directory was gone) is left alone by
// relock and by release: neither unlinks it, so two daemons cannot take
// turns deleting each other's.
func TestRelockLeavesAHeldLockAlone(t *testing.T) {
	sock := filepath.Join(writeDir(t), "s", "gosup.sock")
	in, err := claim(sock, 0o700, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	lock := sock + ".lock"
	same := lockHeldByAnother(t, lock)
	if err := in.relock(); err == nil || !strings.Contains(err.Error(), "pid 4242") {
		t.Errorf("relock over a held lock file: want a refusal naming pid 4242, have %v", err)
	}
	same("after relock")
	in.release()
	same("after release")
}

// lockHeldByAnother replaces the lock file with one that another process
// (pid 4242 by its content) holds until the test ends, as a second daemon
// that got in would; same then reports if that file was replaced or
// removed since.
func lockHeldByAnother(t *testing.T, lock string) (same func(when string)) {
	t.Helper()
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	other, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if _, err := other.WriteString("4242\n"); err != nil {
		t.Fatal(err)
	}
	theirs, err := os.Stat(lock)
	if err != nil {
		t.Fatal(err)
	}
	return func(when string) {
		t.Helper()
		if fi, err := os.Stat(lock); err != nil || !os.SameFile(fi, theirs) {
			t.Errorf("%s: the other daemon's lock file was replaced or removed (%v)", when, err)
		}
	}
}

// claimNew claims the socket s/gosup.sock of a new directory, as a
// daemon does when it starts; the claim is released when the test ends.
func claimNew(t *testing.T) (sock string, in *instance) {
	t.Helper()
	sock = filepath.Join(writeDir(t), "s", "gosup.sock")
	in, err := claim(sock, 0o700, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.release)
	return sock, in
}

// A daemon in another mount namespace (and pid namespace), on the same
// socket path but with another directory mounted there, is another
// daemon's peer in nothing: it starts (the lock files differ, and the
// abstract name includes the mount namespace).
func TestDaemonInAnotherMountNamespaceStarts(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	sock, _ := claimNew(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	_, exitC := spawnBinary(t, os.Args[0], &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}, pw, "claim-ns", sock)
	pw.Close()
	out, _ := io.ReadAll(pr)
	<-exitC
	if string(out) != "result: <nil>\n" {
		t.Errorf("a daemon in another mount namespace, over its own directory: %q", out)
	}
}

// A running daemon whose lock file was replaced by one another process
// holds (a second daemon that got in) leaves that lock and its own
// socket path alone, check after check, and says so once: no fight.
func TestWatchLeavesAHeldLockAloneOnce(t *testing.T) {
	file := writeConfig(t, program("a", "sleep", 1, ""))
	var checks atomic.Int64
	_, cl, logs := guardedDaemon(t, file, func(s *Supervisor) { s.hooks.socketCheck = func() { checks.Add(1) } })
	waitAll(t, cl, "RUNNING")
	lock := cl.Socket + ".lock"
	same := lockHeldByAnother(t, lock)
	sockBefore, err := os.Lstat(cl.Socket)
	if err != nil {
		t.Fatal(err)
	}
	const said = "another gosup daemon took this daemon's socket path"
	waitLog(t, "the error", func() bool { return strings.Contains(logs.String(), said) })
	n := checks.Load()
	waitLog(t, "two more checks", func() bool { return checks.Load() >= n+2 })
	if c := strings.Count(logs.String(), said); c != 1 {
		t.Errorf("want the error once, have it %d times:\n%s", c, logs)
	}
	if strings.Contains(logs.String(), "recreated them") {
		t.Errorf("the watch recreated what another daemon holds:\n%s", logs)
	}
	same("at the end")
	if fi, err := os.Lstat(cl.Socket); err != nil || !os.SameFile(fi, sockBefore) {
		t.Errorf("the socket was replaced or removed: %v", err)
	}
}
