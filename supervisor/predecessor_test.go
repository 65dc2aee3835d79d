package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/guard/guardtest"
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
	_, cl, logs := guardedDaemon(t, file, nil)
	before := waitAll(t, cl, "RUNNING")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(cfg.Supervisor.Socket)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	second := New(cfg, Options{Reaper: testReaper, Logger: discardLog()})
	go func() { done <- second.Run(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", os.Getpid())) {
			t.Fatalf("second daemon: want ErrAlreadyRunning naming pid %d, have %v", os.Getpid(), err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		err := <-done
		t.Fatalf("a second daemon ran for 20 s on the socket whose directory was removed (it returned %v once cancelled)", err)
	}

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
	needRoot(t)
	dir := writeDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s", "gosup.sock")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	proc, _ := spawnBinary(t, bin, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, pw, "bind", abstractName(sock))
	pw.Close()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if line != "bound: <nil>\n" {
		t.Fatalf("helper as uid 65534 did not bind %s: %q %v", abstractName(sock), line, err)
	}
	logs := &guardtest.LogBuffer{}
	in, err := claim(sock, 0o700, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatalf("a squatter (pid %d, uid 65534) on the abstract name kept the daemon out: %v", proc.Pid, err)
	}
	in.release()
	if !strings.Contains(logs.String(), "held by another user") || !strings.Contains(logs.String(), "uid=65534") {
		t.Errorf("no warning about the squatter: %s", logs)
	}
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
