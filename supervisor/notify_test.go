package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// notifyMsg is one datagram the daemon sent to NOTIFY_SOCKET.
type notifyMsg struct {
	text string
	at   time.Time
}

// listenNotify listens on a real unixgram socket, as systemd does, and
// returns its path and what reads the next message (failing the test
// after a generous deadline).
func listenNotify(t *testing.T) (sock string, recv func() notifyMsg) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	msgs := make(chan notifyMsg, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			msgs <- notifyMsg{string(buf[:n]), time.Now()}
		}
	}()
	return sock, func() notifyMsg {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(30 * time.Second):
			t.Fatal("no message from the daemon")
			return notifyMsg{}
		}
	}
}

// The daemon speaks sd_notify to a real unixgram socket: READY=1 only once
// every autostart process is RUNNING (here after startsecs = 1), with the
// STATUS= of the same reading, STATUS= when the picture changes, and
// RELOADING=1 (with MONOTONIC_USEC) … READY=1 around a reload (an
// invalid file's too), and
// STOPPING=1 on shutdown. (WATCHDOG=1: TestWatchdogPingsOnlyWhileLoopsAnswer.)
func TestSystemdNotify(t *testing.T) {
	sock, recv := listenNotify(t)
	body := `
[program.web]
command = "@HELPER@ sleep"
numprocs = 2
process_name = "web_%(process_num)d"
startsecs = 1
` + helperEnv
	file := writeConfig(t, body)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	_, cl, stop := runDaemon(t, cfg, Options{NotifySocket: sock})
	next := func(prefix string) notifyMsg {
		t.Helper()
		for {
			if m := recv(); strings.HasPrefix(m.text, prefix) {
				return m
			}
		}
	}
	ready := next("READY=1")
	if ready.text != "READY=1\nSTATUS=2 running, 0 fatal" {
		t.Errorf("ready message: %q", ready.text)
	}
	if d := ready.at.Sub(start); d < time.Second {
		t.Errorf("READY=1 after %s, before the processes' startsecs", d)
	}
	if _, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"web:web_1"}}); err != nil {
		t.Fatal(err)
	}
	// On its way: STOPPING, then STOPPED, then remembered as stopped by
	// ctl stop (once the stop is done).
	for m := next("STATUS="); m.text != "STATUS=1 running, 0 fatal, 1 stopped by ctl stop"; m = next("STATUS=") {
		if m.text != "STATUS=1 running, 0 fatal, 1 stopping" && m.text != "STATUS=1 running, 0 fatal, 1 stopped" {
			t.Fatalf("status after a stop: %q", m.text)
		}
	}
	// A reload: RELOADING=1 with the monotonic clock, then READY=1 again.
	rewriteConfig(t, file, strings.Replace(body, "numprocs = 2", "numprocs = 3", 1))
	beforeReload := monotonicUsec()
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	reloading := next("RELOADING=1")
	var usec int64
	if _, err := fmt.Sscanf(reloading.text, "RELOADING=1\nMONOTONIC_USEC=%d\n", &usec); err != nil || usec < beforeReload || usec > monotonicUsec() {
		t.Errorf("reloading message: %q (MONOTONIC_USEC %d, clock before %d)", reloading.text, usec, beforeReload)
	}
	// READY=1 once the new configuration is in force (web_2 added, not
	// yet started), then STATUS= until the reload's start of web_2 is done.
	if m := next("READY=1"); !strings.HasPrefix(m.text, "READY=1\nSTATUS=") {
		t.Errorf("ready after reload: %q", m.text)
	}
	for m := next("STATUS="); m.text != "STATUS=2 running, 0 fatal, 1 stopped by ctl stop"; m = next("STATUS=") {
	}
	// An invalid file: RELOADING=1 came at the reload's start, so READY=1
	// must follow although nothing changed (systemd would show the unit
	// reloading until TimeoutStartSec fails the reload).
	rewriteConfig(t, file, strings.Replace(body, "numprocs = 2", "numprocs = 0", 1))
	if _, err := cl.Reload(ctx, false); err == nil {
		t.Fatal("reload of an invalid file succeeded")
	}
	next("RELOADING=1")
	if m := next("READY=1"); m.text != "READY=1\nSTATUS=2 running, 0 fatal, 1 stopped by ctl stop" {
		t.Errorf("ready after an invalid file's reload: %q", m.text)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if m := next("STOPPING=1"); !strings.HasPrefix(m.text, "STOPPING=1\nSTATUS=stopping") {
		t.Errorf("stopping message: %q", m.text)
	}
}

// systemd bounds a reload by TimeoutStartSec, from RELOADING=1 (or the
// start of ExecReload) until READY=1: a daemon that said READY=1 only once
// a long rolling restart was over would have its reload fail ("Reload
// operation timed out") while the rollout carries on. READY=1 comes once
// the new configuration is in force, the rollout still under way; STATUS=
// follows the rollout to its end.
func TestReloadReadyBeforeRollout(t *testing.T) {
	sock, recv := listenNotify(t)
	body := `
[program.web]
command = "@HELPER@ sleep"
startsecs = 1
environment = { GO_WANT_HELPER_PROCESS = "1", V = "1" }
`
	file := writeConfig(t, body)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	sup, cl, stop := runDaemon(t, cfg, Options{NotifySocket: sock})
	next := func(prefix string) notifyMsg {
		t.Helper()
		for {
			if m := recv(); strings.HasPrefix(m.text, prefix) {
				return m
			}
		}
	}
	next("READY=1")
	// The restarted process is STARTING for an hour: the rollout outlasts
	// any TimeoutStartSec the test could wait for.
	rewriteConfig(t, file, strings.NewReplacer(`V = "1"`, `V = "2"`, "startsecs = 1", "startsecs = 3600").Replace(body))
	sup.RequestReload()
	next("RELOADING=1")
	if m := next("READY=1"); !strings.HasPrefix(m.text, "READY=1\nSTATUS=") {
		t.Errorf("ready after the reload's plan: %q", m.text)
	}
	st, err := cl.Status(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || (st[0].State == "RUNNING" && !st[0].OldSpec) {
		t.Fatalf("READY=1 came with web %+v, want it still to restart (on its old spec) or restarting: the rollout under way", st)
	}
	// The rollout carries on after READY=1: the new process starts.
	deadline := time.Now().Add(30 * time.Second)
	for st[0].State != "STARTING" {
		if time.Now().After(deadline) {
			t.Fatalf("web is %s 30s after READY=1, want STARTING: the rollout did not go on", st[0].State)
		}
		time.Sleep(20 * time.Millisecond)
		if st, err = cl.Status(context.Background(), "web"); err != nil || len(st) != 1 {
			t.Fatalf("status: %v %+v", err, st)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// WATCHDOG=1 vouches for the daemon's loops: a healthy daemon keeps
// pinging; with the decide lock of the operation lanes held (what a lane
// machinery that no longer moves looks like), a lease held longer than its
// program can take (leaked: never released) or the reaper's loop stuck in
// a reap, the pings stop, STATUS= says what does not answer, ctl info
// counts the missed pings, and the pings resume once the loop answers.
// An operation queued behind the leaked lease is not blamed for the wait.
func TestWatchdogPingsOnlyWhileLoopsAnswer(t *testing.T) {
	sock, recv := listenNotify(t)
	file := writeConfig(t, `
[program.a]
command = "@HELPER@ sleep"
startsecs = 0
startretries = 0
stopwaitsecs = 1
`+helperEnv)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	// Checks every 4s, each loop bound to answer within 2s (generous on a
	// loaded machine). An operation on a may take stopwaitsecs 1s + 1s.
	sup, cl, _ := runDaemonWith(t, cfg, Options{NotifySocket: sock, Watchdog: 8 * time.Second}, func(s *Supervisor) {
		s.hooks.leaseSlack = time.Second
	})
	ctx := context.Background()
	// until reads messages until done says so, within a generous deadline.
	until := func(what string, done func(m string) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !done(recv().text) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s from the daemon", what)
			}
		}
	}
	pings := func(n int) {
		t.Helper()
		until(fmt.Sprintf("%d WATCHDOG=1", n), func(m string) bool {
			if m == "WATCHDOG=1" {
				n--
			}
			return n == 0
		})
	}
	// wedged, called once loop no longer answers, waits for two checks
	// that say so in STATUS= and returns the last such message. At most
	// one WATCHDOG=1 may come first (from a check that passed just
	// before); none after the first failure. Another loop failing too (a
	// slow machine) is no error.
	wedged := func(loop string) (last string) {
		t.Helper()
		failures, pinged := 0, 0
		until("2 failed checks of the "+loop, func(m string) bool {
			switch {
			case strings.HasPrefix(m, "STATUS=watchdog: ") && slices.Contains(failing(m), loop):
				failures++
				last = m
			case m == "WATCHDOG=1":
				if pinged++; failures > 0 || pinged > 1 {
					t.Fatalf("WATCHDOG=1 keeps coming while %q does not answer", loop)
				}
			}
			return failures == 2
		})
		return last
	}
	// recovered waits for the STATUS= that replaces the failure, then a ping.
	recovered := func() {
		t.Helper()
		until("STATUS= once the loops answer", func(m string) bool {
			if strings.HasPrefix(m, "STATUS=") && !strings.HasPrefix(m, "STATUS=watchdog: ") {
				if m != "STATUS=1 running, 0 fatal" {
					t.Errorf("status once the loops answer again: %q", m)
				}
				return true
			}
			return false
		})
		pings(1)
	}
	pings(2) // healthy

	sup.decide <- struct{}{} // the lanes' decide lock, held: nothing can be decided
	if m := wedged("operation lanes"); !strings.Contains(m, "operation lanes did not answer within 2s") {
		t.Errorf("status while the decide lock is held: %q", m)
	}
	info, err := cl.Info(ctx) // info takes no lane
	if err != nil {
		t.Fatal(err)
	}
	_, last, _ := strings.Cut(info.WatchdogLastFailure, ": ") // after the time
	if info.WatchdogMissed < 2 || !slices.Contains(failing(last), "operation lanes") {
		t.Errorf("info while the lanes are wedged: missed %d, last %q", info.WatchdogMissed, info.WatchdogLastFailure)
	}
	<-sup.decide
	recovered()

	// A lease its holder never releases: the lane of a stays taken.
	_, leaked, err := sup.claim(ctx, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	defer leaked.release()                          // if the test fails: shutdown waits for every lease
	_, queued, err := sup.claim(ctx, []string{"a"}) // waits behind it, not to blame
	if err != nil {
		t.Fatal(err)
	}
	defer queued.release()
	acquired := make(chan error, 1)
	go func() { acquired <- queued.acquire("a") }()
	m := wedged("operation lanes")
	if n := strings.Count(m, "an operation on a has held its lanes for"); n != 1 {
		t.Errorf("status with a leaked lease names %d overdue operations, want 1: %q", n, m)
	}
	leaked.release()
	if err := <-acquired; err != nil {
		t.Fatal(err)
	}
	queued.release()
	recovered()

	// The reaper: a spawn that does not return holds every pid lookup,
	// and a child's exit sends the reaping loop into one.
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	spawning := make(chan struct{})
	go func() {
		_, _, _ = testReaper.Start(func() (*os.Process, error) {
			close(spawning)
			<-release
			return nil, os.ErrInvalid
		})
	}()
	<-spawning
	child, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	pid := child.Pid
	child.Release()
	// Reaped (its /proc entry gone): the reaping loop now waits for the spawn.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d never reaped", pid)
		}
	}
	wedged("reaper")
	unblock()
	recovered()
}

// unanswered asks every loop at once and names those that have not
// answered within the bound, after exactly the bound.
func TestUnansweredNamesTheLoopsThatDoNotAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck := make(chan struct{})
		checks := []liveness{
			{"fine", func(context.Context) error { return nil }},
			{"stuck", func(ctx context.Context) error {
				select {
				case <-stuck:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}},
			{"slow", func(ctx context.Context) error {
				select {
				case <-time.After(time.Second):
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}},
		}
		start := time.Now()
		names, errs := unanswered(context.Background(), 5*time.Second, checks)
		if !slices.Equal(names, []string{"stuck"}) || len(errs) != 1 || !errors.Is(errs[0], context.DeadlineExceeded) {
			t.Errorf("unanswered: %v %v", names, errs)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("gave up after %s, want the bound (5s)", d)
		}
		close(stuck)
		start = time.Now()
		if names, _ := unanswered(context.Background(), 5*time.Second, checks); len(names) != 0 {
			t.Errorf("all answer: %v", names)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("took %s, want the slowest check's 1s", d)
		}
	})
}

// READY=1 waits only for what is still moving: a process kept stopped by
// `ctl stop` (remembered across daemon restarts, not autostarted) and
// one-shot programs that exited with no respawn due (autorestart = false;
// autorestart = "unexpected" after an expected exit) are settled, and
// STATUS= counts each kind. Without that, systemd times the start out and
// restarts gosup for ever.
func TestReadyWithStoppedAndOneShotPrograms(t *testing.T) {
	sock, recv := listenNotify(t)
	file := writeConfig(t, `
[program.web]
command = "@HELPER@ sleep"
startsecs = 1
`+helperEnv+`

[program.kept]
command = "@HELPER@ sleep"
startsecs = 0
`+helperEnv+`

[program.migrate]
command = "/bin/true"
startsecs = 0
autorestart = "unexpected"

[program.report]
command = "/bin/false"
startsecs = 0
autorestart = false
`)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	// A first daemon, where the operator stops kept:kept.
	_, cl, stop := runDaemon(t, cfg, Options{})
	if _, err := cl.Action(context.Background(), "stop", api.ActionRequest{Patterns: []string{"kept"}}); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The next daemon keeps it stopped and must still say READY=1.
	cfg, err = config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	_, cl, _ = runDaemon(t, cfg, Options{NotifySocket: sock})
	var ready string
	for ready == "" {
		if m := recv(); strings.HasPrefix(m.text, "READY=1") {
			ready = m.text
		}
	}
	const want = "READY=1\nSTATUS=1 running, 0 fatal, 2 exited, 1 stopped by ctl stop"
	if ready != want {
		t.Errorf("ready message: %q, want %q", ready, want)
	}
	sts, err := cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if want := map[string]string{"web:web": "RUNNING", "kept:kept": "STOPPED", "migrate:migrate": "EXITED", "report:report": "EXITED"}[st.Name]; st.State != want {
			t.Errorf("%s is %s when READY=1 came, want %s", st.Name, st.State, want)
		}
	}
}

// failing names the loops a watchdog failure (a STATUS=, or ctl info's
// last failure) says did not answer.
func failing(what string) []string {
	what = strings.TrimPrefix(what, "STATUS=watchdog: ")
	what = strings.TrimSuffix(what, "; not pinging systemd")
	var names []string
	for part := range strings.SplitSeq(what, "; ") {
		name, _, _ := strings.Cut(part, " did not answer")
		name, _, _ = strings.Cut(name, ": ")
		names = append(names, name)
	}
	return names
}

// A lease is busy from its reservation on, less the time it waited for
// the operations before it: one queued behind a long operation is not
// overdue for that wait (the one it waits for answers for it), whatever
// number of its goroutines wait at once; a lease never released stays busy
// for ever; a released one is no longer listed.
func TestLeaseBusyLeavesOutWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ls := newLanes(make(chan struct{}))
		ctx := context.Background()
		first, err := ls.reserve(ctx, []procgroup.ProgramName{"x"})
		if err != nil {
			t.Fatal(err)
		}
		second, err := ls.reserve(ctx, []procgroup.ProgramName{"x", "y"})
		if err != nil {
			t.Fatal(err)
		}
		if err := second.acquire("y"); err != nil { // free: no wait
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 2 { // two of its goroutines wait for x, as parallel() does
			wg.Go(func() {
				if err := second.acquire("x"); err != nil {
					t.Error(err)
				}
			})
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		now := time.Now()
		if b := first.busy(now); b != 10*time.Minute {
			t.Errorf("the lease holding x: busy %s, want 10m0s", b)
		}
		if b := second.busy(now); b != 0 {
			t.Errorf("the lease waiting for x: busy %s, want 0s", b)
		}
		if got := ls.leases(); len(got) != 2 {
			t.Errorf("%d live leases, want 2", len(got))
		}
		first.release()
		wg.Wait()
		time.Sleep(time.Minute)
		if b := second.busy(time.Now()); b != time.Minute {
			t.Errorf("the lease once x is its turn: busy %s, want 1m0s", b)
		}
		if got := ls.leases(); len(got) != 1 || got[0] != second {
			t.Errorf("live leases after the first is released: %v", got)
		}
		if b := second.raiseBound(time.Hour); b != time.Hour {
			t.Errorf("bound %s", b)
		}
		if b := second.raiseBound(time.Minute); b != time.Hour {
			t.Errorf("a lower bound replaced the higher: %s", b)
		}
		second.release()
		if got := ls.leases(); len(got) != 0 {
			t.Errorf("live leases after all are released: %v", got)
		}
	})
}
