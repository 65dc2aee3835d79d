package procgroup

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
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
	Starting: {opStartSecs: actStartSecs, opReady: actReady, opSpawnFailed: actStartFailed, opExit: actStartFailed},
	Running:  {opExit: actExited},
	Backoff:  {opRespawn: actSpawn},
	Stopping: {opExit: actStopped, opKillTimer: actKill},
	Exited:   {opRespawn: actSpawn},
}

// Every legal move from one state to another.
var wantMoves = map[State][]State{
	Stopped:  {Starting},
	Starting: {Running, Backoff, Fatal, Stopping},
	Running:  {Stopping, Exited},
	Backoff:  {Starting, Stopped},
	Stopping: {Stopped},
	Exited:   {Starting, Stopped},
	Fatal:    {Starting},
}

var actionNames = map[string]action{"spawn": actSpawn, "stop": actStop, "cancel": actCancel, "cancel-if": actCancelIf,
	"signal": actSignal, "set-spec": actSetSpec, "none": actNone}

// The states each action may lead to.
var wantTargets = map[action][]State{
	actSpawn: {Starting}, actStop: {Stopping}, actCancel: {Stopped}, actCancelIf: {Stopped},
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
	l := &loop{state: Stopped, timer: time.NewTimer(time.Hour)}
	l.disarm()
	t.Cleanup(func() { l.timer.Stop(); p.out.close() })
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
