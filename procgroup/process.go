package procgroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/forkexec"
	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/proctree"
	"github.com/gosup/gosup/procgroup/reaper"
	"golang.org/x/sys/unix"
)

// Errors a request can return.
var (
	ErrAlreadyStarted = errors.New("already started")
	ErrNotRunning     = errors.New("not running")
	ErrStopping       = errors.New("process is stopping")
	ErrClosed         = errors.New("process is shut down")
	ErrPidChanged     = errors.New("process no longer runs as that pid")
)

// Status is a snapshot of one process, safe to read from any goroutine.
type Status struct {
	Program ProgramName
	Group   GroupName
	Name    string
	State   State
	Pid     int
	// PidStart is the child's start time (field 22 of /proc/PID/stat,
	// clock ticks since boot), read when it was spawned or adopted: with
	// Pid, it names the child for good. 0 if it could not be read (the
	// child was gone already).
	PidStart   uint64
	Port       int
	StartedAt  time.Time
	StoppedAt  time.Time
	Spawns     int
	Restarts   int
	ExitStatus *int
	ExitDesc   string
	SpawnError string
	Reason     string
	Stdout     string
	Stderr     string
	// LogDropped is how many bytes of output were lost: a log sink that
	// failed (disk full), or a log copier that panicked; StdoutDropped
	// and StderrDropped split it by stream (stderr redirected to stdout
	// counts as stdout).
	LogDropped, StdoutDropped, StderrDropped int64
	// LogFailing lists the logs that refuse output now.
	LogFailing []LogFailure
	// IllegalMoves counts operations and state changes the state machine
	// refused: each is a bug in gosup, logged at ERROR.
	IllegalMoves int
	// RespawnAt is when a process EXITED (or in BACKOFF) spawns again;
	// zero when no respawn is pending.
	RespawnAt time.Time
	// Exits counts the children's exits by why they ended (ExitReason);
	// it goes on across a reload and an upgrade.
	Exits ExitCounts
}

// ExitReason is why a child ended, as Status.Exits counts it.
type ExitReason uint8

// Exit reasons.
const (
	// ExitExpected: it exited on its own with a code in exitcodes.
	ExitExpected ExitReason = iota
	// ExitUnexpected: it exited on its own with another code, or gosup
	// killed it because it did not become ready (a failed start).
	ExitUnexpected
	// ExitKilled: a signal gosup did not send for a stop ended it (a
	// crash, the kernel's OOM killer, kill -9 by someone, ctl signal).
	ExitKilled
	// ExitStopped: it ended while gosup stopped it (ctl stop or restart,
	// a reload, shutdown), however it ended.
	ExitStopped
	// ExitStopPid: it ended while stopped through StopPid (memmon's
	// restart, the only caller).
	ExitStopPid
	NumExitReasons
)

var exitReasonNames = [NumExitReasons]string{"expected", "unexpected", "killed", "stopped", "stop_pid"}

func (r ExitReason) String() string {
	if r < NumExitReasons {
		return exitReasonNames[r]
	}
	return fmt.Sprintf("ExitReason(%d)", r)
}

// ExitCounts counts exits by ExitReason.
type ExitCounts [NumExitReasons]int64

// exitReason classifies an exit with status ex of a process in state
// (before the exit), stopped by StopPid when byPid, killed by gosup as
// not ready when notReady, with exit codes exitCodes.
func exitReason(state State, byPid, notReady bool, ex reaper.Exit, exitCodes []int) ExitReason {
	switch {
	case state == Stopping && byPid:
		return ExitStopPid
	case state == Stopping:
		return ExitStopped
	case notReady:
		return ExitUnexpected
	case ex.Status.Signaled():
		return ExitKilled
	case slices.Contains(exitCodes, ex.Code()):
		return ExitExpected
	}
	return ExitUnexpected
}

// FullName is group:process.
func (s *Status) FullName() string { return string(s.Group) + ":" + s.Name }

// setSpec copies what the status shows of a spec.
func (s *Status) setSpec(spec *ProcSpec) {
	s.Port = spec.Port
	s.Stdout, s.Stderr = "", ""
	if spec.Stdout.Kind == LogFile {
		s.Stdout = spec.Stdout.Path
	}
	if spec.Stderr.Kind == LogFile {
		s.Stderr = spec.Stderr.Path
	}
}

// request is what the owner goroutine receives on reqs: an operation
// (kind reqOp, answered on reply), or a freeze, a panic or the owner's end.
// One channel for them all: each channel and each case of the idle
// process's select costs it memory.
type request struct {
	kind  reqKind
	op    op
	sig   unix.Signal
	pid   int
	spec  *ProcSpec
	reply chan error
	// freeze is a reqFreeze's (Freeze), panic a reqPanic's value (Panic).
	freeze *freezeReq
	panic  any
}

// reqKind says what a request asks.
type reqKind uint8

const (
	reqOp     reqKind = iota // an operation (op)
	reqFreeze                // Freeze
	reqPanic                 // Panic
	reqEnd                   // end the owner goroutine (Pool.Remove)
)

type timerKind uint8

const (
	timerNone      timerKind = iota
	timerStartSecs           // STARTING → RUNNING
	timerRespawn             // BACKOFF/EXITED → STARTING
	timerKill                // STOPPING → SIGKILL
)

// Process is one supervised child slot. A single goroutine (run) owns its
// lifecycle; every other goroutine talks to it through requests and reads
// Status snapshots.
type Process struct {
	spec   *ProcSpec
	policy Policy
	rp     *reaper.Reaper
	log    procLog
	reqs   chan *request
	done   chan struct{}
	out    *outputs
	// OnSpawn and OnExit, when set before Run, are told about every spawn
	// and exit (from the owner goroutine; they must not block). start is
	// the child's start time (Status.PidStart), 0 if it is not known.
	OnSpawn func(p *Process, pid int, start uint64, at time.Time)
	OnExit  func(p *Process, pid int)
	// OnState, when set before Run, is told about every state change.
	OnState func(p *Process, to State)
	// OnPanic, when set before Run, is called (on the owner goroutine)
	// when the owner goroutine panics, with the panic's value and stack
	// and the process described for a handover from what is left: the
	// daemon re-executes itself to recover (it does not return then). If
	// it returns, or is not set, the panic goes on and ends the daemon.
	OnPanic func(p *Process, v any, stack []byte, f *Frozen)
	// DaemonEnv, when set before Run, is added to every child's
	// environment (the daemon's instance marker).
	DaemonEnv []string
	// Spawns, when set before Run, is the daemon's set of live spawns,
	// shared by all its processes: an orphan holding a port is reclaimed
	// only if it belongs to none of them (nil: never reclaimed).
	Spawns *Spawns
	// Guard, when set before Run, starts the log copiers and the
	// readiness probes and counts their panics (nil: recovered, logged,
	// not counted).
	Guard *guard.Guard
	// Stdio, when set before Run, is the daemon's /dev/null and log pipe
	// poller, shared by all its processes (nil: the process makes its own).
	Stdio *Stdio

	logDrops logDrops
	// strict makes an illegal state move panic instead of being refused
	// and counted: on under test, so a test that provokes one fails.
	strict bool
	// probeHook, when set before Run (by tests), runs first in every
	// readiness probe.
	probeHook func()

	// adopt, set by Adopt before Run, is a process handed over by the
	// previous image.
	adopt *adoption
	// panicking is closed when the owner goroutine has panicked: a
	// Freeze fails at once instead of waiting for it.
	panicking chan struct{}

	mu     sync.Mutex
	status Status
	// changed is closed at the next status change; made when asked for
	// (Changed, Wait): an idle process nobody waits on holds none.
	changed chan struct{}
}

// NewProcess makes the slot for spec in state STOPPED. Call Run to start its owner goroutine.
func NewProcess(spec *ProcSpec, rp *reaper.Reaper, log *slog.Logger) *Process {
	p := &Process{
		spec:      spec,
		policy:    PolicyOf(spec.Program),
		rp:        rp,
		log:       newProcLog(log, spec),
		reqs:      make(chan *request),
		done:      make(chan struct{}),
		panicking: make(chan struct{}),
		strict:    testing.Testing(),
	}
	p.out = newOutputs(spec, &p.logDrops, &p.log)
	p.status = Status{Program: spec.ProgramName, Group: spec.Group, Name: spec.Name, State: Stopped}
	p.status.setSpec(spec)
	return p
}

// guard is p.Guard, naming the process in what it logs.
func (p *Process) guard() *guard.Guard {
	return p.Guard.With("process", p.spec.FullName())
}

// Spec is the process's expanded spec (the one its next spawn uses).
func (p *Process) Spec() *ProcSpec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec
}

// Status returns a snapshot.
func (p *Process) Status() Status {
	p.mu.Lock()
	st, out := p.status, p.out
	p.mu.Unlock()
	// A write's lost bytes reach its failing episode (in the sink) before
	// the stream's total (in the copier, once the write returned): the
	// episodes first, and a total never shown below its episode's.
	st.LogFailing = out.failures()
	st.StdoutDropped, st.StderrDropped = p.logDrops.stdout.Load(), p.logDrops.stderr.Load()
	for _, f := range st.LogFailing {
		switch f.Stream {
		case "stdout":
			st.StdoutDropped = max(st.StdoutDropped, f.Dropped)
		case "stderr":
			st.StderrDropped = max(st.StderrDropped, f.Dropped)
		}
	}
	st.LogDropped = st.StdoutDropped + st.StderrDropped
	return st
}

// Pid is the running child's pid and start time (Status.Pid and
// PidStart), 0 without one: what a periodic reader of every child needs,
// without the copy of the whole Status.
func (p *Process) Pid() (pid int, start uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status.Pid, p.status.PidStart
}

// ReopenLogs closes the process's log files and opens them again at their
// paths (after an external rotation renamed them). It returns the paths
// reopened, and an error naming each that failed (the next write tries it
// again). A log the process has not written yet, a device, syslog or none
// has nothing to reopen. It may be called from any goroutine.
func (p *Process) ReopenLogs() ([]string, error) {
	p.mu.Lock()
	out := p.out
	p.mu.Unlock()
	paths, errs := out.reopen()
	return paths, errors.Join(errs...)
}

// Changed returns a channel closed at the next status change.
func (p *Process) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changedLocked()
}

// changedLocked is Changed with p.mu held.
func (p *Process) changedLocked() chan struct{} {
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.changed
}

// Wait blocks until done(status) is true or ctx ends.
func (p *Process) Wait(ctx context.Context, done func(Status) bool) (Status, error) {
	for {
		p.mu.Lock()
		st, ch := p.status, p.changedLocked()
		p.mu.Unlock()
		if done(st) {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, ctx.Err()
		case <-p.done:
			return p.Status(), ErrClosed
		}
	}
}

func (p *Process) update(f func(*Status)) {
	p.mu.Lock()
	f(&p.status)
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
	p.mu.Unlock()
}

func (p *Process) send(r request) error {
	r.reply = make(chan error, 1)
	select {
	case p.reqs <- &r:
		return <-r.reply
	case <-p.done:
		return ErrClosed
	}
}

// Start asks the process to start. It returns at once; use Wait for the outcome.
func (p *Process) Start() error { return p.send(request{op: opStart}) }

// Stop asks the process to stop gracefully. It returns at once; use Wait.
func (p *Process) Stop() error { return p.send(request{op: opStop}) }

// StopPid is Stop, but only while the process still runs as pid: a
// watchdog that sampled pid never stops its successor.
func (p *Process) StopPid(pid int) error { return p.send(request{op: opStopPid, pid: pid}) }

// Signal sends sig to the running process.
func (p *Process) Signal(sig unix.Signal) error { return p.send(request{op: opSignal, sig: sig}) }

// SetSpec replaces the process's spec. The lifecycle settings (restart
// policy, stop signal and wait, log limits, readiness) apply at once; what
// the spawn uses (command, environment, ports, log files, ...) applies from
// the next spawn, so a caller changing those stops the process first.
func (p *Process) SetSpec(spec *ProcSpec) error {
	if spec.FullName() != p.Spec().FullName() {
		return fmt.Errorf("spec of %s given to %s", spec.FullName(), p.Spec().FullName())
	}
	return p.send(request{op: opSetSpec, spec: spec})
}

// endOwner ends the owner goroutine, as its context's end would, and waits
// for it.
func (p *Process) endOwner() {
	select {
	case p.reqs <- &request{kind: reqEnd}:
	case <-p.done:
	}
	<-p.done
}

// Done is closed when Run has returned.
func (p *Process) Done() <-chan struct{} { return p.done }

// loop is the owner goroutine's private state.
type loop struct {
	state     State
	proc      *os.Process
	pid       int
	exitC     <-chan reaper.Exit
	spawnedAt time.Time
	backoff   int
	crashes   int // unexpected exits in a row, for the restart backoff
	timer     *time.Timer
	timerKind timerKind
	// Readiness of the current spawn: the probe's result arrives on
	// readyC; startWaited says startsecs has passed.
	readyC      chan error
	probeCancel context.CancelFunc
	ready       bool
	startWaited bool
	notReady    string // why the current spawn was killed while STARTING
	// marker is the current (or last) spawn's GOSUP_SPAWN entry.
	marker string
	// groupStopped says the stop signal went to the child's whole group;
	// stopDeadline is when a requested stop SIGKILLs.
	groupStopped bool
	stopDeadline time.Time
	// stopByPid says the stop under way came through StopPid.
	stopByPid bool
	// Leftovers of the last child (or the own orphan holding the port)
	// are being stopped while sweepC is set; its result arrives there.
	// No child is spawned meanwhile: a spawn waits in STARTING with
	// launchPending, and a stop waits in STOPPING.
	sweepC        chan sweepResult
	sweepCancel   context.CancelFunc
	launchPending bool
	// reclaimed says this start already stopped an own orphan that held
	// the port: the port is not reclaimed twice in a row.
	reclaimed bool
	// ev is where waitIdle receives an event.
	ev event
}

// arm sets the timer to fire kind after d. The timer exists only while
// armed: an idle process holds none.
func (l *loop) arm(kind timerKind, d time.Duration) {
	if l.timer == nil {
		l.timer = time.NewTimer(d)
	} else {
		l.timer.Reset(d)
	}
	l.timerKind = kind
}

func (l *loop) disarm() {
	l.stopTimer()
	l.timerKind = timerNone
}

// stopTimer drops the timer, leaving timerKind as it is.
func (l *loop) stopTimer() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
}

// timerC is the timer's channel, nil (never ready) while none is armed.
func (l *loop) timerC() <-chan time.Time {
	if l.timer == nil {
		return nil
	}
	return l.timer.C
}

// Run owns the process until ctx ends. The caller must stop the process (and
// wait for STOPPED) before cancelling ctx; a child still running then is
// killed with its group.
func (p *Process) Run(ctx context.Context) {
	p.start(ctx, nil)
	<-p.done
}

// start starts the owner goroutine, which owns the process until ctx ends,
// and returns; ended, if not nil, is called once the owner has closed
// Done. A Pool starts its processes so, holding no goroutine for each.
//
// The owner is one goroutine at a time: each takes one event (a request,
// an exit, a timer, ...), handles it, and hands the process over to a new
// goroutine (the go statement orders what it did before what the next
// does), which waits for the next event. An event's handling (a spawn, an
// exit's look for leftovers, logging) grows a goroutine's stack to 4-8 kB,
// and the runtime shrinks a stack only while a quarter of it is free, never
// again below 4 kB once grown; a goroutine that only waits fits in 2 kB. An
// idle process holds one goroutine with the smallest stack: 2 kB, not 4-8.
func (p *Process) start(ctx context.Context, ended func()) {
	l := &loop{state: Stopped}
	if p.adopt != nil {
		go p.own(ctx, l, ended, &event{kind: evAdopt})
		return
	}
	p.waiter(ctx, l, ended)
}

// eventKind says what an event is.
type eventKind uint8

const (
	evEnd eventKind = iota // ctx ended
	evAdopt
	evRequest
	evExit
	evTimer
	evReady
	evSwept
)

// event is what wait received, for own to handle.
type event struct {
	kind  eventKind
	req   *request
	exit  reaper.Exit
	ready error
	swept sweepResult
}

// wait is the owner goroutine between two events: it waits for the next
// and has own handle it. While the process is idle (no timer, readiness
// check or sweep) waitIdle waits instead: its frame and the select's are
// all the goroutine holds, and they fit the smallest stack, 2 kB. Keep its
// frame small (pointers, few cases): the runtime grows a stack that would
// not fit to 4 kB, and never shrinks it back.
func (p *Process) wait(ctx context.Context, l *loop, ended func()) {
	var ev event
	select {
	case <-ctx.Done():
	case ev.req = <-p.reqs:
		ev.kind = evRequest
	case ev.exit = <-l.exitC:
		ev.kind = evExit
	case <-l.timerC():
		ev.kind = evTimer
	case ev.ready = <-l.readyC:
		ev.kind = evReady
	case ev.swept = <-l.sweepC:
		ev.kind = evSwept
	}
	p.own(ctx, l, ended, &ev)
}

// waitIdle is wait with no timer, readiness check or sweep under way.
func (p *Process) waitIdle(ctx context.Context, l *loop, ended func()) {
	// Received into l.ev, on the heap: an event literal here would sit in
	// this frame.
	ev := &l.ev
	*ev = event{}
	select {
	case <-ctx.Done():
	case r := <-p.reqs:
		ev.kind, ev.req = evRequest, r
	case ex := <-l.exitC:
		ev.kind, ev.exit = evExit, ex
	}
	p.own(ctx, l, ended, ev)
}

// own handles ev as the owner goroutine of the moment (see start), then
// hands the process over to a new goroutine that waits for the next event;
// or, once ctx has ended, ends the process.
func (p *Process) own(ctx context.Context, l *loop, ended func(), ev *event) {
	handedOver := false
	defer func() {
		if handedOver {
			return
		}
		p.end(l)
		close(p.done)
		if ended != nil {
			ended()
		}
	}()
	defer p.recoverCore(l)
	switch ev.kind {
	case evEnd:
		return
	case evAdopt:
		p.adopted(l, p.adopt)
		p.adopt = nil
	case evRequest:
		r := ev.req
		if r.kind == reqFreeze {
			// A panic or an end asked for while frozen comes after.
			if r = p.freeze(l, *r.freeze); r == nil {
				break
			}
		}
		switch r.kind {
		case reqOp:
			r.reply <- p.handle(l, *r)
		case reqPanic:
			panic(r.panic)
		case reqEnd:
			return
		}
	case evExit:
		p.onExit(l, ev.exit)
	case evTimer:
		l.timer = nil // fired: a new arm makes a new one
		p.onTimer(l)
	case evReady:
		p.onReady(l, ev.ready)
	case evSwept:
		p.onSwept(l, ev.swept)
	}
	handedOver = true
	p.waiter(ctx, l, ended)
}

// waiter starts the goroutine that waits for the process's next event.
func (p *Process) waiter(ctx context.Context, l *loop, ended func()) {
	if l.timer == nil && l.readyC == nil && l.sweepC == nil {
		go p.waitIdle(ctx, l, ended)
	} else {
		go p.wait(ctx, l, ended)
	}
}

// end stops what the process still runs once its owner ends: the child
// (killed with its group), a sweep, the log copiers.
func (p *Process) end(l *loop) {
	l.stopTimer()
	p.stopProbe(l)
	if l.proc != nil {
		pid := l.pid
		p.killGroup(l, unix.SIGKILL)
		ex := <-l.exitC
		l.proc.Release()
		p.Spawns.remove(l.marker)
		if found := findLeftovers(p.rp.ChildrenAfter(ex.Seq), pid, l.marker, p.rp.Subscribed); len(found) > 0 {
			p.startSweep(l, "leftover processes of the killed child", found, p.leftoversOf(pid, l.marker), 0, 0, 0)
		}
	}
	if l.sweepC != nil {
		l.sweepCancel() // SIGKILL whatever is left, at once
		p.sweepDone(<-l.sweepC)
	}
	p.out.close()
}

// setState moves the process to state to as part of operation o, after
// checking that the state machine allows it; a move it does not allow is
// refused (see illegal).
func (p *Process) setState(l *loop, o op, to State, f func(*Status)) error {
	if err := checkMove(l.state, o, to); err != nil {
		return p.illegal(err)
	}
	if l.state != to {
		p.log.Debug("state", "from", l.state, "to", to, "op", o)
	}
	p.enter(l, to, f)
	return nil
}

// force moves the process to state to without consulting the table. It is
// only for a fact the table failed to expect (a child that exited, a stop
// that finds no child), after illegal has reported the refusal: the loop
// must never claim a child it does not have, nor a status a pid it no
// longer owns.
func (p *Process) force(l *loop, o op, to State, f func(*Status)) {
	p.log.Warn("recorded what happened despite the refused move", "from", l.state, "to", to, "op", o)
	l.disarm()
	p.enter(l, to, f)
}

// enter sets the state, in the loop and in the status, and tells OnState.
func (p *Process) enter(l *loop, to State, f func(*Status)) {
	l.state = to
	p.update(func(s *Status) {
		s.State = to
		s.RespawnAt = time.Time{} // f sets it when a respawn is pending
		if f != nil {
			f(s)
		}
	})
	if p.OnState != nil {
		p.OnState(p, to)
	}
}

// illegal reports an operation or a state change the state machine does not
// allow, which is a bug: under test it panics, so that the test provoking it
// fails; otherwise nothing changes, and it is logged at ERROR, counted in
// Status.IllegalMoves and returned.
func (p *Process) illegal(err error) error {
	if p.strict {
		panic(fmt.Sprintf("%s: %v", p.spec.FullName(), err))
	}
	p.log.Error("refused an illegal state move; this is a bug in gosup", "err", err)
	p.update(func(s *Status) { s.IllegalMoves++ })
	return err
}

// event looks up the rule of an event in the current state; an event the
// table does not expect there is reported as illegal and yields actIllegal.
func (p *Process) event(l *loop, o op) rule {
	r := ruleOf(l.state, o)
	if r.do == actIllegal {
		_ = p.illegal(fmt.Errorf("%w: %s in %s", ErrIllegalMove, o, l.state))
	}
	return r
}

func (p *Process) handle(l *loop, r request) error {
	if r.op == opStopPid && (l.pid != r.pid || l.proc == nil) {
		return ErrPidChanged
	}
	if !r.op.isRequest() {
		return p.illegal(fmt.Errorf("%w: %s is not a request", ErrIllegalMove, r.op))
	}
	ru := ruleOf(l.state, r.op)
	switch ru.do {
	case actRefuse:
		return ru.err
	case actNone:
		return nil
	case actSpawn:
		l.disarm()
		l.backoff, l.crashes = 0, 0
		return p.spawn(l, r.op)
	case actStop:
		return p.beginStop(l, r.op)
	case actCancelIf:
		if l.timerKind != timerRespawn {
			return ru.err
		}
		fallthrough
	case actCancel:
		l.disarm()
		if l.sweepC != nil {
			// STOPPED once the last child's leftovers are gone.
			return p.setState(l, r.op, Stopping, func(s *Status) { s.Reason = ReasonSweeping })
		}
		return p.setState(l, r.op, Stopped, func(s *Status) { s.Reason = "stopped by request" })
	case actSignal:
		if l.proc == nil && (l.launchPending || l.sweepC != nil) {
			// No child: a launch waits for the last child's leftovers,
			// or a stop for them to go.
			return ErrNotRunning
		}
		if l.proc == nil {
			return p.illegal(fmt.Errorf("%w: %s in %s without a child", ErrIllegalMove, r.op, l.state))
		}
		if err := l.proc.Signal(r.sig); err != nil {
			return fmt.Errorf("signal %s: %w", unix.SignalName(r.sig), err)
		}
		return nil
	case actSetSpec:
		p.setSpec(l, r.spec)
		return nil
	}
	return p.illegal(fmt.Errorf("%w: %s in %s (rule %d)", ErrIllegalMove, r.op, l.state, ru.do))
}

// beginStop moves to STOPPING and sends the stop signal. A state that
// claims a child the loop does not have is a bug: it is reported, and as
// nothing runs the process is STOPPED at once; nothing is signalled.
func (p *Process) beginStop(l *loop, o op) error {
	if l.proc == nil && l.launchPending {
		// Nothing spawned yet: the launch is dropped, and the process is
		// STOPPED once the leftovers it waited for are gone.
		l.launchPending = false
		l.disarm()
		return p.setState(l, o, Stopping, func(s *Status) { s.Reason = ReasonSweeping })
	}
	if l.proc == nil {
		_ = p.illegal(fmt.Errorf("%w: %s in %s without a child", ErrIllegalMove, o, l.state))
		p.force(l, o, Stopped, func(s *Status) { s.Pid = 0; s.Reason = "stopped by request (no child was running)" })
		return nil
	}
	if err := p.setState(l, o, Stopping, nil); err != nil {
		return err
	}
	sp := p.spec.Program
	l.disarm()
	sig := unix.Signal(sp.StopSignal)
	l.groupStopped = sp.StopAsGroup
	l.stopByPid = o == opStopPid
	l.stopDeadline = time.Now().Add(time.Duration(sp.StopWaitSecs) * time.Second)
	if sp.StopAsGroup {
		p.killGroup(l, sig)
	} else if err := l.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.log.Warn("stop signal failed", "signal", sig, "err", err)
	}
	p.stopProbe(l)
	l.arm(timerKill, time.Duration(sp.StopWaitSecs)*time.Second)
	return nil
}

// killGroup signals the process group led by the current child. The child
// leads its group (Setpgid) and is not yet reaped while l.proc is set, so the
// group id cannot have been recycled. Without a child it does nothing: the
// pid the status last showed may lead someone else's group by now.
func (p *Process) killGroup(l *loop, sig unix.Signal) {
	pid := l.pid
	if l.proc == nil || pid <= 0 {
		return
	}
	if err := unix.Kill(-pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		p.log.Warn("signal process group failed", "signal", sig, "pgid", pid, "err", err)
	}
}

func (p *Process) onTimer(l *loop) {
	kind := l.timerKind
	l.timerKind = timerNone
	switch kind {
	case timerStartSecs:
		if p.event(l, opStartSecs).do == actStartSecs {
			l.startWaited = true
			p.maybeRunning(l, opStartSecs)
		}
	case timerRespawn:
		if p.event(l, opRespawn).do == actSpawn {
			_ = p.spawn(l, opRespawn)
		}
	case timerKill:
		if p.event(l, opKillTimer).do == actKill && l.proc != nil {
			p.log.Warn("did not stop in time, sending SIGKILL", "stopwaitsecs", p.spec.Program.StopWaitSecs)
			if p.spec.Program.KillAsGroup {
				p.killGroup(l, unix.SIGKILL)
			} else {
				_ = l.proc.Signal(unix.SIGKILL)
			}
		}
	}
}

func (p *Process) onExit(l *loop, ex reaper.Exit) {
	uptime := ex.ExitedAt.Sub(l.spawnedAt)
	pid := l.pid
	l.proc.Release()
	l.proc, l.exitC, l.pid = nil, nil, 0
	p.Spawns.remove(l.marker)
	p.stopProbe(l)
	notReady := l.notReady
	l.notReady = ""
	code := ex.Code()
	why := exitReason(l.state, l.stopByPid, notReady != "", ex, p.policy.ExitCodes)
	if p.OnExit != nil {
		p.OnExit(p, pid)
	}
	setExit := func(s *Status) {
		s.Exits[why]++
		s.Pid = 0
		s.StoppedAt = ex.ExitedAt
		s.ExitStatus = &code
		s.ExitDesc = ex.String()
	}
	p.log.Info("exited", "pid", pid, "status", ex.String(), "uptime", uptime.Round(time.Millisecond), "state", l.state)
	// What the child started and left running is stopped before the
	// process is STOPPED or spawned again.
	// A requested stop keeps its deadline: the leftovers are SIGKILLed
	// when the child would have been, so a stop takes no longer than
	// stopwaitsecs (and the SIGKILL) as before.
	if found := findLeftovers(p.rp.ChildrenAfter(ex.Seq), pid, l.marker, p.rp.Subscribed); len(found) > 0 {
		skip, kill, wait := 0, 0, time.Duration(p.spec.Program.StopWaitSecs)*time.Second
		if l.state == Stopping {
			wait = max(0, time.Until(l.stopDeadline))
			if l.groupStopped {
				skip = pid // they have had the stop signal with the child
			}
			if p.spec.Program.KillAsGroup {
				// killasgroup: the leader is gone, and what it left in
				// its group goes with it, SIGKILLed through pidfds (the
				// group id may be free by now, even reused).
				kill = pid
			}
		}
		p.startSweep(l, fmt.Sprintf("leftover processes of pid %d", pid), found, p.leftoversOf(pid, l.marker), skip, kill, wait)
	}
	l.groupStopped, l.stopDeadline, l.stopByPid = false, time.Time{}, false
	// An exit is a fact: if the table refuses it (a bug, already reported
	// by event or setState), the exit is still recorded, and the process
	// is left STOPPED or EXITED, not restarted, rather than in a state that
	// claims a child.
	var err error
	switch p.event(l, opExit).do {
	case actStopped:
		l.disarm()
		if l.sweepC != nil {
			// Still STOPPING, until the leftovers are gone.
			p.update(func(s *Status) { setExit(s); s.Reason = ReasonSweeping })
			break
		}
		err = p.setState(l, opExit, Stopped, func(s *Status) { setExit(s); s.Reason = "stopped" })
	case actStartFailed:
		l.disarm()
		d := p.policy.OnStartFailure(l.backoff, uptime, false)
		if notReady != "" {
			d.Reason = notReady
		}
		err = p.applyFailure(l, opExit, d, setExit)
	case actExited:
		d := p.policy.OnExit(code, ex.Status.Signaled(), uptime, l.crashes, rand.Float64()*2-1)
		l.crashes = d.Crashes
		if d.Respawn && d.Delay > 0 {
			p.log.Info("respawn delayed", "reason", d.Reason, "delay", d.Delay.Round(time.Millisecond))
		}
		err = p.setState(l, opExit, Exited, func(s *Status) {
			setExit(s)
			s.Reason = d.Reason
			if d.Respawn {
				// Also when it is at once: nobody reading this status
				// takes the process for one that stays EXITED.
				s.RespawnAt = time.Now().Add(d.Delay)
			}
		})
		if err == nil && d.Respawn {
			if d.Delay <= 0 {
				_ = p.spawn(l, opRespawn)
			} else {
				l.arm(timerRespawn, d.Delay)
			}
		}
	default:
		err = ErrIllegalMove
	}
	if err != nil {
		to := Exited
		if l.state == Stopping || l.state == Stopped {
			to = Stopped
		}
		p.force(l, opExit, to, func(s *Status) { setExit(s); s.Reason = ReasonRefusedExit })
	}
}

// ReasonRefusedExit is the reason shown after an exit the state machine
// refused (a bug in gosup, counted in Status.IllegalMoves).
const ReasonRefusedExit = "exited, not restarted: the state machine refused the exit (a bug in gosup)"

func (p *Process) applyFailure(l *loop, o op, d Decision, f func(*Status)) error {
	if err := p.setState(l, o, d.Next, func(s *Status) {
		if f != nil {
			f(s)
		}
		s.Reason = d.Reason
		if d.Respawn {
			s.RespawnAt = time.Now().Add(d.Delay)
		}
	}); err != nil {
		return err
	}
	l.backoff = d.Backoff
	if d.Respawn {
		l.arm(timerRespawn, d.Delay)
	}
	if d.Next == Fatal {
		p.log.Error("gave up", "reason", d.Reason, "attempts", d.Backoff)
	}
	return nil
}

// spawn moves to STARTING as part of o and starts the child; a failed spawn
// goes through the start-failure policy at once. While the last child's
// leftovers are being stopped, the child starts once they are gone.
func (p *Process) spawn(l *loop, o op) error {
	if err := p.setState(l, o, Starting, nil); err != nil {
		return err
	}
	l.reclaimed = false
	if l.sweepC != nil {
		l.launchPending = true
		p.update(func(s *Status) { s.Reason = ReasonSweepFirst })
		return nil
	}
	p.startChild(l)
	return nil
}

// startChild starts the child of a process in STARTING.
func (p *Process) startChild(l *loop) {
	marker := newSpawnMarker(p.spec.FullName())
	// Live from before the child can fork, so nothing it starts is ever
	// taken for the leftover of an ended spawn.
	p.Spawns.add(marker)
	proc, exitC, pidStart, err := p.launch(marker)
	if err != nil {
		p.Spawns.remove(marker)
	}
	now := time.Now()
	var busy *portBusyError
	if errors.As(err, &busy) && !l.reclaimed && p.ownOrphan(busy.pid) {
		// One of this daemon's own orphans holds the port: stop it (and
		// what it started), then start.
		if st, serr := proctree.Stat(busy.pid); serr == nil {
			l.reclaimed = true
			l.launchPending = true
			found := appendTree(nil, map[int]bool{}, st)
			p.log.Warn("port held by an orphan of this daemon; stopping it", "port", busy.port, "pid", busy.pid)
			p.startSweep(l, fmt.Sprintf("orphan holding port %d", busy.port), found, func() []leftover {
				if cur, err := proctree.Stat(st.Pid); err == nil && cur.Start == st.Start && cur.State != 'Z' {
					return appendTree(nil, map[int]bool{}, cur)
				}
				return nil
			}, 0, 0, time.Duration(p.spec.Program.StopWaitSecs)*time.Second)
			p.update(func(s *Status) { s.Reason = ReasonSweepFirst })
			return
		}
	}
	if err != nil {
		p.log.Error("spawn failed", "err", err)
		d := p.policy.OnStartFailure(l.backoff, 0, true)
		setErr := func(s *Status) { s.SpawnError = err.Error(); s.Pid = 0 }
		if p.applyFailure(l, opSpawnFailed, d, setErr) != nil {
			// No child, whatever the table says: not left STARTING.
			p.force(l, opSpawnFailed, Fatal, func(s *Status) { setErr(s); s.Reason = ReasonSpawnGiveUp })
		}
		return
	}
	l.proc, l.exitC, l.pid, l.spawnedAt, l.marker = proc, exitC, proc.Pid, now, marker
	if pidStart == 0 {
		// Its exit is not handed out before this goroutine takes it:
		// unless it was reaped already, the pid names it.
		pidStart, _ = proctree.StartTime(proc.Pid)
	}
	p.log.Info("spawned", "pid", proc.Pid)
	if p.OnSpawn != nil {
		p.OnSpawn(p, proc.Pid, pidStart, now)
	}
	p.update(func(s *Status) {
		s.Pid, s.PidStart = proc.Pid, pidStart
		s.StartedAt = now
		s.SpawnError = ""
		s.Reason = ""
		s.Spawns++
		s.Restarts = max(0, s.Spawns-1)
	})
	l.ready, l.startWaited = false, false
	p.startProbe(l, time.Duration(p.spec.Program.ReadyTimeout))
	if p.policy.StartWait == 0 {
		// startsecs = 0 has passed already.
		l.startWaited = true
		p.maybeRunning(l, opStartSecs)
		return
	}
	l.arm(timerStartSecs, p.policy.StartWait)
}

// startProbe starts the readiness check of the current spawn, which has
// left of its ready_timeout to pass, or, for a program without one, counts
// it as ready.
func (p *Process) startProbe(l *loop, left time.Duration) {
	kind, path, _ := ParseReady(p.spec.Program.Ready, p.spec.Port)
	if kind == ReadyStartSecs {
		l.ready = true
	} else {
		ctx, cancel := context.WithCancel(context.Background())
		readyC := make(chan error, 1)
		l.readyC, l.probeCancel = readyC, cancel
		host, port, timeout, hook := p.spec.ReadyHost, p.spec.Port, time.Duration(p.spec.Program.ReadyTimeout), p.probeHook
		// A probe that panics cannot judge: the process counts as ready
		// once startsecs has passed, as without a ready check, rather than
		// staying STARTING or being killed.
		p.guard().Go("readiness probe", "its process was treated as ready (as without a ready check)",
			func() {
				if hook != nil {
					hook()
				}
				probeLeft(ctx, readyC, kind, path, host, port, timeout, left)
			},
			func() {
				select {
				case readyC <- nil:
				default:
				}
			})
	}
}

// maybeRunning moves STARTING to RUNNING, as part of o (startsecs passing
// or the readiness check answering), once both have happened.
func (p *Process) maybeRunning(l *loop, o op) {
	if !l.ready || !l.startWaited {
		return
	}
	if p.setState(l, o, Running, func(s *Status) { s.Reason = "" }) == nil {
		l.backoff = 0
	}
}

func (p *Process) onReady(l *loop, err error) {
	l.readyC = nil
	p.stopProbe(l)
	if p.event(l, opReady).do != actReady {
		return
	}
	if err == nil {
		l.ready = true
		p.maybeRunning(l, opReady)
		return
	}
	// A process that never becomes ready is a failed start: kill it; its
	// exit goes through the start-failure policy with this reason.
	l.notReady = err.Error()
	p.log.Warn("not ready; killing it", "err", err)
	p.killGroup(l, unix.SIGKILL)
}

func (p *Process) stopProbe(l *loop) {
	if l.probeCancel != nil {
		l.probeCancel()
		l.probeCancel = nil
	}
	l.readyC = nil
}

// setSpec swaps the spec in the owner goroutine.
func (p *Process) setSpec(l *loop, spec *ProcSpec) {
	p.policy = PolicyOf(spec.Program)
	old := p.spec
	if l.proc == nil && (logMoved(old.Stdout, spec.Stdout) || logMoved(old.Stderr, spec.Stderr) || old.Program.RedirectStderr != spec.Program.RedirectStderr) {
		// New destinations, and no child writing: start afresh.
		old := p.out
		p.mu.Lock()
		p.out = newOutputs(spec, &p.logDrops, &p.log)
		p.out.syslogAddr = old.syslogAddr
		p.mu.Unlock()
		old.close()
	} else {
		// Same destinations (a copier may still be draining the last
		// child's pipe into them): only the limits change.
		p.out.setSpec(spec)
	}
	p.mu.Lock()
	p.spec = spec
	p.mu.Unlock()
	p.update(func(s *Status) { s.setSpec(spec) })
}

// launch prepares and spawns the child, marked with marker, through the
// reaper. start is the child's start time (field 22 of /proc/PID/stat)
// when the clock reads around its fork tell it (proctree.StartBetween), 0
// when they do not: then read it from /proc.
func (p *Process) launch(marker string) (proc *os.Process, exitC <-chan reaper.Exit, start uint64, err error) {
	s := p.spec
	env := childEnv(s, p.DaemonEnv, marker)
	if s.Dir != "" {
		if fi, err := os.Stat(s.Dir); err != nil {
			return nil, nil, 0, fmt.Errorf("directory: %w", err)
		} else if !fi.IsDir() {
			return nil, nil, 0, fmt.Errorf("directory %s: not a directory", s.Dir)
		}
	}
	path, err := lookPath(s.Argv[0], s.Dir, env)
	if err != nil {
		return nil, nil, 0, err
	}
	cred, err := credential(s.User)
	if err != nil {
		return nil, nil, 0, err
	}
	// After the user lookup, which may wait on a name service: one stuck
	// there must not hold up the others' spawns.
	defer p.rp.Prepare()()
	if s.Port > 0 {
		if err := checkPort(s.Port); err != nil {
			return nil, nil, 0, err
		}
	}
	p.out.guard, p.out.stdio = p.Guard, p.Stdio
	files, closeFiles, err := p.out.files()
	if err != nil {
		return nil, nil, 0, err
	}
	defer closeFiles()
	attr := &forkexec.Attr{
		Dir:       s.Dir,
		Env:       env,
		Files:     [3]*os.File{files[0], files[1], files[2]},
		Cred:      cred,
		Umask:     -1,
		Pdeathsig: syscall.SIGKILL,
	}
	if s.Umask.Set {
		attr.Umask = s.Umask.Mask
	}
	// The clock is read on the spawning thread right around the fork:
	// the child's start time is stamped between the two reads.
	var before, after int64
	proc, exitC, err = p.rp.Start(func() (*os.Process, error) {
		before = proctree.BootNanos()
		pr, err := p.rp.Spawner().Start(path, s.Argv, attr)
		after = proctree.BootNanos()
		return pr, err
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("spawn %s: %w", path, err)
	}
	start, _ = proctree.StartBetween(before, after)
	return proc, exitC, start, nil
}

// Reasons shown while leftovers are being stopped.
const (
	ReasonSweeping   = "stopping the processes its last child left running"
	ReasonSweepFirst = "waiting for the processes its last child left running to stop"
)

// leftoversOf looks for what the child leader, marked with marker, left.
func (p *Process) leftoversOf(leader int, marker string) func() []leftover {
	rp := p.rp
	return func() []leftover { return findLeftovers(proctree.Children(os.Getpid()), leader, marker, rp.Subscribed) }
}

// startSweep stops found (and what find finds later) on a goroutine: the
// program's stop signal (not to members of group skipGroup, which had it),
// SIGKILL after wait (at once to members of group killGroup). Its result
// arrives on l.sweepC.
func (p *Process) startSweep(l *loop, what string, found []leftover, find func() []leftover, skipGroup, killGroup int, wait time.Duration) {
	sp := p.spec.Program
	ctx, cancel := context.WithCancel(context.Background())
	c := make(chan sweepResult, 1)
	l.sweepC, l.sweepCancel = c, cancel
	sig := unix.Signal(sp.StopSignal)
	p.log.Info("stopping "+what, "count", len(found), "signal", unix.SignalName(sig))
	p.guard().Go("leftover sweep", "its leftover processes were left running",
		func() { c <- sweep(ctx, found, find, sig, skipGroup, killGroup, wait) },
		func() {
			select {
			case c <- sweepResult{left: -1}:
			default:
			}
		})
}

// onSwept takes the result of the sweep: the process may now be STOPPED,
// or spawn.
func (p *Process) onSwept(l *loop, res sweepResult) {
	p.sweepDone(res)
	l.sweepCancel() // the sweep has returned: this only frees its context
	l.sweepC, l.sweepCancel = nil, nil
	switch p.event(l, opSwept).do {
	case actStopped:
		_ = p.setState(l, opSwept, Stopped, func(s *Status) { s.Reason = "stopped" })
	case actLaunch:
		if l.launchPending {
			l.launchPending = false
			p.startChild(l)
		}
	}
}

// sweepDone logs what a sweep did.
func (p *Process) sweepDone(res sweepResult) {
	switch {
	case res.left < 0:
		// The sweep panicked; the guard logged it.
	case res.left > 0 && res.err != nil:
		p.log.Error("leftover processes could not be tracked or survived SIGKILL; they run unsupervised", "count", res.left, "found", res.found, "err", res.err)
	case res.left > 0:
		p.log.Error("leftover processes survived SIGKILL; they run unsupervised", "count", res.left, "found", res.found)
	case res.killed > 0:
		p.log.Warn("leftover processes did not stop in time, killed them", "found", res.found, "killed", res.killed, "stopwaitsecs", p.spec.Program.StopWaitSecs)
	default:
		p.log.Info("leftover processes stopped", "found", res.found)
	}
}

// ownOrphan reports whether pid is a leftover of this daemon: it carries
// the daemon's marker (every entry of DaemonEnv) in its environment, it
// carries the marker of no live spawn (a server that a running process
// started by double fork is that process's, not a leftover), and it
// descends from the daemon through processes the daemon did not spawn (so
// it is no running process's child). A port clash between two programs is
// reported, never settled by killing one of them.
func (p *Process) ownOrphan(pid int) bool {
	if len(p.DaemonEnv) == 0 || p.Spawns == nil {
		return false
	}
	for _, kv := range p.DaemonEnv {
		if !proctree.HasEnv(pid, kv) {
			return false
		}
	}
	for _, m := range p.Spawns.markers() {
		if proctree.HasEnv(pid, m) {
			return false
		}
	}
	self := os.Getpid()
	for range 1000 { // a bound, should /proc show a loop mid-change
		if pid == self || p.rp.Subscribed(pid) {
			return false
		}
		st, err := proctree.Stat(pid)
		if err != nil {
			return false
		}
		if st.PPid == self {
			return true
		}
		pid = st.PPid
	}
	return false
}
