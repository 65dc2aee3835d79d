// Package nginx keeps a balancer's configuration file (nginx's upstreams,
// or HAProxy's backends) in step with the servers: a Manager renders what
// it is given, replaces the file atomically, has the balancer test it
// (restoring the previous file if the test fails) and reload, and retries
// a failed reload with backoff. A change of server states alone can go
// through the balancer's runtime API instead of a reload.
package nginx

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/supervisor/internal/atomicfile"
	"github.com/gosup/gosup/templates"
)

// Settings say where the file goes, how it is rendered and how nginx tests
// and loads it: the validated [nginx] table.
type Settings struct {
	// Name is the balancer's program, in messages and the check that it
	// is installed: "nginx" (the default) or "haproxy".
	Name     string
	Output   string              // the file written
	Template *templates.Template // what renders it
	// TestCommand and ReloadCommand are operator command lines ("" skips
	// the step), killed after CommandTimeout.
	TestCommand    string
	ReloadCommand  string
	CommandTimeout time.Duration
	// Runtime, when set, applies a change of server states alone (the
	// same servers, only some marked down or up again) to the running
	// balancer without a reload: the file is written and tested as
	// always, then Runtime is called instead of the reload command. An
	// error falls back to the reload.
	Runtime func(ctx context.Context, changes []StateChange) error
	// Identity, when set, names what the balancer runs now (HAProxy: its
	// worker's pid, from the runtime API). A reload then counts as done
	// only once the name changes: a reload command the balancer ignored
	// (HAProxy's master drops a SIGUSR2 that comes while it is still
	// starting or reloading) is run again, up to reloadAttempts times.
	// An error from Identity before the reload skips the check.
	Identity func(ctx context.Context) (string, error)
}

// A reload checked with Identity must show within reloadTakes, else the
// reload command runs again, reloadAttempts times in all.
const (
	reloadTakes    = 5 * time.Second
	reloadAttempts = 3
)

// StateChange is one server whose state changed: Upstream is its
// upstream's (or backend's) name, Server as the template sees it, with
// its new State.
type StateChange struct {
	Upstream string
	Server   templates.Server
}

// Status is the outcome of the last update (api.NginxStatus has the same
// fields, converted by the daemon: this package knows nothing of the API).
type Status struct {
	Output      string    `json:"output"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	LastAttempt time.Time `json:"last_attempt"` // when the last update finished
	LastChange  time.Time `json:"last_change"`  // last time a new file went live
	Reloads     int       `json:"reloads"`
	Failures    int       `json:"failures"`
	RetryAt     time.Time `json:"retry_at"` // a failed reload is retried then
	// Servers is how many servers the file on disk has (Down of them
	// marked down): it is counted when an update writes the file, or
	// finds it already as rendered, whether or not nginx then reloads.
	Servers int `json:"servers"`
	Down    int `json:"down,omitempty"`
	// NotRunning says the last reload failed because nginx is not running
	// (no pid, or no such process): the file is written and tested, and
	// nginx is reloaded at the next retry after it starts.
	NotRunning bool `json:"not_running,omitempty"`
	// NotInstalled: not running because the test or reload command's
	// program is not there (the file is written, not tested).
	NotInstalled bool `json:"not_installed,omitempty"`
}

// State is what a Manager hands to its successor in the daemon's new image
// across an in-place upgrade (State, then Restore): plain values, so that
// it goes through encoding/json unchanged. Settings are not part of it:
// the new manager has its own, from the configuration.
type State struct {
	Status Status `json:"status"`
	// ReloadNeeded says the file on disk passed nginx's test but nginx
	// has not loaded it: the reload failed. The new manager retries the
	// update of Last at Status.RetryAt (at once if that has passed),
	// without waiting for a submission.
	ReloadNeeded bool `json:"reload_needed"`
	// TestNeeded says the file on disk was written without its test (the
	// test command's program was not there): the retry tests it first.
	TestNeeded bool `json:"test_needed,omitempty"`
	// RetryDelay is the backoff after the next failed retry (0: the
	// least, 1 s).
	RetryDelay time.Duration `json:"retry_delay,omitempty"`
	// Last is the data of the last update applied or tried (nil: none
	// yet).
	Last *templates.Data `json:"last,omitempty"`
	// Pending is the data of a submission queued but not applied when the
	// manager stopped (its waiters heard "nginx updates stopped"): the
	// new manager applies it as soon as it starts, unless the daemon
	// submits newer data first.
	Pending *templates.Data `json:"pending,omitempty"`
	// Loaded is what the running balancer was last loaded with (nil: not
	// known): the new manager applies a change of server states alone
	// from it through the runtime API, as this one would have.
	Loaded *Loaded `json:"loaded,omitempty"`
}

// Loaded is what a balancer was last loaded with: the data, the file it
// was rendered to and the rendering's SHA-256 (hex). A rendering may go
// through the runtime API only if the settings in force render Data to
// the same bytes at the same Output: a new template or output needs a
// reload.
type Loaded struct {
	Data   templates.Data `json:"data"`
	Output string         `json:"output"`
	Sum    string         `json:"sum"`
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Manager keeps nginx's upstream file in step with the processes. It runs
// in its own goroutine between Start and Stop: Submit never blocks, a newer
// submission replaces a pending one (and inherits its waiters), and a
// hanging nginx only delays nginx updates.
type Manager struct {
	// Guard, when set before Start, runs the manager: a panic is
	// recovered and counted, and the manager starts again after a backoff
	// (nil: recovered and logged, not counted).
	Guard *guard.Guard
	// Tally, when set before Start, counts the renders, tests and
	// reloads of this manager along with those of the managers before
	// and after it (the daemon keeps one). nil: not counted.
	Tally *Tally

	rp   *reaper.Reaper
	log  *slog.Logger
	name string // Settings.Name
	kick chan struct{}
	stop func() // set by Start: ends run and waits for it
	// applyHook, when set before Start (by tests), runs first in every
	// update.
	applyHook func()

	mu           sync.Mutex
	settings     Settings // replaced by a reload
	pending      *submission
	status       Status
	reloadNeeded bool // the file on disk passed the test but nginx has not loaded it
	untested     bool // the file on disk was written while the test command could not run
	// last is the update last applied or tried, retried while a reload
	// is owed, and delay the backoff after its next failed retry: run's,
	// kept here for State and Restore.
	last  *submission
	delay time.Duration
	// loaded is what the running balancer was last loaded with (a reload
	// or the runtime API succeeded): a rendering that differs from it in
	// server states alone goes through Settings.Runtime.
	loaded *Loaded
}

// Tally counts what the managers of a daemon did, by outcome: the
// figures its metrics show.
type Tally struct {
	mu sync.Mutex
	c  Counts
}

// Counts are a Tally's figures, plain values (for a handover).
type Counts struct {
	// Renders of the file: changed (a new file written), unchanged (the
	// same as on disk), failed (rendering, reading or writing failed).
	RendersChanged   int64 `json:"renders_changed"`
	RendersUnchanged int64 `json:"renders_unchanged"`
	RendersFailed    int64 `json:"renders_failed"`
	// Runtime API updates (a change of server states alone): applied, or
	// failed (then reloaded instead).
	RuntimeOK     int64 `json:"runtime_ok,omitempty"`
	RuntimeFailed int64 `json:"runtime_failed,omitempty"`
	// Runs of the test command, and of the reload command (not running:
	// it said nginx is not running, or nginx is not installed).
	TestsOK           int64 `json:"tests_ok"`
	TestsFailed       int64 `json:"tests_failed"`
	ReloadsOK         int64 `json:"reloads_ok"`
	ReloadsFailed     int64 `json:"reloads_failed"`
	ReloadsNotRunning int64 `json:"reloads_not_running"`
	// LastSuccess is when an update last ended with nginx in step with
	// the file (zero: never).
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastFailed: the last update did not end with nginx in step with the
	// file (rendering, test or reload failed, or nginx is not running);
	// false before the first update.
	LastFailed bool `json:"last_failed,omitempty"`
}

// Counts reads t (zero for a nil Tally).
func (t *Tally) Counts() Counts {
	if t == nil {
		return Counts{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.c
}

// Restore sets t to c.
func (t *Tally) Restore(c Counts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c = c
}

// count changes t's counts with f, if t is not nil.
func (t *Tally) count(f func(*Counts)) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.c)
}

// submission is one rendering to apply, and who waits for its outcome.
type submission struct {
	settings Settings
	data     templates.Data
	waiters  []chan<- error
}

// Backoff of reload retries. While nginx is not running, retries come at
// least every retryNotRunning, so that a freshly started nginx is reloaded
// (and the status says so) soon after.
const (
	retryMin        = time.Second
	retryMax        = time.Minute
	retryNotRunning = 10 * time.Second
)

// New makes a manager for s that runs its commands through rp; nothing
// runs until Start.
func New(s Settings, rp *reaper.Reaper, log *slog.Logger) *Manager {
	name := cmp.Or(s.Name, "nginx")
	return &Manager{
		name:     name,
		settings: s,
		rp:       rp,
		log:      log.With("component", name),
		kick:     make(chan struct{}, 1),
		status:   Status{Output: s.Output},
	}
}

// Start runs the manager in a goroutine until Stop is called.
func (m *Manager) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Guard.Run(ctx, m.name+" manager", m.run)
	}()
	m.stop = func() {
		cancel()
		<-done
	}
}

// Stop ends the manager and waits for it; whoever still waits for an
// update gets an error. Call it once, after Start.
func (m *Manager) Stop() { m.stop() }

// SetSettings makes later submissions use s.
func (m *Manager) SetSettings(s Settings) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settings = s
	m.status.Output = s.Output
}

// Submit queues d for rendering, replacing whatever is queued; done, if
// not nil, receives the outcome of the update that carries d (or a newer
// one). It never blocks: give done room for one value.
func (m *Manager) Submit(d templates.Data, done chan<- error) {
	m.mu.Lock()
	job := &submission{settings: m.settings, data: d}
	if m.pending != nil {
		job.waiters = m.pending.waiters
	}
	if done != nil {
		job.waiters = append(job.waiters, done)
	}
	m.pending = job
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// State returns what a manager in a new image of the daemon needs to
// carry on where this one stopped (see State). Call it after Stop
// returned: it is consistent at any time, but a manager still running
// changes it at once.
func (m *Manager) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := State{Status: m.status, ReloadNeeded: m.reloadNeeded, TestNeeded: m.untested, RetryDelay: m.delay, Loaded: m.loaded}
	if m.last != nil {
		d := m.last.data
		st.Last = &d
	}
	if m.pending != nil {
		d := m.pending.data
		st.Pending = &d
	}
	return st
}

// Restore makes a new manager carry on from st, the State of the manager
// it replaces: its status and counters continue, a reload owed is retried
// at st.Status.RetryAt (at once if that has passed) and a pending
// submission is applied once the manager starts. Call it after New and
// SetSettings, before Start. The status names the output of this
// manager's settings.
func (m *Manager) Restore(st State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status = st.Status
	m.status.Output = m.settings.Output
	m.reloadNeeded = st.ReloadNeeded
	m.untested = st.TestNeeded
	m.delay = st.RetryDelay
	m.loaded = st.Loaded
	m.last = nil
	if st.Last != nil {
		m.last = &submission{settings: m.settings, data: *st.Last}
	}
	if st.Pending != nil {
		m.pending = &submission{settings: m.settings, data: *st.Pending}
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
}

// Status returns the last outcome.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// run applies submissions until ctx ends, and retries a failed reload with
// a doubling delay until it succeeds or a newer submission takes over.
func (m *Manager) run(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	// last and delay carry on from a previous run (after a panic) or the
	// manager this one replaced (Restore): a reload owed is retried when
	// it was due.
	m.mu.Lock()
	last, delay := m.last, m.delay
	if last != nil && m.reloadNeeded {
		retry.Reset(max(time.Until(m.status.RetryAt), 0))
	}
	m.mu.Unlock()
	if delay == 0 {
		delay = retryMin
	}
	keep := func() {
		m.mu.Lock()
		m.last, m.delay = last, delay
		m.mu.Unlock()
	}
	// applying is the update under way. If it panics, its waiters hear so
	// at once, and it is queued again (unless something newer is) for the
	// run the guard starts after its backoff.
	var applying *submission
	defer func() {
		if applying == nil {
			return
		}
		failed := "update not applied: the " + m.name + " manager failed (a panic, see ctl info and the daemon's log); it tries again after a backoff"
		// The status first: a waiter that hears of the failure and asks
		// for the status sees it.
		m.mu.Lock()
		m.status.OK, m.status.Error = false, failed
		m.status.Failures++
		waiters := applying.waiters
		applying.waiters = nil
		if m.pending == nil {
			m.pending = applying
		}
		m.mu.Unlock()
		for _, w := range waiters {
			w <- errors.New(failed)
		}
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}()
	for {
		select {
		case <-ctx.Done():
			// Nobody waits forever on a manager that is gone. What was
			// pending stays, for State.
			m.mu.Lock()
			if m.pending != nil {
				for _, w := range m.pending.waiters {
					w <- errors.New(m.name + " updates stopped")
				}
				m.pending.waiters = nil
			}
			m.mu.Unlock()
			return
		case <-m.kick:
			m.mu.Lock()
			job := m.pending
			m.pending = nil
			m.mu.Unlock()
			if job == nil {
				continue
			}
			last = job
			delay = retryMin
			keep()
		case <-retry.C:
			if last == nil {
				continue
			}
		}
		retry.Stop()
		applying = last
		if m.applyHook != nil {
			m.applyHook()
		}
		err := m.apply(ctx, last.settings, last.data)
		for _, w := range last.waiters {
			w <- err
		}
		last.waiters = nil
		applying = nil
		m.mu.Lock()
		needRetry := m.reloadNeeded
		if needRetry {
			m.status.RetryAt = time.Now().Add(delay)
		} else {
			m.status.RetryAt = time.Time{}
		}
		m.mu.Unlock()
		// One line for each outcome worth one: an update refused, a
		// reload failed, nginx found not running (said once, until it
		// runs), nginx running again.
		var nr *notRunningError
		switch {
		case errors.As(err, &nr):
			if nr.first {
				m.log.Warn(nr.Error())
			}
		case err != nil && needRetry:
			m.log.Warn(m.name+" reload failed; will retry", "in", delay, "err", err)
		case err != nil:
			m.log.Error(m.name+" not updated", "err", err)
		}
		if err != nil && needRetry {
			retry.Reset(delay)
			delay = min(delay*2, retryMax)
			if nr != nil {
				delay = min(delay, retryNotRunning)
			}
			keep()
		}
	}
}

// apply renders d and, when the bytes differ from the file on disk (or a
// reload is owed), writes it atomically, tests it, restores the previous
// file if the test fails, and reloads nginx if it passes.
func (m *Manager) apply(ctx context.Context, n Settings, d templates.Data) (err error) {
	servers, down := 0, 0
	for _, u := range d.Upstreams {
		servers += len(u.Servers)
		for _, sv := range u.Servers {
			if sv.State == "down" {
				down++
			}
		}
	}
	m.mu.Lock()
	reloadNeeded := m.reloadNeeded
	m.mu.Unlock()
	// rendered: the file on disk was found or made as rendered (a render
	// that failed is counted as such).
	rendered := false
	defer func() {
		if !rendered {
			m.Tally.count(func(c *Counts) { c.RendersFailed++ })
		}
		m.Tally.count(func(c *Counts) {
			if c.LastFailed = err != nil; err == nil {
				c.LastSuccess = time.Now()
			}
		})
	}()
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.status.LastAttempt = time.Now() // when the outcome is known
		m.status.OK = err == nil
		m.status.Error = ""
		var nr *notRunningError
		if errors.As(err, &nr) && !nr.first {
			// Still not running: the same failure, not a new one.
			m.status.Error = err.Error()
			return
		}
		m.status.NotRunning = nr != nil
		m.status.NotInstalled = nr != nil && nr.missing != ""
		if err != nil {
			m.status.Error = err.Error()
			m.status.Failures++
		}
	}()

	out, err := n.Template.Render(d)
	if err != nil {
		return err
	}
	old, readErr := readOutput(n.Output)
	existed := readErr == nil
	if readErr != nil && !errors.Is(readErr, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", n.Output, readErr)
	}
	if existed && bytes.Equal(old, out) && !reloadNeeded {
		m.log.Debug(m.name+" configuration unchanged", "output", n.Output)
		rendered = true
		m.Tally.count(func(c *Counts) { c.RendersUnchanged++ })
		m.setServers(servers, down)
		return nil
	}
	changed := !bytes.Equal(old, out) || !existed
	if changed {
		if err := atomicfile.Write(n.Output, out); err != nil {
			return err
		}
	}
	rendered = true
	m.Tally.count(func(c *Counts) {
		if changed {
			c.RendersChanged++
		} else {
			c.RendersUnchanged++
		}
	})
	m.mu.Lock()
	untested := m.untested
	m.mu.Unlock()
	// Without nginx there is nothing to test or reload: the file is
	// written, and both are done once nginx is there.
	for _, c := range []string{n.TestCommand, n.ReloadCommand} {
		if prog := missingProgram(c, m.name); prog != "" {
			m.Tally.count(func(c *Counts) { c.ReloadsNotRunning++ })
			m.setServers(servers, down)
			return m.notRunning(&notRunningError{name: m.name, output: n.Output, missing: prog}, changed || untested, nil)
		}
	}
	if changed || untested {
		if n.TestCommand != "" {
			text, err := procgroup.RunCommand(ctx, m.rp, n.TestCommand, nil, n.CommandTimeout)
			m.Tally.count(func(c *Counts) {
				if err != nil {
					c.TestsFailed++
				} else {
					c.TestsOK++
				}
			})
			if err != nil {
				if rerr := restore(n.Output, old, existed); rerr != nil {
					err = fmt.Errorf("%w; and restoring the previous file failed: %v", err, rerr)
				}
				return fmt.Errorf("new configuration rejected, previous one restored: %w", err)
			}
			m.log.Debug(m.name+" test passed", "output", string(text))
		}
		m.mu.Lock()
		m.untested = false
		m.mu.Unlock()
	}
	// The file on disk is this rendering from here on.
	m.setServers(servers, down)
	if changes, ok := m.stateChangesOnly(n, d, reloadNeeded || untested); ok {
		err := n.Runtime(ctx, changes)
		if err == nil {
			m.Tally.count(func(c *Counts) { c.RuntimeOK++ })
			m.mu.Lock()
			m.status.LastChange = time.Now()
			m.loaded = &Loaded{Data: d, Output: n.Output, Sum: sum(out)}
			m.mu.Unlock()
			m.log.Info(m.name+" updated through its runtime API, without a reload", "output", n.Output, "changed", len(changes))
			return nil
		}
		m.Tally.count(func(c *Counts) { c.RuntimeFailed++ })
		m.log.Warn(m.name+" runtime API failed: reloading instead", "err", err)
	}
	if n.ReloadCommand != "" {
		before := ""
		if n.Identity != nil {
			if id, err := n.Identity(ctx); err == nil {
				before = id
			}
		}
		for attempt := 1; ; attempt++ {
			if text, err := procgroup.RunCommand(ctx, m.rp, n.ReloadCommand, nil, n.CommandTimeout); err != nil {
				if notRunning(text) {
					m.Tally.count(func(c *Counts) { c.ReloadsNotRunning++ })
					return m.notRunning(&notRunningError{name: m.name, output: n.Output, tested: n.TestCommand != ""}, false, err)
				}
				m.Tally.count(func(c *Counts) { c.ReloadsFailed++ })
				m.mu.Lock()
				m.reloadNeeded = true
				m.mu.Unlock()
				return fmt.Errorf("configuration written and tested, but reload failed: %w", err)
			}
			if before == "" || m.reloadTook(ctx, n, before) {
				break
			}
			if attempt == reloadAttempts || ctx.Err() != nil {
				m.Tally.count(func(c *Counts) { c.ReloadsFailed++ })
				m.mu.Lock()
				m.reloadNeeded = true
				m.mu.Unlock()
				return fmt.Errorf("configuration written and tested, but %s did not reload: the reload command ran %d times and %s still runs the previous configuration (%s)", m.name, attempt, m.name, before)
			}
			m.log.Warn(m.name+" ignored the reload: running the reload command again", "still", before, "attempt", attempt+1)
		}
		m.Tally.count(func(c *Counts) { c.ReloadsOK++ })
	}
	m.mu.Lock()
	m.reloadNeeded = false
	wasDown := m.status.NotRunning
	m.status.NotRunning, m.status.NotInstalled = false, false
	m.status.Reloads++
	m.status.LastChange = time.Now()
	m.loaded = &Loaded{Data: d, Output: n.Output, Sum: sum(out)}
	m.mu.Unlock()
	if wasDown {
		m.log.Info(m.name+" is running: reloaded", "output", n.Output, "servers", servers)
	} else {
		m.log.Info(m.name+" updated", "output", n.Output, "servers", servers)
	}
	return nil
}

// reloadTook waits (at most reloadTakes, or until ctx ends) until the
// balancer's Identity is no longer before.
func (m *Manager) reloadTook(ctx context.Context, n Settings, before string) bool {
	deadline := time.Now().Add(reloadTakes)
	for {
		if id, err := n.Identity(ctx); err == nil && id != before {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// stateChangesOnly gives the servers whose state d changes from what the
// running balancer was loaded with, when that is all d changes and the
// runtime API can apply it: n has Runtime, nothing is owed (a reload or
// a test: owed says so) and the balancer was loaded by this manager.
func (m *Manager) stateChangesOnly(n Settings, d templates.Data, owed bool) ([]StateChange, bool) {
	m.mu.Lock()
	ld := m.loaded
	m.mu.Unlock()
	if n.Runtime == nil || owed || ld == nil || ld.Output != n.Output || len(ld.Data.Upstreams) != len(d.Upstreams) {
		return nil, false
	}
	if again, err := n.Template.Render(ld.Data); err != nil || sum(again) != ld.Sum {
		return nil, false // another template: what the balancer runs is not its rendering
	}
	loaded := &ld.Data
	a, b := *loaded, d
	a.Time, b.Time = time.Time{}, time.Time{}
	a.Upstreams, b.Upstreams = nil, nil
	if !reflect.DeepEqual(a, b) {
		return nil, false
	}
	var changes []StateChange
	for i, u := range d.Upstreams {
		was := loaded.Upstreams[i]
		if len(was.Servers) != len(u.Servers) {
			return nil, false
		}
		wu, nu := was, u
		wu.Servers, nu.Servers = nil, nil
		if !reflect.DeepEqual(wu, nu) {
			return nil, false
		}
		for j, sv := range u.Servers {
			old := was.Servers[j]
			old.State = sv.State
			if old != sv {
				return nil, false
			}
			if was.Servers[j].State != sv.State {
				changes = append(changes, StateChange{Upstream: u.Name, Server: sv})
			}
		}
	}
	return changes, len(changes) > 0
}

// notRunning records that nginx is not there to load the file (not
// running, or not installed): a reload is owed, and a test too when
// untested. The error is logged and counted only when the last attempt
// did not end the same way.
func (m *Manager) notRunning(e *notRunningError, untested bool, cause error) error {
	e.err = cause
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloadNeeded = true
	m.untested = m.untested || untested
	e.first = !m.status.NotRunning || m.status.Error != e.Error()
	return e
}

// missingProgram returns the program command runs when it is nginx and
// not to be found (not in $PATH, or no such file), "" otherwise: any other
// program missing (a typo, systemctl in a container) is the command's
// failure, reported as such.
func missingProgram(command, name string) string {
	if command == "" {
		return ""
	}
	argv, err := procgroup.CommandArgv(command)
	if err != nil || len(argv) == 0 || filepath.Base(argv[0]) != name {
		return ""
	}
	if _, err := exec.LookPath(argv[0]); errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return argv[0]
	}
	return ""
}

// setServers records what the file on disk holds.
func (m *Manager) setServers(servers, down int) {
	m.mu.Lock()
	m.status.Servers, m.status.Down = servers, down
	m.mu.Unlock()
}

// notRunningError is a reload that failed because nginx is not running:
// the file is written (and tested), and nginx loads it when it starts, or
// at the next retry after. first says the previous attempt did not find
// nginx down: only then is it logged and counted.
type notRunningError struct {
	name    string // the balancer: nginx or haproxy
	output  string
	tested  bool
	missing string // the program not found: nginx is not installed
	first   bool
	err     error // the reload command's failure, with nginx's own words
}

func (e *notRunningError) Error() string {
	if e.missing != "" {
		return fmt.Sprintf("%s is not installed (no %s): %s written, not checked; it will be checked and %s reloaded once it is there", e.name, e.missing, e.output, e.name)
	}
	done := "written"
	if e.tested {
		done = "written and checked"
	}
	return fmt.Sprintf("%s is not running: %s %s; it will be reloaded once %s runs", e.name, e.output, done, e.name)
}

func (e *notRunningError) Unwrap() error { return e.err }

// IsNotRunning reports whether err is an update that wrote the file but
// found no nginx to load it (not running, or not installed).
func IsNotRunning(err error) bool {
	var nr *notRunningError
	return errors.As(err, &nr)
}

// notRunningSigns are what a reload command prints when there is no nginx
// to signal: `nginx -s reload` with an empty pid file, no pid file or a
// stale pid, and `systemctl reload nginx` with the unit stopped.
var notRunningSigns = [][]byte{
	[]byte(`invalid PID number`),
	[]byte(`.pid" failed (2: No such file or directory)`),
	[]byte(`failed (3: No such process)`),
	[]byte(`is not active, cannot reload`),
}

// notRunning reports whether a failed reload command's output says nginx
// is not running.
func notRunning(output []byte) bool {
	for _, s := range notRunningSigns {
		if bytes.Contains(output, s) {
			return true
		}
	}
	return false
}

func restore(path string, old []byte, existed bool) error {
	if !existed {
		return os.Remove(path)
	}
	return atomicfile.Write(path, old)
}

// maxOutputBytes bounds what an update reads of the file at output (to
// compare with the new rendering, and to put back if nginx rejects that):
// gosup writes a few hundred bytes a server, so a larger file is not one
// it wrote.
const maxOutputBytes = 16 << 20

// readOutput reads the file at path, refusing more than maxOutputBytes.
func readOutput(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxOutputBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxOutputBytes {
		return nil, fmt.Errorf("more than %d MiB, so not a file gosup wrote: remove it, or set output to a path of gosup's own", maxOutputBytes>>20)
	}
	return b, nil
}
