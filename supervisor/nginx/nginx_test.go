package nginx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/guard/guardtest"
	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/procgroup/reaper/reapertest"
	"github.com/gosup/gosup/supervisor/haproxy/haproxytest"
	"github.com/gosup/gosup/templates"
)

// testReaper is the one reaper of the test process; the manager runs its
// test and reload commands through it.
var testReaper *reaper.Reaper

func TestMain(m *testing.M) {
	reapertest.Main(m, func([]string) int { return 2 }, func(rp *reaper.Reaper) { testReaper = rp })
}

// upstream is the data for one upstream "web" with a server on each port.
func upstream(ports ...int) templates.Data {
	u := templates.Upstream{Name: "web", Balance: "least_conn", Protocol: "http", Location: "/"}
	for _, p := range ports {
		u.Servers = append(u.Servers, templates.Server{Host: "127.0.0.1", Port: p, Name: fmt.Sprintf("web:%d", p), State: "up"})
	}
	return templates.Data{Upstreams: []templates.Upstream{u}}
}

// handedOver is m's State as an upgrade hands it over (through JSON), and
// its JSON.
func handedOver(t *testing.T, m *Manager) (State, []byte) {
	t.Helper()
	b, err := json.Marshal(m.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st, b
}

// apply submits d and waits for its outcome.
func apply(t *testing.T, m *Manager, d templates.Data) error {
	t.Helper()
	done := make(chan error, 1)
	m.Submit(d, done)
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("no outcome within 30s")
		return nil
	}
}

// The manager writes what it renders, has the test command check it,
// restores the previous file when the test fails, and leaves an unchanged
// rendering alone. Real commands stand in for nginx: the test rejects a
// file naming port 9999, the reload appends to a log.
func TestManagerTestsRestoresAndSkipsUnchanged(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "gosup.conf")
	reloads := filepath.Join(dir, "reloads")
	tmpl, err := templates.Load("")
	if err != nil {
		t.Fatal(err)
	}
	m := New(Settings{
		Output: out, Template: tmpl,
		TestCommand:    fmt.Sprintf("! grep -q :9999 %s", out),
		ReloadCommand:  fmt.Sprintf("echo reload >> %s", reloads),
		CommandTimeout: 10 * time.Second,
	}, testReaper, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.Tally = &Tally{}
	m.Start()
	defer m.Stop()

	if err := apply(t, m, upstream(8001, 8002)); err != nil {
		t.Fatal(err)
	}
	first := m.Tally.Counts()
	if want := (Counts{RendersChanged: 1, TestsOK: 1, ReloadsOK: 1, LastSuccess: first.LastSuccess}); first != want || first.LastSuccess.IsZero() {
		t.Errorf("counts after an update: %+v, want %+v and a last success", first, want)
	}
	good, err := os.ReadFile(out)
	if err != nil || strings.Count(string(good), "server 127.0.0.1:") != 2 {
		t.Fatalf("rendered file (%v):\n%s", err, good)
	}
	if st := m.Status(); !st.OK || st.Reloads != 1 || st.Servers != 2 || st.Output != out {
		t.Errorf("status after an update: %+v", st)
	}

	err = apply(t, m, upstream(8001, 9999))
	if err == nil || !strings.Contains(err.Error(), "previous one restored") {
		t.Errorf("rejected file: want the test's failure, have %v", err)
	}
	if now, _ := os.ReadFile(out); string(now) != string(good) {
		t.Errorf("previous file not restored:\n%s", now)
	}
	if st := m.Status(); st.OK || st.Failures != 1 || st.Reloads != 1 || !strings.Contains(st.Error, "previous one restored") {
		t.Errorf("status after a rejected file: %+v", st)
	}
	if c, want := m.Tally.Counts(), (Counts{RendersChanged: 2, TestsOK: 1, TestsFailed: 1, ReloadsOK: 1, LastSuccess: first.LastSuccess, LastFailed: true}); c != want {
		t.Errorf("counts after a rejected file: %+v, want %+v (the last success unchanged)", c, want)
	}

	if err := apply(t, m, upstream(8001, 8002)); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); !st.OK || st.Reloads != 1 {
		t.Errorf("an unchanged rendering reloaded nginx: %+v", st)
	}
	if c := m.Tally.Counts(); c.RendersUnchanged != 1 || c.RendersChanged != 2 || c.ReloadsOK != 1 || !c.LastSuccess.After(first.LastSuccess) || c.LastFailed {
		t.Errorf("counts after an unchanged rendering: %+v (first success at %s)", c, first.LastSuccess)
	}
	if b, _ := os.ReadFile(reloads); string(b) != "reload\n" {
		t.Errorf("reload command ran %q, want once", b)
	}
}

// A manager that panics while applying an update tells the waiter at once,
// shows the failure, and after the guard's backoff (1 s) applies the
// update it was given.
func TestManagerPanicRetriesAfterBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "gosup.conf")
		tmpl, err := templates.Load("")
		if err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		var logMu sync.Mutex
		log := slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
			logMu.Lock()
			defer logMu.Unlock()
			return logs.Write(b)
		}), nil))
		m := New(Settings{Output: out, Template: tmpl}, nil, log)
		m.Guard = guard.New(log)
		panics := 1
		m.applyHook = func() {
			if panics > 0 {
				panics--
				panic("render bug")
			}
		}
		m.Start()
		defer m.Stop()
		done := make(chan error, 1)
		m.Submit(upstream(8001), done)
		if err := <-done; err == nil || !strings.Contains(err.Error(), "the nginx manager failed") {
			t.Fatalf("waiter: %v", err)
		}
		if st := m.Status(); st.OK || st.Failures != 1 || !strings.Contains(st.Error, "tries again after a backoff") {
			t.Errorf("status after the panic: %+v", st)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatal("file written by the update that panicked")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if b, err := os.ReadFile(out); err != nil || !strings.Contains(string(b), "server 127.0.0.1:8001") {
			t.Errorf("after the backoff the update was not applied: %v\n%s", err, b)
		}
		if st := m.Status(); !st.OK || st.Reloads != 1 {
			t.Errorf("status after the retry: %+v", st)
		}
		if n := m.Guard.Panics("nginx manager"); n != 1 {
			t.Errorf("panics: %d", n)
		}
		logMu.Lock()
		defer logMu.Unlock()
		if s := logs.String(); !strings.Contains(s, `component="nginx manager" panic="render bug"`) || !strings.Contains(s, "nginx.(*Manager).run") {
			t.Errorf("log:\n%s", s)
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// An update reads at most 16 MiB of the file at output: a larger one (not
// a file gosup wrote; a link to /dev/zero would never end) is left alone
// and the update fails, saying why.
func TestManagerOutputReadIsBounded(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.conf")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# not ours\n"), 17<<20/11), 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.conf")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	tmpl, err := templates.Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{big, zero} {
		m := New(Settings{Output: out, Template: tmpl}, testReaper, slog.New(slog.NewTextHandler(io.Discard, nil)))
		m.Start()
		err := apply(t, m, upstream(8001))
		m.Stop()
		if want := "read " + out + ": more than 16 MiB, so not a file gosup wrote"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want %q, have %v", out, want, err)
		}
	}
	if fi, err := os.Stat(big); err != nil || fi.Size() != 17<<20/11*11 {
		t.Errorf("the file was touched: %v %v", fi, err)
	}
}

// A manager whose reload failed hands its state (through JSON, as the
// daemon's handover does) to a new manager, which retries the reload it
// owes without a submission, once the reload command works, with the
// counters carried on. The reload command is a real script: it fails until
// a file "ok" exists.
func TestManagerStateCarriesAnOwedReload(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "gosup.conf")
	ok := filepath.Join(dir, "ok")
	reloads := filepath.Join(dir, "reloads")
	tmpl, err := templates.Load("")
	if err != nil {
		t.Fatal(err)
	}
	settings := Settings{
		Output: out, Template: tmpl,
		TestCommand:    "true",
		ReloadCommand:  fmt.Sprintf("test -e %s && echo reload >> %s", ok, reloads),
		CommandTimeout: 10 * time.Second,
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tally := &Tally{}
	m := New(settings, testReaper, quiet)
	m.Tally = tally
	m.Start()
	if err := apply(t, m, upstream(8001, 8002)); err == nil || !strings.Contains(err.Error(), "reload failed") {
		t.Fatalf("want the reload's failure, have %v", err)
	}
	m.Stop()
	if c := tally.Counts(); c.ReloadsFailed < 1 || c.ReloadsOK != 0 || !c.LastSuccess.IsZero() || !c.LastFailed {
		t.Errorf("counts after a failed reload: %+v", c)
	}
	st, b := handedOver(t, m)
	failures := st.Status.Failures // 1, or more if a retry ran before Stop
	if !st.ReloadNeeded || st.Last == nil || failures < 1 || st.Status.Reloads != 0 || st.Status.OK || st.Status.RetryAt.IsZero() {
		t.Fatalf("state of the manager whose reload failed: %s", b)
	}

	if err := os.WriteFile(ok, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m2 := New(settings, testReaper, quiet)
	m2.Restore(st)
	m2.Tally = tally // the daemon's, across the swap
	m2.Start()
	defer m2.Stop()
	// The tally's last success is set after the status counts the reload.
	for deadline := time.Now().Add(30 * time.Second); m2.Status().Reloads == 0 || tally.Counts().LastSuccess.IsZero(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the owed reload was not retried within 30s: %+v", m2.Status())
		}
	}
	if s := m2.Status(); !s.OK || s.Reloads != 1 || s.Failures != failures || s.Servers != 2 || !s.RetryAt.IsZero() || s.Output != out {
		t.Errorf("status after the retry: %+v (failures before: %d)", s, failures)
	}
	if got, _ := os.ReadFile(reloads); string(got) != "reload\n" {
		t.Errorf("reload command ran %q, want once", got)
	}
	if c := tally.Counts(); c.ReloadsFailed != int64(failures) || c.ReloadsOK != 1 || c.LastSuccess.IsZero() || c.LastFailed {
		t.Errorf("counts after the retry: %+v (failures before: %d)", c, failures)
	}
	if st := m2.State(); st.ReloadNeeded {
		t.Errorf("a reload still owed: %+v", st)
	}
}

// A submission queued but not applied is in the manager's State (one
// never started stands for one stopped before it took the submission:
// which of the two comes first in a running manager is up to its
// goroutine), and a manager restored from it applies it once started.
func TestManagerStateCarriesAPendingSubmission(t *testing.T) {
	out := filepath.Join(t.TempDir(), "gosup.conf")
	tmpl, err := templates.Load("")
	if err != nil {
		t.Fatal(err)
	}
	settings := Settings{Output: out, Template: tmpl}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := New(settings, testReaper, quiet)
	m.Submit(upstream(8003), nil)
	st, b := handedOver(t, m)
	if st.Pending == nil {
		t.Fatalf("no pending submission in %s", b)
	}
	m2 := New(settings, testReaper, quiet)
	m2.Restore(st)
	m2.Start()
	defer m2.Stop()
	for deadline := time.Now().Add(30 * time.Second); m2.Status().Reloads == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pending submission was not applied within 30s: %+v", m2.Status())
		}
	}
	if b, err := os.ReadFile(out); err != nil || !strings.Contains(string(b), "server 127.0.0.1:8003") {
		t.Errorf("file: %v\n%s", err, b)
	}
}

// Without nginx installed (the test and reload commands' program is not
// there), the file is still written, the log says so once over several
// retries, and the status says not installed; once the program is there,
// the next retry tests the file and reloads.
func TestManagerWithoutNginxWritesAndWaits(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "gosup.conf")
	nginx := filepath.Join(dir, "nginx")
	calls := filepath.Join(dir, "calls")
	tmpl, err := templates.Load("")
	if err != nil {
		t.Fatal(err)
	}
	logs := &guardtest.LogBuffer{}
	m := New(Settings{
		Output: out, Template: tmpl,
		TestCommand:    nginx + " -t",
		ReloadCommand:  nginx + " -s reload",
		CommandTimeout: 10 * time.Second,
	}, testReaper, slog.New(slog.NewTextHandler(logs, nil)))
	m.Tally = &Tally{}
	m.Start()
	defer m.Stop()

	err = apply(t, m, upstream(8001, 8002))
	if c := m.Tally.Counts(); c.RendersChanged != 1 || c.ReloadsNotRunning < 1 || c.TestsOK+c.TestsFailed+c.ReloadsOK+c.ReloadsFailed != 0 || !c.LastSuccess.IsZero() || !c.LastFailed {
		t.Errorf("counts without nginx: %+v; want one render, one reload counted as not running", c)
	}
	want := "nginx is not installed (no " + nginx + "): " + out + " written, not checked; it will be checked and nginx reloaded once it is there"
	if err == nil || err.Error() != want {
		t.Fatalf("want %q, have %v", want, err)
	}
	if b, err := os.ReadFile(out); err != nil || strings.Count(string(b), "server 127.0.0.1:") != 2 {
		t.Fatalf("the file was not written (%v):\n%s", err, b)
	}
	// Two retries (1 s, then 2 s later), each seen.
	attempts := map[time.Time]bool{}
	var st Status
	for deadline := time.Now().Add(30 * time.Second); len(attempts) < 3; time.Sleep(20 * time.Millisecond) {
		st = m.Status()
		attempts[st.LastAttempt] = true
		if time.Now().After(deadline) {
			t.Fatalf("want 3 attempts, saw %d: %+v", len(attempts), st)
		}
	}
	if st.OK || !st.NotRunning || !st.NotInstalled || st.Error != want || st.Servers != 2 || st.Failures != 1 {
		t.Errorf("status without nginx: %+v", st)
	}
	if text := logs.String(); strings.Count(text, "nginx is not installed") != 1 || strings.Contains(text, "level=ERROR") {
		t.Errorf("want one line, no ERROR:\n%s", text)
	}

	// nginx arrives: a real program that logs how it is called (renamed
	// into place, so that it is never run half-written).
	if err := os.WriteFile(nginx+".tmp", []byte("#!/bin/sh\necho \"$*\" >> "+calls+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(nginx+".tmp", nginx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !m.Status().OK; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("nginx never tested and reloaded: %+v", m.Status())
		}
	}
	if b, _ := os.ReadFile(calls); string(b) != "-t\n-s reload\n" {
		t.Errorf("want the test, then the reload; have %q", b)
	}
	if st := m.Status(); st.NotRunning || st.NotInstalled || st.Reloads != 1 || st.Servers != 2 {
		t.Errorf("status once nginx is there: %+v", st)
	}
}

// A rendering that changes server states alone goes through Runtime, not
// the reload command; a new server reloads; a Runtime that fails falls
// back to the reload; a manager restored from State carries on with the
// runtime path (it knows what the balancer loaded).
func TestStateChangesGoThroughRuntime(t *testing.T) {
	dir := t.TempDir()
	out, reloads := filepath.Join(dir, "haproxy.cfg"), filepath.Join(dir, "reloads")
	tmpl, err := templates.HAProxy()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []string
	fail := false
	settings := Settings{
		Name: "haproxy", Output: out, Template: tmpl, TestCommand: "true",
		ReloadCommand:  fmt.Sprintf("sh -c 'echo reload >> %s'", reloads),
		CommandTimeout: 10 * time.Second,
		Runtime: func(_ context.Context, changes []StateChange) error {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range changes {
				calls = append(calls, c.Upstream+"/"+c.Server.ID()+"="+c.Server.State)
			}
			if fail {
				return errors.New("runtime API down")
			}
			return nil
		},
	}
	backend := func(states ...string) templates.Data {
		u := templates.Upstream{Name: "web", Balance: "leastconn", Mode: "http", CheckPath: "/", CheckInterval: "2000ms", Rise: 2, Fall: 2}
		for i, st := range states {
			u.Servers = append(u.Servers, templates.Server{Host: "10.0.0." + fmt.Sprint(i+1), Port: 9000, Name: "web:web_00", State: st})
		}
		return templates.Data{Upstreams: []templates.Upstream{u}}
	}
	reloaded := func() int {
		b, _ := os.ReadFile(reloads)
		return strings.Count(string(b), "reload")
	}
	called := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(calls, " ")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tally := &Tally{}
	m := New(settings, testReaper, quiet)
	m.Tally = tally
	m.Start()
	if err := apply(t, m, backend("up", "up")); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, m, backend("down", "up")); err != nil {
		t.Fatal(err)
	}
	if reloaded() != 1 || called() != "web/10.0.0.1:9000=down" {
		t.Fatalf("state change: %d reloads, runtime %q", reloaded(), called())
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "server 10.0.0.1:9000 10.0.0.1:9000 disabled") {
		t.Fatalf("the file is not the rendering:\n%s", b)
	}
	if err := apply(t, m, backend("down", "up", "up")); err != nil {
		t.Fatal(err)
	}
	if reloaded() != 2 || called() != "web/10.0.0.1:9000=down" {
		t.Fatalf("a new server: %d reloads, runtime %q", reloaded(), called())
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	if err := apply(t, m, backend("up", "up", "up")); err != nil {
		t.Fatal(err)
	}
	if reloaded() != 3 {
		t.Fatalf("runtime failed: %d reloads, want the fallback", reloaded())
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	m.Stop()
	if c := tally.Counts(); c.RuntimeOK != 1 || c.RuntimeFailed != 1 || c.ReloadsOK != 3 {
		t.Errorf("counts %+v", c)
	}
	st, _ := handedOver(t, m)
	m2 := New(settings, testReaper, quiet)
	m2.Restore(st)
	m2.Start()
	defer m2.Stop()
	if err := apply(t, m2, backend("up", "down", "up")); err != nil {
		t.Fatal(err)
	}
	if reloaded() != 3 || !strings.HasSuffix(called(), "web/10.0.0.2:9000=down") {
		t.Fatalf("after a restore: %d reloads, runtime %q", reloaded(), called())
	}
}

// A settings change (a new template) that comes with a member's state
// change must reload the balancer: the runtime API only sets states, it
// cannot load the new template's file.
func TestSettingsChangeReloadsDespiteStateChange(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "gosup.conf")
	reloads := filepath.Join(dir, "reloads")
	tmpl, err := templates.Load("")
	if err != nil {
		t.Fatal(err)
	}
	var runtimeCalls atomic.Int64
	settings := Settings{
		Output: out, Template: tmpl,
		ReloadCommand:  fmt.Sprintf("echo reload >> %s", reloads),
		CommandTimeout: 10 * time.Second,
		Runtime:        func(context.Context, []StateChange) error { runtimeCalls.Add(1); return nil },
	}
	m := New(settings, testReaper, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.Start()
	defer m.Stop()
	if err := apply(t, m, upstream(8001, 8002)); err != nil {
		t.Fatal(err)
	}
	// A reload of gosup's config changes the template; at the same time
	// a member is marked down (a drain on another host).
	tmpl2, err := templates.Parse("new", "# NEW TEMPLATE\n{{ range .Upstreams }}{{ range .Servers }}server {{ .Address }} {{ .State }}\n{{ end }}{{ end }}")
	if err != nil {
		t.Fatal(err)
	}
	settings.Template = tmpl2
	m.SetSettings(settings)
	d := upstream(8001, 8002)
	d.Upstreams[0].Servers[1].State = "down"
	if err := apply(t, m, d); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	r, _ := os.ReadFile(reloads)
	if !strings.Contains(string(b), "NEW TEMPLATE") {
		t.Fatalf("new template not written:\n%s", b)
	}
	if string(r) != "reload\nreload\n" {
		t.Fatalf("new template written but never loaded: reloads %q, runtime calls %d", r, runtimeCalls.Load())
	}
}

// HAProxy's master ignores a SIGUSR2 that comes while it is still starting
// or reloading (about 1 in 2 of back-to-back reloads, measured with
// HAProxy 2.6): with Identity, the manager sees the worker did not change
// and sends the reload again, so every update is loaded.
func TestIgnoredReloadIsSentAgain(t *testing.T) {
	out := filepath.Join(t.TempDir(), "gosup.cfg")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := haproxytest.Start(t, out)
	rt := h.Runtime()
	tmpl, err := templates.HAProxy()
	if err != nil {
		t.Fatal(err)
	}
	m := New(Settings{Name: "haproxy", Output: out, Template: tmpl, TestCommand: h.TestCommand(out), ReloadCommand: h.ReloadCommand(),
		CommandTimeout: 10 * time.Second, Identity: rt.WorkerPid}, testReaper, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.Start()
	defer m.Stop()
	u := templates.Upstream{Name: "web", Balance: "leastconn", Mode: "http", CheckPath: "/", CheckInterval: "60000ms", Rise: 1, Fall: 1}
	for i := range 6 {
		u.Servers = append(u.Servers, templates.Server{Host: "127.0.0.2", Port: 9000 + i, Name: "web:web_00", State: "up"})
		d := templates.Data{Upstreams: []templates.Upstream{u}}
		d.Upstreams[0].Servers = slices.Clone(u.Servers)
		if err := apply(t, m, d); err != nil {
			t.Fatal(err)
		}
		sts, err := rt.ServerStates(context.Background(), "web")
		if err != nil || len(sts) != i+1 {
			t.Fatalf("update %d applied, but HAProxy runs %d servers (%v)", i+1, len(sts), err)
		}
	}
}
