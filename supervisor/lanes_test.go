package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"golang.org/x/sys/unix"
)

// waitState polls status until name is in state.
func waitState(t *testing.T, cl *api.Client, name, state string) api.ProcStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := cl.Status(context.Background(), name)
		if err != nil {
			t.Fatalf("status %s: %v", name, err)
		}
		if len(st) == 1 && st[0].State == state {
			return st[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never %s: %+v", name, state, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stillStopping fails the test unless name is still STOPPING: what ran
// before this check ran while the stop was in progress.
func stillStopping(t *testing.T, cl *api.Client, name, what string) {
	t.Helper()
	st, err := cl.Status(context.Background(), name)
	if err != nil || len(st) != 1 || st[0].State != "STOPPING" {
		t.Fatalf("%s: %s is no longer STOPPING (%+v %v); the test shows nothing", what, name, st, err)
	}
}

// One program stuck in STOPPING (its child ignores SIGTERM, stopwaitsecs =
// 600) holds up nothing else: ctl stop/start/restart of another program, a
// reload that changes another program, a touch_reload of another program,
// ctl status and ctl info all complete while it is stopping. A second stop
// of the stuck process waits for the same outcome, and ctl signal never
// waits, so `ctl signal KILL` ends the stuck stop.
func TestOperationsOnOtherProgramsDoNotWait(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "stuck.pid")
	touch := filepath.Join(dir, "other.touch")
	body := func(otherProcs int) string {
		return fmt.Sprintf(`
[program.stuck]
command = "@HELPER@ ignore-term %s"
startsecs = 0
stopwaitsecs = 600
%s

[program.other]
command = "@HELPER@ sleep"
numprocs = %d
process_name = "other_%%(process_num)d"
startsecs = 0
touch_reload = [%q]
%s
`, pidfile, helperEnv, otherProcs, touch, helperEnv)
	}
	file := writeConfig(t, body(1))
	_, cl, _ := startSupervisor(t, file)
	waitServing(t, cl) // the file watcher watches from here on: the touch below is seen
	waitAll(t, cl, "RUNNING")
	readPidfile(t, pidfile) // SIGTERM is ignored from here on

	// Every call below must answer long before the stuck stop's 600 s.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type outcome struct {
		res []api.Result
		err error
	}
	stopStuck := func() <-chan outcome {
		c := make(chan outcome, 1)
		go func() {
			res, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"stuck"}})
			c <- outcome{res, err}
		}()
		return c
	}
	first := stopStuck()
	waitState(t, cl, "stuck", "STOPPING")

	// ctl status and ctl info answer.
	if _, err := cl.Status(ctx); err != nil {
		t.Fatalf("status while stuck is stopping: %v", err)
	}
	if _, err := cl.Info(ctx); err != nil {
		t.Fatalf("info while stuck is stopping: %v", err)
	}
	// ctl stop, start and restart of another program complete.
	for _, verb := range []string{"stop", "start", "restart"} {
		res, err := cl.Action(ctx, verb, api.ActionRequest{Patterns: []string{"other"}})
		if err != nil {
			t.Fatalf("ctl %s other while stuck is stopping: %v", verb, err)
		}
		for _, r := range res {
			if !r.OK {
				t.Errorf("ctl %s other: %+v", verb, r)
			}
		}
		stillStopping(t, cl, "stuck:stuck", "ctl "+verb+" other")
	}
	// A reload that changes another program completes.
	rewriteConfig(t, file, body(2))
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatalf("reload while stuck is stopping: %v", err)
	}
	for _, r := range plan.Results {
		if !r.OK {
			t.Errorf("reload: %+v", r)
		}
	}
	waitState(t, cl, "other:other_1", "RUNNING")
	stillStopping(t, cl, "stuck:stuck", "reload")
	// A touch_reload of another program restarts it.
	before := waitState(t, cl, "other:other_0", "RUNNING")
	if err := os.WriteFile(touch, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitNewPid(t, cl, "other:other_0", before.Pid)
	stillStopping(t, cl, "stuck:stuck", "touch_reload of other")

	// A second stop of the stuck process waits for the same outcome; the
	// signal does not wait and ends it.
	second := stopStuck()
	res, err := cl.Action(ctx, "signal", api.ActionRequest{Patterns: []string{"stuck"}, Signal: "KILL"})
	if err != nil || len(res) != 1 || !res[0].OK {
		t.Fatalf("signal KILL stuck while it is stopping: %+v %v", res, err)
	}
	for i, c := range []<-chan outcome{first, second} {
		o := <-c
		if o.err != nil || len(o.res) != 1 || !o.res[0].OK || o.res[0].State != "STOPPED" {
			t.Errorf("stop %d of stuck: %+v %v", i+1, o.res, o.err)
		}
	}
}

// waitWaiting waits until n operations wait for a lane.
func waitWaiting(t *testing.T, s *Supervisor, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.lanes.waiting.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d operations wait for a lane, want %d", s.lanes.waiting.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Operations on the same program run one after the other, in the order
// they came: a start sent while a stop is in progress waits for the stop
// and then starts. Shutdown ends an operation in progress and one waiting
// for its lane, refuses new ones, and still stops everything.
func TestSameProgramOperationsQueueAndShutdownEndsThem(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "stuck.pid")
	file := writeConfig(t, fmt.Sprintf(`
[program.stuck]
command = "@HELPER@ ignore-term %s"
startsecs = 0
stopwaitsecs = 600
%s

[program.other]
command = "@HELPER@ sleep"
startsecs = 0
%s
`, pidfile, helperEnv, helperEnv))
	sup, cl, stopDaemon := startSupervisorStop(t, file)
	waitAll(t, cl, "RUNNING")
	readPidfile(t, pidfile)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type outcome struct {
		res []api.Result
		err error
	}
	act := func(verb string) <-chan outcome {
		c := make(chan outcome, 1)
		go func() {
			res, err := cl.Action(ctx, verb, api.ActionRequest{Patterns: []string{"stuck"}})
			c <- outcome{res, err}
		}()
		return c
	}
	stop := act("stop")
	waitState(t, cl, "stuck:stuck", "STOPPING")
	start := act("start")
	waitWaiting(t, sup, 1) // the start waits for the stop
	os.Remove(pidfile)     // before the next spawn can write its own
	if res, err := cl.Action(ctx, "signal", api.ActionRequest{Patterns: []string{"stuck"}, Signal: "KILL"}); err != nil || !res[0].OK {
		t.Fatalf("signal KILL: %+v %v", res, err)
	}
	if o := <-stop; o.err != nil || !o.res[0].OK || o.res[0].Message != "stopped" {
		t.Errorf("stop: %+v %v", o.res, o.err)
	}
	if o := <-start; o.err != nil || !o.res[0].OK || o.res[0].Message != "started" || o.res[0].State != "RUNNING" {
		t.Errorf("start queued behind the stop: %+v %v", o.res, o.err)
	}

	// Shutdown with a stop in progress and a restart waiting for its lane.
	st := waitState(t, cl, "stuck:stuck", "RUNNING")
	readPidfile(t, pidfile) // the new spawn's: SIGTERM is ignored from here on
	stop = act("stop")
	waitState(t, cl, "stuck:stuck", "STOPPING")
	restart := act("restart")
	waitWaiting(t, sup, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- stopDaemon() }()
	if o := <-stop; o.err != nil || o.res[0].OK || !strings.Contains(o.res[0].Message, "canceled") {
		t.Errorf("stop in progress at shutdown: %+v %v", o.res, o.err)
	}
	if o := <-restart; o.err != nil || o.res[0].OK || !strings.Contains(o.res[0].Message, "shutting down") {
		t.Errorf("restart waiting at shutdown: %+v %v", o.res, o.err)
	}
	if _, err := cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{"other"}}); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("an operation after shutdown began: %v", err)
	}
	// Shutdown now waits out stuck's stop: end it.
	if err := unix.Kill(st.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// The lanes on their own: first come first served per program, an
// operation on two programs never makes two others wait in a circle, a
// place never waited for is handed on, a waiter gives up with its context,
// and shutdown refuses new reservations, ends the waits and waits for
// every holder. synctest.Wait tells that every goroutine is blocked.
func TestLanes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		quit := make(chan struct{})
		ls := newLanes(quit)
		ctx := context.Background()
		reserve := func(progs ...procgroup.ProgramName) *lease {
			l, err := ls.reserve(ctx, progs)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		var mu sync.Mutex
		var order []string
		run := func(name string, l *lease, progs ...procgroup.ProgramName) {
			go func() {
				for _, p := range progs {
					if err := l.acquire(p); err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
				}
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
			}()
		}
		ran := func() string {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return strings.Join(order, " ")
		}
		a := reserve("x")
		b := reserve("x", "y") // behind a on x
		c := reserve("y")      // behind b on y
		d := reserve("z")      // alone
		run("a", a, "x")
		run("b", b, "y", "x")
		run("c", c, "y")
		run("d", d, "z")
		if got := ran(); got != "a d" && got != "d a" {
			t.Fatalf("ran %q; want a and d, b and c waiting", got)
		}
		if n := ls.waiting.Load(); n != 2 {
			t.Errorf("%d waiting, want 2", n)
		}
		a.release()
		a.release() // twice, as a deferred release after an early one: no effect
		if got := ran(); !strings.HasSuffix(got, " b") {
			t.Fatalf("after a: ran %q, want b next", got)
		}
		b.release()
		if got := ran(); !strings.HasSuffix(got, " b c") {
			t.Fatalf("after b: ran %q, want c next", got)
		}

		// A place released without waiting is handed on when its turn comes.
		e := reserve("x")
		f := reserve("x") // released before e is done
		g := reserve("x")
		f.release()
		run("g", g, "x")
		if got := ran(); strings.Contains(got, "g") {
			t.Fatalf("g ran while e holds x: %q", got)
		}
		e.release()
		if got := ran(); !strings.HasSuffix(got, " g") {
			t.Fatalf("after e: ran %q, want g", got)
		}

		// A waiter gives up when its context ends.
		hctx, cancel := context.WithCancel(ctx)
		h, _ := ls.reserve(hctx, []procgroup.ProgramName{"x"}) // behind g
		errc := make(chan error, 1)
		go func() { errc <- h.acquire("x") }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled waiter: %v", err)
		}
		h.release()

		// Shutdown: the waiter gives up, a new reservation is refused, and
		// wait returns once every holder has released.
		i := reserve("x") // behind g
		go func() { errc <- i.acquire("x") }()
		synctest.Wait()
		close(quit)
		if err := <-errc; !errors.Is(err, errShuttingDown) {
			t.Errorf("waiter at shutdown: %v", err)
		}
		if _, err := ls.reserve(ctx, []procgroup.ProgramName{"w"}); !errors.Is(err, errShuttingDown) {
			t.Errorf("reserve after shutdown: %v", err)
		}
		waited := make(chan struct{})
		go func() {
			ls.wait()
			close(waited)
		}()
		for _, l := range []*lease{i, c, d} {
			synctest.Wait()
			select {
			case <-waited:
				t.Fatal("wait returned while a lease is held")
			default:
			}
			l.release()
		}
		g.release()
		<-waited
	})
}

// Once shutdown has begun, no operation starts on a lane, not even one
// whose turn came at once (nobody before it in that lane).
func TestLanesNoStartAfterQuit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		quit := make(chan struct{})
		ls := newLanes(quit)
		l, err := ls.reserve(context.Background(), []procgroup.ProgramName{"x", "y"})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.acquire("x"); err != nil {
			t.Fatal(err)
		}
		close(quit)
		if err := l.acquire("y"); !errors.Is(err, errShuttingDown) {
			t.Errorf("a free lane after shutdown began: %v, want %v", err, errShuttingDown)
		}
		waited := make(chan struct{})
		go func() {
			ls.wait()
			close(waited)
		}()
		synctest.Wait()
		select {
		case <-waited:
			t.Fatal("wait returned while a lease is held")
		default:
		}
		l.release()
		<-waited
	})
}

// Shutdown during a `ctl start` of two priority levels: the first level
// gives up, and the second is never spawned (before, the operation went
// on to it after shutdown had begun).
func TestShutdownStopsMultiLevelStart(t *testing.T) {
	file := writeConfig(t, fmt.Sprintf(`
[program.first]
command = "@HELPER@ sleep"
priority = 1
autostart = false
startsecs = 600
%s

[program.late]
command = "@HELPER@ sleep"
priority = 2
autostart = false
startsecs = 0
%s
`, helperEnv, helperEnv))
	sup, cl, stopDaemon := startSupervisorStop(t, file)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	started := make(chan error, 1)
	go func() {
		_, err := cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{"all"}})
		started <- err
	}()
	waitState(t, cl, "first:first", "STARTING")
	late := sup.process("late:late")
	if err := stopDaemon(); err != nil {
		t.Fatal(err)
	}
	<-started // answered or cut off: either way the operation has ended
	if n := late.Status().Spawns; n != 0 {
		t.Errorf("late was spawned %d times after shutdown began", n)
	}
}

// A reload that restarts stuck (its child ignores SIGTERM, stopwaitsecs =
// 600) and other holds up neither: once other's part is done, ctl restart
// other completes, and a later reload (here a new program) applies, both
// while stuck is still STOPPING. The first reload answers once stuck's
// restart ends.
func TestReloadPartsDoNotWaitForEachOther(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "stuck.pid")
	body := func(arg string, extra string) string {
		return fmt.Sprintf(`
[program.stuck]
command = "@HELPER@ ignore-term %s %s"
startsecs = 0
stopwaitsecs = 600
%s
`, pidfile, arg, helperEnv) + program("other", "sleep "+arg, 1, "") + extra
	}
	file := writeConfig(t, body("a", ""))
	_, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	stuckPid := readPidfile(t, pidfile)
	otherPid := mustStatus(t, cl, "other")[0].Pid
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rewriteConfig(t, file, body("b", ""))
	type outcome struct {
		plan *api.ReloadPlan
		err  error
	}
	first := make(chan outcome, 1)
	go func() {
		plan, err := cl.Reload(ctx, false)
		first <- outcome{plan, err}
	}()
	waitState(t, cl, "stuck:stuck", "STOPPING")
	waitNewPid(t, cl, "other:other_0", otherPid) // other's part of the reload is done
	res, err := cl.Action(ctx, "restart", api.ActionRequest{Patterns: []string{"other"}})
	if err != nil || len(res) == 0 {
		t.Fatalf("ctl restart other during the reload: %+v %v", res, err)
	}
	for _, r := range res {
		if !r.OK {
			t.Errorf("ctl restart other during the reload: %+v", r)
		}
	}
	stillStopping(t, cl, "stuck:stuck", "ctl restart other")
	// A second reload plans against the first (stuck's restart to the
	// same command is under way: not planned again) and applies.
	rewriteConfig(t, file, body("b", program("added", "sleep", 1, "")))
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatalf("a second reload during the first: %v", err)
	}
	for _, r := range plan.Results {
		if !r.OK {
			t.Errorf("the second reload: %+v", r)
		}
	}
	if c := changeOf(plan, "stuck"); c.Action != "unchanged" {
		t.Errorf("the second reload plans stuck's restart again: %+v", c)
	}
	waitAll(t, cl, "RUNNING", "added")
	stillStopping(t, cl, "stuck:stuck", "the second reload")
	if err := unix.Kill(stuckPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	o := <-first
	if o.err != nil {
		t.Fatalf("the first reload: %v", o.err)
	}
	for _, r := range o.plan.Results {
		if !r.OK {
			t.Errorf("the first reload: %+v", r)
		}
	}
	waitState(t, cl, "stuck:stuck", "RUNNING")
}

// A reload that removes a program and adds another on the same port
// starts the new one only once the old one has let the port go, though
// each program's part runs on its own (the old one ignores SIGTERM and
// holds the port until it is killed after stopwaitsecs).
func TestReloadAddWaitsForRemovalOfItsPort(t *testing.T) {
	port := freePort(t)
	prog := func(name, mode string) string {
		return fmt.Sprintf(`
[program.%s]
command = "@HELPER@ %s"
port_start = %d
startsecs = 1
startretries = 0
stopwaitsecs = 2
%s
`, name, mode, port, helperEnv)
	}
	file := writeConfig(t, prog("old", "listen-ignore-term"))
	_, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	rewriteConfig(t, file, prog("new", "listen"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range plan.Results {
		if !r.OK {
			t.Errorf("reload: %+v", r)
		}
	}
	if st := mustStatus(t, cl, "new")[0]; st.State != "RUNNING" || st.Restarts != 0 {
		t.Errorf("new: %+v", st)
	}
}
