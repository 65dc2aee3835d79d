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
// runs in its own goroutine: submit never blocks, a newer submission
// replaces a pending one, and a hanging nginx only delays nginx updates.
type nginxManager struct {
	settings *NginxSettings
	rp       *reaper.Reaper
	log      *slog.Logger
	pending  chan templates.Data // one slot, latest wins

	mu           sync.Mutex
	status       NginxStatus
	reloadNeeded bool // the file on disk passed the test but nginx has not loaded it
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
		pending:  make(chan templates.Data, 1),
		status:   NginxStatus{Output: n.Output},
	}
}

// submit queues d for rendering, replacing whatever is queued.
func (m *nginxManager) submit(d templates.Data) {
	for {
		select {
		case m.pending <- d:
			return
		default:
		}
		select {
		case <-m.pending:
		default:
		}
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
	var last templates.Data
	for {
		select {
		case <-ctx.Done():
			return
		case last = <-m.pending:
			delay = nginxRetryMin
		case <-retry.C:
		}
		retry.Stop()
		err := m.apply(ctx, last)
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
func (m *nginxManager) apply(ctx context.Context, d templates.Data) (err error) {
	n := m.settings
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
				if rerr := m.restore(old, existed); rerr != nil {
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

func (m *nginxManager) restore(old []byte, existed bool) error {
	if !existed {
		return os.Remove(m.settings.Output)
	}
	return writeAtomic(m.settings.Output, old)
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
