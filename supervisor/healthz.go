package supervisor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup"
)

// healthCheckTimeout bounds each of the daemon's liveness checks for
// /healthz (the whole answer is bounded by the web handler's timeout).
const healthCheckTimeout = 5 * time.Second

// liveMaxAge is how long the liveness checks' answer serves /healthz:
// they take the decide lock, ping the reaper and ask ctl info over the
// control socket, and /healthz needs no credentials, so a flood of it
// checks at most once a liveMaxAge (the processes' states are read at
// each request: they are cheap, and a load balancer sees a change at
// once).
const liveMaxAge = time.Second

// liveMemo shares the liveness checks between /healthz requests: one
// check at a time, its answer reused for maxAge.
type liveMemo struct {
	mu      sync.Mutex
	at      time.Time
	reasons []string
	running chan struct{} // closed when the check under way ends
}

// get returns check's answer, or that of the check under way, or the
// last one if younger than maxAge. A check runs with its own deadline,
// not ctx's: the requests waiting for it should not see it cut because
// the first went away.
func (m *liveMemo) get(ctx context.Context, maxAge time.Duration, check func() []string) []string {
	m.mu.Lock()
	for {
		if !m.at.IsZero() && time.Since(m.at) < maxAge {
			r := m.reasons
			m.mu.Unlock()
			return r
		}
		running := m.running
		if running == nil {
			break
		}
		m.mu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return []string{fmt.Sprintf("gosup's liveness checks: %v", ctx.Err())}
		}
		m.mu.Lock()
		if !m.at.IsZero() {
			r := m.reasons // the answer waited for
			m.mu.Unlock()
			return r
		}
	}
	done := make(chan struct{})
	m.running = done
	m.mu.Unlock()
	reasons := []string{"gosup's liveness checks panicked"}
	defer func() {
		m.mu.Lock()
		m.at, m.reasons, m.running = time.Now(), reasons, nil
		m.mu.Unlock()
		close(done)
	}()
	reasons = check()
	return reasons
}

// health is /healthz: the daemon is healthy when it is not stopping, its
// loops answer (the checks the systemd watchdog vouches
// for: livenessChecks), and every process of an autostart program is
// RUNNING or deliberately not: stopped by gosup (ctl stop, kept as admin
// state, or a reload's plan), or exited as expected with no restart due
// (a one-shot job that is done). Otherwise one reason a line, the daemon's
// first, then the processes' in ctl status order, each with ctl status's
// description. While the daemon starts, its processes are STARTING (the
// listener starts once they are spawned), which says it is not ready;
// while a new image starts after an upgrade, they are RUNNING, adopted:
// a load balancer sees no blip.
func (s *Supervisor) health(ctx context.Context) (bool, []string) {
	select {
	case <-s.shutdownReq:
		return false, []string{"gosup is stopping"}
	default:
	}
	reasons := slices.Clone(s.http.live.get(ctx, liveMaxAge, func() []string {
		var reasons []string
		for _, c := range s.livenessChecks(s.config().Supervisor.Socket) {
			cctx, cancel := context.WithTimeout(context.Background(), healthCheckTimeout)
			err := c.ping(cctx)
			cancel()
			if err != nil {
				reasons = append(reasons, fmt.Sprintf("gosup's %s does not answer: %v", c.name, err))
			}
		}
		return reasons
	}))
	now := time.Now()
	for _, p := range s.all() {
		spec := p.Spec()
		if !spec.Program.AutoStart || gone(p) {
			continue
		}
		st := p.Status()
		if healthy(st, spec) || s.admin.isStopped(spec.FullName()) {
			continue
		}
		desc := toProcStatus(st, now).Description
		why := fmt.Sprintf("%s is %s", st.FullName(), st.State)
		if desc != "" {
			why += ": " + desc
		}
		reasons = append(reasons, why)
	}
	return len(reasons) == 0, reasons
}

// healthy reports whether a process of an autostart program counts as
// healthy: RUNNING, STOPPED (gosup stopped it: ctl stop, a reload), or
// EXITED with one of its exitcodes and no respawn due.
func healthy(st procgroup.Status, spec *procgroup.ProcSpec) bool {
	switch st.State {
	case procgroup.Running, procgroup.Stopped:
		return true
	case procgroup.Exited:
		return st.RespawnAt.IsZero() && st.ExitStatus != nil && slices.Contains(spec.Program.ExitCodes, *st.ExitStatus)
	}
	return false
}
