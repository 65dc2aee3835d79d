package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/templates"
)

// NginxStatus is the outcome of the last nginx update, as the API reports it.
type NginxStatus struct {
	Output      string    `json:"output"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"` // when the last update finished
	LastChange  time.Time `json:"last_change,omitzero"`  // last time a new file went live
	Reloads     int       `json:"reloads"`
	Failures    int       `json:"failures"`
	RetryAt     time.Time `json:"retry_at,omitzero"` // a failed reload is retried then
	Servers     int       `json:"servers"`
}

// nginxManager keeps nginx's upstream file in step with the processes. It
// runs in its own goroutine: enqueue never blocks, a newer submission
// replaces a pending one (and inherits its waiters), and a hanging nginx
// only delays nginx updates.
type nginxManager struct {
	rp   *reaper.Reaper
	log  *slog.Logger
	kick chan struct{}
	stop func() // set by start: ends run and waits for it

	mu           sync.Mutex
	settings     *NginxSettings // replaced by a reload
	pending      *nginxJob
	status       NginxStatus
	reloadNeeded bool // the file on disk passed the test but nginx has not loaded it
}

// nginxJob is one rendering to apply, and who waits for its outcome.
type nginxJob struct {
	settings *NginxSettings
	data     templates.Data
	waiters  []chan<- error
}

// Backoff of reload retries.
const (
	nginxRetryMin = time.Second
	nginxRetryMax = time.Minute
)

func newNginxManager(n *NginxSettings, rp *reaper.Reaper, log *slog.Logger) *nginxManager {
	return &nginxManager{
		settings: n,
		rp:       rp,
		log:      log.With("component", "nginx"),
		kick:     make(chan struct{}, 1),
		status:   NginxStatus{Output: n.Output},
	}
}

// start runs the manager in a goroutine until m.stop is called.
func (m *nginxManager) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.run(ctx)
	}()
	m.stop = func() {
		cancel()
		<-done
	}
}

// setSettings makes later submissions use n.
func (m *nginxManager) setSettings(n *NginxSettings) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settings = n
	m.status.Output = n.Output
}

// enqueue queues d for rendering, replacing whatever is queued; done, if
// not nil, receives the outcome of the update that carries d (or a newer one).
func (m *nginxManager) enqueue(d templates.Data, done chan<- error) {
	m.mu.Lock()
	job := &nginxJob{settings: m.settings, data: d}
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

// Status returns the last outcome.
func (m *nginxManager) Status() NginxStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// run applies submissions until ctx ends, and retries a failed reload with
// a doubling delay until it succeeds or a newer submission takes over.
func (m *nginxManager) run(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	delay := nginxRetryMin
	var last *nginxJob
	for {
		select {
		case <-ctx.Done():
			// Nobody waits forever on a manager that is gone.
			m.mu.Lock()
			if m.pending != nil {
				for _, w := range m.pending.waiters {
					w <- errors.New("nginx updates stopped")
				}
				m.pending = nil
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
			delay = nginxRetryMin
		case <-retry.C:
			if last == nil {
				continue
			}
		}
		retry.Stop()
		err := m.apply(ctx, last.settings, last.data)
		for _, w := range last.waiters {
			w <- err
		}
		last.waiters = nil
		m.mu.Lock()
		needRetry := m.reloadNeeded
		if needRetry {
			m.status.RetryAt = time.Now().Add(delay)
		} else {
			m.status.RetryAt = time.Time{}
		}
		m.mu.Unlock()
		if err != nil && needRetry {
			m.log.Warn("nginx reload failed; will retry", "in", delay, "err", err)
			retry.Reset(delay)
			delay = min(delay*2, nginxRetryMax)
		}
	}
}

// apply renders d and, when the bytes differ from the file on disk (or a
// reload is owed), writes it atomically, tests it, restores the previous
// file if the test fails, and reloads nginx if it passes.
func (m *nginxManager) apply(ctx context.Context, n *NginxSettings, d templates.Data) (err error) {
	servers := 0
	for _, u := range d.Upstreams {
		servers += len(u.Servers)
	}
	m.mu.Lock()
	reloadNeeded := m.reloadNeeded
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.status.LastAttempt = time.Now() // when the outcome is known
		m.status.OK = err == nil
		m.status.Error = ""
		if err != nil {
			m.status.Error = err.Error()
			m.status.Failures++
			m.log.Error("nginx not updated", "err", err)
		}
	}()

	out, err := n.tmpl.Render(d)
	if err != nil {
		return err
	}
	old, readErr := os.ReadFile(n.Output)
	existed := readErr == nil
	if readErr != nil && !errors.Is(readErr, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", n.Output, readErr)
	}
	if existed && bytes.Equal(old, out) && !reloadNeeded {
		m.log.Debug("nginx configuration unchanged", "output", n.Output)
		return nil
	}
	if !bytes.Equal(old, out) || !existed {
		if err := writeAtomic(n.Output, out); err != nil {
			return err
		}
		if n.TestCommand != "" {
			if text, err := runCommand(ctx, m.rp, n.TestCommand, time.Duration(n.CommandTimeout)); err != nil {
				if rerr := restore(n.Output, old, existed); rerr != nil {
					err = fmt.Errorf("%w; and restoring the previous file failed: %v", err, rerr)
				}
				return fmt.Errorf("new configuration rejected, previous one restored: %w", err)
			} else {
				m.log.Debug("nginx test passed", "output", string(text))
			}
		}
	}
	if n.ReloadCommand != "" {
		if _, err := runCommand(ctx, m.rp, n.ReloadCommand, time.Duration(n.CommandTimeout)); err != nil {
			m.mu.Lock()
			m.reloadNeeded = true
			m.mu.Unlock()
			return fmt.Errorf("configuration written and tested, but reload failed: %w", err)
		}
	}
	m.mu.Lock()
	m.reloadNeeded = false
	m.status.Reloads++
	m.status.LastChange = time.Now()
	m.status.Servers = servers
	m.mu.Unlock()
	m.log.Info("nginx updated", "output", n.Output, "servers", servers)
	return nil
}

func restore(path string, old []byte, existed bool) error {
	if !existed {
		return os.Remove(path)
	}
	return writeAtomic(path, old)
}

// writeAtomic replaces path with data through a temporary file in the same
// directory and a rename, keeping the old file's mode (0644 for a new one):
// nginx never reads a half-written file.
func writeAtomic(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
