package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/nginx"
	"golang.org/x/sys/unix"
)

// ConfigInvalidError is a reload refused because the new configuration
// does not load; nothing was changed.
type ConfigInvalidError struct{ Err error }

func (e *ConfigInvalidError) Error() string {
	return "configuration not reloaded, nothing changed: " + e.Err.Error()
}
func (e *ConfigInvalidError) Unwrap() error { return e.Err }

// step is one process of a plan and the spec it gets (nil: it keeps its own).
type step struct {
	p    *procgroup.Process
	spec *procgroup.ProcSpec
}

func (st step) name() string { return st.p.Spec().FullName() }

// progPlan is an api.Change with what applying it needs.
type progPlan struct {
	api.Change
	prog    *config.Program // the new program; nil when removed
	pool    *procgroup.Pool // the running program's processes; nil when added
	add     []*procgroup.ProcSpec
	added   []*procgroup.Process // the processes made for add, by prepare
	remove  []*procgroup.Process
	restart []step
	inPlace []step // every kept process that is not restarted
	// stayStopped are new names (group:process) of processes that move to
	// another group while stopped with ctl stop: they stay stopped.
	stayStopped []string
}

// RequestReload asks for a reload without waiting: a SIGHUP or a file
// change. While one runs, any number of requests make one more.
func (s *Supervisor) RequestReload() {
	select {
	case s.reloadKick <- struct{}{}:
	default:
	}
}

func (s *Supervisor) reloadLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.reloadKick:
			// Counted from the kick on: an upgrade between the kick and
			// the reload's wait for its lock hands it over all the same.
			s.reloadsWaiting.Add(1)
			plan, err := s.Reload(ctx, false, nil)
			s.reloadsWaiting.Add(-1)
			switch {
			case err != nil:
				s.log.Error("reload failed", "err", err)
			case plan.Nginx != "" && plan.Nginx != "ok" && !plan.NginxNotRunning:
				// Not running is said once, by the nginx manager.
				s.log.Error("reload applied, but nginx did not take the update", "err", plan.Nginx)
			}
		}
	}
}

// loadOptions are those of the daemon's first load, for every reload.
func (s *Supervisor) loadOptions() config.LoadOptions {
	return config.LoadOptions{InsecureFiles: s.opts.InsecureConfig}
}

// Reload reads the configuration file again and applies the difference
// (or with dryRun only reports it). An invalid file changes nothing and
// returns a *ConfigInvalidError.
//
// It plans under the decide lock: it swaps the configuration, applies
// in-place changes, adds the new processes (STOPPED), records the
// restarts it will make (pending) and reserves the lanes of the programs
// whose processes it starts, stops or restarts. Then each program's part
// runs in that program's lane like any other operation, and gives the lane
// back when it ends (see apply): programs it does not touch are never held
// up, and operations on the ones it touches run before or after their part.
//
// Reloads plan one at a time (s.reloading), and a reload holds that lock
// until its removals are done as well: a removed process stays in its pool
// until it has stopped, and a reload planning meanwhile would plan its
// removal again, or pair a program re-added with the old one's process.
// Restarts and additions need no such wait: the processes added are in
// their pools from the start, and a later plan compares a process whose
// restart is under way with the spec it is being restarted into.
//
// It reports its plan, each step and the nginx update to progress (nil:
// nobody watches) as they happen.
//
// A reload that ran (it took its turn) is counted by outcome, with how
// long it took from then, for the metrics.
func (s *Supervisor) Reload(ctx context.Context, dryRun bool, progress *api.Progress) (*api.ReloadPlan, error) {
	file := s.config().File
	if dryRun {
		next, err := config.LoadWith(file, s.loadOptions())
		if err != nil {
			return nil, &ConfigInvalidError{Err: err}
		}
		plans, notes := s.plan(next)
		return report(file, true, plans, notes), nil
	}
	var began time.Time
	rp, err := s.reload(ctx, file, progress, &began)
	if !began.IsZero() {
		var invalid *ConfigInvalidError
		outcome := reloadOK
		switch {
		case errors.As(err, &invalid):
			outcome = reloadInvalid
		case err != nil:
			outcome = reloadFailed
		default:
			for _, r := range rp.Results {
				if !r.OK {
					outcome = reloadFailed
				}
			}
		}
		now := time.Now()
		s.counters.reload(outcome, now.Sub(began), now)
	}
	return rp, err
}

// reload is Reload but for a dry run; it sets began once the reload's
// turn came.
func (s *Supervisor) reload(ctx context.Context, file string, progress *api.Progress, began *time.Time) (*api.ReloadPlan, error) {
	s.reloadsWaiting.Add(1)
	var err error
	select {
	case s.reloading <- struct{}{}:
	default:
		// Another reload (or an upgrade) holds it: say so, then wait.
		progress.Emit(api.Event{Step: api.StepWaiting, Message: "a reload waits for the reload (or upgrade) in progress to end first: reloads apply one at a time"})
		err = lock(ctx, s.reloading)
	}
	s.reloadsWaiting.Add(-1)
	if err != nil {
		return nil, err
	}
	*began = time.Now()
	// Let go once this reload's removals are done (see apply), or when it
	// ends, however it ends.
	unlockReload := sync.OnceFunc(func() { <-s.reloading })
	defer unlockReload()
	// systemd sees the reload from here until the new configuration is in
	// force (ready, below: READY=1), however the reload ends (a panic too),
	// not until its rollout is over: it bounds a reload by TimeoutStartSec
	// and fails it past that, and a rolling restart may take longer than
	// any bound. STATUS= follows the rollout.
	_ = s.notify.send("RELOADING=1", fmt.Sprintf("MONOTONIC_USEC=%d", monotonicUsec()), "STATUS=reloading "+file)
	ready := sync.OnceFunc(func() {
		if s.readySent.Load() {
			_ = s.notify.send("READY=1", "STATUS="+s.look().summary)
		}
	})
	defer ready()
	// Read the file only now: a reload queued behind another must apply
	// what the file says when its turn comes, never an older reading.
	next, err := config.LoadWith(file, s.loadOptions())
	if err != nil {
		err = &ConfigInvalidError{Err: err}
		s.setLastReload(api.ReloadStatus{At: time.Now(), Error: err.Error()})
		return nil, err
	}
	s.logWarnings(next)
	var rp *api.ReloadPlan
	var plans []*progPlan
	var l *lease
	var prev *config.Config
	var stopNginx func()
	var inPlace []api.Result
	// Planning holds the decide lock; a panic in it must not keep it.
	err = func() error {
		if err := lock(ctx, s.decide); err != nil {
			return err
		}
		defer func() { <-s.decide }()
		var notes []string
		plans, notes = s.plan(next)
		rp = report(file, false, plans, notes)
		for _, c := range rp.Changes {
			if c.Action != "unchanged" {
				s.log.Info("reload", "program", c.Program, "action", c.Action, "start", len(c.Start), "stop", len(c.Stop), "restart", len(c.Restart), "why", strings.Join(c.Why, ","), "in_place", strings.Join(c.InPlace, ","))
			}
		}
		var err error
		l, prev, stopNginx, inPlace, err = s.prepare(ctx, next, plans)
		return err
	}()
	if err != nil {
		return nil, err
	}
	// Also if apply panics, or anything before it: the lanes must not
	// stay taken, nor status mark processes as about to be restarted by
	// a reload that is over.
	defer func() {
		l.release()
		for _, pp := range plans {
			s.unmarkOld(l, pp.restart)
			s.clearPending(pp.restart)
		}
	}()
	// The plan first (a copy: the pump encodes it while rp fills in).
	l.watch(progress)
	shown := *rp
	l.emit(api.Event{Step: api.StepPlan, Plan: &shown})
	for _, r := range inPlace {
		l.emit(api.Event{Process: r.Name, Step: api.StepFailed, Message: r.Message})
	}
	if s.hooks.reloadApply != nil {
		s.hooks.reloadApply()
	}
	// Processes the reload stops and starts again must not read as
	// settled: no first READY=1 until it is done (see runNotify).
	s.applying.Store(true)
	defer func() { s.applying.Store(false); s.kickNotify() }()
	// The new configuration is in force: the rest is the rollout.
	ready()
	defer func() {
		if s.readySent.Load() {
			_ = s.notify.send("STATUS=" + s.look().summary)
		}
	}()
	rp.Results = s.apply(ctx, l, prev, next, stopNginx, plans, unlockReload)
	rp.Results = append(inPlace, rp.Results...)
	l.release()
	// The caller learns what nginx made of the result, not only that it
	// was queued.
	if m := s.currentNginx(); m != nil {
		before := m.Status().Reloads
		l.emit(api.Event{Step: api.StepNginx, Message: "rendering " + m.Status().Output + ", testing it and reloading nginx"})
		began := time.Now()
		rp.Nginx, rp.NginxNotRunning = s.nginxOutcome(ctx)
		ev := api.Event{Step: api.StepNginx, TookS: time.Since(began).Seconds()}
		switch st := m.Status(); {
		case rp.NginxNotRunning:
			// Written and checked, loaded once nginx runs: no failure.
			ev.Message = strings.TrimPrefix(rp.Nginx, "nginx is ")
		case rp.Nginx != "ok":
			ev.Step, ev.Message = api.StepFailed, "nginx: "+rp.Nginx
		case st.Reloads > before:
			ev.Message = fmt.Sprintf("ok: %s rendered, tested and loaded by nginx (%d servers)", st.Output, st.Servers)
		default:
			ev.Message = "ok: " + st.Output + " unchanged, nginx not reloaded"
		}
		l.emit(ev)
	} else {
		// Without nginx, HAProxy still takes the new settings (a balancer
		// host: no process changes to render them otherwise).
		s.submitNginx()
	}
	last := api.ReloadStatus{At: time.Now(), OK: true}
	var failed []string
	for _, r := range rp.Results {
		if !r.OK {
			failed = append(failed, r.Name+": "+r.Message)
		}
	}
	if len(failed) > 0 {
		last = api.ReloadStatus{At: last.At, Error: fmt.Sprintf("configuration applied, but %d processes failed: %s", len(failed), strings.Join(failed, "; "))}
		s.log.Error("reload applied with failures", "failed", strings.Join(failed, "; "))
	}
	s.setLastReload(last)
	select {
	case s.watchReset <- struct{}{}:
	default:
	}
	s.log.Info("reloaded", "config", file)
	return rp, nil
}

func (s *Supervisor) setLastReload(st api.ReloadStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastReload = st
}

func monotonicUsec() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}

func report(file string, dryRun bool, plans []*progPlan, notes []string) *api.ReloadPlan {
	rp := &api.ReloadPlan{Config: file, DryRun: dryRun, Notes: notes, Changes: []api.Change{}}
	for _, pp := range plans {
		rp.Changes = append(rp.Changes, pp.Change)
	}
	return rp
}

// plan compares the running processes with next, program by program and
// process by process (a halted rolling restart leaves some processes on
// the old spec; the next reload picks them up).
func (s *Supervisor) plan(next *config.Config) ([]*progPlan, []string) {
	cur := s.config()
	pools := map[procgroup.ProgramName]*procgroup.Pool{}
	for _, pool := range s.snapshotPools() {
		pools[pool.Program] = pool
	}
	var plans []*progPlan
	for _, np := range next.Programs {
		name := procgroup.ProgramName(np.Name)
		pool := pools[name]
		delete(pools, name)
		pp := &progPlan{Change: api.Change{Program: np.Name}, prog: np, pool: pool}
		plans = append(plans, pp)
		if pool == nil {
			pp.Action = "added"
			for i := range np.Procs {
				pp.add = append(pp.add, &np.Procs[i])
				pp.Start = append(pp.Start, np.Procs[i].Name)
			}
			continue
		}
		live := map[string]*procgroup.Process{}
		for _, p := range pool.Procs() {
			live[p.Spec().Name] = p
		}
		why, keys := map[string]bool{}, map[string]bool{}
		for i := range np.Procs {
			ps := &np.Procs[i]
			p := live[ps.Name]
			if p == nil {
				pp.add = append(pp.add, ps)
				pp.Start = append(pp.Start, ps.Name)
				continue
			}
			delete(live, ps.Name)
			old := p.Spec()
			if old.Group != ps.Group {
				// A new group is a new name: the old process goes, a new one
				// comes (stopped if the old one was stopped with ctl stop).
				live[ps.Name] = p
				pp.add = append(pp.add, ps)
				pp.Start = append(pp.Start, ps.Name)
				if s.admin.isStopped(old.FullName()) {
					pp.stayStopped = append(pp.stayStopped, ps.FullName())
				}
				continue
			}
			if pending := s.pendingSpec(p); pending != nil {
				// A reload in progress restarts it into pending: nothing to
				// do if that is what next wants, else one more restart,
				// after that one (even for a setting applied in place: it
				// must not be lost when the restart sets pending).
				w := append(procgroup.SpawnChanges(pending, ps), config.ChangedKeys(pending.Program, ps.Program)...)
				if len(w) > 0 {
					pp.restart = append(pp.restart, step{p, ps})
					pp.Restart = append(pp.Restart, ps.Name)
					for _, k := range w {
						why[k] = true
					}
				}
				continue
			}
			if w := procgroup.SpawnChanges(old, ps); len(w) > 0 {
				pp.restart = append(pp.restart, step{p, ps})
				pp.Restart = append(pp.Restart, ps.Name)
				for _, k := range w {
					why[k] = true
				}
				continue
			}
			pp.inPlace = append(pp.inPlace, step{p, ps})
			for _, k := range config.ChangedKeys(old.Program, ps.Program) {
				keys[k] = true
			}
		}
		for _, p := range pool.Procs() {
			if live[p.Spec().Name] == p {
				pp.remove = append(pp.remove, p)
				pp.Stop = append(pp.Stop, p.Spec().Name)
			}
		}
		// numprocs, and what only names the processes, show as start/stop.
		delete(keys, "numprocs")
		pp.Why = slices.Sorted(maps.Keys(why))
		pp.InPlace = slices.Sorted(maps.Keys(keys))
		pp.Action = "unchanged"
		if len(pp.Start)+len(pp.Stop)+len(pp.Restart)+len(pp.InPlace) > 0 {
			pp.Action = "changed"
		}
	}
	for name, pool := range pools {
		pp := &progPlan{Change: api.Change{Program: string(name), Action: "removed"}, pool: pool}
		for _, p := range pool.Procs() {
			pp.remove = append(pp.remove, p)
			pp.Stop = append(pp.Stop, p.Spec().Name)
		}
		plans = append(plans, pp)
	}
	slices.SortFunc(plans, func(a, b *progPlan) int { return strings.Compare(a.Program, b.Program) })
	// What is valid but will not work here (a sendmail that does not
	// exist): the daemon logs it too, but whoever reloads reads the plan.
	notes := settingsNotes(cur, next)
	for _, w := range next.Warnings {
		notes = append(notes, w.Warning())
	}
	return plans, notes
}

// settingsNotes describes changes outside the programs.
func settingsNotes(cur, next *config.Config) []string {
	var notes []string
	a, b := cur.Supervisor, next.Supervisor
	for _, f := range []struct {
		key    string
		differ bool
	}{
		{"socket", a.Socket != b.Socket}, {"socket_mode", a.SocketMode != b.SocketMode},
		{"socket_group", a.SocketGroup != b.SocketGroup}, {"loglevel", a.LogLevel != b.LogLevel},
	} {
		if f.differ {
			notes = append(notes, fmt.Sprintf("supervisor.%s changed: it takes effect when the daemon restarts", f.key))
		}
	}
	if a.ShutdownTimeout != b.ShutdownTimeout {
		notes = append(notes, "supervisor.shutdown_timeout changed: applied")
	}
	if a.Watch != b.Watch {
		notes = append(notes, fmt.Sprintf("supervisor.watch changed to %v: applied", b.Watch))
	}
	switch {
	case cur.Nginx == nil && next.Nginx != nil:
		notes = append(notes, "[nginx] added: the upstream file is written and nginx reloaded")
	case cur.Nginx != nil && next.NginxRenderOnly != nil:
		notes = append(notes, fmt.Sprintf("[nginx] output removed: gosup no longer updates %s (left as it is); gosup render prints the upstreams", cur.Nginx.Output))
	case cur.Nginx != nil && next.Nginx == nil:
		notes = append(notes, fmt.Sprintf("[nginx] removed: gosup no longer updates %s (left as it is)", cur.Nginx.Output))
	case cur.Nginx != nil && !sameNginx(cur.Nginx, next.Nginx):
		notes = append(notes, "[nginx] changed: applied with the next rendering")
	}
	switch {
	case cur.Registry == nil && next.Registry != nil:
		notes = append(notes, "[registry] added: the upstream members are published to etcd")
	case cur.Registry != nil && next.Registry == nil:
		notes = append(notes, "[registry] removed: the daemon's lease is revoked, and its members with it")
	case !reflect.DeepEqual(cur.Registry, next.Registry):
		notes = append(notes, "[registry] changed: every member is published again under the new settings, then the old lease is revoked")
	}
	if !reflect.DeepEqual(cur.Memmon, next.Memmon) || !reflect.DeepEqual(cur.Email, next.Email) {
		notes = append(notes, "[memmon]/[email] changed: the watchdog restarts with the new settings; no process does")
	}
	return notes
}

func sameNginx(a, b *config.Nginx) bool {
	x, y := *a, *b
	x.Template, y.Template = nil, nil
	return reflect.DeepEqual(x, y)
}

// prepare is the part of a reload done under the decide lock, which
// waits for no process: it puts next in force (with its nginx manager),
// applies the in-place changes, adds the new processes (STOPPED, down in
// nginx) and reserves the lanes of every program the rest of the reload
// starts, stops or restarts. It returns the reservation, the previous
// configuration, what stops an nginx manager no longer needed, and the
// failed in-place changes.
func (s *Supervisor) prepare(ctx context.Context, next *config.Config, plans []*progPlan) (l *lease, prev *config.Config, stopNginx func(), failed []api.Result, err error) {
	var progs []procgroup.ProgramName
	for _, pp := range plans {
		if len(pp.add)+len(pp.remove)+len(pp.restart) > 0 {
			progs = append(progs, procgroup.ProgramName(pp.Program))
		}
	}
	if l, err = s.lanes.reserve(withOp(ctx, "a reload"), progs); err != nil {
		return nil, nil, nil, nil, err
	}
	// Whatever panics from here on must not keep the lanes: nothing
	// else would ever give them back (shutdown waits for them). The panic
	// goes on to the guard, which counts it.
	defer func() {
		if r := recover(); r != nil {
			l.release()
			panic(r)
		}
	}()
	// The configuration and its nginx manager change together: a
	// rendering never pairs one with the other's predecessor.
	prev, stopNginx = s.swapConfig(next)
	// In-place settings need no lane: they stop or start nothing, and only
	// a reload (one at a time) changes a spec.
	for _, pp := range plans {
		for _, st := range pp.inPlace {
			if err := st.p.SetSpec(st.spec); err != nil {
				failed = append(failed, api.Result{Name: st.spec.FullName(), Message: err.Error()})
			}
		}
	}
	// New servers join their upstream once ready: marked down before
	// they exist, so no rendering shows them up.
	var names []string
	for _, pp := range plans {
		for _, ps := range pp.add {
			names = append(names, ps.FullName())
		}
	}
	s.setDownNames(names, true)
	var stayStopped []string
	for _, pp := range plans {
		stayStopped = append(stayStopped, pp.stayStopped...)
	}
	if err := s.admin.set(true, stayStopped...); err != nil {
		s.log.Warn("could not save which processes are stopped", "path", s.admin.path, "err", err)
	}
	s.addProcesses(plans)
	for _, pp := range plans {
		s.setPending(pp.restart)
		s.markOld(l, pp.restart)
	}
	return l, prev, stopNginx, failed, nil
}

// swapConfig puts next in force with its nginx manager, under s.mu (also
// given back if that panics), and returns the configuration it replaced
// and what stops a manager no longer needed.
func (s *Supervisor) swapConfig(next *config.Config) (prev *config.Config, stopNginx func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev = s.cfg
	s.cfg = next
	return prev, s.swapNginx(next)
}

// addProcesses adds the processes of plans' additions to their programs'
// pools (new pools for new programs), STOPPED, under s.mu.
func (s *Supervisor) addProcesses(plans []*progPlan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pp := range plans {
		if len(pp.add) == 0 {
			continue
		}
		pool := pp.pool
		if pool == nil {
			pool = s.newPool(procgroup.ProgramName(pp.Program))
			s.pools = append(s.pools, pool)
			pp.pool = pool
		}
		for _, ps := range pp.add {
			pp.added = append(pp.added, pool.Add(ps))
		}
	}
	if s.hooks.reloadPrepare != nil {
		s.hooks.reloadPrepare()
	}
	s.sortPools()
}

// part is one program's share of a reload's work.
type part struct {
	pp    *progPlan
	start []*procgroup.Process // the added processes to start
	// removed is closed once the program's removals are done, added once
	// its additions have started (or failed).
	removed, added chan struct{}
}

// removePrio is the priority its removals stop at.
func (pt *part) removePrio() int { return pt.pp.remove[0].Spec().Program.Priority }

// ports are the ports the program's new and restarted processes take.
func (pt *part) ports() map[int]bool {
	out := map[int]bool{}
	for _, ps := range pt.pp.add {
		if ps.Port > 0 {
			out[ps.Port] = true
		}
	}
	for _, st := range pt.pp.restart {
		if spec := cmp.Or(st.spec, st.p.Spec()); spec.Port > 0 {
			out[spec.Port] = true
		}
	}
	return out
}

// frees reports whether pt's removals free one of ports.
func (pt *part) frees(ports map[int]bool) bool {
	for _, p := range pt.pp.remove {
		if ports[p.Spec().Port] {
			return true
		}
	}
	return false
}

// apply does the rest of a reload, through the lanes prepare reserved:
// the watchdog's settings, then each changed program's part on its own
// goroutine, in its own lane, given back (l.done) as soon as that part is
// over. A part removes (drained), then restarts (rolling), then adds (put
// into nginx once ready). The parts wait for one another only where the
// order matters: removals in descending priority, additions in ascending
// priority, and a program that takes a port waits for the removal that
// frees it. removed is called once every removal is done.
func (s *Supervisor) apply(ctx context.Context, l *lease, prev, next *config.Config, stopNginx func(), plans []*progPlan, removed func()) []api.Result {
	stopNginx()
	if !reflect.DeepEqual(prev.Memmon, next.Memmon) || !reflect.DeepEqual(prev.Email, next.Email) {
		s.swapMemmon(next)
	}
	// The credentials files were read again; the address may move.
	s.http.apply(next.HTTP)
	if !reflect.DeepEqual(prev.Registry, next.Registry) {
		s.swapRegistry(next.Registry)
	}
	s.swapFleet(prev, next)
	// Specs changed in place (a weight, an upstream) show at once.
	s.kickRegistry()
	var parts []*part
	for _, pp := range plans {
		if len(pp.add)+len(pp.remove)+len(pp.restart) == 0 {
			continue
		}
		pt := &part{pp: pp, removed: make(chan struct{}), added: make(chan struct{})}
		for _, p := range pp.added {
			if p.Spec().Program.AutoStart && !s.admin.isStopped(p.Spec().FullName()) {
				pt.start = append(pt.start, p)
			}
		}
		parts = append(parts, pt)
	}
	var removals sync.WaitGroup
	removals.Add(len(parts))
	go func() {
		removals.Wait()
		removed()
	}()
	var mu sync.Mutex
	var results []api.Result
	var wg sync.WaitGroup
	for _, pt := range parts {
		prog := procgroup.ProgramName(pt.pp.Program)
		wg.Go(func() {
			// However the part ends (a panic too), the parts waiting for it
			// go on and its lane is given back.
			removedDone := sync.OnceFunc(func() {
				close(pt.removed)
				removals.Done()
			})
			defer l.done(prog)
			defer close(pt.added)
			defer removedDone()
			s.guard.Do("reload", "that program's part of the reload was abandoned; the next reload plans it again", func() {
				r := s.applyPart(ctx, l, pt, parts, removedDone)
				mu.Lock()
				results = append(results, r...)
				mu.Unlock()
			})
		})
	}
	wg.Wait()
	return results
}

// applyPart is one program's part of a reload (see apply); removedDone
// is called once its removals are done.
func (s *Supervisor) applyPart(ctx context.Context, l *lease, pt *part, parts []*part, removedDone func()) []api.Result {
	pp := pt.pp
	// However the part ends (a panic too), its restarts are no longer
	// under way: a later plan compares with the spec each process has.
	defer s.clearPending(pp.restart)
	defer s.unmarkOld(l, pp.restart)
	var results []api.Result
	if len(pp.remove) > 0 {
		for _, q := range parts {
			if q != pt && len(q.pp.remove) > 0 && q.removePrio() > pt.removePrio() {
				<-q.removed
			}
		}
		retire := slices.Clone(pp.remove)
		stopped := s.plannedStop(ctx, l, retire)
		results = append(results, stopped...)
		// Only what did stop is forgotten; the rest stays for shutdown or
		// the next reload, which plans to remove it again.
		ok := byName(stopped)
		s.forget(slices.DeleteFunc(retire, func(p *procgroup.Process) bool { return !ok[p.Spec().FullName()].OK }))
	}
	removedDone()
	if ports := pt.ports(); len(ports) > 0 {
		for _, q := range parts {
			if q != pt && q.frees(ports) {
				<-q.removed
			}
		}
	}
	if len(pp.restart) > 0 {
		results = append(results, s.roll(ctx, l, pp.restart, false)...)
	}
	if len(pt.start) > 0 {
		for _, q := range parts {
			if q != pt && len(q.start) > 0 && q.pp.prog.Spec.Priority < pp.prog.Spec.Priority {
				<-q.added
			}
		}
		started := s.start(ctx, l, pt.start)
		results = append(results, started...)
		ok := byName(started)
		s.setDown(slices.DeleteFunc(slices.Clone(pt.start), func(p *procgroup.Process) bool { return !ok[p.Spec().FullName()].OK }), false)
		s.submitNginx()
	}
	return results
}

// pendingSpec is the spec a reload in progress is restarting p into, nil if none.
func (s *Supervisor) pendingSpec(p *procgroup.Process) *procgroup.ProcSpec {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	return s.pending[p]
}

// markOld marks steps' processes as still on the spec a rollout (a
// rolling restart, or a reload's restarts) of l is about to replace:
// status shows it until roll restarts them (unmarkOld).
func (s *Supervisor) markOld(l *lease, steps []step) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	for _, st := range steps {
		if s.oldSpec[st.p] == nil {
			s.oldSpec[st.p] = map[*lease]bool{}
		}
		s.oldSpec[st.p][l] = true
	}
}

// unmarkOld clears l's marks of steps' processes; those of another
// rollout (one queued behind l, or before it) stay. Safe to call more
// than once.
func (s *Supervisor) unmarkOld(l *lease, steps []step) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	for _, st := range steps {
		if m := s.oldSpec[st.p]; m != nil {
			delete(m, l)
			if len(m) == 0 {
				delete(s.oldSpec, st.p)
			}
		}
	}
}

// onOldSpec reports whether a rollout has yet to restart p.
func (s *Supervisor) onOldSpec(p *procgroup.Process) bool {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	_, ok := s.oldSpec[p]
	return ok
}

// setPending records the specs that steps' restarts are under way to.
func (s *Supervisor) setPending(steps []step) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	for _, st := range steps {
		if st.spec != nil {
			s.pending[st.p] = st.spec
		}
	}
}

// clearPending forgets steps' restarts, unless a later reload has
// recorded its own since.
func (s *Supervisor) clearPending(steps []step) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	for _, st := range steps {
		if s.pending[st.p] == st.spec {
			delete(s.pending, st.p)
		}
	}
}

// sortPools orders the pools by priority, then program name; s.mu must be held.
func (s *Supervisor) sortPools() {
	prio := func(pool *procgroup.Pool) int {
		if procs := pool.Procs(); len(procs) > 0 {
			return procs[0].Spec().Program.Priority
		}
		return 0
	}
	slices.SortStableFunc(s.pools, func(a, b *procgroup.Pool) int {
		return cmp.Or(cmp.Compare(prio(a), prio(b)), cmp.Compare(a.Program, b.Program))
	})
}

// forget removes stopped processes from their programs' pools, with their
// nginx down marks and ctl stop marks, and drops the empty pools of
// programs that the configuration no longer has. The owner goroutines are
// ended outside s.mu: status and nginx renderings go on meanwhile.
func (s *Supervisor) forget(procs []*procgroup.Process) {
	pools := map[procgroup.ProgramName]*procgroup.Pool{}
	for _, pool := range s.snapshotPools() {
		pools[pool.Program] = pool
	}
	names := make([]string, len(procs))
	for i, p := range procs {
		spec := p.Spec()
		names[i] = spec.FullName()
		if pool := pools[spec.ProgramName]; pool != nil {
			pool.Remove(p)
		}
	}
	s.setDownNames(names, false)
	if err := s.admin.set(false, names...); err != nil {
		s.log.Warn("could not save which processes are stopped", "path", s.admin.path, "err", err)
	}
	for _, pool := range s.dropEmptyPools() {
		pool.Wait()
	}
}

// dropEmptyPools drops, under s.mu, the empty pools of programs that the
// configuration no longer has, and returns them.
func (s *Supervisor) dropEmptyPools() (gone []*procgroup.Pool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[procgroup.ProgramName]bool{}
	for _, p := range s.cfg.Programs {
		keep[procgroup.ProgramName(p.Name)] = true
	}
	s.pools = slices.DeleteFunc(s.pools, func(pool *procgroup.Pool) bool {
		if !keep[pool.Program] && len(pool.Procs()) == 0 {
			gone = append(gone, pool)
			return true
		}
		return false
	})
	return gone
}

// swapNginx makes the nginx manager match next; s.mu must be held. It
// returns what stops a manager no longer needed (call it without s.mu).
func (s *Supervisor) swapNginx(next *config.Config) (stop func()) {
	var stops []func()
	m := s.nginx
	switch {
	case next.Nginx == nil && m != nil:
		s.nginx = nil
		stops = append(stops, m.Stop)
	case next.Nginx != nil && m == nil:
		s.nginx = s.newNginx(nginxSettings(next.Nginx))
	case next.Nginx != nil:
		m.SetSettings(nginxSettings(next.Nginx))
	}
	h := s.haproxy
	switch {
	case next.HAProxy == nil && h != nil:
		s.haproxy = nil
		stops = append(stops, h.Stop)
	case next.HAProxy != nil && h == nil:
		s.haproxy = s.newBalancer(haproxySettings(next.HAProxy), &s.counters.haproxy, nil)
	case next.HAProxy != nil:
		h.SetSettings(haproxySettings(next.HAProxy))
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// roll restarts a program's processes with their new specs (or the same
// ones), at most max_unavailable at a time: each batch is drained from
// nginx, stopped, given its spec, started and waited for until ready; then
// it is put back in the same nginx update that drains the next batch. A
// replacement that does not come up halts the rollout: the rest keep
// running as they are, and the next reload or restart tries again. A
// STOPPED process gets its spec and stays stopped unless startStopped
// (ctl restart starts it, as supervisorctl does; a reload does not).
// steps are one program's, and the rollout waits for its lane in l.
func (s *Supervisor) roll(ctx context.Context, l *lease, steps []step, startStopped bool) []api.Result {
	var results []api.Result
	if len(steps) == 0 {
		return nil
	}
	prog := steps[0].p.Spec().ProgramName
	// However the rollout ends, none of its processes is pending any
	// more: those not restarted keep running as they are.
	defer s.unmarkOld(l, steps)
	if err := l.acquire(prog); err != nil {
		for _, st := range steps {
			results = append(results, api.Result{Name: st.name(), State: st.p.Status().State.String(), Message: err.Error()})
			l.emit(api.Event{Process: st.name(), Step: api.StepFailed, Message: err.Error()})
		}
		return results
	}
	spec := cmp.Or(steps[0].spec, steps[0].p.Spec()).Program
	batch := spec.MaxUnavailable.Of(spec.NumProcs)
	for i := 0; i < len(steps); i += batch {
		chunk := steps[i:min(i+batch, len(steps))]
		var live, idle []step
		for _, st := range chunk {
			if st.p.Status().State == procgroup.Stopped && !startStopped {
				idle = append(idle, st) // stopped on purpose: stays stopped
			} else {
				live = append(live, st)
			}
		}
		procs := make([]*procgroup.Process, len(live))
		for j, st := range live {
			procs[j] = st.p
		}
		stopped := byName(s.plannedStop(ctx, l, procs))
		var again []*procgroup.Process
		for _, st := range live {
			r := stopped[st.name()]
			results = append(results, r)
			if !r.OK {
				continue
			}
			if st.spec != nil {
				if err := st.p.SetSpec(st.spec); err != nil {
					results = append(results, api.Result{Name: st.name(), Message: err.Error()})
					l.emit(api.Event{Process: st.name(), Step: api.StepFailed, Message: err.Error()})
					continue
				}
			}
			// Stopped, and given its new spec: what starts now is the new.
			s.unmarkOld(l, []step{st})
			again = append(again, st.p)
		}
		for _, st := range idle {
			if st.spec != nil {
				_ = st.p.SetSpec(st.spec)
			}
			s.unmarkOld(l, []step{st})
		}
		started := s.start(ctx, l, again)
		results = append(results, started...)
		failed := len(again) < len(live)
		var ready []*procgroup.Process
		ok := byName(started)
		for _, p := range again {
			if ok[p.Spec().FullName()].OK {
				ready = append(ready, p)
			} else {
				failed = true
			}
		}
		s.setDown(ready, false) // sent with the next batch's drain, or below
		if failed || ctx.Err() != nil {
			var rest []string
			for _, st := range steps[i+len(chunk):] {
				rest = append(rest, st.p.Spec().Name)
				const halted = "not restarted: the rolling restart halted because a replacement did not become ready"
				results = append(results, api.Result{Name: st.name(), State: st.p.Status().State.String(), Message: halted})
				l.emit(api.Event{Process: st.name(), Step: api.StepFailed, Message: halted})
			}
			if len(rest) > 0 {
				s.log.Error("rolling restart halted", "program", prog, "not_restarted", strings.Join(rest, ","))
			}
			break
		}
	}
	s.submitNginx()
	return results
}

// rollingRestart restarts procs with their current specs, program by
// program in parallel, each rolling with its max_unavailable.
func (s *Supervisor) rollingRestart(ctx context.Context, l *lease, procs []*procgroup.Process, startStopped bool) []api.Result {
	byProg := map[procgroup.ProgramName][]step{}
	var order []procgroup.ProgramName
	for _, p := range procs {
		spec := p.Spec()
		if _, ok := byProg[spec.ProgramName]; !ok {
			order = append(order, spec.ProgramName)
		}
		byProg[spec.ProgramName] = append(byProg[spec.ProgramName], step{p: p})
	}
	rolls := make([][]step, len(order))
	for i, name := range order {
		rolls[i] = byProg[name]
		s.markOld(l, rolls[i])
	}
	return s.rollPrograms(ctx, l, rolls, startStopped)
}

// rollPrograms runs roll for each program's steps, the programs in
// parallel, each in its lane.
func (s *Supervisor) rollPrograms(ctx context.Context, l *lease, rolls [][]step, startStopped bool) []api.Result {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var results []api.Result
	for _, steps := range rolls {
		wg.Go(func() {
			r := s.roll(ctx, l, steps, startStopped)
			mu.Lock()
			results = append(results, r...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return results
}

// plannedStop drains procs from nginx, then stops them in descending
// priority. They stay down in nginx until started again.
func (s *Supervisor) plannedStop(ctx context.Context, l *lease, procs []*procgroup.Process) []api.Result {
	s.drain(ctx, l, procs)
	return s.stop(ctx, l, procs)
}

// drain marks the running upstream members among procs down, has nginx
// reload, and waits the longest of their drain times, so that requests in
// flight finish before they are stopped. A failing nginx is logged and
// waited out, never waited on. It first waits for the lanes of the
// members' programs; a member whose lane it gave up on is left alone
// (its stop gives up too).
func (s *Supervisor) drain(ctx context.Context, l *lease, procs []*procgroup.Process) {
	progs := map[procgroup.ProgramName]bool{}
	for _, p := range procs {
		if p.Spec().Program.Upstream != "" {
			progs[p.Spec().ProgramName] = false
		}
	}
	for prog := range progs {
		progs[prog] = l.acquire(prog) == nil
	}
	var members []*procgroup.Process
	var wait time.Duration
	for _, p := range procs {
		spec := p.Spec()
		if !progs[spec.ProgramName] {
			continue
		}
		st := p.Status().State
		if spec.Program.Upstream == "" || (st != procgroup.Running && st != procgroup.Starting) {
			continue
		}
		members = append(members, p)
		wait = max(wait, spec.Program.Drain)
	}
	m, reg := s.currentNginx(), s.currentRegistry()
	if len(members) == 0 || (m == nil && reg == nil) {
		return
	}
	began := time.Now()
	s.setDown(members, true)
	var where, unconfirmed []string
	if m != nil {
		where = append(where, "nginx")
		if err := s.syncNginx(ctx); nginx.IsNotRunning(err) {
			// No nginx sends them requests: nothing to warn of (the nginx
			// manager has said once that it is not running).
			unconfirmed = append(unconfirmed, "nginx is not running")
		} else if err != nil {
			s.log.Warn("draining without nginx's confirmation", "err", err)
			unconfirmed = append(unconfirmed, "nginx did not confirm: "+oneLine(err.Error()))
		}
	}
	if reg != nil {
		// The balancers that read the registry see the member down.
		where = append(where, "the registry")
		if why := s.confirmRegistryDown(ctx); why != "" {
			unconfirmed = append(unconfirmed, why)
		}
	}
	note := ""
	if len(unconfirmed) > 0 {
		note = " (" + strings.Join(unconfirmed, "; ") + ")"
	}
	for _, p := range members {
		spec := p.Spec()
		l.emit(api.Event{Process: spec.FullName(), Step: api.StepDraining, Pid: p.Status().Pid,
			Message: fmt.Sprintf("down in %s upstream %s, waiting %s for requests in flight%s", strings.Join(where, " and "), spec.Program.Upstream, wait, note)})
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	for _, p := range members {
		l.emit(api.Event{Process: p.Spec().FullName(), Step: api.StepDrained, Pid: p.Status().Pid, TookS: time.Since(began).Seconds()})
	}
}

// startAndPutBack starts procs and puts those that became ready back into nginx.
func (s *Supervisor) startAndPutBack(ctx context.Context, l *lease, procs []*procgroup.Process) []api.Result {
	results := s.start(ctx, l, procs)
	ok := byName(results)
	var ready []*procgroup.Process
	for _, p := range procs {
		if ok[p.Spec().FullName()].OK {
			ready = append(ready, p)
		}
	}
	s.setDown(ready, false)
	s.submitNginx()
	return results
}

func (s *Supervisor) setDown(procs []*procgroup.Process, down bool) {
	names := make([]string, len(procs))
	for i, p := range procs {
		names[i] = p.Spec().FullName()
	}
	s.setDownNames(names, down)
}

// setDownNames marks processes (group:process) down in nginx or clears the
// mark; the next rendering carries it. Lock order: downMu, then s.mu.
func (s *Supervisor) setDownNames(names []string, down bool) {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	for _, n := range names {
		if down {
			s.down[n] = true
		} else {
			delete(s.down, n)
		}
	}
	s.kickRegistry()
}

// upstreamView calls f, under downMu, with what every upstream's members
// and their state come from: the configuration in force, the live pools
// (during a reload they differ from the file) and the processes marked
// down (draining before a planned stop, or not yet ready). The nginx
// rendering and the registry both derive from it. f must not take downMu.
func (s *Supervisor) upstreamView(f func(cfg *config.Config, pools []*procgroup.Pool, down map[string]bool)) {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	s.mu.RLock()
	cfg, pools := s.cfg, slices.Clone(s.pools)
	s.mu.RUnlock()
	f(cfg, pools, s.down)
}

func (s *Supervisor) currentNginx() *nginx.Manager {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nginx
}

// submitNginx renders the processes as they are now and queues it for nginx.
func (s *Supervisor) submitNginx() { s.updateNginx(nil) }

// syncNginx is submitNginx, waiting until nginx has the result (or ctx ends).
func (s *Supervisor) syncNginx(ctx context.Context) error {
	done := make(chan error, 1)
	if !s.updateNginx(done) {
		return nil
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// nginxOutcome renders the processes as they are now and waits until
// nginx has the result: "ok", or why not ("" without [nginx]); notRunning
// says why not is only that nginx is not running (or not installed) to
// load the file written.
func (s *Supervisor) nginxOutcome(ctx context.Context) (outcome string, notRunning bool) {
	done := make(chan error, 1)
	if !s.updateNginx(done) {
		return "", false
	}
	select {
	case err := <-done:
		if err != nil {
			return err.Error(), nginx.IsNotRunning(err)
		}
		return "ok", false
	case <-ctx.Done():
		return "not known: " + ctx.Err().Error(), false
	}
}

func (s *Supervisor) updateNginx(done chan<- error) (queued bool) {
	// Reading the processes, rendering and queueing is one step under
	// downMu, so a later rendering always carries every earlier change.
	s.upstreamView(func(cfg *config.Config, pools []*procgroup.Pool, down map[string]bool) {
		// Until the registry's members were read, nothing that renders
		// them is submitted: the files stay as they are, not emptied.
		remote, read := s.remoteServers(cfg)
		s.mu.RLock()
		m, h := s.nginx, s.haproxy
		s.mu.RUnlock()
		switch {
		case m != nil && (read || !cfg.Nginx.FromRegistry()):
			m.Submit(nginxView(cfg, pools).NginxData(down, remote), done)
			queued = true
		case m != nil:
			// Whoever waits (a drain) hears that nginx was not told.
			if done != nil {
				done <- fmt.Errorf("%s not updated: the registry's members were never read (etcd unreachable?), so its upstreams cannot be rendered; the file is left as it is", cfg.Nginx.Output)
			}
			queued = true
		}
		if h != nil && read {
			h.Submit(cfg.HAProxyData(remote), nil)
		}
	})
	return queued
}

// nginxView is cfg with the live processes of pools in place of the
// file's programs.
func nginxView(cfg *config.Config, pools []*procgroup.Pool) *config.Config {
	// The live processes, not the file: during a reload they differ.
	view := *cfg
	view.Programs = nil
	specs := map[procgroup.ProgramName]*config.Program{}
	for _, p := range cfg.Programs {
		specs[procgroup.ProgramName(p.Name)] = p
	}
	for _, pool := range pools {
		lp := &config.Program{Name: string(pool.Program)}
		for _, p := range pool.Procs() {
			lp.Procs = append(lp.Procs, *p.Spec())
		}
		if len(lp.Procs) == 0 {
			continue
		}
		lp.Spec = lp.Procs[0].Program
		if cp := specs[pool.Program]; cp != nil {
			lp.Spec = cp.Spec
		}
		view.Programs = append(view.Programs, lp)
	}
	return &view
}

// process finds a process by its full name (group:process).
func (s *Supervisor) process(name string) *procgroup.Process {
	for _, pool := range s.snapshotPools() {
		for _, p := range pool.Procs() {
			if p.Spec().FullName() == name {
				return p
			}
		}
	}
	return nil
}

func byName(results []api.Result) map[string]api.Result {
	m := make(map[string]api.Result, len(results))
	for _, r := range results {
		m[r.Name] = r
	}
	return m
}
