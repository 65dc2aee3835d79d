package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gosup/gosup/logtail"
	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/procstat"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/nginx"
	"golang.org/x/sys/unix"
)

// apiHost is the supervisor as the control API (package api) sees it.
type apiHost struct{ s *Supervisor }

func (h apiHost) Info() api.Info {
	s := h.s
	s.mu.RLock()
	cfg, watchdog, alerter, last := s.cfg, s.watchdog, s.alerter, s.lastReload
	s.mu.RUnlock()
	b := s.opts.Build
	info := api.Info{
		Pid: os.Getpid(), Config: cfg.File, Socket: cfg.Supervisor.Socket,
		UptimeS: time.Since(s.startedAt).Seconds(), Version: b.Version, LastReload: last,
		Revision: b.Revision, GoVersion: b.Go, Binary: s.opts.Binary, State: "running",
	}
	select {
	case <-s.shutdownReq:
		info.State = "stopping"
	case <-s.serving:
	default:
		info.State = "starting"
	}
	s.up.mu.Lock()
	info.StartedAt, info.Upgrades, info.UpgradedAt, info.Rescues = s.startedAt, s.up.upgrades, s.up.upgradedAt, s.up.rescues
	info.UpgradedFrom = s.up.from.Version
	info.UpgradeFailures, info.LastUpgradeError = s.up.failures, s.up.lastErr
	s.up.mu.Unlock()
	if m := s.currentNginx(); m != nil {
		st := api.NginxStatus(m.Status())
		info.Nginx = &st
	}
	info.Registry = s.registryStatus()
	info.Watch = s.fleetStatus()
	s.mu.RLock()
	hm := s.haproxy
	s.mu.RUnlock()
	if hm != nil {
		st := api.NginxStatus(hm.Status())
		info.HAProxy = &st
	}
	if watchdog != nil {
		info.MemmonRestarts = watchdog.Restarts.Load()
	}
	if alerter != nil {
		st := alerter.Stats() // one state: the counters add up
		info.AlertsSent, info.AlertsMailed, info.AlertsHeld, info.AlertsFiltered = st.Sent, st.Mailed, st.Held, st.Filtered
		info.AlertFailures, info.AlertsRetrying, info.AlertRetryAt = st.Failed, st.Retrying, st.RetryAt
		info.AlertsGivenUp, info.AlertsDropped = st.GivenUp, st.Dropped
	}
	for _, r := range s.guard.Records() {
		info.Panics = append(info.Panics, api.Panic{Component: r.Component, Count: r.Panics, LastAt: r.LastAt, Last: r.Last, State: r.State})
	}
	for _, p := range s.all() {
		st := p.Status()
		if st.LogDropped > 0 {
			info.LogDroppedBytes += st.LogDropped
			info.LogDroppedProcesses++
		}
		info.LogsFailing += len(st.LogFailing)
	}
	info.HTTP = s.http.info()
	info.WatchdogMissed = s.watchdogMissed.Load()
	if f := s.watchdogLast.Load(); f != nil {
		info.WatchdogLastFailure = f.At.Format(time.DateTime) + ": " + f.What
	}
	return info
}

// Upgrade is for root and the daemon's own user only: it runs a binary as
// the daemon, which socket_group's members may not make it do.
func (h apiHost) Upgrade(ctx context.Context, binary string) (api.UpgradeReply, error) {
	if cred := peerOf(ctx); cred == nil || (cred.Uid != 0 && int(cred.Uid) != os.Getuid()) {
		uid := "unknown"
		if cred != nil {
			uid = strconv.Itoa(int(cred.Uid))
		}
		return api.UpgradeReply{}, api.Forbidden(fmt.Errorf("only root or the daemon's user may upgrade it (you are uid %s)", uid))
	}
	reply, err := h.s.Upgrade(ctx, binary)
	if err != nil {
		h.s.log.Warn("upgrade refused", "binary", cmp.Or(binary, h.s.opts.Binary), "err", err)
	}
	switch {
	case errors.Is(err, errUpgradeBusy), errors.Is(err, errStarting), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return reply, api.Unavailable(err)
	case err != nil:
		return reply, api.Invalid(err)
	}
	return reply, nil
}

func (h apiHost) Status(dst []api.ProcStatus, patterns []string) ([]api.ProcStatus, []string, error) {
	s := h.s
	all := s.all()
	var procs []*procgroup.Process // nil: all of them, in order
	if len(patterns) > 0 {
		var err error
		if procs, err = s.match(patterns); err != nil {
			return dst, nil, patternError(err)
		}
	}
	sc := s.scratch.Get()
	defer s.scratch.Put(sc)
	sts, figures := s.sample(sc, all, procs)
	if procs == nil {
		procs = all
	}
	s.mu.RLock()
	m, hm, watchdog, last, cfg := s.nginx, s.haproxy, s.watchdog, s.lastReload, s.cfg
	s.mu.RUnlock()
	var warnings []string
	for _, w := range cfg.Warnings {
		warnings = append(warnings, oneLine(w.Error()))
	}
	for _, b := range []struct {
		name string
		m    *nginx.Manager
	}{{"nginx", m}, {"haproxy", hm}} {
		if b.m == nil {
			continue
		}
		if ns := b.m.Status(); !ns.OK && ns.Error != "" {
			w := oneLine(ns.Error)
			if !strings.HasPrefix(w, b.name+" ") { // "nginx is not running: ..." names it already
				w = b.name + ": " + w
			}
			warnings = append(warnings, w)
		}
	}
	if w := registryWarning(s.registryStatus()); w != "" {
		warnings = append(warnings, w)
	}
	warnings = append(warnings, s.fleetWarnings(cfg)...)
	if w := s.http.warning(); w != "" {
		warnings = append(warnings, oneLine(w))
	}
	if last.Error != "" {
		warnings = append(warnings, "reload at "+last.At.Format(time.DateTime)+" failed: "+oneLine(last.Error))
	}
	for _, r := range s.guard.Records() {
		warnings = append(warnings, oneLine(r.String()))
	}
	now := time.Now()
	out := slices.Grow(dst, len(procs))
	failing := 0
	untracked, cut, untrackedOf := 0, 0, 0
	for i, p := range procs {
		ps := toProcStatus(sts[i], now)
		if f := figures[i]; f.OK {
			ps.Sampled = true
			ps.CPUPercent, ps.CPUWindowS = f.CPUPercent, f.CPUWindow.Seconds()
			ps.RSSBytes, ps.TreeRSSBytes = f.RSS, f.TreeRSS
			if f.Untracked > 0 || f.Cut > 0 {
				untracked, cut, untrackedOf = untracked+f.Untracked, cut+f.Cut, untrackedOf+1
			}
		}
		for _, f := range ps.LogFailing {
			// A full disk fails every log on it: a few lines say so,
			// one more counts the rest.
			if failing++; failing <= maxLogWarnings {
				warnings = append(warnings, fmt.Sprintf("%s %s log %s failing since %s: %s; %d bytes dropped since",
					ps.Name, f.Stream, f.Path, f.Since.Format(time.DateTime), oneLine(f.Error), f.DroppedBytes))
			}
		}
		ps.OldSpec = s.onOldSpec(p)
		if ps.Description == "not started" && s.admin.isStopped(ps.Name) {
			ps.Description = "stopped with gosup ctl stop (kept across daemon restarts until gosup ctl start)"
		}
		if watchdog != nil {
			if m, ok := watchdog.Sample(ps.Name); ok {
				// RSS is the sample just taken: memmon's is up to its
				// interval old, and maybe of the pid before.
				ps.MemmonRestartAt, ps.MemmonReason = m.LastRestartAt, m.LastReason
				if m.GaveUp != "" && m.GaveUpPid == ps.Pid {
					ps.MemmonGaveUp, ps.MemmonGaveUpAt = m.GaveUp, m.GaveUpAt
					ps.Description += "; memmon gave up at " + m.GaveUpAt.Format(time.DateTime) + ": " + m.GaveUp
				}
			}
		}
		out = append(out, ps)
	}
	if failing > maxLogWarnings {
		warnings = append(warnings, fmt.Sprintf("%d more logs failing (see log_failing in gosup ctl status --json)", failing-maxLogWarnings))
	}
	if untrackedOf > 0 {
		warnings = append(warnings, untrackedWarning(untrackedOf, untracked, cut))
	}
	return out, warnings, nil
}

// sample reads the status of every process in all and in procs (a
// subset, unless a reload came in between; nil: all), and samples all
// their pids in one pass: the sampler keeps the files of those alone. It
// returns the statuses and the figures of procs, in order, in sc's
// slices.
func (s *Supervisor) sample(sc *statusScratch, all, procs []*procgroup.Process) ([]procgroup.Status, []procstat.Sample) {
	sc.sts = slices.Grow(sc.sts, len(all)) // as many as there are: see maxScratch
	for _, p := range all {
		sc.sts = append(sc.sts, p.Status())
	}
	if procs == nil {
		sc.figs = s.stats.SampleRecent(sc.figs, sc.targets())
		return sc.sts, sc.figs
	}
	index := make(map[*procgroup.Process]int, len(all))
	for i, p := range all {
		index[p] = i
	}
	want := make([]int, len(procs))
	for j, p := range procs {
		i, ok := index[p]
		if !ok {
			i = len(sc.sts)
			index[p] = i
			sc.sts = append(sc.sts, p.Status())
		}
		want[j] = i
	}
	// The tick's reading, at most procstat.Fresh old: a status of 1,000
	// processes reads no file of the ones without descendants.
	sc.figs = s.stats.SampleRecent(sc.figs, sc.targets())
	outSt, outFig := make([]procgroup.Status, len(procs)), make([]procstat.Sample, len(procs))
	for j, i := range want {
		outSt[j], outFig[j] = sc.sts[i], sc.figs[i]
	}
	return outSt, outFig
}

// statusScratch is what a status reads the processes into, kept for the
// next one (see Supervisor.scratch): at 1,000 processes their statuses and
// figures are 400 kB, garbage that would make the collector run (and scan
// every process's goroutine stack) every few statuses.
type statusScratch struct {
	sts  []procgroup.Status
	ts   []procstat.Target
	figs []procstat.Sample
}

// targets are the pids of sc.sts, for the sampler.
func (sc *statusScratch) targets() []procstat.Target {
	sc.ts = appendTargets(sc.ts[:0], sc.sts)
	return sc.ts
}

// appendTargets appends the children of sts to dst, for the sampler.
func appendTargets(dst []procstat.Target, sts []procgroup.Status) []procstat.Target {
	for _, st := range sts {
		dst = append(dst, procstat.Target{Pid: st.Pid, Start: st.PidStart})
	}
	return dst
}

// maxScratch bounds the scratch kept: one of a status of more processes
// is dropped rather than kept.
const maxScratch = 4096

// Reset empties sc for the next status, unless it is over maxScratch.
func (sc *statusScratch) Reset() bool {
	if cap(sc.sts) > maxScratch {
		return false
	}
	clear(sc.sts) // their strings are not kept alive by the pool
	sc.sts, sc.ts, sc.figs = sc.sts[:0], sc.ts[:0], sc.figs[:0]
	return true
}

// untrackedWarning says what the tree RSS of n processes leaves out:
// descendants beyond the number followed, and the pids past the bound of
// cut lists (unknown in number).
func untrackedWarning(n, untracked, cut int) string {
	var why []string
	if untracked > 0 {
		why = append(why, fmt.Sprintf("%d descendants beyond the %d gosup follows over all processes", untracked, procstat.MaxTracked))
	}
	if cut > 0 {
		why = append(why, fmt.Sprintf("the processes past the bound of %d lists of children or threads (%d KiB a list, %d threads a process)", cut, procstat.ChildrenMax>>10, procstat.ThreadsMax))
	}
	return fmt.Sprintf("tree RSS of %d processes leaves out %s", n, strings.Join(why, ", and "))
}

// memmonRSS reads the RSS of memmon's targets through the status
// sampler's files (see memmon.Watchdog.ReadRSS).
func (s *Supervisor) memmonRSS(targets []memmon.Target) map[int]int64 {
	ts := make([]procstat.Target, len(targets))
	for i, t := range targets {
		ts[i] = procstat.Target{Pid: t.Pid, Start: t.PidStart}
	}
	out := make(map[int]int64, len(ts))
	for i, f := range s.stats.RSS(ts) {
		if f.OK {
			out[ts[i].Pid] = f.RSS
		}
	}
	return out
}

// tickLoop reads every child's CPU clock every procstat.TickEvery (no
// descendants: a clock read and one pread each), so that the CPU status
// shows is over the last few seconds however long ago the last status
// was. Without a child running, it reads nothing.
func (s *Supervisor) tickLoop(ctx context.Context) {
	t := time.NewTicker(procstat.TickEvery)
	defer t.Stop()
	// Kept from tick to tick: an idle daemon makes no garbage here (a
	// copy of every Status each tick was 0.2 MB/s with 1,000 children).
	var ts []procstat.Target
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ts = ts[:0]
		for _, p := range s.all() {
			if pid, start := p.Pid(); pid > 0 {
				ts = append(ts, procstat.Target{Pid: pid, Start: start})
			}
		}
		if len(ts) > 0 || s.stats.Open() > 0 {
			// With none, to close the files of the last ones.
			s.stats.Tick(ts)
		}
	}
}

// maxLogWarnings bounds the failing-log lines under the status table.
const maxLogWarnings = 5

func toProcStatus(st procgroup.Status, now time.Time) api.ProcStatus {
	ps := api.ProcStatus{
		Name: st.FullName(), Group: string(st.Group), Program: string(st.Program), Process: st.Name, State: st.State.String(),
		Pid: st.Pid, Port: st.Port, Restarts: st.Restarts, ExitStatus: st.ExitStatus,
		SpawnError: st.SpawnError, Stdout: st.Stdout, Stderr: st.Stderr,
		IllegalMoves: st.IllegalMoves, LogDroppedBytes: st.LogDropped,
		StdoutDroppedBytes: st.StdoutDropped, StderrDroppedBytes: st.StderrDropped,
	}
	if st.ExitDesc != "" {
		ps.LastExit, ps.LastExitAt = st.ExitDesc, st.StoppedAt
	}
	for _, f := range st.LogFailing {
		ps.LogFailing = append(ps.LogFailing, api.LogFailure{Stream: f.Stream, Path: f.Path, Since: f.Since, Error: f.Err, DroppedBytes: f.Dropped})
	}
	switch st.State {
	case procgroup.Starting, procgroup.Running, procgroup.Stopping:
		if st.Pid == 0 {
			// No child: a spawn under way, or one that waits for the
			// last child's leftovers to go (the reason says so), or a
			// stop that does.
			ps.Description = "spawning"
			if st.Reason != "" {
				ps.Description = st.Reason
			}
			break
		}
		ps.UptimeS = now.Sub(st.StartedAt).Seconds()
		// "pid %d, uptime %s", without fmt: a status of 1,000 processes
		// formats 1,000 of these.
		d := make([]byte, 0, 40)
		d = append(d, "pid "...)
		d = strconv.AppendInt(d, int64(st.Pid), 10)
		d = append(d, ", uptime "...)
		ps.Description = string(api.AppendUptime(d, now.Sub(st.StartedAt)))
	case procgroup.Backoff, procgroup.Fatal:
		ps.Description = st.Reason
		if st.SpawnError != "" {
			ps.Description = st.SpawnError
		} else if st.ExitDesc != "" {
			ps.Description += " (" + st.ExitDesc + ")"
		}
	case procgroup.Exited, procgroup.Stopped:
		if !st.RespawnAt.IsZero() {
			// A respawn is pending: why it waits ("exited 3 times in a
			// row, restarting in 4s"), and how it exited.
			ps.Description = st.Reason
			if st.ExitDesc != "" {
				ps.Description += " (" + st.ExitDesc + ")"
			}
		} else if !st.StoppedAt.IsZero() {
			ps.Description = st.StoppedAt.Format(time.DateTime)
			if st.ExitDesc != "" {
				ps.Description += ", " + st.ExitDesc
			}
		} else {
			ps.Description = "not started"
		}
	}
	if st.IllegalMoves > 0 {
		ps.Description += fmt.Sprintf("; %d illegal state moves refused (a gosup bug, see the log)", st.IllegalMoves)
	}
	return ps
}

// Act runs start, stop or restart on the processes req names, each
// program's part in its lane, or signal at once.
//
// Each step is reported to progress (nil: nobody watches) as it happens.
// A client that goes away (Ctrl-C) stops the wait for a lane, as before;
// a part already begun runs to its end.
func (h apiHost) Act(ctx context.Context, verb string, req api.ActionRequest, progress *api.Progress) ([]api.Result, error) {
	s := h.s
	if verb == "signal" {
		return s.signal(req)
	}
	// Operations on a program run one at a time, in the order they came
	// (its lane); operations on other programs go on meanwhile. A client
	// that goes away stops waiting for a lane, but a program's part of
	// the operation, once begun, runs to its end (a half-done restart
	// would leave processes stopped or out of nginx); only shutdown
	// interrupts it.
	what := "ctl " + verb
	if req.Rolling {
		what += " --rolling"
	}
	procs, l, err := s.claim(withOp(ctx, what+" "+strings.Join(req.Patterns, " ")), req.Patterns)
	if err != nil {
		return nil, patternError(err)
	}
	defer l.release()
	l.watch(progress)
	octx := s.opsCtx
	var results []api.Result
	switch {
	case verb == "start":
		results = s.startAndPutBack(octx, l, procs)
		s.remember(false, results)
	case verb == "stop":
		results = s.plannedStop(octx, l, procs)
		s.remember(true, results)
	case verb == "restart" && req.Rolling:
		results = s.rollingRestart(octx, l, procs, true)
		s.remember(false, results)
	case verb == "restart":
		// Like supervisorctl: stop them all, then start those that
		// stopped; both outcomes are reported.
		byName := map[string]*procgroup.Process{}
		for _, p := range procs {
			byName[p.Spec().FullName()] = p
		}
		var again []*procgroup.Process
		for _, res := range s.plannedStop(octx, l, procs) {
			results = append(results, res)
			if res.OK {
				again = append(again, byName[res.Name])
			}
		}
		started := s.startAndPutBack(octx, l, again)
		s.remember(false, started)
		results = append(results, started...)
	}
	return results, nil
}

// signal sends a signal at once, without waiting for any lane: it is how
// an operator ends a stop stuck in its stopwaitsecs (ctl signal KILL),
// and it changes nothing gosup decides.
func (s *Supervisor) signal(req api.ActionRequest) ([]api.Result, error) {
	sig, err := procgroup.ParseSignal(req.Signal)
	if err != nil {
		return nil, api.Invalid(err)
	}
	procs, err := s.match(req.Patterns)
	if err != nil {
		return nil, patternError(err)
	}
	return s.parallel(context.Background(), nil, procs, func(p *procgroup.Process) (string, bool) {
		if err := p.Signal(unix.Signal(sig)); err != nil {
			return err.Error(), false
		}
		return "signalled " + sig.String(), true
	}), nil
}

// Reload runs a reload for a client: once begun it is not undone by the
// client going away; it runs to its end (or to shutdown).
func (h apiHost) Reload(dryRun bool, progress *api.Progress) (*api.ReloadPlan, error) {
	plan, err := h.s.Reload(h.s.opsCtx, dryRun, progress)
	var invalid *ConfigInvalidError
	switch {
	case errors.As(err, &invalid):
		h.s.log.Error("reload refused", "err", err)
		return nil, api.Refused(err)
	case err != nil:
		return nil, api.Unavailable(err)
	}
	return plan, nil
}

func (h apiHost) Nginx() (api.NginxStatus, error) {
	m := h.s.currentNginx()
	if m == nil {
		if cfg := h.s.config(); cfg.NginxRenderOnly != nil {
			return api.NginxStatus{}, api.NotFound(fmt.Errorf("%s: [nginx] has no output: the daemon writes no nginx file and reloads no nginx (gosup render prints the upstreams; set output for gosup to keep them in nginx)", cfg.File))
		}
		return api.NginxStatus{}, api.NotFound(fmt.Errorf("%s has no [nginx] table", h.s.config().File))
	}
	return api.NginxStatus(m.Status()), nil
}

func (h apiHost) Shutdown() { h.s.requestShutdown() }

// TestAlert mails a test message through the alerter, or, with [email] but
// no [memmon] (no alerter runs), through one made for it from the same
// settings.
func (h apiHost) TestAlert(ctx context.Context) (api.TestAlertReply, error) {
	s := h.s
	s.mu.RLock()
	cfg, alerter := s.cfg, s.alerter
	s.mu.RUnlock()
	if cfg.Email == nil {
		return api.TestAlertReply{}, api.NotFound(fmt.Errorf("%s has no [email] table: alerts are not mailed", cfg.File))
	}
	if alerter == nil {
		alerter = memmon.NewAlerter(*cfg.Email, 0, s.sendmail, s.log.With("component", "alerts"))
	}
	host := ""
	if cfg.Memmon != nil {
		host = cfg.Memmon.Name
	}
	if host == "" {
		host, _ = os.Hostname()
	}
	asker := "an unknown client"
	if cred := peerOf(ctx); cred != nil {
		asker = fmt.Sprintf("uid %d (pid %d)", cred.Uid, cred.Pid)
	}
	reply := api.TestAlertReply{Via: alerter.Via(), To: alerter.To()}
	// One at a time: a loop, or a client that gives up and asks again,
	// does not run sendmail commands or SMTP conversations side by side.
	if !s.testAlert.CompareAndSwap(false, true) {
		return reply, api.Unavailable(fmt.Errorf("a test alert is being mailed already through the %s; this one is not: try again once it is done", alerter.Via()))
	}
	defer s.testAlert.Store(false)
	if err := alerter.Test(ctx, host, asker); err != nil {
		return reply, api.Undelivered(err)
	}
	return reply, nil
}

func (h apiHost) ReopenLogs(patterns []string) ([]api.Result, error) {
	return h.s.ReopenLogs(patterns)
}

// ReopenLogs closes the log files of the processes matching patterns (all
// when none) and opens them again at their configured paths: what an
// external rotation (logrotate's postrotate, SIGUSR1) asks for. Each
// failure is logged; a file that could not be opened is tried again at
// the process's next write.
func (s *Supervisor) ReopenLogs(patterns []string) ([]api.Result, error) {
	procs := s.all()
	if len(patterns) > 0 {
		var err error
		if procs, err = s.match(patterns); err != nil {
			return nil, patternError(err)
		}
	}
	results := make([]api.Result, 0, len(procs))
	files := 0
	for _, p := range procs {
		name := p.Spec().FullName()
		paths, err := p.ReopenLogs()
		files += len(paths)
		res := api.Result{Name: name, OK: err == nil, State: p.Status().State.String()}
		switch {
		case err != nil:
			s.log.Warn("reopen logs failed; the next write tries again", "process", name, "err", err)
			res.Message = err.Error()
			if len(paths) > 0 {
				res.Message += " (reopened " + strings.Join(paths, ", ") + ")"
			}
		case len(paths) == 0:
			res.Message = "no log file open"
		default:
			res.Message = "reopened " + strings.Join(paths, ", ")
		}
		results = append(results, res)
	}
	s.log.Info("log files reopened", "files", files, "processes", len(procs))
	return results, nil
}

// LogPath finds the log file of one process's stream. Only files named in
// the configuration are ever read.
func (h apiHost) LogPath(name, stream string) (string, error) {
	procs, err := h.s.match([]string{name})
	if err != nil {
		return "", patternError(err)
	}
	if len(procs) != 1 {
		return "", api.Invalid(fmt.Errorf("%q names %d processes; tail needs exactly one", name, len(procs)))
	}
	return logPath(procs[0].Spec(), stream)
}

// errUnknownStream is a stream neither stdout nor stderr.
var errUnknownStream = errors.New("unknown stream")

// logPath is the log file of spec's stream, or why there is none.
func logPath(spec *procgroup.ProcSpec, stream string) (string, error) {
	ls := spec.Stdout
	switch stream {
	case "", "stdout":
		stream = "stdout"
	case "stderr":
		ls = spec.Stderr
		if spec.Program.RedirectStderr {
			return "", api.Invalid(fmt.Errorf("%s has redirect_stderr = true: its stderr is in its stdout log", spec.FullName()))
		}
	default:
		return "", api.Invalid(fmt.Errorf("%w %q: want stdout or stderr", errUnknownStream, stream))
	}
	// A device is never opened here (as root, O_RDONLY): opening
	// /dev/watchdog arms it, opening a tty raises DTR.
	if ls.Kind != procgroup.LogFile || ls.Device() {
		return "", api.Invalid(fmt.Errorf("%s sends %s to %s, not to a file; nothing to tail", spec.FullName(), stream, ls))
	}
	return ls.Path, nil
}

// TailLogs finds the log files of stream of the processes matching
// patterns: only files named in the configuration are ever read. A
// process whose stream goes to no file of its own gets a note, or is the
// error when it is the only one matched.
func (h apiHost) TailLogs(patterns []string, stream string) ([]api.TailLog, []string, error) {
	procs, err := h.s.match(patterns)
	if err != nil {
		return nil, nil, patternError(err)
	}
	var logs []api.TailLog
	var notes []string
	var first error
	for _, p := range procs {
		path, err := logPath(p.Spec(), stream)
		if err != nil {
			if errors.Is(err, errUnknownStream) {
				return nil, nil, err
			}
			first = cmp.Or(first, err)
			notes = append(notes, strings.TrimSuffix(err.Error(), "; nothing to tail")+"; not tailed")
			continue
		}
		logs = append(logs, api.TailLog{Name: p.Spec().FullName(), Path: path})
	}
	switch {
	case len(logs) == 0 && len(procs) == 1:
		return nil, notes, api.NoLogFile(first)
	case len(logs) == 0:
		return nil, notes, api.NoLogFile(fmt.Errorf("none of the %d processes %s names sends %s to a file; nothing to tail", len(procs), strings.Join(patterns, " "), cmp.Or(stream, "stdout")))
	}
	return logs, notes, nil
}

func (h apiHost) DaemonLog() *logtail.Ring { return h.s.opts.DaemonLog }

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

// remember records what an operator stopped or started, for the next daemon.
func (s *Supervisor) remember(stopped bool, results []api.Result) {
	var names []string
	for _, r := range results {
		if r.OK {
			names = append(names, r.Name)
		}
	}
	if err := s.admin.set(stopped, names...); err != nil {
		s.log.Warn("could not save which processes are stopped", "path", s.admin.path, "err", err)
	}
	s.kickNotify() // STATUS= counts them as stopped by ctl stop
}
