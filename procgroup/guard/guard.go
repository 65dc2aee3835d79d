// Package guard runs the daemon's side goroutines so that a bug in one
// degrades that feature, never the host: a panic is recovered, logged at
// ERROR with its stack and the component's name, and counted per
// component; the feature then restarts after a backoff (Run) or stays off
// (Go), and Records says which, for ctl status and ctl info.
//
// The log copiers, readiness probes, the nginx manager, memmon, the
// alerter, the file watcher and the control socket's handlers all start
// here. The process owner goroutines and the reaper do not: they are the
// host.
package guard

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// Backoff between the restarts of a loop that panics: the first restart
// waits MinBackoff, each next one twice as long up to MaxBackoff; a loop
// that ran ResetAfter without panicking starts again from MinBackoff.
const (
	MinBackoff = time.Second
	MaxBackoff = time.Minute
	ResetAfter = time.Minute
)

// Guard counts the panics of one daemon. The daemon owns it and hands it
// down; the zero value is not usable, a nil *Guard recovers and logs (to
// slog's default logger) but counts nothing.
type Guard struct {
	*shared
	attrs []any // added to every log line and to Record.Last
}

type shared struct {
	log   *slog.Logger
	mu    sync.Mutex
	comps map[string]*Record
}

// Record is what a component's panics left, for ctl info and ctl status.
type Record struct {
	Component string    `json:"component"`
	Panics    int64     `json:"panics"`
	LastAt    time.Time `json:"last_at"`
	// Last is the last panic's value, after the instance it hit
	// ("web:web_0 stdout: runtime error: ...").
	Last string `json:"last"`
	// State is what became of the feature: "restarting at 15:04:05",
	// "restarted at 15:04:05", or what stays off.
	State string `json:"state"`
}

// String is the one line ctl status shows under WARNING.
func (r Record) String() string {
	times := "once"
	if r.Panics > 1 {
		times = fmt.Sprintf("%d times", r.Panics)
	}
	return fmt.Sprintf("%s panicked %s, last at %s: %s; %s (stack in the daemon's log)",
		r.Component, times, r.LastAt.Format(time.DateTime), r.Last, r.State)
}

// New makes a Guard that logs to log.
func New(log *slog.Logger) *Guard {
	return &Guard{shared: &shared{log: log, comps: map[string]*Record{}}}
}

// With returns a Guard that counts into the same records and adds args
// (slog key-value pairs, such as "process", "web:web_0") to what it logs.
func (g *Guard) With(args ...any) *Guard {
	if g == nil {
		return nil
	}
	return &Guard{shared: g.shared, attrs: append(slices.Clip(g.attrs), args...)}
}

// Records lists every component that has panicked, by name.
func (g *Guard) Records() []Record {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Record, 0, len(g.comps))
	for _, k := range slices.Sorted(maps.Keys(g.comps)) {
		out = append(out, *g.comps[k])
	}
	return out
}

// Panics is the number of panics recovered in component.
func (g *Guard) Panics(component string) int64 {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.comps[component]; r != nil {
		return r.Panics
	}
	return 0
}

// Go runs f on a new goroutine. If f panics, the panic is recovered,
// logged and counted against component, and f is not run again: then says
// in status what stays off. after, if not nil, runs next on the same
// goroutine, so that nothing waits in vain for what f would have done (a
// pipe to drain, a result to send).
func (g *Guard) Go(component, then string, f func(), after func()) {
	go func() {
		if g.Do(component, then, f) && after != nil {
			after()
		}
	}()
}

// Do runs f on the calling goroutine and reports whether it panicked; a
// panic is recovered, logged and counted against component, with then as
// its state. For code that runs on a goroutine it does not own, such as a
// control socket handler.
func (g *Guard) Do(component, then string, f func()) (panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			panicked = true
			g.recovered(component, v, debug.Stack(), then)
		}
	}()
	f()
	return false
}

// Run runs f until ctx ends. If f panics, the panic is recovered, logged
// and counted against component, and f runs again after a backoff
// (MinBackoff doubling to MaxBackoff; reset once f has run ResetAfter), so
// that a panic at every start does not spin. Run returns when ctx ends, or
// when f returns without panicking.
func (g *Guard) Run(ctx context.Context, component string, f func(context.Context)) {
	delay := MinBackoff
	for {
		began := time.Now()
		if !g.Do(component, "", func() { f(ctx) }) || ctx.Err() != nil {
			return
		}
		if time.Since(began) >= ResetAfter {
			delay = MinBackoff
		}
		at := time.Now().Add(delay)
		g.setState(component, "restarting at "+at.Format(time.TimeOnly))
		g.logger().Error("restarting after a panic", g.logArgs("component", component, "in", delay)...)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			g.setState(component, "stopped")
			return
		case <-t.C:
		}
		g.setState(component, "restarted at "+time.Now().Format(time.TimeOnly))
		delay = min(delay*2, MaxBackoff)
	}
}

func (g *Guard) logger() *slog.Logger {
	if g == nil || g.log == nil {
		return slog.Default()
	}
	return g.log
}

// logArgs is the With arguments followed by args.
func (g *Guard) logArgs(args ...any) []any {
	if g == nil {
		return args
	}
	return append(slices.Clone(g.attrs), args...)
}

// recovered logs and counts one panic.
func (g *Guard) recovered(component string, v any, stack []byte, then string) {
	msg := oneLine(fmt.Sprint(v))
	attrs := g.logArgs("component", component, "panic", msg)
	if then != "" {
		attrs = append(attrs, "then", then)
	}
	attrs = append(attrs, "stack", string(stack))
	g.logger().Error("panic recovered", attrs...)
	if g == nil {
		return
	}
	last := msg
	if where := g.where(); where != "" {
		last = where + ": " + msg
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.comps[component]
	if r == nil {
		r = &Record{Component: component}
		g.comps[component] = r
	}
	r.Panics++
	r.LastAt = time.Now()
	r.Last = last
	r.State = cmp.Or(then, r.State)
}

func (g *Guard) setState(component, state string) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if r := g.comps[component]; r != nil {
		r.State = state
	}
}

// where is the values of the With arguments, space separated.
func (g *Guard) where() string {
	var parts []string
	for i := 1; i < len(g.attrs); i += 2 {
		parts = append(parts, fmt.Sprint(g.attrs[i]))
	}
	return strings.Join(parts, " ")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
