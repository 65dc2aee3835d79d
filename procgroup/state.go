package procgroup

import (
	"fmt"
	"slices"
	"time"
)

// State is a process state, with supervisord's names and meanings. Which
// operation may move a process from one state to another is the table in
// machine.go.
type State uint8

// Process states.
const (
	Stopped State = iota
	Starting
	Running
	Backoff
	Stopping
	Exited
	Fatal
	Unknown
)

var stateNames = [...]string{"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// Policy holds the restart rules of one program. It is a pure value: the
// decisions below depend only on their arguments, so they are table-tested
// without processes.
type Policy struct {
	StartWait    time.Duration
	StartRetries int
	AutoRestart  AutoRestart
	ExitCodes    []int
	// Floor is the least time between two spawns of a process that died
	// young: a crash loop never respawns faster than this.
	Floor time.Duration
	// BackoffMax caps the wait before respawning a process that keeps
	// exiting unexpectedly (1 s, 2 s, 4 s ... ±10 %, never above BackoffMax);
	// 0 turns the backoff off: supervisord's immediate respawn, with only
	// the Floor between spawns.
	BackoffMax time.Duration
	// BackoffReset is how long a run must last to end a streak of
	// unexpected exits: the exit after such a run respawns at once again.
	BackoffReset time.Duration
}

// BackoffJitter is the spread of a backoff wait, ±10 % (at the cap, -10 %
// only: a wait never exceeds BackoffMax), so that many processes crashing
// together do not respawn in lockstep.
const BackoffJitter = 0.1

// DefaultFloor is the respawn floor of daemontools, runit and s6.
const DefaultFloor = time.Second

// PolicyOf derives the restart policy from a program spec.
func PolicyOf(s *Spec) Policy {
	return Policy{
		StartWait:    time.Duration(s.StartSecs) * time.Second,
		StartRetries: s.StartRetries,
		AutoRestart:  s.AutoRestart,
		ExitCodes:    s.ExitCodes,
		Floor:        DefaultFloor,
		BackoffMax:   s.BackoffMax,
		BackoffReset: s.BackoffReset,
	}
}

// Reasons a decision gives.
const (
	ReasonRetry       = "exited before startsecs, will retry"
	ReasonGiveUp      = "exited before startsecs too many times"
	ReasonSpawnRetry  = "could not spawn, will retry"
	ReasonSpawnGiveUp = "could not spawn too many times"
	ReasonExpected    = "expected exit, not restarted"
	ReasonUnexpected  = "unexpected exit, restarting"
	ReasonAlways      = "autorestart = true, restarting"
	ReasonNever       = "autorestart = false, not restarted"
	// ReasonCrashLoop is the reason of a backed-off respawn: exits in a
	// row, and the wait.
	ReasonCrashLoop = "exited %d times in a row, restarting in %s"
)

// Decision is what to do after a process ended on its own or failed to spawn.
type Decision struct {
	Next    State         // Backoff, Fatal or Exited
	Respawn bool          // spawn again after Delay
	Delay   time.Duration // from now
	Backoff int           // failed-start count to carry on
	Crashes int           // unexpected exits in a row to carry on
	Reason  string
}

// OnStartFailure decides after a spawn error or an exit in STARTING. backoff
// is the count of failed starts so far; uptime is how long the failed
// attempt lived (0 for a spawn error). supervisord waits one more second
// per failed attempt and gives up after startretries retries.
func (p Policy) OnStartFailure(backoff int, uptime time.Duration, spawnErr bool) Decision {
	backoff++
	if backoff > p.StartRetries {
		r := ReasonGiveUp
		if spawnErr {
			r = ReasonSpawnGiveUp
		}
		return Decision{Next: Fatal, Backoff: backoff, Reason: r}
	}
	r := ReasonRetry
	if spawnErr {
		r = ReasonSpawnRetry
	}
	return Decision{Next: Backoff, Respawn: true, Delay: max(time.Duration(backoff)*time.Second, p.Floor-uptime), Backoff: backoff, Reason: r}
}

// OnExit decides after a RUNNING process exited without being asked to.
// code is the exit status, signaled whether a signal killed it, uptime how
// long it ran. crashes is the count of unexpected exits in a row before
// this one (the Crashes of the last decision); jitter is a uniform draw in
// [-1, 1] (the caller's random source) that spreads a backoff wait by
// ±BackoffJitter.
//
// An unexpected exit after a run shorter than BackoffReset extends the
// streak. The first exit of a streak respawns at once (after the Floor, for
// a process that died young): a single crash costs milliseconds, not a
// wait. The n-th waits 2^(n-2) s ±10 %, never more than BackoffMax, so a
// crash loop is spread from its second exit on. With BackoffMax = 0
// (supervisord's behaviour) there is no backoff.
func (p Policy) OnExit(code int, signaled bool, uptime time.Duration, crashes int, jitter float64) Decision {
	d := Decision{Next: Exited, Delay: max(0, p.Floor-uptime)}
	expected := !signaled && slices.Contains(p.ExitCodes, code)
	switch {
	case p.AutoRestart == RestartAlways:
		d.Respawn, d.Reason = true, ReasonAlways
	case p.AutoRestart == RestartNever:
		d.Reason = ReasonNever
	case expected:
		d.Reason = ReasonExpected
	default:
		d.Respawn, d.Reason = true, ReasonUnexpected
	}
	if !d.Respawn {
		d.Delay = 0
		return d
	}
	if expected {
		return d // autorestart = true after an expected exit: not a crash
	}
	if uptime >= p.BackoffReset {
		crashes = 0
	}
	d.Crashes = crashes + 1
	jitter = min(1, max(-1, jitter))
	if w := p.backoff(d.Crashes, jitter); w > 0 {
		d.Delay = max(d.Delay, w)
		d.Reason = fmt.Sprintf(ReasonCrashLoop, d.Crashes, d.Delay.Round(100*time.Millisecond))
	}
	return d
}

// backoff is the wait after the n-th unexpected exit in a row: none for the
// first, then 1 s, 2 s, 4 s ..., spread by jitter (in [-1, 1]) and then
// capped at BackoffMax. Once the doubling reaches the cap the jitter only
// shortens the wait, so that capped processes still spread, over 90 % to
// 100 % of BackoffMax.
func (p Policy) backoff(n int, jitter float64) time.Duration {
	if p.BackoffMax <= 0 || n < 2 {
		return 0
	}
	w := p.BackoffMax
	if shift := n - 2; shift < 32 {
		w = min(w, time.Second<<shift)
	}
	if w == p.BackoffMax {
		return time.Duration(float64(w) * (1 - BackoffJitter*(jitter+1)/2))
	}
	return min(p.BackoffMax, time.Duration(float64(w)*(1+BackoffJitter*jitter)))
}
