package api

import (
	"sync/atomic"
	"time"
)

// StreamType is the Content-Type of a progress stream: a client that
// sends it in Accept gets the steps of start, stop, restart and reload as
// they happen, one JSON Event a line, the last one the outcome (step
// "result", or "error"). A client that does not ask gets the plain reply.
const StreamType = "application/x-ndjson"

// The steps of an Event.
const (
	StepPlan     = "plan"     // a reload's plan (Plan), before it applies it
	StepWaiting  = "waiting"  // waiting for another operation to end first (Message: which)
	StepDraining = "draining" // marked down in nginx, waiting its drain time
	StepDrained  = "drained"  // out of nginx, requests in flight done (TookS)
	StepStopping = "stopping" // its stopsignal sent (Pid)
	StepStopped  = "stopped"  // it exited (Message: how; TookS: since stopping)
	StepStarted  = "started"  // a child spawned (Pid)
	StepReady    = "ready"    // RUNNING: ready (TookS: since its start was asked)
	StepFailed   = "failed"   // a step failed, or was not done (Message: why)
	StepNginx    = "nginx"    // a reload's nginx update: render, test, reload
	StepDropped  = "dropped"  // Dropped events were left out: the client read too slowly
	StepResult   = "result"   // the outcome: Results, or Plan for a reload; always last
	StepError    = "error"    // the operation failed (Error, Code); always last
)

// Event is one step of a long operation, as it happens. Time is when,
// ElapsedS the seconds since the operation began; Process (group:process)
// is empty for the operation's own steps (plan, nginx, dropped, result).
type Event struct {
	Time     time.Time `json:"time"`
	ElapsedS float64   `json:"elapsed_s"`
	Process  string    `json:"process,omitempty"`
	Step     string    `json:"step"`
	Pid      int       `json:"pid,omitempty"`
	Message  string    `json:"message,omitempty"`
	// TookS is how long the step took, in seconds: a stop from its
	// signal, a start until ready, a drain.
	TookS float64 `json:"took_s,omitempty"`
	// Dropped counts, on a "dropped" step, the events left out since the
	// last such step.
	Dropped int64 `json:"dropped,omitempty"`
	// Plan is a reload's plan (step "plan") or outcome (step "result").
	Plan *ReloadPlan `json:"plan,omitempty"`
	// Results is start's, stop's or restart's outcome (step "result").
	Results []Result `json:"results,omitempty"`
	// Error and Code are a failed operation's error and HTTP status (step
	// "error").
	Error string `json:"error,omitempty"`
	Code  int    `json:"code,omitempty"`
}

// DefaultProgressBound is how many events a request's progress holds
// before it drops: far more than a client that reads keeps waiting.
const DefaultProgressBound = 1024

// Progress carries the events of one operation to the request that asked
// for it. Emit never blocks: an event that finds the channel full (a
// client reading more slowly than the operation goes) is dropped and
// counted, and the stream says how many. The operation's outcome does not
// go through it, so it is not dropped for a slow client (only a client
// that takes no bytes for the write timeout, or is gone, misses it). A
// nil *Progress takes and drops
// nothing: an operation nobody watches.
type Progress struct {
	start   time.Time
	ch      chan Event
	dropped atomic.Int64
}

// NewProgress makes a progress holding at most bound events not yet read.
func NewProgress(bound int) *Progress {
	return &Progress{start: time.Now(), ch: make(chan Event, max(bound, 1))}
}

// Emit stamps ev with the time and the elapsed time and queues it, or
// drops and counts it when bound events wait already. Safe from any
// goroutine; never blocks.
func (p *Progress) Emit(ev Event) {
	if p == nil {
		return
	}
	select {
	case p.ch <- p.Stamp(ev):
	default:
		p.dropped.Add(1)
	}
}

// Events is where the events wait to be read. It is never closed: the
// operation's end is its outcome.
func (p *Progress) Events() <-chan Event { return p.ch }

// Dropped counts the events dropped so far.
func (p *Progress) Dropped() int64 {
	if p == nil {
		return 0
	}
	return p.dropped.Load()
}

// Stamp returns ev with the time and the time elapsed since the operation
// began.
func (p *Progress) Stamp(ev Event) Event {
	now := time.Now()
	ev.Time, ev.ElapsedS = now, now.Sub(p.start).Seconds()
	return ev
}
