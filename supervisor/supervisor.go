// Package supervisor is the gosup daemon: it runs a loaded configuration
// (package config), owns the programs' processes, applies reloads, serves
// the control API (package api) on a unix socket, keeps nginx in step
// (package nginx) and stops everything in order on shutdown.
package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosup/gosup/internal/reuse"
	"github.com/gosup/gosup/logtail"
	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/procstat"
	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/handover"
	"github.com/gosup/gosup/supervisor/nginx"
	"github.com/gosup/gosup/templates"
	"golang.org/x/sys/unix"
)

// Options are the daemon's dependencies.
type Options struct {
	// Reaper, when set, is used instead of creating one. A process may have
	// only one Reaper; tests that run several daemons in one process share it.
	Reaper *reaper.Reaper
	Logger *slog.Logger
	// DaemonLog, when set, holds the recent records Logger wrote (`ctl
	// tail --daemon`); an upgrade hands them to the next image.
	DaemonLog *logtail.Ring
	// NotifySocket is systemd's $NOTIFY_SOCKET ("" outside systemd), and
	// Watchdog its WatchdogSec ($WATCHDOG_USEC; 0: none).
	NotifySocket string
	Watchdog     time.Duration
	// InsecureConfig makes every reload read the configuration as the
	// daemon's first load did with --insecure-config: as root, also files
	// others than root can change (config.LoadOptions.InsecureFiles).
	InsecureConfig bool
	// Binary is the absolute path of the file the daemon was started
	// from (not /proc/self/exe, which names the old file once a package
	// upgrade has replaced it): what an upgrade executes by default. Args
	// are the daemon's arguments after the program name, given again to
	// the new image.
	Binary string
	Args   []string
	// Build is this binary's version.
	Build handover.Build
	// Handover, when set, is what the previous image handed over: the
	// daemon adopts its processes, descriptors and state instead of
	// claiming the socket and starting programs.
	Handover *handover.Doc
	// BeforeExec, when set (a test hook of gosup_testhooks builds), runs
	// in an upgrade after everything is frozen, just before the exec,
	// with the handover document.
	BeforeExec func(*handover.Doc)
	// RestoreSignals, when set, is called after an upgrade's exec failed
	// having ignored SIGHUP: it handles it again (signal.Notify).
	RestoreSignals func()
	// BeforeServing, when set (a test hook of gosup_testhooks builds),
	// runs once every part runs, before the daemon counts as serving.
	BeforeServing func()
	// Serving, when set, is called once every part of the daemon runs
	// (the control socket answers, the processes are started or adopted).
	Serving func()
}

// Supervisor is a running daemon. Create it with New and call Run once.
type Supervisor struct {
	log *slog.Logger
	// guard starts the side goroutines (log copiers, readiness probes,
	// the nginx manager, memmon, the alerter, the file watcher, control
	// socket handlers) and counts their panics: a bug in one degrades
	// that feature, never the processes.
	guard     *guard.Guard
	hooks     testHooks
	rp        *reaper.Reaper
	spawns    *procgroup.Spawns // live spawns of every process, for port reclaims
	stdio     *procgroup.Stdio  // /dev/null and the log pipes' poller, for every process
	admin     *adminState
	inst      *instance
	notify    *notifier
	startedAt time.Time // when the daemon's first image started (an upgrade keeps it)
	opts      Options
	pctx      context.Context // the processes' lifetime
	// opsCtx ends when shutdown begins: operations in flight (a rolling
	// restart, a reload) stop waiting and let shutdown take over.
	opsCtx    context.Context
	opsCancel context.CancelFunc
	changed   chan struct{} // a process changed state (for sd_notify)
	// stats samples the processes' CPU and RSS for status.
	stats *procstat.Sampler
	// scratch keeps what a status reads the processes into for the next.
	scratch reuse.Pool[statusScratch, *statusScratch]
	// counters are what the metrics show that no part keeps across a
	// reload (see counters.go).
	counters *counters

	// decide is held while an operation resolves what it touches and
	// reserves its places in the program lanes, and while a reload plans:
	// never while anything waits for a process. A one-slot channel, so
	// that waiting for it can be cancelled.
	decide chan struct{}
	// lanes serialize the operations on each program (see lanes.go).
	lanes *lanes
	// reloading is held while a reload plans, prepares and removes: one
	// at a time, and each plans against what the previous one left. Its
	// restarts and additions go on in their lanes after it is let go;
	// pending tells a later reload which restarts are under way, and to
	// which spec.
	reloading chan struct{}
	// reloadsWaiting counts the reloads waiting for reloading (an upgrade
	// holding it hands them to the new image).
	reloadsWaiting atomic.Int32
	// testAlert is held while ctl test-alert's mail is under way: one at
	// a time, another is refused.
	testAlert atomic.Bool
	pendingMu sync.Mutex
	pending   map[*procgroup.Process]*procgroup.ProcSpec
	// oldSpec marks, guarded by pendingMu, the processes a rollout
	// (rolling restart, a reload's restarts) has yet to restart, with the
	// rollout's lease: status shows them as on the old spec.
	oldSpec map[*procgroup.Process]map[*lease]bool
	// readySent: sd_notify READY=1 has been sent once (a reload sends it
	// again only after that).
	readySent atomic.Bool
	// applying: a reload is stopping and starting processes; the first
	// READY=1 waits until it is done.
	applying atomic.Bool
	// watchdogMissed counts the WATCHDOG=1 pings withheld because one of
	// the daemon's loops did not answer; watchdogLast is the last such.
	watchdogMissed atomic.Int64
	watchdogLast   atomic.Pointer[watchdogFailure]
	// touchKick and touchPending: programs whose touch_reload file changed,
	// restarted one at a time by touchLoop; a program touched again while
	// pending is restarted once.
	touchKick    chan struct{}
	touchMu      sync.Mutex
	touchPending map[procgroup.ProgramName]bool
	// touchRunning are the touch_reload restarts begun and not finished
	// (an upgrade hands those still waiting for their lane to the new
	// image), guarded by touchMu.
	touchRunning map[procgroup.ProgramName]bool
	// reloadKick holds at most one pending reload request (SIGHUP, file
	// watcher): a storm coalesces into one running and one pending.
	reloadKick chan struct{}
	// watchReset tells the file watcher that a reload changed what to watch.
	watchReset chan struct{}
	// watching is closed once the file watcher first watches its
	// directories (or has ended trying): the daemon serves only then, so
	// a touch_reload file touched once it says running is seen.
	watching     chan struct{}
	watchingOnce sync.Once

	// mu guards what a reload replaces; readers take snapshots.
	mu         sync.RWMutex
	cfg        *config.Config
	pools      []*procgroup.Pool // one per program, ascending priority
	nginx      *nginx.Manager    // nil without [nginx]
	haproxy    *nginx.Manager    // nil without [haproxy]
	watchdog   *memmon.Watchdog  // nil without [memmon]
	alerter    *memmon.Alerter   // nil without [email]
	stopMemmon func()
	// stopAlerter stops the alerter alone (and waits for it), so that a
	// reload hands what it holds to the next one; stopMemmon stops it too.
	// nil without an alerter.
	stopAlerter func()
	lastReload  api.ReloadStatus

	// down names the processes (group:process) rendered down in nginx:
	// draining before a planned stop, or not yet ready. Guarded by downMu,
	// which also makes "render and submit" one step.
	downMu sync.Mutex
	down   map[string]bool

	// registry publishes the upstream members to etcd ([registry]); nil
	// without one. Atomic: every process's state change kicks it.
	registry atomic.Pointer[registryRun]
	// registryRetired keeps the counts of the publishers reloads replaced.
	registryRetired struct{ failedWrites, leaseGrants atomic.Int64 }
	// registrySwaps counts the goroutines of reloads that replaced the
	// registry, still revoking the old lease; the shutdown waits for them.
	registrySwaps sync.WaitGroup
	// fleet watches the registry for the upstreams rendered from it (nil
	// without any); fleetLast holds, under fleetMu, the servers each of
	// them last rendered (kept when its members are all gone).
	fleet     atomic.Pointer[fleetRun]
	fleetMu   sync.Mutex
	fleetLast map[string][]templates.Server

	shutdownOnce sync.Once
	shutdownReq  chan struct{}

	// sock is the control socket (set by Run).
	sock *controlSocket
	// http is the read-only HTTP listener ([http]), started by Run.
	http *httpListener
	// conns counts the control connections busy with a request;
	// upgrading is held by the upgrade under way; up is what info says of
	// upgrades.
	conns     connCount
	upgrading chan struct{}
	up        upgradeState
	// serving is closed once every part of the daemon runs: an upgrade
	// waits for it (what it hands over is all there then).
	serving chan struct{}
	// rescueMu lets one rescue (see rescue) run at a time.
	rescueMu sync.Mutex
	// adoptions are the processes the previous image handed over, by
	// group:process (nil without a handover).
	adoptions map[string]*adoption
	// adoptedNames are the processes adopted (not autostarted).
	adoptedNames map[string]bool
}

// New prepares a daemon for cfg; nothing runs until Run.
func New(cfg *config.Config, opts Options) *Supervisor {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	opsCtx, opsCancel := context.WithCancel(context.Background())
	s := &Supervisor{
		opsCtx: opsCtx, opsCancel: opsCancel, guard: guard.New(log),
		cfg: cfg, log: log, rp: opts.Reaper, spawns: procgroup.NewSpawns(), opts: opts, shutdownReq: make(chan struct{}), upgrading: make(chan struct{}, 1), serving: make(chan struct{}),
		decide: make(chan struct{}, 1), lanes: newLanes(opsCtx.Done()), reloading: make(chan struct{}, 1), touchKick: make(chan struct{}, 1), touchPending: map[procgroup.ProgramName]bool{}, touchRunning: map[procgroup.ProgramName]bool{},
		reloadKick: make(chan struct{}, 1), watchReset: make(chan struct{}, 1), watching: make(chan struct{}), changed: make(chan struct{}, 1),
		down: map[string]bool{}, stopMemmon: func() {}, pending: map[*procgroup.Process]*procgroup.ProcSpec{},
		oldSpec: map[*procgroup.Process]map[*lease]bool{},
		stats:   procstat.New(), counters: newCounters(),
	}
	s.http = newHTTPListener(s)
	return s
}

// config is the configuration in force.
func (s *Supervisor) config() *config.Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cfg
}

// Run claims the socket, starts every autostart program in ascending
// priority and serves the control API until ctx ends or a client asks for
// shutdown; then it stops every process in descending priority and returns.
// It returns ErrAlreadyRunning, touching nothing, if another daemon owns the socket.
//
// Unless Options.Reaper is set, the calling goroutine becomes the daemon's
// spawning thread (see package reaper) until Run returns: gosup calls Run on
// its main goroutine, locked to the main thread, so that an upgrade can
// re-execute the daemon without losing a child.
func (s *Supervisor) Run(ctx context.Context) error {
	if s.rp != nil {
		return s.run(ctx)
	}
	rp, err := reaper.New()
	if err != nil {
		return err
	}
	rp.Orphan = func(ex reaper.Exit) {
		s.log.Debug("reaped orphan", "pid", ex.Pid, "status", ex.String())
	}
	if why := rp.Spawner().Slow(); why != "" {
		s.log.Info("spawns copy the daemon's descriptor table, slower the more processes it runs", "reason", why)
	}
	s.rp = rp
	if h := s.opts.Handover; h != nil {
		// Before the first reap: an exit during the handover is a zombie
		// waiting for its process.
		s.adoptions, s.adoptedNames = s.takeHandover(h, rp), map[string]bool{}
	}
	rp.Bind() // before anything can ask whether an upgrade may exec
	rctx, stopReaper := context.WithCancel(context.Background())
	go func() {
		defer stopReaper() // every process is gone
		err = s.run(ctx)
	}()
	rp.Run(rctx)
	return err
}

func (s *Supervisor) run(ctx context.Context) error {
	defer s.stats.Close()
	cfg := s.cfg
	st := cfg.Supervisor
	// The daemon's parts, started in this order and stopped in the
	// reverse order (see runGroup).
	g := runGroup{log: s.log}
	g.add("instance lock", func() error {
		dirMode := os.FileMode(0o700)
		if st.SocketGroup != "" {
			dirMode = 0o750
		}
		var inst *instance
		var err error
		if h := s.opts.Handover; h != nil {
			inst, err = adoptInstance(h.Instance, st.Socket, dirMode, s.log)
		} else {
			inst, err = claim(st.Socket, dirMode, s.log)
		}
		if err != nil {
			return err
		}
		s.inst = inst
		s.admin = loadAdminState(st.Socket, s.log)
		// Children get stdin, stdout and stderr, nothing else: whatever the
		// daemon inherited (a shell's redirections, a caller's pipe) must not
		// leak into them and be held open for their lifetime.
		if err := closeOnExecInherited(); err != nil {
			s.log.Warn("could not mark inherited file descriptors close-on-exec; children may inherit them", "err", err)
		}
		if s.opts.Handover == nil {
			if n := inst.killLeftovers(5 * time.Second); n > 0 {
				s.log.Warn("killed processes left by a previous daemon", "count", n)
			}
		}
		inst.start()
		return nil
	}, func() { s.inst.release() })
	g.add("sd_notify connection", func() error {
		notify, err := newNotifier(s.opts.NotifySocket)
		if err != nil {
			s.log.Warn("not telling systemd about readiness", "err", err)
		}
		s.notify = notify
		return nil
	}, func() { s.notify.close() })
	// Processes outlive ctx: they are stopped in order by "processes",
	// then their owner goroutines end with pctx.
	var endProcesses func()
	g.add("process pools", func() error {
		stdio, err := procgroup.NewStdio()
		if err != nil {
			return err
		}
		s.stdio = stdio
		pctx, pcancel := context.WithCancel(context.Background())
		s.pctx = pctx
		for _, p := range cfg.Programs {
			pool := s.newPool(procgroup.ProgramName(p.Name))
			for i := range p.Procs {
				proc := pool.Add(&p.Procs[i])
				if p.Spec.Upstream != "" && s.admin.isStopped(proc.Spec().FullName()) {
					s.down[proc.Spec().FullName()] = true // nginx need not try it
				}
			}
			s.pools = append(s.pools, pool)
		}
		s.startedAt = time.Now()
		if h := s.opts.Handover; h != nil {
			s.dropUnadopted()
			s.startedAt = h.StartedAt
			s.up.upgrades, s.up.rescues, s.up.upgradedAt, s.up.from = h.Upgrades, h.Rescues, h.UpgradedAt, h.From
			s.lastReload = h.Reload
			s.watchdogMissed.Store(h.WatchdogMissed)
			switch {
			case h.Counters != nil:
				s.counters.restore(h.Counters)
			case h.Memmon != nil:
				// From an image that kept no counters: memmon's
				// restarts at least go on.
				s.counters.memmon.Restarts.Store(h.Memmon.Restarts)
			}
			if dl := h.DaemonLog; dl != nil && s.opts.DaemonLog != nil {
				s.opts.DaemonLog.Restore(dl.Records, dl.Overwritten, dl.OverwrittenBytes)
			}
			for _, name := range h.Down {
				s.down[name] = true
			}
			if h.ReloadPending {
				s.RequestReload()
			}
			if len(h.TouchPending) > 0 {
				s.touchMu.Lock()
				for _, name := range h.TouchPending {
					s.touchPending[procgroup.ProgramName(name)] = true
				}
				s.touchMu.Unlock()
				select {
				case s.touchKick <- struct{}{}:
				default:
				}
			}
			s.up.rescuedAt = h.RescuedAt
		}
		endProcesses = sync.OnceFunc(func() {
			pcancel() // anything still alive now is killed with its group
			for _, pool := range s.snapshotPools() {
				pool.Wait()
			}
			// Every process has stopped: whatever is still below the
			// daemon was left by one of them, even what cleared both its
			// environment and its process group.
			if res := procgroup.StopOrphans(context.Background(), s.rp.Subscribed, unix.SIGTERM, s.maxStopWait()); res.Found > 0 || res.Left > 0 {
				lvl := slog.LevelWarn
				if res.Left > 0 {
					lvl = slog.LevelError
				}
				attrs := []any{"found", res.Found, "killed", res.Killed, "left", res.Left}
				if res.Err != nil {
					attrs = append(attrs, "err", res.Err)
				}
				s.log.Log(context.Background(), lvl, "stopped processes that outlived their processes", attrs...)
			}
			if n := s.inst.sweep(); n > 0 {
				s.log.Warn("killed descendants that outlived their processes", "count", n)
			}
			s.stdio.Close()
		})
		return nil
	}, func() { endProcesses() }) // done by "processes", unless a later start failed
	g.add("nginx manager", func() error {
		if cfg.Nginx != nil {
			var st *nginx.State
			if h := s.opts.Handover; h != nil {
				st = h.Nginx
			}
			s.nginx = s.newNginxFrom(nginxSettings(cfg.Nginx), st)
		}
		if cfg.HAProxy != nil {
			var st *nginx.State
			if h := s.opts.Handover; h != nil {
				st = h.HAProxy
			}
			s.haproxy = s.newBalancer(haproxySettings(cfg.HAProxy), &s.counters.haproxy, st)
		}
		if h := s.opts.Handover; h != nil {
			s.seedFleetLast(h.Nginx)
			s.seedFleetLast(h.HAProxy)
		}
		f, err := s.startFleet(cfg)
		if err != nil {
			return err
		}
		s.fleet.Store(f)
		s.submitNginx()
		return nil
	}, func() {
		if f := s.fleet.Swap(nil); f != nil {
			f.stop()
		}
		// A reload may have replaced them.
		s.mu.RLock()
		ms := []*nginx.Manager{s.nginx, s.haproxy}
		s.mu.RUnlock()
		for _, m := range ms {
			if m != nil {
				m.Stop()
			}
		}
	})
	// Before the processes, so that it outlives them at shutdown: the
	// members go as their processes stop, then the lease.
	g.add("registry", func() error {
		r, err := s.startRegistry(cfg.Registry)
		if err != nil {
			return err
		}
		s.registry.Store(r)
		return nil
	}, func() {
		// A reload's swap still revoking the lease it replaced first
		// (bounded: it gives up after registryStopWait).
		s.waitRegistrySwaps(registryStopWait)
		if r := s.registry.Swap(nil); r != nil {
			r.shutdown(s.log)
		}
	})
	g.add("control socket", func() error {
		var ln *credListener
		var err error
		if h := s.opts.Handover; h != nil {
			ln, err = adoptListener(h.Socket.FD, h.Socket.Dev, h.Socket.Ino, h.Socket.Gid, s.log)
		} else {
			ln, err = listen(st.Socket, uint32(st.SocketPerm()), st.SocketGroup, s.log)
		}
		if err != nil {
			return err
		}
		timeouts := api.DefaultTimeouts()
		if s.hooks.socketTimeouts != nil {
			timeouts = *s.hooks.socketTimeouts
		}
		srv := api.NewServer(s.markStreams(s.recovering(api.NewHandler(apiHost{s}, s.hooks.tailFiles))), timeouts, slog.NewLogLogger(s.log.Handler(), slog.LevelWarn))
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(withPeer(ctx, c), connKey{}, c)
		}
		srv.ConnState = s.conns.state
		s.sock = &controlSocket{s: s, srv: srv, watch: &socketWatch{s: s, st: st, srv: srv, cur: ln}}
		s.sock.watch.serve(ln)
		s.sock.startWatch()
		if h := s.opts.Handover; h != nil && h.Reason == handover.ReasonRescue {
			s.log.Warn("gosup re-executed in place after a panic; every process kept", "config", cfg.File, "socket", st.Socket, "processes", len(h.Processes), "pid", os.Getpid())
		} else if h != nil {
			s.log.Info("gosup upgraded in place", "took", time.Since(h.UpgradedAt).Round(time.Millisecond), "from", h.From.Version, "to", s.opts.Build.Version, "binary", s.opts.Binary, "config", cfg.File, "socket", st.Socket, "processes", len(h.Processes), "pid", os.Getpid())
		} else {
			s.log.Info("gosup started", "config", cfg.File, "socket", st.Socket, "programs", len(cfg.Programs), "pid", os.Getpid())
		}
		s.logWarnings(cfg)
		return nil
	}, func() {
		s.sock.stopWatch()
		s.sock.watch.close()
		hctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.sock.srv.Shutdown(hctx)
		cancel()
	})
	// The alerts' last attempt at shutdown (memmon's stop starts it) runs
	// while the processes stop, and is waited for after them.
	flushed := make(chan struct{})
	close(flushed)
	g.add("alerts' last attempt", nil, func() { <-flushed })
	g.add("processes", func() error {
		// Spawn in ascending priority; within a level in parallel. Nothing
		// waits for RUNNING here, as supervisord does not.
		if procs, l, err := s.claim(withOp(context.Background(), "the daemon's start"), []string{"all"}); err == nil {
			s.autostart(slices.DeleteFunc(procs, s.adopted))
			l.release()
		}
		return nil
	}, func() {
		timeout := s.config().Supervisor.ShutdownTimeout
		s.log.Info("shutting down", "timeout", timeout)
		sctx, cancel := context.WithTimeout(context.Background(), timeout)
		s.stop(sctx, nil, s.all())
		cancel()
		endProcesses()
	})
	var ticks sync.WaitGroup
	tickCtx, stopTicks := context.WithCancel(context.Background())
	g.add("CPU sampling tick", func() error {
		ticks.Go(func() { s.guard.Run(tickCtx, "CPU sampling tick", s.tickLoop) })
		return nil
	}, func() {
		stopTicks()
		ticks.Wait()
	})
	stopNotify, notifyDone := func() {}, make(chan struct{})
	g.add("sd_notify", func() error {
		nctx, cancel := context.WithCancel(context.Background())
		stopNotify = cancel
		go func() {
			defer close(notifyDone)
			s.runNotify(nctx, s.notify, s.changed, s.opts.Watchdog, s.livenessChecks(st.Socket))
		}()
		return nil
	}, func() {
		stopNotify()
		<-notifyDone
		_ = s.notify.send("STOPPING=1", "STATUS=stopping "+s.look().summary)
	})
	g.add("memmon", func() error {
		if h := s.opts.Handover; h != nil {
			s.startMemmonFrom(cfg, nil, h.Memmon, h.Alerter)
		} else {
			s.startMemmon(cfg, nil)
		}
		return nil
	}, func() {
		s.mu.RLock()
		stopMemmon := s.stopMemmon // a reload may have replaced it
		s.mu.RUnlock()
		stopMemmon() // no memmon restart during shutdown
		// The alerts held (for the coalescing delay, rate_limit, a
		// retry), and those of the restarts that just ended: one last
		// attempt, else counted and logged as lost. It takes at most
		// [email] timeout and shutdown_timeout, beside the processes'
		// stop: a hung mail server does not make the shutdown longer
		// than the processes may take.
		s.mu.RLock()
		alerter := s.alerter
		s.mu.RUnlock()
		if alerter != nil {
			done := make(chan struct{})
			flushed = done
			go func() {
				defer close(done)
				ctx, cancel := context.WithTimeout(context.Background(), s.config().Supervisor.ShutdownTimeout)
				defer cancel()
				alerter.Flush(ctx, "gosup stopped")
			}()
		}
	})
	// Started once the processes are, so that /healthz answers of them;
	// stopped early at shutdown (once no operation runs): a scrape then
	// would see processes going away.
	g.add("http listener", func() error {
		var h *handover.HTTP
		if s.opts.Handover != nil {
			h = s.opts.Handover.HTTP
		}
		s.http.start(h)
		return nil
	}, func() { s.http.stop() })
	var loops sync.WaitGroup
	g.add("operations", func() error {
		// Reloads asked for by SIGHUP or the file watcher run one at a time.
		loops.Go(func() { s.guard.Run(s.opsCtx, "reload", s.reloadLoop) })
		loops.Go(func() { s.guard.Run(s.opsCtx, "file watcher", s.watchLoop) })
		loops.Go(func() { s.guard.Run(s.opsCtx, "touch_reload", s.touchLoop) })
		<-s.watching
		return nil
	}, func() {
		// Operations in flight stop waiting (for a lane, or for a process
		// to change state) and end; new ones are refused. Then shutdown
		// runs alone.
		s.opsCancel()
		loops.Wait()
		s.lanes.wait()
	})

	defer context.AfterFunc(ctx, s.requestShutdown)()
	g.add("serving", func() error {
		if s.opts.BeforeServing != nil {
			s.opts.BeforeServing()
		}
		close(s.serving)
		if s.opts.Serving != nil {
			s.opts.Serving()
		}
		// The start's spawns are made (the processes part has run):
		// what they no longer need goes back to the kernel. After
		// serving, so that it holds up nothing.
		settleMemory()
		return nil
	}, nil)
	if err := g.run(s.shutdownReq); err != nil {
		return err
	}
	s.log.Info("gosup stopped")
	return nil
}

// lock takes a one-slot channel lock, or gives up when ctx ends.
func lock(ctx context.Context, mu chan struct{}) error {
	select {
	case mu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// claim resolves patterns and reserves the lanes of the programs they
// name, under the decide lock: it waits for nothing else. The caller
// releases the lease when done; waits for a lane end with ctx.
func (s *Supervisor) claim(ctx context.Context, patterns []string) ([]*procgroup.Process, *lease, error) {
	return s.claimFunc(ctx, func() ([]*procgroup.Process, error) { return s.match(patterns) })
}

// claimFunc is claim with the processes chosen by resolve.
func (s *Supervisor) claimFunc(ctx context.Context, resolve func() ([]*procgroup.Process, error)) ([]*procgroup.Process, *lease, error) {
	if err := lock(ctx, s.decide); err != nil {
		return nil, nil, err
	}
	defer func() { <-s.decide }()
	procs, err := resolve()
	if err != nil {
		return nil, nil, err
	}
	l, err := s.lanes.reserve(ctx, programsOf(procs))
	if err != nil {
		return nil, nil, err
	}
	return procs, l, nil
}

// programsOf lists the programs of procs.
func programsOf(procs []*procgroup.Process) []procgroup.ProgramName {
	var out []procgroup.ProgramName
	for _, p := range procs {
		if name := p.Spec().ProgramName; !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// maxStopWait is the longest stopwaitsecs of the processes: how long the
// orphans left at shutdown have to stop before they are SIGKILLed.
func (s *Supervisor) maxStopWait() time.Duration {
	var secs int
	for _, pool := range s.snapshotPools() {
		for _, p := range pool.Procs() {
			secs = max(secs, p.Spec().Program.StopWaitSecs)
		}
	}
	return time.Duration(secs) * time.Second
}

// newPool makes an empty pool for a program whose processes report to the daemon.
func (s *Supervisor) newPool(program procgroup.ProgramName) *procgroup.Pool {
	pool := procgroup.NewPool(s.pctx, program, s.rp, s.log)
	inst := s.inst
	// Made once for the pool, shared by its processes (none is changed
	// by one), rather than again for each.
	onSpawn := func(p *procgroup.Process, pid int, start uint64, _ time.Time) {
		inst.recordSpawn(p.Spec().FullName(), pid, start)
	}
	onExit := func(p *procgroup.Process, _ int) { inst.recordExit(p.Spec().FullName()) }
	daemonEnv := []string{"GOSUP_INSTANCE=" + inst.id}
	onState := func(*procgroup.Process, procgroup.State) {
		s.kickNotify()
		s.kickRegistry()
	}
	onPanic := s.rescue
	pool.Setup = func(proc *procgroup.Process) {
		proc.OnSpawn = onSpawn
		proc.OnExit = onExit
		proc.DaemonEnv = daemonEnv
		proc.Spawns = s.spawns
		proc.Guard = s.guard
		proc.Stdio = s.stdio
		proc.OnState = onState
		proc.OnPanic = onPanic
		s.adopt(proc)
	}
	return pool
}

// kickNotify tells runNotify to look at the processes again.
func (s *Supervisor) kickNotify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// autostart starts, level by level in ascending priority, the processes
// that autostart and were not stopped with ctl stop; it does not wait for
// them to be RUNNING.
func (s *Supervisor) autostart(procs []*procgroup.Process) {
	for _, level := range s.levels(procs, false) {
		var start []*procgroup.Process
		for _, p := range level {
			if s.admin.isStopped(p.Spec().FullName()) {
				s.log.Info("not starting: stopped with gosup ctl stop; gosup ctl start starts it", "process", p.Spec().FullName())
				continue
			}
			if p.Spec().Program.AutoStart {
				start = append(start, p)
			}
		}
		startAll(start)
	}
}

// startAll asks each of procs to start and returns once each has spawned
// (or failed to). A few goroutines ask, not one a process: every spawn is
// made on the reaper's one thread, which takes 2 a CPU preparing at once
// (reaper.Prepare), so more askers only wait; and each goroutine the
// daemon ever ran keeps its descriptor for the daemon's life (the runtime
// reuses them, never frees them): a goroutine a process at start was
// about 0.5 kB a child for good. Enough ask that a few spawns stuck on a
// user lookup (a name service that hangs, in a cgo build) hold up no other.
func startAll(procs []*procgroup.Process) {
	work := make(chan *procgroup.Process)
	var wg sync.WaitGroup
	for range min(len(procs), max(16, 4*runtime.GOMAXPROCS(0))) {
		wg.Go(func() {
			for p := range work {
				_ = p.Start()
			}
		})
	}
	for _, p := range procs {
		work <- p
	}
	close(work)
	wg.Wait()
}

// startMemmon runs the watchdog and the alerter, if cfg has them, and
// keeps what stops them (and waits for their restarts in flight, and for
// prev, the previous watchdog's stop, if not nil).
func (s *Supervisor) startMemmon(cfg *config.Config, prev <-chan struct{}) {
	s.startMemmonFrom(cfg, prev, nil, nil)
}

// startMemmonFrom is startMemmon with the watchdog and the alerter taking
// up ws and as (when not nil): what an upgrade handed over.
func (s *Supervisor) startMemmonFrom(cfg *config.Config, prev <-chan struct{}, ws *memmon.WatchdogState, as *memmon.AlerterState) {
	waitPrev := func() {
		if prev != nil {
			<-prev
		}
	}
	if cfg.Memmon == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stopMemmon = waitPrev
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var alerter *memmon.Alerter
	var stopAlerter func()
	if cfg.Email != nil {
		alerter = memmon.NewAlerter(*cfg.Email, cfg.Memmon.AlertMaxUptime, s.sendmail, s.log.With("component", "alerts"))
		if as != nil {
			alerter.Restore(*as)
		}
		actx, acancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.guard.Run(actx, "alerter", alerter.Run)
		}()
		stopAlerter = func() {
			acancel()
			<-done
		}
	}
	watchdog := memmon.New(*cfg.Memmon, memmonHost{s}, alerter, "/proc", s.log)
	watchdog.Guard = s.guard
	watchdog.Tally = &s.counters.memmon
	if !cfg.Memmon.Cumulative {
		watchdog.ReadRSS = s.memmonRSS
	}
	if ws != nil {
		watchdog.Restore(*ws)
	}
	wg.Go(func() { s.guard.Run(ctx, "memmon", watchdog.Run) })
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchdog, s.alerter, s.stopAlerter = watchdog, alerter, stopAlerter
	s.stopMemmon = func() {
		cancel()
		if stopAlerter != nil {
			stopAlerter()
		}
		wg.Wait()
		waitPrev()
	}
}

// swapMemmon replaces the watchdog and the alerter with next's. It does
// not wait for the old watchdog's restarts in flight (one may be a stop of
// stopwaitsecs = 600): they end on their own, in their programs' lanes,
// and shutdown waits for them with the new watchdog.
//
// The alerter, though, is stopped at once and hands what it holds (the
// alerts waiting for a mail or for a retry, the rate limiting, its
// counters) to the next one, so that fixing [email] and reloading mails
// them; the alerts the old watchdog's restarts in flight hand to it go on
// to the next one. A reload that removes [memmon] or [email] has the old
// alerter mail them at once instead (Flush), once those restarts ended.
func (s *Supervisor) swapMemmon(next *config.Config) {
	s.mu.Lock()
	stop, stopAlerter, old := s.stopMemmon, s.stopAlerter, s.alerter
	s.watchdog, s.alerter, s.stopMemmon, s.stopAlerter = nil, nil, func() {}, nil
	s.mu.Unlock()
	var held *memmon.AlerterState
	if old != nil {
		stopAlerter()
		st := old.State()
		held = &st
	}
	// Without an alerter to hand them to (the reload removed [memmon] or
	// [email]), the old one mails what it holds, and what the old
	// watchdog's restarts in flight enqueue, once they ended.
	flush := old != nil && (next.Memmon == nil || next.Email == nil)
	if flush {
		for _, batch := range held.Queue {
			old.Enqueue(batch...)
		}
		held = nil
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop()
		if flush {
			old.Flush(context.Background(), "the reload removed [memmon] or [email]")
		}
	}()
	s.startMemmonFrom(next, stopped, nil, held)
	if old == nil || flush {
		return
	}
	s.mu.RLock()
	alerter := s.alerter
	s.mu.RUnlock()
	if alerter != nil {
		old.HandTo(alerter)
	}
}

// nginxSettings is what the nginx manager needs of a validated [nginx] table.
func nginxSettings(n *config.Nginx) nginx.Settings {
	return nginx.Settings{Output: n.Output, Template: n.Template,
		TestCommand: n.TestCommand, ReloadCommand: n.ReloadCommand, CommandTimeout: n.CommandTimeout}
}

// newNginx starts a manager for settings, run by the guard.
func (s *Supervisor) newNginx(settings nginx.Settings) *nginx.Manager {
	return s.newNginxFrom(settings, nil)
}

// newNginxFrom is newNginx with the manager taking up st (when not nil):
// what an upgrade handed over.
func (s *Supervisor) newNginxFrom(settings nginx.Settings, st *nginx.State) *nginx.Manager {
	return s.newBalancer(settings, &s.counters.nginx, st)
}

// newBalancer starts a manager for settings (nginx's or HAProxy's),
// counted in tally, taking up st when not nil.
func (s *Supervisor) newBalancer(settings nginx.Settings, tally *nginx.Tally, st *nginx.State) *nginx.Manager {
	m := nginx.New(settings, s.rp, s.log)
	m.Guard = s.guard
	m.Tally = tally
	if st != nil {
		m.Restore(*st)
	}
	m.Start()
	return m
}

// requestShutdown makes Run stop everything and return.
func (s *Supervisor) requestShutdown() {
	s.shutdownOnce.Do(func() { close(s.shutdownReq) })
}

func (s *Supervisor) all() []*procgroup.Process {
	var out []*procgroup.Process
	for _, pool := range s.snapshotPools() {
		out = append(out, pool.Procs()...)
	}
	return out
}

func (s *Supervisor) snapshotPools() []*procgroup.Pool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.pools)
}

// match resolves patterns to the running processes (see resolve).
func (s *Supervisor) match(patterns []string) ([]*procgroup.Process, error) {
	return resolve(s.all(), patterns)
}

// pool returns the running processes of a program, nil if none.
func (s *Supervisor) pool(program procgroup.ProgramName) *procgroup.Pool {
	for _, pool := range s.snapshotPools() {
		if pool.Program == program {
			return pool
		}
	}
	return nil
}

// levels groups procs by priority, ascending (or descending when reverse).
func (s *Supervisor) levels(procs []*procgroup.Process, reverse bool) [][]*procgroup.Process {
	sorted := slices.Clone(procs)
	slices.SortStableFunc(sorted, func(a, b *procgroup.Process) int {
		c := cmp.Compare(a.Spec().Program.Priority, b.Spec().Program.Priority)
		if reverse {
			c = -c
		}
		return c
	})
	var out [][]*procgroup.Process
	for i, p := range sorted {
		if i == 0 || p.Spec().Program.Priority != sorted[i-1].Spec().Program.Priority {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], p)
	}
	return out
}

// gone reports whether p has been removed (by a reload) from its program.
func gone(p *procgroup.Process) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

func stoppedish(st procgroup.Status) bool {
	switch st.State {
	case procgroup.Stopped, procgroup.Exited, procgroup.Fatal:
		return true
	}
	return false
}

// stop stops procs level by level in descending priority, each level in
// parallel, and waits for each level before the next. Each process first
// waits for its program's lane in l.
func (s *Supervisor) stop(ctx context.Context, l *lease, procs []*procgroup.Process) []api.Result {
	var results []api.Result
	for _, level := range s.levels(procs, true) {
		results = append(results, s.parallel(ctx, l, level, func(p *procgroup.Process) (string, bool) {
			name, before := p.Spec().FullName(), p.Status()
			err := p.Stop()
			if errors.Is(err, procgroup.ErrNotRunning) {
				return "not running", true
			}
			if err != nil {
				return err.Error(), false
			}
			began := time.Now()
			how := "SIG" + p.Spec().Program.StopSignal.String() + " sent"
			if before.Pid == 0 {
				how = "no child running (was " + before.State.String() + ")"
			}
			l.emit(api.Event{Process: name, Step: api.StepStopping, Pid: before.Pid, Message: how})
			st, err := p.Wait(ctx, stoppedish)
			if err != nil {
				return fmt.Sprintf("still %s: %v", st.State, err), false
			}
			how = "stopped"
			if before.Pid != 0 && st.ExitDesc != "" {
				how = st.ExitDesc
			}
			l.emit(api.Event{Process: name, Step: api.StepStopped, Pid: before.Pid, TookS: time.Since(began).Seconds(), Message: how})
			return "stopped", true
		})...)
	}
	return results
}

// start starts procs in ascending priority and waits until each is RUNNING
// or has failed for good. Each process first waits for its program's lane
// in l.
func (s *Supervisor) start(ctx context.Context, l *lease, procs []*procgroup.Process) []api.Result {
	var results []api.Result
	for _, level := range s.levels(procs, false) {
		results = append(results, s.parallel(ctx, l, level, func(p *procgroup.Process) (string, bool) {
			before := p.Status().Spawns
			err := p.Start()
			if errors.Is(err, procgroup.ErrAlreadyStarted) {
				return "already started", true
			}
			if err != nil {
				return err.Error(), false
			}
			return waitStarted(ctx, l, p, before)
		})...)
	}
	return results
}

// waitStarted waits until p, asked to start after spawnsBefore spawns, is
// RUNNING or has failed for good, reporting each child it spawns meanwhile
// and its readiness to l's watcher (l may be nil).
func waitStarted(ctx context.Context, l *lease, p *procgroup.Process, spawnsBefore int) (string, bool) {
	name, began, lastPid := p.Spec().FullName(), time.Now(), 0
	st, err := p.Wait(ctx, func(st procgroup.Status) bool {
		if st.Spawns > spawnsBefore && st.Pid != 0 && st.Pid != lastPid {
			lastPid = st.Pid
			msg := ""
			if n := st.Spawns - spawnsBefore; n > 1 {
				msg = fmt.Sprintf("attempt %d", n)
			}
			l.emit(api.Event{Process: name, Step: api.StepStarted, Pid: st.Pid, Message: msg})
		}
		switch st.State {
		case procgroup.Running, procgroup.Fatal, procgroup.Stopped:
			return true
		case procgroup.Exited:
			return st.Spawns > spawnsBefore
		}
		return false
	})
	switch {
	case err != nil:
		return fmt.Sprintf("still %s: %v", st.State, err), false
	case st.State == procgroup.Running:
		l.emit(api.Event{Process: name, Step: api.StepReady, Pid: st.Pid, TookS: time.Since(began).Seconds()})
		return "started", true
	case st.SpawnError != "":
		return "spawn error: " + st.SpawnError, false
	case st.ExitDesc != "":
		return fmt.Sprintf("%s (%s)", cmp.Or(st.Reason, "exited"), st.ExitDesc), false
	}
	return st.State.String(), false
}

// parallel runs f for each of procs at once, each once its program's lane
// in l is its turn, and collects one result per process. Once ctx has
// ended f runs no more: an operation cut short by shutdown does not go on
// to its next priority level.
func (s *Supervisor) parallel(ctx context.Context, l *lease, procs []*procgroup.Process, f func(*procgroup.Process) (string, bool)) []api.Result {
	results := make([]api.Result, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() {
			msg, ok := "", false
			if err := l.acquire(p.Spec().ProgramName); err != nil {
				msg = err.Error()
			} else if gone(p) {
				msg = "no longer configured: removed by a reload"
			} else if err := ctx.Err(); err != nil {
				msg = "not done: " + err.Error()
			} else {
				msg, ok = f(p)
			}
			results[i] = api.Result{Name: p.Spec().FullName(), OK: ok, State: p.Status().State.String(), Message: msg}
			if !ok {
				l.emit(api.Event{Process: results[i].Name, Step: api.StepFailed, Message: msg})
			}
		})
	}
	wg.Wait()
	return results
}

// logWarnings logs what in cfg is valid but will not work here as it
// stands (config.Config.Warnings).
func (s *Supervisor) logWarnings(cfg *config.Config) {
	for _, w := range cfg.Warnings {
		s.log.Warn("configuration: "+w.Msg, "file", w.File, "line", w.Line, "key", w.Key)
	}
}
