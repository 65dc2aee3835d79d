package procgroup

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
)

var allStates = []State{Stopped, Starting, Running, Backoff, Stopping, Exited, Fatal, Unknown}

// What each request does in each state, as supervisord does it (written out
// here independently of the table): "spawn", "stop", "cancel" (drop the
// pending respawn), "cancel-if" (that, or ErrNotRunning when none is
// pending), "signal", "set-spec", "none" (accepted, nothing to do), or the
// error that refuses it.
var wantRequests = map[State]map[op]any{
	Stopped:  {opStart: "spawn", opStop: ErrNotRunning, opStopPid: ErrPidChanged, opSignal: ErrNotRunning, opSetSpec: "set-spec"},
	Starting: {opStart: ErrAlreadyStarted, opStop: "stop", opStopPid: "stop", opSignal: "signal", opSetSpec: "set-spec"},
	Running:  {opStart: ErrAlreadyStarted, opStop: "stop", opStopPid: "stop", opSignal: "signal", opSetSpec: "set-spec"},
	Backoff:  {opStart: ErrAlreadyStarted, opStop: "cancel", opStopPid: ErrPidChanged, opSignal: ErrNotRunning, opSetSpec: "set-spec"},
	Stopping: {opStart: ErrStopping, opStop: "none", opStopPid: "none", opSignal: "signal", opSetSpec: "set-spec"},
	Exited:   {opStart: "spawn", opStop: "cancel-if", opStopPid: ErrPidChanged, opSignal: ErrNotRunning, opSetSpec: "set-spec"},
	Fatal:    {opStart: "spawn", opStop: ErrNotRunning, opStopPid: ErrPidChanged, opSignal: ErrNotRunning, opSetSpec: "set-spec"},
	Unknown:  {opStart: ErrUnknownState, opStop: ErrUnknownState, opStopPid: ErrUnknownState, opSignal: ErrUnknownState, opSetSpec: ErrUnknownState},
}

// The events each state expects; any other event there is a bug.
var wantEvents = map[State]map[op]action{
	Starting: {opStartSecs: actStartSecs, opReady: actReady, opSpawnFailed: actStartFailed, opExit: actStartFailed, opSwept: actLaunch},
	Running:  {opExit: actExited},
	Backoff:  {opRespawn: actSpawn, opSwept: actNone},
	Stopping: {opExit: actStopped, opKillTimer: actKill, opSwept: actStopped},
	Exited:   {opRespawn: actSpawn, opSwept: actNone},
	Fatal:    {opSwept: actNone},
}

// Every legal move from one state to another.
var wantMoves = map[State][]State{
	Stopped:  {Starting},
	Starting: {Running, Backoff, Fatal, Stopping},
	Running:  {Stopping, Exited},
	Backoff:  {Starting, Stopped, Stopping},
	Stopping: {Stopped},
	Exited:   {Starting, Stopped, Stopping},
	Fatal:    {Starting},
}

var actionNames = map[string]action{"spawn": actSpawn, "stop": actStop, "cancel": actCancel, "cancel-if": actCancelIf,
	"signal": actSignal, "set-spec": actSetSpec, "none": actNone}

// The states each action may lead to.
var wantTargets = map[action][]State{
	actSpawn: {Starting}, actStop: {Stopping}, actCancel: {Stopped, Stopping}, actCancelIf: {Stopped, Stopping},
	actStartSecs: {Running}, actReady: {Running}, actStartFailed: {Backoff, Fatal},
	actExited: {Exited}, actStopped: {Stopped},
}

func TestMachineEveryStateAndOperation(t *testing.T) {
	for _, s := range allStates {
		for o := range numOps {
			r := ruleOf(s, o)
			if o.isRequest() {
				want := wantRequests[s][o]
				switch w := want.(type) {
				case error:
					if r.do != actRefuse || r.err != w {
						t.Errorf("%s in %s: rule %+v; want refused with %v", o, s, r, w)
					}
				case string:
					if r.do != actionNames[w] {
						t.Errorf("%s in %s: rule %+v; want %s", o, s, r, w)
					}
					if (r.err != nil) != (r.do == actCancelIf) {
						t.Errorf("%s in %s: accepted with error %v", o, s, r.err)
					}
				default:
					t.Errorf("%s in %s: no expectation", o, s)
				}
			} else if want := wantEvents[s][o]; r.do != want {
				t.Errorf("%s in %s: action %d; want %d", o, s, r.do, want)
			}
			if !equalStates(r.to, wantTargets[r.do]) {
				t.Errorf("%s in %s: leads to %v; want %v", o, s, r.to, wantTargets[r.do])
			}
		}
	}
	if r := ruleOf(State(99), opStart); r.do != actIllegal {
		t.Errorf("a state outside the table has rule %+v", r)
	}
	if r := ruleOf(Stopped, numOps); r.do != actIllegal {
		t.Errorf("an operation outside the table has rule %+v", r)
	}
}

func TestMachineEveryTransition(t *testing.T) {
	for _, from := range allStates {
		for _, to := range allStates {
			want := false
			for _, s := range wantMoves[from] {
				want = want || s == to
			}
			if got := canMove(from, to); got != want {
				t.Errorf("%s → %s: allowed %v; want %v", from, to, got, want)
			}
		}
	}
	err := checkMove(Running, opStart, Starting)
	if !errors.Is(err, ErrIllegalMove) || err.Error() != "illegal state move: RUNNING to STARTING on start" {
		t.Errorf("RUNNING → STARTING on start: %v", err)
	}
}

func equalStates(a, b []State) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// illegalProcess is a process slot, not running, whose owner-goroutine
// state the test drives directly, logging into buf.
func illegalProcess(t *testing.T, buf *bytes.Buffer) (*Process, *loop) {
	t.Helper()
	procs, err := helperSpec("sleep").Expand("t", ExpandContext{Here: t.TempDir(), LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p := NewProcess(&procs[0], testReaper, slog.New(slog.NewTextHandler(buf, nil)))
	l := &loop{state: Stopped}
	t.Cleanup(func() { l.stopTimer(); p.out.close() })
	return p, l
}

// In production an illegal move is refused: the state stays, the caller
// gets ErrIllegalMove, the log says so at ERROR and the status counts it.
func TestIllegalMoveRefusedInProduction(t *testing.T) {
	var buf bytes.Buffer
	p, l := illegalProcess(t, &buf)
	if !p.strict {
		t.Fatal("a process under test is not strict")
	}
	p.strict = false // production

	if err := p.setState(l, opExit, Running, nil); !errors.Is(err, ErrIllegalMove) {
		t.Fatalf("STOPPED → RUNNING on exit: %v; want ErrIllegalMove", err)
	}
	if l.state != Stopped || p.Status().State != Stopped {
		t.Errorf("the move happened: loop %s, status %s", l.state, p.Status().State)
	}
	// An event the state does not expect (the kill timer of a stop while
	// STOPPED) is refused too, and does nothing.
	l.timerKind = timerKill
	p.onTimer(l)
	if l.state != Stopped {
		t.Errorf("state %s after a stray kill timer", l.state)
	}
	// So is an event sent as a request.
	if err := p.handle(l, request{op: opRespawn}); !errors.Is(err, ErrIllegalMove) {
		t.Errorf("an event sent as a request: %v; want ErrIllegalMove", err)
	}
	if l.state != Stopped {
		t.Errorf("state %s after an event sent as a request", l.state)
	}
	if n := p.Status().IllegalMoves; n != 3 {
		t.Errorf("IllegalMoves = %d; want 3", n)
	}
	log := buf.String()
	for _, want := range []string{"illegal state move: STOPPED to RUNNING on exit", "kill-timer in STOPPED", "respawn-timer is not a request"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if n := strings.Count(log, "level=ERROR"); n != 3 {
		t.Errorf("%d errors logged; want 3:\n%s", n, log)
	}
	// Legal moves still go through.
	if err := p.setState(l, opStart, Starting, nil); err != nil || l.state != Starting {
		t.Errorf("STOPPED → STARTING on start: %v, state %s", err, l.state)
	}
}

// Under test an illegal move panics, so the test that provoked it fails.
func TestIllegalMovePanicsUnderTest(t *testing.T) {
	var buf bytes.Buffer
	p, l := illegalProcess(t, &buf)
	defer func() {
		r := recover()
		if s, _ := r.(string); !strings.Contains(s, "illegal state move: STOPPED to RUNNING on exit") {
			t.Errorf("recovered %v; want the illegal move", r)
		}
		if l.state != Stopped {
			t.Errorf("the move happened: %s", l.state)
		}
	}()
	_ = p.setState(l, opExit, Running, nil)
	t.Error("an illegal move did not panic under test")
}

// An exit is a fact. If the table refuses it (here: an exit arriving in a
// state the table expects none, as a bug elsewhere would leave it), the
// exit is still recorded: no child is claimed, no pid is shown, and a
// later stop has nothing to signal.
func TestRefusedExitIsStillRecorded(t *testing.T) {
	var buf bytes.Buffer
	p, l := illegalProcess(t, &buf)
	p.strict = false // production
	if err := p.spawn(l, opStart); err != nil || l.proc == nil {
		t.Fatalf("spawn: %v, state %s", err, l.state)
	}
	pid := l.pid
	l.state = Fatal // the bug: a state with no exit rule, while a child runs
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	p.onExit(l, <-l.exitC)
	st := p.Status()
	if l.proc != nil || st.Pid != 0 {
		t.Errorf("after the refused exit the loop has a child %v, the status pid %d", l.proc != nil, st.Pid)
	}
	if l.state != Exited || st.State != Exited || st.Reason != ReasonRefusedExit {
		t.Errorf("state %s, status %s (%q); want EXITED, not restarted", l.state, st.State, st.Reason)
	}
	if st.ExitStatus == nil || *st.ExitStatus != 128+9 {
		t.Errorf("exit status not recorded: %+v", st)
	}
	if st.IllegalMoves != 1 || !strings.Contains(buf.String(), "level=ERROR") {
		t.Errorf("IllegalMoves = %d; want 1, logged at ERROR:\n%s", st.IllegalMoves, buf.String())
	}
	if l.timerKind != timerNone {
		t.Errorf("timer %d still armed", l.timerKind)
	}
}

// A state that claims a child the loop does not have (what a refused exit
// used to leave) must not crash the owner goroutine on a stop, nor signal
// the group of the pid the status last showed: that pid may lead an
// unrelated process's group by now.
func TestStopWithoutChildSignalsNothing(t *testing.T) {
	for _, asGroup := range []bool{false, true} {
		t.Run(fmt.Sprintf("stopasgroup=%v", asGroup), func(t *testing.T) {
			var buf bytes.Buffer
			p, l := illegalProcess(t, &buf)
			p.strict = false // production
			p.spec.Program.StopAsGroup = asGroup
			// The unrelated process, leading its own group, that now has
			// the old pid.
			other, exitC, err := testReaper.Start(func() (*os.Process, error) {
				return os.StartProcess(os.Args[0], []string{os.Args[0], "sleep"}, &os.ProcAttr{
					Env: append(os.Environ(), "GO_WANT_HELPER_PROCESS=1"),
					Sys: &syscall.SysProcAttr{Setpgid: true},
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			defer other.Release()
			l.state = Running
			p.update(func(s *Status) { s.State, s.Pid = Running, other.Pid })
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("stop without a child panicked: %v", r)
					}
				}()
				_ = p.handle(l, request{op: opStop})
			}()
			if st := p.Status(); l.state != Stopped || st.State != Stopped || st.Pid != 0 {
				t.Errorf("after the stop: loop %s, status %s pid %d; want STOPPED, no pid", l.state, st.State, st.Pid)
			}
			if n := p.Status().IllegalMoves; n != 1 {
				t.Errorf("IllegalMoves = %d; want 1", n)
			}
			// A fatal signal sent to the group is recorded at once as the
			// cause of death, so the SIGKILL sent now is what ends it only
			// if the stop sent nothing.
			if err := syscallKill(other.Pid); err != nil {
				t.Fatal(err)
			}
			if ex := <-exitC; !ex.Status.Signaled() || ex.Status.Signal() != syscall.SIGKILL {
				t.Errorf("the unrelated process ended with %s; the stop signalled it", ex)
			}
		})
	}
}
