package supervisor

import (
	"net/http"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/metrics"
)

// metricsHandler serves GET /metrics on the HTTP listener: the daemon's
// state (metricsSnapshot) at each scrape, with the Go runtime's and the
// process's metrics.
func (s *Supervisor) metricsHandler() http.Handler {
	return metrics.NewHandler(s.metricsSnapshot, metrics.Options{Logger: s.log.With("component", "metrics")})
}

// exitReasons maps procgroup's exit reasons to metrics.ExitReasons'
// order: a StopPid stop is memmon's restart, its only caller.
var exitReasons = [procgroup.NumExitReasons]int{
	procgroup.ExitExpected:   0,
	procgroup.ExitUnexpected: 1,
	procgroup.ExitKilled:     2,
	procgroup.ExitStopped:    3,
	procgroup.ExitStopPid:    4,
}

// metricsSnapshot reads the daemon's state for a scrape: every process's
// status and figures (one pass of the status sampler, which counts open
// files too), and the counters.
func (s *Supervisor) metricsSnapshot() metrics.Snapshot {
	all := s.all()
	sts := make([]procgroup.Status, len(all))
	for i, p := range all {
		sts[i] = p.Status()
	}
	figures := s.stats.SampleFDs(appendTargets(nil, sts))
	snap := metrics.Snapshot{Processes: make([]metrics.Process, len(sts))}
	for i, st := range sts {
		p := &snap.Processes[i]
		p.Group, p.Program, p.Name, p.Port = string(st.Group), string(st.Program), st.FullName(), st.Port
		p.State, p.Restarts = st.State.String(), st.Restarts
		if st.Pid > 0 {
			p.StartTime = st.StartedAt
		}
		for r, n := range st.Exits {
			p.Exits[exitReasons[r]] += n
		}
		if f := figures[i]; f.OK {
			p.Sampled = true
			p.CPU, p.CPUOK = f.CPU, f.CPUOK
			p.RSS, p.TreeRSS = f.RSS, f.TreeRSS
			p.FDs, p.FDsOK = f.FDs, f.FDsOK
		}
		p.StdoutDropped, p.StderrDropped = st.StdoutDropped, st.StderrDropped
	}

	s.mu.RLock()
	m, alerter, last := s.nginx, s.alerter, s.lastReload
	s.mu.RUnlock()
	mc := s.counters.memmon.Counts()
	snap.MemmonSamples, snap.MemmonRestarts, snap.MemmonGiveUps = mc.Samples, mc.Restarts, mc.GiveUps
	if alerter != nil {
		a := alerter.Stats()
		snap.AlertMailsSent, snap.AlertsMailed, snap.AlertFailures, snap.AlertRetries = a.Sent, a.Mailed, a.Failed, a.Retries
		snap.AlertsDropped, snap.AlertsGivenUp, snap.AlertsHeld = a.Dropped, a.GivenUp, a.Held
	}
	nc := s.counters.nginx.Counts()
	snap.NginxRenders = [3]int64{nc.RendersChanged, nc.RendersUnchanged, nc.RendersFailed}
	snap.NginxTests = [2]int64{nc.TestsOK, nc.TestsFailed}
	snap.NginxReloads = [3]int64{nc.ReloadsOK, nc.ReloadsFailed, nc.ReloadsNotRunning}
	snap.NginxLastSuccess, snap.NginxLastFailed = nc.LastSuccess, nc.LastFailed
	if m != nil {
		ns := m.Status()
		snap.Nginx, snap.NginxServers, snap.NginxDown = true, ns.Servers, ns.Down
	}

	s.mu.RLock()
	hm := s.haproxy
	s.mu.RUnlock()
	if hm != nil {
		hc := s.counters.haproxy.Counts()
		hs := hm.Status()
		snap.HAProxy, snap.HAProxyServers, snap.HAProxyDown = true, hs.Servers, hs.Down
		snap.HAProxyReloads = [3]int64{hc.ReloadsOK, hc.ReloadsFailed, hc.ReloadsNotRunning}
		snap.HAProxyRuntime = [2]int64{hc.RuntimeOK, hc.RuntimeFailed}
	}
	if w := s.fleetStatus(); w != nil {
		snap.Watch, snap.WatchReachable, snap.WatchMembers, snap.WatchIgnored, snap.WatchDropped = true, w.State == "ok", w.Members, w.Ignored, w.Dropped
	}
	if r := s.registryStatus(); r != nil {
		snap.Registry, snap.RegistryReachable = true, r.State == "ok"
		snap.RegistryMembers, snap.RegistryDown = r.Published, r.Down
		snap.RegistryFailedWrites, snap.RegistryLeaseGrants = r.FailedWrites, r.LeaseGrants
	}

	rs := s.counters.reloadStats()
	snap.Reloads = rs.byOutcome
	snap.ReloadSeconds = metrics.Histogram{Count: rs.count, Sum: rs.sum, Buckets: rs.buckets}
	snap.LastReloadOK = last.At.IsZero() || last.OK
	snap.LastReloadSuccess = rs.lastOK
	if snap.LastReloadSuccess.IsZero() {
		snap.LastReloadSuccess = s.startedAt // the configuration loaded then
	}

	s.up.mu.Lock()
	snap.Upgrades, snap.Rescues, snap.StartTime = int64(s.up.upgrades), int64(s.up.rescues), s.startedAt
	failures := s.up.failures
	s.up.mu.Unlock()
	snap.UpgradeFailures = int64(s.counters.upgradeFailuresBefore() + failures)
	snap.Panics = map[string]int64{}
	for _, r := range s.guard.Records() {
		snap.Panics[r.Component] += r.Panics
	}
	snap.WatchdogMissed = s.watchdogMissed.Load()
	b := s.opts.Build
	snap.Version, snap.Revision, snap.GoVersion = b.Version, b.Revision, b.Go
	if l := s.http; l != nil {
		snap.HTTPConnections, snap.HTTPRefused = l.counters.Accepted.Load(), l.counters.Refused.Load()
	}
	return snap
}
