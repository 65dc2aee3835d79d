package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/procgroup/guard/guardtest"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// panicky is a test hook that panics its first n times.
type panicky struct{ left atomic.Int64 }

func newPanicky(n int64) *panicky {
	p := &panicky{}
	p.left.Store(n)
	return p
}

func (p *panicky) hit(what string) {
	if p.left.Add(-1) >= 0 {
		panic(what + " bug")
	}
}

// guardedDaemon runs the config in file with setup applied before Run,
// logging into the returned buffer.
func guardedDaemon(t *testing.T, file string, setup func(*Supervisor)) (*Supervisor, *api.Client, *guardtest.LogBuffer) {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	s, cl, logs, _ := loggedDaemon(t, cfg, setup)
	return s, cl, logs
}

// loggedDaemon is runDaemonWith logging into the returned buffer (and to
// stderr too with -v).
func loggedDaemon(t *testing.T, cfg *config.Config, setup func(*Supervisor)) (*Supervisor, *api.Client, *guardtest.LogBuffer, func() error) {
	t.Helper()
	logs := &guardtest.LogBuffer{}
	var w io.Writer = logs
	if testing.Verbose() {
		w = io.MultiWriter(logs, os.Stderr)
	}
	s, cl, stop := runDaemonWith(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(w, nil))}, setup)
	return s, cl, logs, stop
}

// waitPanics waits until the guard has counted n panics of component.
func waitPanics(t *testing.T, s *Supervisor, component string, n int64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); s.guard.Panics(component) < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d panics counted, want %d", component, s.guard.Panics(component), n)
		}
	}
}

// leftAlone checks what a panic in component must and must not have
// done: the processes of web keep their pids and stay RUNNING; ctl info
// counts the panic; ctl status warns; the log has it at ERROR with its
// stack, through frame.
func leftAlone(t *testing.T, cl *api.Client, logs *guardtest.LogBuffer, before []api.ProcStatus, component, frame string) {
	t.Helper()
	for _, p := range before {
		if now := mustStatus(t, cl, p.Name)[0]; now.State != "RUNNING" || now.Pid != p.Pid || now.Restarts != p.Restarts {
			t.Errorf("%s was disturbed: before %+v, now %+v", p.Name, p, now)
		}
	}
	found := false
	for _, p := range mustInfo(t, cl).Panics {
		if p.Component == component && p.Count >= 1 && p.State != "" && !p.LastAt.IsZero() {
			found = true
		}
	}
	if !found {
		t.Errorf("ctl info does not count the %s panic: %+v", component, mustInfo(t, cl).Panics)
	}
	_, warnings, err := cl.StatusWarning(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(warnings, "\n"); !strings.Contains(w, component+" panicked") {
		t.Errorf("ctl status does not warn of the %s panic: %q", component, warnings)
	}
	out := logs.String()
	for _, want := range []string{`level=ERROR msg="panic recovered"`, "component=" + quoteIfSpace(component), "goroutine ", frame} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func quoteIfSpace(s string) string {
	if strings.Contains(s, " ") {
		return `"` + s + `"`
	}
	return s
}

const webSleepers = `
[program.web]
command = "@HELPER@ sleep"
numprocs = 2
process_name = "web_%(process_num)d"
startsecs = 0
` + helperEnv + "\n"

// A memmon tick that panics: counted, warned of, and memmon samples again
// after the guard's backoff; no process is touched.
func TestMemmonPanicLeavesProcessesAlone(t *testing.T) {
	file := writeConfig(t, webSleepers+`
[memmon]
interval = "200ms"
any = "1GB"
`)
	hook := newPanicky(1)
	s, cl, logs := guardedDaemon(t, file, func(s *Supervisor) {
		s.hooks.memmonTargets = func() { hook.hit("memmon") }
	})
	before := waitAll(t, cl, "RUNNING")
	waitPanics(t, s, "memmon", 1)
	waitTicks(t, s, 3) // restarted after 1 s: sampling goes on
	leftAlone(t, cl, logs, before, "memmon", "supervisor.memmonHost.Targets")
	if r := s.guard.Records(); !strings.HasPrefix(r[0].State, "restarted at ") {
		t.Errorf("record: %+v", r)
	}
}

// An alerter that panics: the alerts in hand are counted as dropped, the
// alerter runs again after the backoff and mails the next restart (with
// max_restarts = 0 there is always a next one: the first mail can hold
// every restart up to the give-up, as they come within its coalescing
// delay).
func TestAlerterPanicLeavesProcessesAlone(t *testing.T) {
	file := writeConfig(t, webSleepers+program("hog", "hog 128", 1, "")+`
[memmon]
interval = "200ms"
samples = 3
any = "80MB"
max_restarts = 0

[email]
to = ["ops@example.com"]
sendmail = "cat"
rate_limit = "0s"
`)
	hook := newPanicky(1)
	s, cl, logs := guardedDaemon(t, file, func(s *Supervisor) {
		s.hooks.sendmail = func() { hook.hit("sendmail") }
	})
	before := waitAll(t, cl, "RUNNING", "web")
	waitPanics(t, s, "alerter", 1)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info := mustInfo(t, cl)
		if info.AlertsSent >= 1 && info.AlertsDropped >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the panic: want one alert dropped and a later one sent, have %+v", info)
		}
	}
	leftAlone(t, cl, logs, before, "alerter", "supervisor.(*Supervisor).sendmail")
}

// A file watcher that panics as it starts: counted, warned of, and after
// the backoff it watches again, so a saved config reloads.
func TestWatcherPanicLeavesProcessesAlone(t *testing.T) {
	body := "watch = true\n" + webSleepers
	file := writeConfig(t, body)
	hook := newPanicky(1)
	s, cl, logs := guardedDaemon(t, file, func(s *Supervisor) {
		s.hooks.watch = func() { hook.hit("watcher") }
	})
	before := waitAll(t, cl, "RUNNING")
	waitPanics(t, s, "file watcher", 1)
	// Saved until the restarted watcher sees it (a save while it was down
	// is not an event it can see); each save is whole (a temporary file
	// renamed over the config), so a reload never reads half a file.
	tmp := file + ".tmp"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		rewriteConfig(t, tmp, body+program("added", "sleep", 1, ""))
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
		if st, err := cl.Status(t.Context(), "added"); err == nil && st[0].State == "RUNNING" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the file watcher never reloaded the saved config after its restart")
		}
	}
	leftAlone(t, cl, logs, before, "file watcher", "supervisor.(*Supervisor).watchLoop")
}

// A control socket handler that panics: its client gets a 500 that says
// so, the socket goes on serving, and status warns of it.
func TestControlSocketPanicLeavesProcessesAlone(t *testing.T) {
	file := writeConfig(t, webSleepers)
	s, cl, logs := guardedDaemon(t, file, func(s *Supervisor) {
		s.hooks.request = func(r *http.Request) {
			if r.URL.Path == "/v1/nginx" {
				panic("handler bug")
			}
		}
	})
	before := waitAll(t, cl, "RUNNING")
	for range 2 {
		_, err := cl.Nginx(t.Context())
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != http.StatusInternalServerError || !strings.Contains(err.Error(), "gosup failed serving this request") {
			t.Fatalf("want a 500 that says so, have %v", err)
		}
	}
	if n := s.guard.Panics("control socket"); n != 2 {
		t.Errorf("control socket panics: want 2, have %d", n)
	}
	leftAlone(t, cl, logs, before, "control socket", "supervisor.TestControlSocketPanicLeavesProcessesAlone")
	if !strings.Contains(logs.String(), `request="GET /v1/nginx"`) {
		t.Error("the log does not name the request")
	}
}

// A reload that panics while it prepares (under the daemon's locks, with
// its lanes reserved) is counted, and leaves nothing taken: ctl status
// answers, a ctl restart of the program it was changing completes, a
// later reload applies, and shutdown finishes.
func TestReloadPreparePanicReleasesEverything(t *testing.T) {
	body := func(mode string) string {
		return program("web", mode, 1, "") + program("other", "sleep", 1, "")
	}
	file := writeConfig(t, body("sleep"))
	hook := newPanicky(1)
	s, cl, stop := runDaemonWith(t, mustLoad(t, file), Options{}, func(s *Supervisor) {
		s.hooks.reloadPrepare = func() { hook.hit("reload prepare") }
	})
	waitAll(t, cl, "RUNNING")
	// web gets a new command: the reload reserves its lane, then panics.
	rewriteConfig(t, file, body("sleep x"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// As ctl reload asks, with its steps streamed: the panic is on the
	// request's goroutine all the same, and recovered there.
	if _, err := cl.ReloadStream(ctx, false, nil); err == nil || !strings.Contains(err.Error(), "gosup failed serving this request") {
		t.Fatalf("reload that panics: want a 500 that says so, have %v", err)
	}
	if n := s.guard.Panics("control socket"); n != 1 {
		t.Errorf("panics counted: %d, want 1", n)
	}
	if _, err := cl.Status(ctx); err != nil {
		t.Fatalf("status after the panic: %v", err)
	}
	if _, err := cl.Info(ctx); err != nil {
		t.Fatalf("info after the panic: %v", err)
	}
	res, err := cl.Action(ctx, "restart", api.ActionRequest{Patterns: []string{"web"}})
	if err != nil || len(res) == 0 {
		t.Fatalf("ctl restart web after the panic: %+v %v", res, err)
	}
	for _, r := range res {
		if !r.OK {
			t.Errorf("ctl restart web after the panic: %+v", r)
		}
	}
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatalf("the next reload: %v", err)
	}
	for _, r := range plan.Results {
		if !r.OK {
			t.Errorf("the next reload: %+v", r)
		}
	}
	// The panicking reload never got to web's restart: this one does.
	if got := changeOf(plan, "web"); len(got.Restart) != 1 {
		t.Errorf("the next reload does not restart web: %+v", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown after the panic: %v", err)
	}
}

// A reload that panics after its plan went out on the stream: the
// client's last line is an error that says so (a 500, as without a
// stream), not a stream cut short; the panic is still counted, and the
// reload leaves nothing behind: no lane taken, no process marked as on
// the old spec, no restart recorded as under way (the next reload makes
// it).
func TestReloadStreamPanicAfterPlanEndsWithError(t *testing.T) {
	body := func(mode string) string {
		return program("web", mode, 2, "") + program("other", "sleep", 1, "")
	}
	file := writeConfig(t, body("sleep"))
	hook := newPanicky(1)
	s, cl, stop := runDaemonWith(t, mustLoad(t, file), Options{}, func(s *Supervisor) {
		s.hooks.reloadApply = func() { hook.hit("reload apply") }
	})
	waitAll(t, cl, "RUNNING")
	rewriteConfig(t, file, body("sleep x"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var steps []string
	_, err := cl.ReloadStream(ctx, false, func(ev api.Event) { steps = append(steps, ev.Step) })
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != http.StatusInternalServerError || ae.Msg != api.PanicMessage {
		t.Fatalf("reload that panics after its plan: want the stream's error line (500, %q), have %v", api.PanicMessage, err)
	}
	if strings.Join(steps, ",") != "plan,error" {
		t.Errorf("steps %v, want plan then error", steps)
	}
	// Counted once the handler has returned, just after the last line.
	waitPanics(t, s, "control socket", 1)
	st, err := cl.Status(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st {
		if p.OldSpec {
			t.Errorf("%s still marked as on the old spec after the reload panicked", p.Name)
		}
	}
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatalf("the next reload: %v", err)
	}
	if got := changeOf(plan, "web"); len(got.Restart) != 2 {
		t.Errorf("the next reload does not restart web: %+v", got)
	}
	for _, r := range plan.Results {
		if !r.OK {
			t.Errorf("the next reload: %+v", r)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown after the panic: %v", err)
	}
}

func changeOf(plan *api.ReloadPlan, prog string) api.Change {
	for _, c := range plan.Changes {
		if c.Program == prog {
			return c
		}
	}
	return api.Change{}
}

func mustLoad(t *testing.T, file string) *config.Config {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The touch_reload loop panicking while one of its restarts is stuck (a
// child that ignores SIGTERM, stopwaitsecs = 600) comes back after the
// guard's backoff and restarts another touched program; it does not wait
// for the stuck restart first.
func TestTouchLoopPanicDoesNotWaitForRestarts(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "stuck.pid")
	stuckTouch, otherTouch := filepath.Join(dir, "stuck.touch"), filepath.Join(dir, "other.touch")
	file := writeConfig(t, fmt.Sprintf(`
[program.stuck]
command = "@HELPER@ ignore-term %s"
startsecs = 0
stopwaitsecs = 600
touch_reload = [%q]
%s
`, pidfile, stuckTouch, helperEnv)+program("other", "sleep", 1, fmt.Sprintf("touch_reload = [%q]", otherTouch)))
	var wakes atomic.Int64
	s, cl, _ := guardedDaemon(t, file, func(s *Supervisor) {
		s.hooks.touchLoop = func() {
			if wakes.Add(1) == 2 { // the wake-up after stuck's restart began
				panic("touch loop bug")
			}
		}
	})
	waitServing(t, cl) // the file watcher watches from here on
	waitAll(t, cl, "RUNNING")
	stuckPid := readPidfile(t, pidfile)
	if err := os.WriteFile(stuckTouch, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitState(t, cl, "stuck:stuck", "STOPPING")
	before := mustStatus(t, cl, "other")[0]
	if err := os.WriteFile(otherTouch, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitPanics(t, s, "touch_reload", 1)
	// The loop comes back after 1 s; a touch it missed meanwhile is
	// made again until other restarts.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if now := mustStatus(t, cl, "other")[0]; now.State == "RUNNING" && now.Pid != before.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after the panic, touching other never restarted it")
		}
		if err := os.WriteFile(otherTouch, []byte(time.Now().String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stillStopping(t, cl, "stuck:stuck", "touch_reload of other after the loop's panic")
	if err := unix.Kill(stuckPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
}
