package memmon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/guard"
)

// Target is one running process the watchdog samples.
type Target struct {
	ID
	Name      string // group:process
	Pid       int
	PidStart  uint64 // the child's start time (procgroup.Status.PidStart)
	Port      int
	StartedAt time.Time
	StderrLog string // "" when stderr does not go to a file
}

// Host is the supervisor as the watchdog sees it.
type Host interface {
	// Targets lists the processes that are RUNNING now.
	Targets() []Target
	// Restart stops the process gracefully (stopsignal, stopwaitsecs,
	// then SIGKILL of its group) and starts it again, but only if its pid
	// is still pid: a recycled or already replaced pid is left alone. It
	// calls beforeStop (when not nil) right before it stops the process,
	// if it does: the alert's excerpt of the log is read then, so that
	// it quotes the process memmon stops, not the one that replaces it.
	Restart(ctx context.Context, name string, pid int, reason string, beforeStop func()) error
	// StderrTail returns the last lines of a process's stderr log, at
	// most maxBytes of them (cutting, and saying so, at the front).
	StderrTail(name string, lines, maxBytes int) string
}

// Sample is what the watchdog knows of one process, for status.
type Sample struct {
	RSS           int64     `json:"rss"`             // last sample, cumulative when configured
	LastRestartAt time.Time `json:"last_restart_at"` // last memmon restart
	LastReason    string    `json:"last_reason,omitempty"`
	// GaveUp says why memmon no longer restarts the process while it runs
	// as GaveUpPid ("" while it does): max_restarts within
	// restart_window, and over its limit again.
	GaveUp    string    `json:"gave_up,omitempty"`
	GaveUpAt  time.Time `json:"gave_up_at"`
	GaveUpPid int       `json:"gave_up_pid,omitempty"`
}

// Watchdog samples on its own goroutine. A restart runs on a goroutine of
// its own and an alert goes to the Alerter's queue, so neither ever delays
// the next sample.
type Watchdog struct {
	cfg    Settings
	host   Host
	alerts *Alerter // nil: log only
	reader *reader
	log    *slog.Logger
	name   string // host name in alerts

	mu         sync.Mutex
	samples    map[string]Sample
	over       map[string]overrun            // consecutive samples over the limit, by process
	restarting map[string]bool               // processes being restarted
	busy       map[procgroup.ProgramName]int // restarts in flight, by program
	history    map[string][]time.Time        // restarts begun, by process
	gaveUp     map[string]int                // pid memmon gave up on, by process
	seen       map[string]time.Time          // last time each process was a target (or ended a restart)

	Restarts atomic.Int64 // memmon restarts done
	Ticks    atomic.Int64
	// Tally, when set before Run, counts what this watchdog does along
	// with the watchdogs before and after it (a reload replaces the
	// watchdog; the daemon keeps one Tally). nil: not counted.
	Tally *Tally

	// ReadRSS, when set before Run, reads the RSS of targets (by pid; a
	// target not read is left out) for a sampling that is not
	// cumulative, instead of the watchdog's own reader: the daemon's
	// status sampler, so that one file per process is kept open, not
	// two.
	ReadRSS func([]Target) map[int]int64
	// Guard, when set before Run, starts the restarts and counts their
	// panics (nil: recovered and logged, not counted).
	Guard *guard.Guard
	// tickHook, when set before Run (by tests), runs first in every Tick.
	tickHook func()
}

// Tally counts what the watchdogs of a daemon did, one after another and
// with their restarts in flight: the figures its metrics show.
type Tally struct {
	// Samples counts the RSS samples taken, one per process per interval.
	Samples atomic.Int64
	// Restarts counts the memmon restarts done, GiveUps the times memmon
	// gave up on a process (max_restarts).
	Restarts, GiveUps atomic.Int64
}

// TallyCounts is a Tally as plain values, for a handover.
type TallyCounts struct {
	Samples  int64 `json:"samples"`
	Restarts int64 `json:"restarts"`
	GiveUps  int64 `json:"give_ups"`
}

// Counts reads t (zero for a nil Tally).
func (t *Tally) Counts() TallyCounts {
	if t == nil {
		return TallyCounts{}
	}
	return TallyCounts{Samples: t.Samples.Load(), Restarts: t.Restarts.Load(), GiveUps: t.GiveUps.Load()}
}

// Restore sets t to c.
func (t *Tally) Restore(c TallyCounts) {
	t.Samples.Store(c.Samples)
	t.Restarts.Store(c.Restarts)
	t.GiveUps.Store(c.GiveUps)
}

type overrun struct {
	pid     int
	count   int
	since   int64       // the tick it went over its limit
	samples []RSSSample // the last maxAlertSamples of them
}

// RSSSample is one sample of a process's RSS, over its limit: an alert
// lists those that made memmon act.
type RSSSample struct {
	At  time.Time `json:"at"`
	RSS int64     `json:"rss"`
}

// maxAlertSamples bounds the samples an alert lists: the last ones, when
// samples is larger.
const maxAlertSamples = 10

// addSample appends s to samples, keeping the last maxAlertSamples.
func addSample(samples []RSSSample, s RSSSample) []RSSSample {
	if len(samples) >= maxAlertSamples {
		samples = slices.Delete(slices.Clone(samples), 0, len(samples)-maxAlertSamples+1)
	}
	return append(samples, s)
}

// New makes a watchdog reading /proc under procRoot ("/proc").
func New(cfg Settings, host Host, alerts *Alerter, procRoot string, log *slog.Logger) *Watchdog {
	name := cfg.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	return &Watchdog{
		cfg: cfg, host: host, alerts: alerts, reader: newReader(procRoot, cfg.Cumulative), log: log.With("component", "memmon"), name: name,
		samples: map[string]Sample{}, over: map[string]overrun{}, restarting: map[string]bool{},
		busy: map[procgroup.ProgramName]int{}, history: map[string][]time.Time{}, gaveUp: map[string]int{},
		seen: map[string]time.Time{},
	}
}

// Run samples every interval until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	t := time.NewTicker(time.Duration(w.cfg.Interval))
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer w.reader.close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Tick(ctx, &wg)
		}
	}
}

// WatchdogState is what a Watchdog hands to its successor in the daemon's
// new image across an in-place upgrade (State, then Restore): plain
// values, so that it goes through encoding/json unchanged. Maps are keyed
// by process name (group:process). Pids stay valid across the upgrade:
// the children are the same processes.
type WatchdogState struct {
	// Ticks and Restarts are the counters; ticks carry on from Ticks, so
	// that the ticks in Over stay comparable.
	Ticks    int64 `json:"ticks"`
	Restarts int64 `json:"restarts"`
	// Samples is what the watchdog last saw of each process, with its
	// last memmon restart and give-up.
	Samples map[string]Sample `json:"samples,omitempty"`
	// Over counts the consecutive samples over the limit of the processes
	// over it now.
	Over map[string]Overrun `json:"over,omitempty"`
	// History holds the times of the memmon restarts begun, within
	// max(restart_window, 1h): max_restarts counts them.
	History map[string][]time.Time `json:"history,omitempty"`
	// GaveUp holds the pid memmon gave up on, by process: it stays given
	// up on while the process runs as that pid.
	GaveUp map[string]int `json:"gave_up,omitempty"`
	// Seen is when each process was last a target: one gone longer than
	// restart_window is forgotten.
	Seen map[string]time.Time `json:"seen,omitempty"`
}

// Overrun is a run of consecutive samples over the limit, of one pid (a
// run of another pid counts from 1 again).
type Overrun struct {
	Pid   int   `json:"pid"`
	Count int   `json:"count"`
	Since int64 `json:"since"` // the tick it went over its limit (WatchdogState.Ticks counts them)
	// Samples are the last of those samples (at most 10), for the alert.
	Samples []RSSSample `json:"samples,omitempty"`
}

// State returns what a watchdog in a new image of the daemon needs to
// carry on where this one stopped. Call it after Run returned (and with
// no Tick running): restarts in flight are not carried, so State refuses,
// naming them, while one is (the daemon lets them end before it hands
// over).
func (w *Watchdog) State() (WatchdogState, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.restarting) > 0 {
		names := slices.Sorted(maps.Keys(w.restarting))
		return WatchdogState{}, fmt.Errorf("memmon restarts in flight: %s", strings.Join(names, ", "))
	}
	st := WatchdogState{
		Ticks: w.Ticks.Load(), Restarts: w.Restarts.Load(),
		Samples: maps.Clone(w.samples), History: make(map[string][]time.Time, len(w.history)),
		GaveUp: maps.Clone(w.gaveUp), Seen: maps.Clone(w.seen), Over: make(map[string]Overrun, len(w.over)),
	}
	for name, o := range w.over {
		st.Over[name] = Overrun{Pid: o.pid, Count: o.count, Since: o.since, Samples: slices.Clone(o.samples)}
	}
	for name, h := range w.history {
		st.History[name] = slices.Clone(h)
	}
	return st, nil
}

// Restore makes a new watchdog carry on from st, the State of the watchdog
// it replaces: a process over its limit for some samples is restarted
// when the samples it still lacks are over it too, its restart budget and
// a give-up stay, and the counters continue. Call it after New, before
// Run.
func (w *Watchdog) Restore(st WatchdogState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.Ticks.Store(st.Ticks)
	w.Restarts.Store(st.Restarts)
	w.samples = orEmpty(maps.Clone(st.Samples))
	w.gaveUp = orEmpty(maps.Clone(st.GaveUp))
	w.seen = orEmpty(maps.Clone(st.Seen))
	w.over = make(map[string]overrun, len(st.Over))
	for name, o := range st.Over {
		samples := o.Samples
		if over := len(samples) - maxAlertSamples; over > 0 {
			samples = samples[over:]
		}
		w.over[name] = overrun{pid: o.Pid, count: o.Count, since: o.Since, samples: slices.Clone(samples)}
	}
	w.history = make(map[string][]time.Time, len(st.History))
	for name, h := range st.History {
		if len(h) > 0 {
			w.history[name] = slices.Clone(h)
		}
	}
}

// orEmpty is m, or an empty map if m is nil.
func orEmpty[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

// Sample returns what the watchdog last saw of a process.
func (w *Watchdog) Sample(name string) (Sample, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.samples[name]
	return s, ok
}

// Tick takes one sample of every target, starts the restarts that are due
// on goroutines tracked by wg, and hands the alerter the processes it gave
// up on at once. The processes over their limit longest go first, so that
// with max_restarting every one gets its turn. A process restarted
// max_restarts times within restart_window is given up on instead. Each
// restart hands its alert to the alerter as it ends (the alerter mails
// what comes in together as one mail).
func (w *Watchdog) Tick(ctx context.Context, wg *sync.WaitGroup) {
	tick := w.Ticks.Add(1)
	if w.tickHook != nil {
		w.tickHook()
	}
	targets := w.host.Targets()
	var table *Table
	if w.cfg.Cumulative {
		var err error
		if table, err = w.reader.readAll(); err != nil {
			w.log.Error("cannot read the process table", "err", err)
			return
		}
	} else if w.ReadRSS != nil {
		rss := w.ReadRSS(targets)
		table = &Table{procs: make(map[int]entry, len(rss))}
		for pid, b := range rss {
			table.procs[pid] = entry{rss: b}
		}
	} else {
		pids := make([]int, len(targets))
		for i, t := range targets {
			pids[i] = t.Pid
		}
		table = w.reader.readSome(pids)
	}
	now := time.Now()
	restarts, givenUp := w.plan(targets, table, tick, now)
	// Every slot plan reserved is handed to its restart's goroutine, which
	// gives it back however it ends; one this tick did not hand over (it
	// panicked first) is given back here.
	handed := 0
	defer func() {
		for _, d := range restarts[handed:] {
			w.release(d.t, now, false)
		}
	}()
	for _, d := range restarts {
		wg.Add(1)
		w.Guard.With("process", d.t.Name).Go(restartComponent, "that restart was abandoned; memmon may try again", func() {
			defer wg.Done()
			defer w.release(d.t, now, true)
			w.restart(ctx, d, now)
		}, nil)
		handed++
	}
	if w.alerts == nil || len(givenUp) == 0 {
		return
	}
	out := make([]Alert, 0, len(givenUp))
	for _, d := range givenUp {
		out = append(out, Alert{
			Host: w.name, Name: d.t.Name, Port: d.t.Port, Pid: d.t.Pid, RSS: d.rss, Rule: d.rule,
			Uptime: now.Sub(d.t.StartedAt), Restarts: d.restarts, StderrLog: d.t.StderrLog,
			Tail: w.host.StderrTail(d.t.Name, excerptLines, excerptBytes), At: now, GaveUp: true, Window: w.cfg.RestartWindow,
			Samples: d.samples, Over: d.count,
		})
	}
	w.alerts.Enqueue(out...)
}

// restartComponent is what the guard counts a restart's panic against:
// not "memmon", the loop's own name, whose state it would overwrite.
const restartComponent = "memmon restart"

// plan records one sample of every target, forgets the processes gone
// longer than restart_window, and returns the restarts due (their
// max_restarting slots reserved) and the processes it gives up on. A panic
// in it gives back the slots it reserved.
func (w *Watchdog) plan(targets []Target, table *Table, tick int64, now time.Time) (restarts, givenUp []overLimit) {
	w.mu.Lock()
	defer w.mu.Unlock()
	planned := false
	defer func() {
		if !planned {
			for _, d := range restarts {
				w.unreserve(d.t, now, false)
			}
		}
	}()
	var due []overLimit
	live := make(map[string]bool, len(targets))
	sampled := int64(0)
	defer func() {
		if w.Tally != nil {
			w.Tally.Samples.Add(sampled)
		}
	}()
	for _, t := range targets {
		live[t.Name] = true
		w.seen[t.Name] = now
		rss, ok := table.RSS(t.Pid, w.cfg.Cumulative)
		if !ok {
			continue
		}
		sampled++
		s := w.samples[t.Name]
		s.RSS = rss
		if pid, ok := w.gaveUp[t.Name]; ok && pid != t.Pid {
			// Started again by other means (ctl restart, a crash, a
			// reload): watched afresh, with a new restart budget.
			delete(w.gaveUp, t.Name)
			delete(w.history, t.Name)
			s.GaveUp, s.GaveUpAt, s.GaveUpPid = "", time.Time{}, 0
			w.log.Info("watching again a process memmon had given up on", "process", t.Name, "pid", t.Pid)
		}
		w.samples[t.Name] = s
		rule := w.cfg.LimitFor(t.ID)
		if rule.Limit == 0 || rss <= int64(rule.Limit) {
			delete(w.over, t.Name)
			continue
		}
		o := w.over[t.Name]
		if o.pid != t.Pid {
			o = overrun{pid: t.Pid, since: tick}
		}
		o.count++
		o.samples = addSample(o.samples, RSSSample{At: now, RSS: rss})
		w.over[t.Name] = o
		_, gaveUp := w.gaveUp[t.Name]
		if o.count < w.cfg.Samples || w.restarting[t.Name] || gaveUp {
			continue
		}
		due = append(due, overLimit{t: t, rss: rss, rule: rule, since: o.since, samples: slices.Clone(o.samples), count: o.count})
	}
	w.forget(live, now)
	// The longest over its limit first (config order among equals): with
	// max_restarting, one that waited is not overtaken by one restarted
	// already and over its limit again.
	slices.SortStableFunc(due, func(a, b overLimit) int { return cmp.Compare(a.since, b.since) })
	for _, d := range due {
		t := d.t
		if n := w.recentRestarts(t.Name, now); w.cfg.MaxRestarts > 0 && n >= w.cfg.MaxRestarts {
			d.restarts = n
			w.giveUp(d, now)
			givenUp = append(givenUp, d)
			continue
		}
		if w.busy[t.Program] >= w.cfg.MaxRestarting {
			w.log.Warn("over its limit, but max_restarting processes of its program are already restarting; waiting",
				"process", t.Name, "rss", d.rss, "limit", int64(d.rule.Limit), "max_restarting", w.cfg.MaxRestarting)
			continue
		}
		w.restarting[t.Name] = true
		w.busy[t.Program]++
		w.history[t.Name] = append(w.history[t.Name], now)
		delete(w.over, t.Name)
		restarts = append(restarts, d)
	}
	planned = true
	return restarts, givenUp
}

// forget drops what the watchdog keeps of the processes not among live
// (removed or renamed by a reload) once they have been gone longer than
// restart_window; one gone for less (as during its own memmon restart)
// keeps its restart budget. It zeroes the RSS of the others, and trims
// every restart history. Called with w.mu held.
func (w *Watchdog) forget(live map[string]bool, now time.Time) {
	for name, at := range w.seen {
		if !live[name] && !w.restarting[name] && now.Sub(at) > w.cfg.RestartWindow {
			delete(w.seen, name)
			delete(w.samples, name)
			delete(w.over, name)
			delete(w.restarting, name)
			delete(w.history, name)
			delete(w.gaveUp, name)
			continue
		}
		if !live[name] {
			if s, ok := w.samples[name]; ok {
				s.RSS = 0
				w.samples[name] = s
			}
		}
		w.recentRestarts(name, now)
	}
}

// release gives back the max_restarting slot of a restart; done says the
// restart ran (or was tried), and otherwise it is no part of the process's
// restart history.
func (w *Watchdog) release(t Target, at time.Time, done bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unreserve(t, at, done)
}

// unreserve is release, called with w.mu held.
func (w *Watchdog) unreserve(t Target, at time.Time, done bool) {
	delete(w.restarting, t.Name)
	if w.busy[t.Program]--; w.busy[t.Program] <= 0 {
		delete(w.busy, t.Program)
	}
	if !done {
		if h := w.history[t.Name]; len(h) > 0 {
			if i := slices.IndexFunc(h, at.Equal); i >= 0 {
				w.history[t.Name] = slices.Delete(h, i, i+1)
			}
		}
	}
	w.seen[t.Name] = time.Now() // forgotten restart_window from now at the earliest
}

// overLimit is a process due for a restart.
type overLimit struct {
	t        Target
	rss      int64
	rule     Rule
	since    int64       // the tick it went over its limit
	samples  []RSSSample // the last of the samples over its limit
	count    int         // how many samples in a row were over it
	restarts int         // within restart_window, when memmon gives up on it
}

// recentRestarts counts the restarts of name within restart_window, and
// forgets those older than both the window and the hour alerts count.
// Called with w.mu held.
func (w *Watchdog) recentRestarts(name string, now time.Time) int {
	window := w.cfg.RestartWindow
	h := w.history[name]
	for len(h) > 0 && now.Sub(h[0]) >= max(window, time.Hour) {
		h = h[1:]
	}
	if len(h) == 0 {
		delete(w.history, name)
		return 0
	}
	w.history[name] = h
	n := 0
	for _, at := range h {
		if now.Sub(at) < window {
			n++
		}
	}
	return n
}

// giveUp stops restarting a process that is over its limit again after
// max_restarts restarts within restart_window. Called with w.mu held.
func (w *Watchdog) giveUp(d overLimit, now time.Time) {
	reason := fmt.Sprintf("%d restarts within %s (max_restarts), still over %s (%s)",
		d.restarts, w.cfg.RestartWindow, fmtBytes(int64(d.rule.Limit)), d.rule.Name)
	w.gaveUp[d.t.Name] = d.t.Pid
	if w.Tally != nil {
		w.Tally.GiveUps.Add(1)
	}
	delete(w.over, d.t.Name)
	s := w.samples[d.t.Name]
	s.GaveUp, s.GaveUpAt, s.GaveUpPid = reason, now, d.t.Pid
	w.samples[d.t.Name] = s
	w.log.Error("memmon gives up on a process: it stays over its memory limit however often it is restarted; it keeps running",
		"process", d.t.Name, "pid", d.t.Pid, "rss", d.rss, "limit", int64(d.rule.Limit), "reason", reason)
}

// restart restarts one process, whose restart Tick recorded at at, and
// hands its alert to the alerter as soon as it ends (none if there is
// nothing to report). Its caller gives back its slot.
func (w *Watchdog) restart(ctx context.Context, d overLimit, at time.Time) {
	t, rss, rule := d.t, d.rss, d.rule
	reason := fmt.Sprintf("RSS %s over %s (%s) for %d samples", fmtBytes(rss), fmtBytes(int64(rule.Limit)), rule.Name, w.cfg.Samples)
	w.log.Warn("restarting a process over its memory limit", "process", t.Name, "pid", t.Pid, "rss", rss, "limit", int64(rule.Limit), "rule", rule.Name)
	// The excerpt is read right before the stop: after it, the log ends
	// with what the replacement says as it starts.
	var tail string
	read := false
	err := w.host.Restart(ctx, t.Name, t.Pid, "memmon: "+reason, func() {
		tail, read = w.host.StderrTail(t.Name, excerptLines, excerptBytes), true
	})
	if !read {
		// Not stopped (the restart failed before): the log is still
		// the process's own.
		tail = w.host.StderrTail(t.Name, excerptLines, excerptBytes)
	}
	w.mu.Lock()
	if h := w.history[t.Name]; errors.Is(err, ErrPidGone) || errors.Is(err, ErrNotBegun) {
		// It exited or was replaced meanwhile, or the restart was
		// called off before it began: not a restart, and no part of
		// max_restarts.
		if i := slices.IndexFunc(h, at.Equal); i >= 0 {
			w.history[t.Name] = slices.Delete(h, i, i+1)
		}
	}
	restarts := 0 // within the hour, this one included
	for _, r := range w.history[t.Name] {
		if at.Sub(r) < time.Hour {
			restarts++
		}
	}
	if err == nil {
		w.Restarts.Add(1)
		if w.Tally != nil {
			w.Tally.Restarts.Add(1)
		}
		s := w.samples[t.Name]
		s.LastRestartAt, s.LastReason = at, reason
		w.samples[t.Name] = s
	}
	w.mu.Unlock()
	if errors.Is(err, ErrNotBegun) {
		// The watchdog stopped (an upgrade, a reload, shutdown) before
		// the restart began: the next watchdog samples it again.
		w.log.Info("memmon restart called off before it began", "process", t.Name, "pid", t.Pid)
		return
	}
	if err != nil {
		w.log.Error("memmon restart failed", "process", t.Name, "pid", t.Pid, "err", err)
		if errors.Is(err, ErrPidGone) {
			return // it exited or was replaced meanwhile: nothing to report
		}
	}
	if w.alerts == nil {
		return
	}
	w.alerts.Enqueue(Alert{
		Host: w.name, Name: t.Name, Port: t.Port, Pid: t.Pid, RSS: rss, Rule: rule,
		Uptime: at.Sub(t.StartedAt), Restarts: restarts, StderrLog: t.StderrLog,
		Tail: tail, At: at, Err: err, Samples: d.samples, Over: d.count,
	})
}

// ErrPidGone is what a Host's Restart returns (wrapped) when the process
// no longer runs as the sampled pid: it exited or was replaced meanwhile.
var ErrPidGone = errors.New("no longer runs as pid")

// ErrNotBegun is what a Host's Restart returns (wrapped) when its context
// ended before it stopped anything: the watchdog stopped (an upgrade, a
// reload, shutdown) while the restart waited for its turn.
var ErrNotBegun = errors.New("restart called off before it began")
