// Package haproxytest runs a real HAProxy (Debian's haproxy package) for
// tests: in master-worker mode in the foreground, with its configuration,
// runtime API socket and log in a temp dir, started and stopped by the
// test (by pid).
package haproxytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/haproxy"
)

// Bin finds haproxy. Under CI (CI=true) a missing one fails the test:
// .ci/run installs it. Elsewhere the test is skipped with the way to
// install it.
func Bin(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"haproxy", "/usr/sbin/haproxy"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("haproxy not found; CI must install it (apt-get install haproxy)")
	}
	t.Skipf("haproxy not installed; run `apt-get install haproxy` to run this test")
	return ""
}

// Server is one HAProxy: a master and its worker.
type Server struct {
	Bin string
	// Main is the configuration the test does not render (global with the
	// runtime API socket, defaults); Files the ones after it (-f each).
	Main  string
	Files []string
	// Socket is the runtime API (level admin).
	Socket string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs HAProxy on a main configuration of its own (global with the
// runtime API's socket, defaults) and files (which must exist: an empty
// file is a valid one) until the test ends, and returns once its runtime
// API answers.
func Start(t testing.TB, files ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	main, socket := filepath.Join(dir, "main.cfg"), filepath.Join(dir, "admin.sock")
	text := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
    log stderr format short local0 notice

defaults
    mode http
    log global
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
`, socket)
	if err := os.WriteFile(main, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return StartWith(t, main, socket, files...)
}

// StartWith is Start on the caller's main configuration, whose global
// section has a stats socket at level admin at socket.
func StartWith(t testing.TB, main, socket string, files ...string) *Server {
	t.Helper()
	s := &Server{Bin: Bin(t), dir: t.TempDir(), Main: main, Files: files, Socket: socket}
	logf, err := os.Create(filepath.Join(s.dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := []string{"-W", "-db"}
	for _, f := range append([]string{s.Main}, files...) {
		args = append(args, "-f", f)
	}
	s.cmd = exec.Command(s.Bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Killed with the test binary, which runs no cleanup then.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("haproxy: %v", err)
	}
	s.exited = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(s.dir, "haproxy.log"))
			t.Logf("haproxy's log:\n%s", data)
		}
	})
	rt := haproxy.Runtime{Socket: s.Socket, Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := rt.Command(context.Background(), "show info"); err == nil {
			return s
		}
		select {
		case <-s.exited:
			data, _ := os.ReadFile(filepath.Join(s.dir, "haproxy.log"))
			t.Fatalf("haproxy exited: %v: %s", s.cmd.ProcessState, data)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("haproxy's runtime API does not answer after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is the master's.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// TestCommand is a test_command checking out after Main.
func (s *Server) TestCommand(out string) string {
	return strings.Join([]string{s.Bin, "-c", "-q", "-f", s.Main, "-f", out}, " ")
}

// ReloadCommand is a reload_command: SIGUSR2 to the master, which
// reads its files again and starts a new worker.
func (s *Server) ReloadCommand() string { return fmt.Sprintf("kill -USR2 %d", s.Pid()) }

// Runtime is the server's runtime API.
func (s *Server) Runtime() haproxy.Runtime {
	return haproxy.Runtime{Socket: s.Socket, Timeout: 5 * time.Second}
}
