package procgroup

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// A process with a port is RUNNING only once its port accepts connections,
// however short startsecs is.
func TestReadyTCPWaitsForThePort(t *testing.T) {
	spec := helperSpec("serve", "700ms", "200")
	spec.PortStart = freePortRange(t, 1)
	p := newTestPool(t, spec).Procs()[0]
	start := time.Now()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.State != Starting {
		t.Fatalf("want STARTING while the port is closed, have %s", st.State)
	}
	waitState(t, p, Running, 30*time.Second)
	if took := time.Since(start); took < 700*time.Millisecond {
		t.Errorf("RUNNING after %s, before the child listened (700ms)", took)
	}
}

// startsecs still applies: a ready process is RUNNING only after startsecs.
func TestReadyAndStartSecsBothCount(t *testing.T) {
	spec := helperSpec("serve", "0s", "200")
	spec.PortStart = freePortRange(t, 1)
	spec.StartSecs = 1
	p := newTestPool(t, spec).Procs()[0]
	start := time.Now()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	if took := time.Since(start); took < time.Second {
		t.Errorf("RUNNING after %s, before startsecs", took)
	}
}

func TestReadyHTTPNeeds2xx(t *testing.T) {
	spec := helperSpec("serve", "0s", "200")
	spec.PortStart = freePortRange(t, 1)
	spec.Ready = "http:/healthz"
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)

	bad := helperSpec("serve", "0s", "503")
	bad.PortStart = freePortRange(t, 1)
	bad.Ready = "http:/healthz"
	// Long enough for a race-built child on a loaded 2-core machine to be
	// listening (and answering 503) before the check gives up: with 500ms
	// the last error was sometimes "connection refused", not the 503.
	bad.ReadyTimeout = 3 * time.Second
	bad.StartRetries = 0
	q := newTestPool(t, bad).Procs()[0]
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, q, Fatal, 30*time.Second)
	if !strings.Contains(st.Reason, "not ready within ready_timeout 3s") || !strings.Contains(st.Reason, "503") {
		t.Errorf("reason %q does not say the check failed with 503", st.Reason)
	}
	if st.Pid != 0 || st.ExitDesc == "" {
		t.Errorf("the unready child was not killed and reaped: %+v", st)
	}
}

// SetSpec applies lifecycle settings at once and spawn settings at the next spawn.
func TestSetSpec(t *testing.T) {
	spec := helperSpec("sleep")
	g := newTestPool(t, spec)
	p := g.Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Running, 30*time.Second)

	next := *p.Spec()
	prog := *next.Program
	prog.StopWaitSecs = 7
	next.Program = &prog
	next.Env = append(next.Env, "NEXT=1")
	if err := p.SetSpec(&next); err != nil {
		t.Fatal(err)
	}
	if p.Spec().Program.StopWaitSecs != 7 {
		t.Error("the new spec is not in place")
	}
	if now := p.Status(); now.Pid != st.Pid || now.State != Running {
		t.Errorf("SetSpec disturbed the running child: %+v", now)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 30*time.Second)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st = waitState(t, p, Running, 30*time.Second)
	if !containsString(environ(t, st.Pid), "NEXT=1") {
		t.Errorf("the next spawn did not use the new environment: %q", environ(t, st.Pid))
	}
	other := next
	other.Name = "other"
	if err := p.SetSpec(&other); err == nil {
		t.Error("SetSpec accepted another process's spec")
	}
}

// environ reads a child's initial environment. The spawner returns once
// the child is in execve, which may not have set up the new environment
// yet (an empty environ): read again until it has.
func environ(t *testing.T, pid int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 || time.Now().After(deadline) {
			return strings.Split(string(b), "\x00")
		}
		time.Sleep(time.Millisecond)
	}
}

// A daemon frozen (SIGSTOP, a VM pause) past ready_timeout while its
// process became ready must not fail that process when it runs again: the
// probe makes one last check at the deadline. The probe runs in a helper
// process that the check server itself stops while answering 503, so the
// freeze falls inside the probe's loop; the server answers 200 from then on,
// and the helper is resumed only once its deadline has passed.
func TestReadyProbeFrozenPastDeadline(t *testing.T) {
	const timeout = time.Second
	pidC := make(chan int, 1)
	stopped := make(chan time.Time, 1)
	var ready atomic.Bool
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if ready.Load() {
			return // 200
		}
		once.Do(func() {
			pid := <-pidC
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Error(err)
			}
			waitProcState(t, pid, 'T')
			stopped <- time.Now()
		})
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	proc, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess(os.Args[0], []string{os.Args[0], "probe", strconv.Itoa(port), "/healthz", timeout.String()}, &os.ProcAttr{
			Env:   append(os.Environ(), "GO_WANT_HELPER_PROCESS=1"),
			Files: []*os.File{nil, w, os.Stderr},
		})
	})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Release()
	defer func() {
		_ = syscall.Kill(proc.Pid, syscall.SIGKILL)
		_ = syscall.Kill(proc.Pid, syscall.SIGCONT)
	}()
	pidC <- proc.Pid
	var at time.Time
	select {
	case at = <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the probe never asked")
	}
	ready.Store(true)
	// The probe's deadline is at most timeout after its first request.
	time.Sleep(time.Until(at.Add(timeout + 500*time.Millisecond)))
	if err := syscall.Kill(proc.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	<-exitC
	if got := strings.TrimSpace(string(out)); got != "ready" {
		t.Errorf("a probe frozen past its deadline, with the server ready meanwhile, said %q; want ready", got)
	}
}

// waitProcState waits until /proc says pid is in state (R, S, T, Z...).
func waitProcState(t *testing.T, pid int, state byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Error(err)
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == state {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("pid %d not in state %c within 30s: %s", pid, state, b)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// An HTTP check reads at most 64 KiB of headers: an answer with more is
// not ready, and the reason says why.
func TestReadyHTTPHeadersAreBounded(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("x", 1<<20))
	}))
	defer srv.Close()
	out := make(chan error, 1)
	probe(t.Context(), out, ReadyHTTP, "/healthz", "", srv.Listener.Addr().(*net.TCPAddr).Port, 500*time.Millisecond)
	if err := <-out; err == nil || !strings.Contains(err.Error(), "server response headers exceeded 65536 bytes") {
		t.Errorf("want the header bound, have %v", err)
	}
}
