package procgroup

import (
	"errors"
	"fmt"
	"slices"
)

// The state machine of a process is one table: for every state and every
// operation (a request made through a Process method, or an event of the
// owner goroutine), the rule says what the owner goroutine does, which
// states that may lead to, and which error refuses it. handle and the event
// handlers dispatch on the rule's action, and setState refuses any move
// that the rule of the operation under way does not list, so the two
// cannot drift apart. The states and what they mean are supervisord's.

// op is an operation on a process.
type op uint8

// Requests, made by the Process methods.
const (
	opStart   op = iota // Start
	opStop              // Stop
	opStopPid           // StopPid, once the pid is found to be the child's
	opSignal            // Signal
	opSetSpec           // SetSpec
	// Events of the owner goroutine.
	opRespawn     // the respawn timer fired
	opStartSecs   // startsecs passed since the spawn
	opReady       // the readiness check answered
	opSpawnFailed // the spawn itself failed
	opExit        // the child exited
	opKillTimer   // stopwaitsecs passed while stopping
	opSwept       // the last child's leftovers are gone
	numOps
)

var opNames = [numOps]string{"start", "stop", "stop-pid", "signal", "set-spec",
	"respawn-timer", "startsecs-timer", "ready-check", "spawn-failed", "exit", "kill-timer", "swept"}

func (o op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", o)
}

// isRequest tells a request (refused with an error to its caller) from an
// event (which has no caller: refusing one is a bug).
func (o op) isRequest() bool { return o <= opSetSpec }

// action is what the owner goroutine does for an operation.
type action uint8

const (
	actIllegal     action = iota // the operation cannot happen in this state: a bug
	actRefuse                    // refused with the rule's error; nothing changes
	actNone                      // accepted; nothing to do
	actSpawn                     // spawn: STARTING (BACKOFF or FATAL at once if the spawn fails)
	actStop                      // send stopsignal: STOPPING, SIGKILL after stopwaitsecs (STOPPING until the leftovers are gone, if the launch waited for them)
	actCancel                    // no child: drop the pending respawn, STOPPED (STOPPING while the last child's leftovers are being stopped)
	actCancelIf                  // as actCancel if a respawn is pending, else refuse with the rule's error
	actSignal                    // signal the child
	actSetSpec                   // take the new spec (limits now, the rest at the next spawn)
	actStartSecs                 // note startsecs passed: RUNNING if the check passed too
	actReady                     // the check passed: RUNNING if startsecs passed too; failed: kill, the exit decides
	actStartFailed               // the start-failure policy: BACKOFF (retry later) or FATAL
	actExited                    // the exit policy: EXITED, respawned later or not
	actStopped                   // STOPPED
	actKill                      // SIGKILL the child (or its group); still STOPPING
	actLaunch                    // start the child that waited for the leftovers; still STARTING
)

// rule is what an operation does in a state.
type rule struct {
	do  action
	to  []State // the states it may move to; none: it stays
	err error   // why it is refused (actRefuse, actCancelIf)
}

func to(s ...State) []State { return s }

func refuse(err error) rule { return rule{do: actRefuse, err: err} }

// Rules shared by several states.
var (
	spawnRule   = rule{do: actSpawn, to: to(Starting)}
	stopRule    = rule{do: actStop, to: to(Stopping)}
	setSpecRule = rule{do: actSetSpec}
	signalRule  = rule{do: actSignal}
	failRule    = rule{do: actStartFailed, to: to(Backoff, Fatal)}
)

// machine is the table. A missing entry is actIllegal: an event that
// cannot happen in that state (a request always has a rule).
var machine = [...][numOps]rule{
	Stopped: {
		opStart:   spawnRule,
		opStop:    refuse(ErrNotRunning),
		opStopPid: refuse(ErrPidChanged),
		opSignal:  refuse(ErrNotRunning),
		opSetSpec: setSpecRule,
	},
	Starting: {
		opStart:       refuse(ErrAlreadyStarted),
		opStop:        stopRule,
		opStopPid:     stopRule,
		opSignal:      signalRule,
		opSetSpec:     setSpecRule,
		opStartSecs:   {do: actStartSecs, to: to(Running)},
		opReady:       {do: actReady, to: to(Running)},
		opSpawnFailed: failRule,
		opExit:        failRule,
		opSwept:       {do: actLaunch},
	},
	Running: {
		opStart:   refuse(ErrAlreadyStarted),
		opStop:    stopRule,
		opStopPid: stopRule,
		opSignal:  signalRule,
		opSetSpec: setSpecRule,
		opExit:    {do: actExited, to: to(Exited)},
	},
	Backoff: {
		opStart:   refuse(ErrAlreadyStarted), // supervisord: BACKOFF is a running state
		opStop:    {do: actCancel, to: to(Stopped, Stopping)},
		opStopPid: refuse(ErrPidChanged),
		opSignal:  refuse(ErrNotRunning),
		opSetSpec: setSpecRule,
		opRespawn: spawnRule,
		opSwept:   {do: actNone},
	},
	Stopping: {
		opStart:     refuse(ErrStopping),
		opStop:      {do: actNone},
		opStopPid:   {do: actNone},
		opSignal:    signalRule,
		opSetSpec:   setSpecRule,
		opExit:      {do: actStopped, to: to(Stopped)},
		opKillTimer: {do: actKill},
		opSwept:     {do: actStopped, to: to(Stopped)},
	},
	Exited: {
		opStart:   spawnRule,
		opStop:    {do: actCancelIf, to: to(Stopped, Stopping), err: ErrNotRunning},
		opStopPid: refuse(ErrPidChanged),
		opSignal:  refuse(ErrNotRunning),
		opSetSpec: setSpecRule,
		opRespawn: spawnRule,
		opSwept:   {do: actNone},
	},
	Fatal: {
		opStart:   spawnRule,
		opStop:    refuse(ErrNotRunning),
		opStopPid: refuse(ErrPidChanged),
		opSignal:  refuse(ErrNotRunning),
		opSetSpec: setSpecRule,
		opSwept:   {do: actNone},
	},
	Unknown: {
		opStart:   refuse(ErrUnknownState),
		opStop:    refuse(ErrUnknownState),
		opStopPid: refuse(ErrUnknownState),
		opSignal:  refuse(ErrUnknownState),
		opSetSpec: refuse(ErrUnknownState),
	},
}

// ErrUnknownState refuses every request to a process in state UNKNOWN
// (supervisord's name for a state it cannot tell; gosup never enters it).
var ErrUnknownState = errors.New("process state is unknown")

// ErrIllegalMove is an operation or a state change the state machine does
// not allow: a bug in gosup. It is refused, logged at ERROR and counted in
// Status.IllegalMoves.
var ErrIllegalMove = errors.New("illegal state move")

// ruleOf is the rule of o in state s.
func ruleOf(s State, o op) rule {
	if int(s) >= len(machine) || o >= numOps {
		return rule{}
	}
	return machine[s][o]
}

// checkMove says whether o, in state from, may move the process to state to.
func checkMove(from State, o op, to State) error {
	if slices.Contains(ruleOf(from, o).to, to) {
		return nil
	}
	return fmt.Errorf("%w: %s to %s on %s", ErrIllegalMove, from, to, o)
}

// canMove says whether some operation moves a process from one state to
// another: the transitions the table allows, for tests and documentation.
func canMove(from, to State) bool {
	for o := range numOps {
		if checkMove(from, o, to) == nil {
			return true
		}
	}
	return false
}
