package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// notifier speaks systemd's sd_notify protocol: datagrams of KEY=VALUE
// lines to $NOTIFY_SOCKET. A nil notifier does nothing.
type notifier struct {
	conn *net.UnixConn
}

// newNotifier dials socket ("" when not under systemd; a leading '@' is
// the abstract namespace).
func newNotifier(socket string) (*notifier, error) {
	if socket == "" {
		return nil, nil
	}
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	if strings.HasPrefix(socket, "@") {
		addr.Name = "\x00" + socket[1:]
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET %s: %w", socket, err)
	}
	return &notifier{conn: c}, nil
}

func (n *notifier) send(lines ...string) error {
	if n == nil {
		return nil
	}
	_, err := n.conn.Write([]byte(strings.Join(lines, "\n")))
	return err
}

func (n *notifier) close() {
	if n != nil {
		n.conn.Close()
	}
}

// picture is one reading of every process: STATUS= and the READY=1
// decision both come from it, so READY=1 never goes out with a STATUS=
// that says some process is still starting.
type picture struct {
	summary string // the one-line STATUS= systemd shows
	settled bool   // no autostart process is still on its way anywhere
}

// look reads each process's status once. A process is settled when
// nothing more happens to it without an operator: RUNNING, FATAL, EXITED
// with no respawn due (a one-shot program), STOPPED (kept stopped by ctl
// stop, remembered across daemon restarts; or an autostart = false
// program). Everything else (STARTING, BACKOFF, STOPPING, an exit whose
// respawn is pending) is still moving, and READY=1 waits for it if it
// autostarts. ctlStopped says whether a process was stopped with ctl stop.
func look(procs []*procgroup.Process, ctlStopped func(name string) bool) picture {
	var running, fatal, exited, stopped, byCtl, starting, stopping int
	settled := true
	for _, p := range procs {
		st := p.Status()
		switch {
		case st.State == procgroup.Running:
			running++
		case st.State == procgroup.Fatal:
			fatal++
		case (st.State == procgroup.Stopped || st.State == procgroup.Exited) && st.RespawnAt.IsZero():
			switch {
			case ctlStopped(st.FullName()):
				byCtl++
			case st.State == procgroup.Exited:
				exited++
			default:
				stopped++
			}
		default:
			if st.State == procgroup.Stopping {
				stopping++
			} else {
				starting++ // STARTING, BACKOFF, or a respawn due
			}
			if p.Spec().Program.AutoStart {
				settled = false
			}
		}
	}
	s := fmt.Sprintf("%d running, %d fatal", running, fatal)
	for _, c := range []struct {
		n    int
		what string
	}{{exited, "exited"}, {stopped, "stopped"}, {byCtl, "stopped by ctl stop"}, {starting, "starting"}, {stopping, "stopping"}} {
		if c.n > 0 {
			s += fmt.Sprintf(", %d %s", c.n, c.what)
		}
	}
	return picture{summary: s, settled: settled}
}

// look is the picture of the daemon's processes now.
func (s *Supervisor) look() picture {
	return look(s.all(), s.admin.isStopped) // all(): a reload changes them
}

// liveness is one of the daemon's own loops and how to ask it whether it
// answers; ping returns nil once it has, or an error when ctx ends first.
type liveness struct {
	name string
	ping func(ctx context.Context) error
}

// livenessChecks are what WATCHDOG=1 vouches for: the operation lanes
// move (the decide lock that every lane reservation and reload plan takes
// is free within the bound, and no operation has held its lanes longer
// than its programs can take: see overdueLeases), the reaper's loop takes
// its next SIGCHLD, and the control socket accepts a new connection and
// answers GET /v1/info.
func (s *Supervisor) livenessChecks(socket string) []liveness {
	return []liveness{
		{"operation lanes", func(ctx context.Context) error {
			if err := lock(ctx, s.decide); err != nil {
				return err
			}
			<-s.decide
			return s.overdueLeases(time.Now())
		}},
		{"reaper", s.rp.Ping},
		{"control socket", func(ctx context.Context) error { return pingSocket(ctx, socket) }},
	}
}

// leaseSlack is added to every operation's bound: scheduling, spawning,
// reading /proc, a slow disk. nginxAllowance is added per nginx upstream
// member, whose drain and return wait for nginx to reload.
const (
	leaseSlack     = 30 * time.Second
	nginxAllowance = 10 * time.Second
)

// leaseBound is the longest an operation on progs can work: for each of
// their processes, one after the other, its drain, its stopwaitsecs and
// its worst start (every attempt running out ready_timeout or startsecs,
// plus the backoff), plus leaseSlack. Generous on purpose: it catches an
// operation that never ends (a lease its holder leaked, a wait that
// cannot return), not a slow one.
func (s *Supervisor) leaseBound(progs []procgroup.ProgramName) time.Duration {
	b := cmp.Or(s.hooks.leaseSlack, leaseSlack)
	cfg := s.config()
	for _, prog := range progs {
		i := slices.IndexFunc(cfg.Programs, func(p *config.Program) bool { return p.Name == string(prog) })
		if i < 0 {
			continue // removed by a reload (the bound seen before stays: raiseBound)
		}
		p := cfg.Programs[i]
		each := p.Spec.Drain + time.Duration(p.Spec.StopWaitSecs)*time.Second + p.StartBound()
		if p.Spec.Upstream != "" {
			each += nginxAllowance
		}
		b += time.Duration(len(p.Procs)) * each
	}
	return b
}

// overdueLeases names the operations that have worked (held their lanes,
// not counting their waits for the operations before them) longer than
// leaseBound allows: a leaked or stuck lease holds its programs' lanes
// for ever, and the watchdog must not vouch for that.
func (s *Supervisor) overdueLeases(now time.Time) error {
	var overdue []string
	for _, l := range s.lanes.leases() {
		bound := l.raiseBound(s.leaseBound(l.progs))
		if busy := l.busy(now); busy > bound {
			names := make([]string, len(l.progs))
			for i, p := range l.progs {
				names[i] = string(p)
			}
			overdue = append(overdue, fmt.Sprintf("an operation on %s has held its lanes for %s, longer than they can take (%s)",
				strings.Join(names, ","), busy.Round(time.Second), bound))
		}
	}
	if len(overdue) == 0 {
		return nil
	}
	return errors.New(strings.Join(overdue, ", "))
}

// pingSocket asks the daemon for /v1/info with a client of its own, so
// over a new connection: the accept loop answers as well as a handler.
func pingSocket(ctx context.Context, socket string) error {
	cl := api.NewClient(socket)
	defer cl.Close()
	_, err := cl.Info(ctx)
	return err
}

// unanswered asks every check at once and names those that have not
// answered within bound (each check gives up when its context ends).
func unanswered(ctx context.Context, bound time.Duration, checks []liveness) ([]string, []error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.ping(ctx) })
	}
	wg.Wait()
	var names []string
	var failed []error
	for i, err := range errs {
		if err != nil {
			names = append(names, checks[i].name)
			failed = append(failed, fmt.Errorf("%s: %w", checks[i].name, err))
		}
	}
	return names, failed
}

// runNotify sends READY=1 once every autostart process has settled (look),
// then STATUS= whenever the summary changes (changed is signalled on every
// state change; a burst of changes is looked at once every notifyGap: a
// look reads every process's status, and ctl start all on 2,000 processes
// changes states thousands of times a second). Without systemd (n is nil)
// there is no one to tell, and it returns. When systemd asked for a watchdog it checks the daemon's
// loops every watchdog/2, each bound to answer within watchdog/4, and
// sends WATCHDOG=1 only when all did: a wedged daemon stops pinging and
// systemd restarts it. A failed check withholds that ping, sets STATUS= to
// what did not answer, and is counted for ctl info.
func (s *Supervisor) runNotify(ctx context.Context, n *notifier, changed <-chan struct{}, watchdog time.Duration, checks []liveness) {
	if n == nil {
		return
	}
	var ping <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog / 2)
		defer t.Stop()
		ping = t.C
	}
	bound := watchdog / 4
	ready, last := false, ""
	var looked time.Time
	var due <-chan time.Time // a look put off until notifyGap has passed
	report := func() {
		looked = time.Now()
		pic := s.look()
		if !ready && pic.settled && !s.applying.Load() {
			ready = true
			s.readySent.Store(true)
			last = pic.summary
			if err := n.send("READY=1", "STATUS="+pic.summary); err != nil {
				s.log.Warn("sd_notify failed", "err", err)
			}
			return
		}
		if ready && pic.summary != last {
			last = pic.summary
			_ = n.send("STATUS=" + pic.summary)
		}
	}
	report()
	var failingSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			if due != nil {
				continue
			}
			if wait := notifyGap - time.Since(looked); wait > 0 {
				due = time.After(wait)
				continue
			}
			report()
		case <-due:
			due = nil
			report()
		case <-ping:
			names, errs := unanswered(ctx, bound, checks)
			if ctx.Err() != nil {
				return
			}
			if len(names) == 0 {
				if !failingSince.IsZero() {
					s.log.Info("the daemon's loops answer again: pinging the systemd watchdog", "after", time.Since(failingSince).Round(time.Millisecond))
					failingSince = time.Time{}
					last = s.look().summary
					_ = n.send("STATUS=" + last)
				}
				_ = n.send("WATCHDOG=1")
				continue
			}
			what := failures(names, errs, bound)
			s.watchdogMissed.Add(1)
			s.watchdogLast.Store(&watchdogFailure{At: time.Now(), What: what})
			if failingSince.IsZero() {
				failingSince = time.Now()
				s.log.Error("not pinging the systemd watchdog: "+what+"; systemd restarts gosup if this lasts", "err", errors.Join(errs...))
			}
			_ = n.send("STATUS=watchdog: " + what + "; not pinging systemd")
		}
	}
}

// notifyGap is the least time between two looks at the processes for
// STATUS= (and READY=1, which waits at most that much more).
const notifyGap = 50 * time.Millisecond

// failures says, on one line, what each failed check did: "NAME did not
// answer within BOUND", or "NAME: why" when it answered with an error.
func failures(names []string, errs []error, bound time.Duration) string {
	parts := make([]string, len(names))
	for i, err := range errs {
		if errors.Is(err, context.DeadlineExceeded) {
			parts[i] = fmt.Sprintf("%s did not answer within %s", names[i], bound)
		} else {
			parts[i] = strings.ReplaceAll(err.Error(), "\n", " ")
		}
	}
	return strings.Join(parts, "; ")
}

// watchdogFailure is the last liveness check that failed.
type watchdogFailure struct {
	At   time.Time
	What string
}
