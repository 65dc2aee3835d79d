package memmon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
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
	// is still pid: a recycled or already replaced pid is left alone.
	Restart(ctx context.Context, name string, pid int, reason string) error
	// StderrTail returns the last lines of a process's stderr log.
	StderrTail(name string, lines int) string
}

// Sample is what the watchdog knows of one process, for status.
type Sample struct {
	RSS           int64     // last sample, cumulative when configured
	LastRestartAt time.Time // last memmon restart
	LastReason    string
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
	history    map[string][]time.Time

	Restarts atomic.Int64 // memmon restarts done
	Ticks    atomic.Int64

	// Guard, when set before Run, starts the restarts and counts their
	// panics (nil: recovered and logged, not counted).
	Guard *guard.Guard
	// tickHook, when set before Run (by tests), runs first in every Tick.
	tickHook func()
}

type overrun struct {
	pid   int
	count int
	since int64 // the tick it went over its limit
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
		busy: map[procgroup.ProgramName]int{}, history: map[string][]time.Time{},
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

// Sample returns what the watchdog last saw of a process.
func (w *Watchdog) Sample(name string) (Sample, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.samples[name]
	return s, ok
}

// Tick takes one sample of every target and starts the restarts that are
// due, on goroutines tracked by wg. The processes over their limit longest
// go first, so that with max_restarting every one gets its turn. Once they
// have all ended, the tick's restarts are mailed as one batch.
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
	} else {
		pids := make([]int, len(targets))
		for i, t := range targets {
			pids[i] = t.Pid
		}
		table = w.reader.readSome(pids)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var due []overLimit
	live := make(map[string]bool, len(targets))
	for _, t := range targets {
		live[t.Name] = true
		rss, ok := table.RSS(t.Pid, w.cfg.Cumulative)
		if !ok {
			continue
		}
		s := w.samples[t.Name]
		s.RSS = rss
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
		w.over[t.Name] = o
		if o.count < w.cfg.Samples || w.restarting[t.Name] {
			continue
		}
		due = append(due, overLimit{t: t, rss: rss, rule: rule, since: o.since})
	}
	for name := range w.samples {
		if !live[name] {
			s := w.samples[name]
			s.RSS = 0
			w.samples[name] = s
		}
	}
	// The longest over its limit first (config order among equals): with
	// max_restarting, one that waited is not overtaken by one restarted
	// already and over its limit again.
	slices.SortStableFunc(due, func(a, b overLimit) int { return cmp.Compare(a.since, b.since) })
	var restarts []overLimit
	for _, d := range due {
		t := d.t
		if w.busy[t.Program] >= w.cfg.MaxRestarting {
			w.log.Warn("over its limit, but max_restarting processes of its program are already restarting; waiting",
				"process", t.Name, "rss", d.rss, "limit", int64(d.rule.Limit), "max_restarting", w.cfg.MaxRestarting)
			continue
		}
		w.restarting[t.Name] = true
		w.busy[t.Program]++
		delete(w.over, t.Name)
		restarts = append(restarts, d)
	}
	if len(restarts) == 0 {
		return
	}
	wg.Add(1)
	w.Guard.Go("memmon", "the alerts of that batch are lost", func() {
		defer wg.Done()
		w.batch(ctx, restarts)
	}, nil)
}

// overLimit is a process due for a restart.
type overLimit struct {
	t     Target
	rss   int64
	rule  Rule
	since int64 // the tick it went over its limit
}

// batch runs one tick's restarts side by side and, once all have ended,
// hands their alerts to the alerter as one batch: one mail.
func (w *Watchdog) batch(ctx context.Context, restarts []overLimit) {
	alerts := make([]*Alert, len(restarts))
	var wg sync.WaitGroup
	for i, d := range restarts {
		wg.Add(1)
		w.Guard.With("process", d.t.Name).Go("memmon", "that restart was abandoned; memmon may try again", func() {
			defer wg.Done()
			alerts[i] = w.restart(ctx, d)
		}, nil)
	}
	wg.Wait()
	if w.alerts == nil {
		return
	}
	var out []Alert
	for _, al := range alerts {
		if al != nil {
			out = append(out, *al)
		}
	}
	if len(out) > 0 {
		w.alerts.Enqueue(out...)
	}
}

// restart restarts one process and returns its alert: nil if there is
// nothing to report.
func (w *Watchdog) restart(ctx context.Context, d overLimit) *Alert {
	t, rss, rule := d.t, d.rss, d.rule
	now := time.Now()
	reason := fmt.Sprintf("RSS %s over %s (%s) for %d samples", fmtBytes(rss), fmtBytes(int64(rule.Limit)), rule.Name, w.cfg.Samples)
	w.log.Warn("restarting a process over its memory limit", "process", t.Name, "pid", t.Pid, "rss", rss, "limit", int64(rule.Limit), "rule", rule.Name)
	err := func() error {
		// Even a restart that panics gives its slot back.
		defer func() {
			w.mu.Lock()
			w.restarting[t.Name] = false
			w.busy[t.Program]--
			w.mu.Unlock()
		}()
		return w.host.Restart(ctx, t.Name, t.Pid, "memmon: "+reason)
	}()
	w.mu.Lock()
	var restarts int
	if err == nil {
		w.Restarts.Add(1)
		s := w.samples[t.Name]
		s.LastRestartAt, s.LastReason = now, reason
		w.samples[t.Name] = s
		h := append(w.history[t.Name], now)
		for len(h) > 0 && now.Sub(h[0]) > time.Hour {
			h = h[1:]
		}
		w.history[t.Name] = h
		restarts = len(h)
	}
	w.mu.Unlock()
	if err != nil {
		w.log.Error("memmon restart failed", "process", t.Name, "pid", t.Pid, "err", err)
		if errors.Is(err, ErrPidGone) {
			return nil // it exited or was replaced meanwhile: nothing to report
		}
	}
	return &Alert{
		Host: w.name, Name: t.Name, Port: t.Port, Pid: t.Pid, RSS: rss, Rule: rule,
		Uptime: now.Sub(t.StartedAt), Restarts: restarts, StderrLog: t.StderrLog,
		Tail: w.host.StderrTail(t.Name, 20), At: now, Err: err,
	}
}

// ErrPidGone is what a Host's Restart returns (wrapped) when the process
// no longer runs as the sampled pid: it exited or was replaced meanwhile.
var ErrPidGone = errors.New("no longer runs as pid")
