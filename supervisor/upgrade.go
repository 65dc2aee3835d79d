package supervisor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/pathtrust"
	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/handover"
	"github.com/gosup/gosup/supervisor/nginx"
	"golang.org/x/sys/unix"
)

// An in-place upgrade re-executes the daemon (execve, same pid) from a new
// binary, which takes over every child: see package reaper for why no
// child's parent-death signal fires, and package handover for what
// crosses the exec. It goes in two steps:
//
//  1. Upgrade, answering the client: the binary is checked (a regular,
//     executable file that, as root, only root can change), the operations
//     in flight are waited for (every program's lane is taken, and the
//     reload lock), and the new binary runs `gosup upgrade-check` on the
//     handover document of this daemon: it must read its version and
//     parse the running configuration. Any failure refuses the upgrade,
//     and nothing has changed.
//  2. reexec, after the answer: the control socket stops accepting (new
//     connections wait in its backlog) and the requests in flight end;
//     nginx and memmon stop and give their state; reaping is held (an exit
//     now waits, a zombie, for the new image); every process freezes and
//     describes itself; the document goes into a memfd; execve. Until the
//     execve, a failure undoes every step in reverse and the daemon goes on
//     as before; the failure is logged and shown by ctl info.

// upgradeState is what ctl info says of the daemon's binary and its
// re-executions.
type upgradeState struct {
	mu         sync.Mutex
	upgrades   int
	rescues    int
	upgradedAt time.Time
	from       handover.Build // the build before the last upgrade
	failures   int
	lastErr    string
	rescuedAt  time.Time // when the last rescue began
}

// connCount counts the control connections busy with a request: from the
// accept until the answer has gone out (net/http's ConnState), so that an
// upgrade execs only once every request it let in has been answered. A
// connection streaming for as long as its client likes (tail --follow) is
// not counted once its stream begins: the exec cuts it and the client
// reconnects.
type connCount struct {
	mu        sync.Mutex
	busy      map[net.Conn]bool // new or active
	streaming map[net.Conn]bool
	zero      chan struct{} // closed when no connection is busy
}

// state is the server's ConnState.
func (c *connCount) state(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy == nil {
		c.busy, c.streaming = map[net.Conn]bool{}, map[net.Conn]bool{}
	}
	switch st {
	case http.StateNew, http.StateActive:
		c.busy[conn] = true
	default: // idle, closed, hijacked
		delete(c.busy, conn)
		delete(c.streaming, conn)
	}
	c.check()
}

// stream marks conn as streaming.
func (c *connCount) stream(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.streaming != nil && c.busy[conn] {
		c.streaming[conn] = true
		c.check()
	}
}

// check closes zero when nothing is busy; called with mu held.
func (c *connCount) check() {
	if c.zero != nil && len(c.busy) == len(c.streaming) {
		close(c.zero)
		c.zero = nil
	}
}

// wait waits until no connection is busy, or ctx ends; it says how many
// still are.
func (c *connCount) wait(ctx context.Context) int {
	c.mu.Lock()
	if len(c.busy) == len(c.streaming) {
		c.mu.Unlock()
		return 0
	}
	if c.zero == nil {
		c.zero = make(chan struct{})
	}
	zero := c.zero
	c.mu.Unlock()
	select {
	case <-zero:
		return 0
	case <-ctx.Done():
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.busy) - len(c.streaming)
	}
}

// connKey keys a control request's connection in its context.
type connKey struct{}

// markStreams marks the connections of h's requests that stream for as long
// as the client likes (tail --follow), which an upgrade does not wait for.
func (s *Supervisor) markStreams(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if api.Follows(r) {
			if conn, ok := r.Context().Value(connKey{}).(net.Conn); ok {
				s.conns.stream(conn)
			}
		}
		h.ServeHTTP(w, r)
	})
}

// Timeouts of an upgrade's steps.
const (
	// upgradeCheckTimeout bounds the new binary's self-check.
	upgradeCheckTimeout = 10 * time.Second
	// upgradeDrain bounds the wait for the requests in flight.
	upgradeDrain = 2 * time.Second
	// upgradeFreeze bounds the wait for each log copier to stop.
	upgradeFreeze = 5 * time.Second
	// upgradeQuiesce bounds the whole of step 2 before the exec.
	upgradeQuiesce = 30 * time.Second
)

var (
	errUpgradeBusy = errors.New("an upgrade is already under way")
	errStarting    = errors.New("the daemon is still starting; try again once it runs")
)

// RequestUpgrade upgrades to the binary the daemon was started from, as
// SIGUSR2 asks; the outcome is logged (and shown by ctl info).
//
// One asked for while the daemon is starting (a signal that waited for the
// handlers) waits until it runs.
func (s *Supervisor) RequestUpgrade() {
	go func() {
		ctx, cancel := context.WithTimeout(s.opsCtx, time.Minute)
		defer cancel()
		select {
		case <-s.serving:
		case <-ctx.Done():
			s.log.Error("upgrade not done: the daemon did not finish starting", "err", ctx.Err())
			return
		}
		if _, err := s.Upgrade(ctx, ""); err != nil {
			s.log.Error("upgrade refused", "err", err)
		}
	}()
}

// Upgrade checks binary ("" for the path the daemon was started from) and,
// if it passes, re-executes the daemon from it once the answer is sent: it
// returns the builds from and to. ctx bounds the wait for operations in
// flight and the check. An upgrade it refuses changes nothing.
func (s *Supervisor) Upgrade(ctx context.Context, binary string) (api.UpgradeReply, error) {
	var reply api.UpgradeReply
	select {
	case <-s.serving:
	default:
		return reply, errStarting
	}
	if binary == "" {
		binary = s.opts.Binary
	}
	if binary == "" {
		return reply, errors.New("the path of the binary this daemon was started from is not known: give one with --binary PATH")
	}
	if !s.rp.Leader() {
		return reply, fmt.Errorf("cannot upgrade in place: %w (children would get their parent-death signal); restart the daemon instead", reaper.ErrNotLeader)
	}
	select {
	case s.upgrading <- struct{}{}:
	default:
		return reply, errUpgradeBusy
	}
	handed := false
	defer func() {
		if !handed {
			<-s.upgrading
		}
	}()
	path, id, err := checkBinary(binary)
	if err != nil {
		return reply, err
	}
	// Wait for every operation in flight: a reload, then each program's
	// lane. They are held until the exec (or the upgrade fails).
	if err := lock(ctx, s.reloading); err != nil {
		return reply, fmt.Errorf("waiting for the reload in progress: %w", err)
	}
	unlockReload := func() { <-s.reloading }
	_, lease, err := s.claim(withOp(ctx, "an upgrade"), []string{"all"})
	if err != nil {
		unlockReload()
		return reply, fmt.Errorf("waiting for the operations in progress: %w", err)
	}
	release := func() {
		lease.release()
		unlockReload()
	}
	for _, pool := range s.snapshotPools() {
		if err := lease.acquire(pool.Program); err != nil {
			release()
			return reply, fmt.Errorf("waiting for the operations in progress on %s: %w", pool.Program, err)
		}
	}
	checkStart := time.Now()
	check, err := s.selfCheck(ctx, path)
	if err == nil {
		// What ran the check is what the exec runs (see reexec).
		if now, serr := idOf(path); serr != nil || now != id {
			err = fmt.Errorf("binary %s was replaced while it was checked; try again", path)
		}
	}
	if err != nil {
		release()
		return reply, err
	}
	s.up.mu.Lock()
	reply = api.UpgradeReply{Pid: os.Getpid(), Binary: path, From: s.opts.Build, To: check.Build, Upgrades: s.up.upgrades, Failures: s.up.failures}
	s.up.mu.Unlock()
	handed = true
	s.log.Info("upgrading in place", "binary", path, "from", s.opts.Build.Version, "to", check.Build.Version, "check_took", time.Since(checkStart).Round(time.Millisecond))
	go func() {
		defer func() { <-s.upgrading }()
		defer release()
		err := s.reexec(path, &id, handover.ReasonUpgrade, nil)
		s.up.mu.Lock()
		s.up.failures++
		s.up.lastErr = fmt.Sprintf("%s: %v", time.Now().Format(time.DateTime), err)
		s.up.mu.Unlock()
		s.log.Error("upgrade failed; the daemon goes on as before", "binary", path, "err", err)
	}()
	return reply, nil
}

// binaryPolicy: as root, the new binary (and every directory on its way)
// must be changeable by root alone, or anyone who could would run code
// as root.
var binaryPolicy = pathtrust.Policy{Owners: []uint32{0}, Groups: []uint32{0}}

// fileID identifies the file a checked path named: an exec checks, last
// thing before execve, that the path still names it.
type fileID struct{ dev, ino uint64 }

// idOf is what path names now.
func idOf(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{st.Dev, st.Ino}, nil
}

// checkBinary says why path cannot be the daemon's next image, or returns
// it absolute and what file it names.
func checkBinary(path string) (string, fileID, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fileID{}, fmt.Errorf("binary %s: %w", path, err)
	}
	real := abs
	if os.Geteuid() == 0 {
		real, err = pathtrust.Resolve(abs, binaryPolicy, false)
		if p := (*pathtrust.Problem)(nil); errors.As(err, &p) {
			return "", fileID{}, fmt.Errorf("binary %s: %s; %s", abs, p.What, p.Fix)
		}
	} else {
		real, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return "", fileID{}, fmt.Errorf("binary %s: %w", abs, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", fileID{}, fmt.Errorf("binary %s: %w", real, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", fileID{}, fmt.Errorf("binary %s: not a regular file", real)
	}
	if st.Mode&0o111 == 0 || unix.Access(real, unix.X_OK) != nil {
		return "", fileID{}, fmt.Errorf("binary %s: not executable (mode %04o); chmod +x it", real, st.Mode&0o7777)
	}
	if os.Geteuid() == 0 {
		if st.Uid != 0 {
			return "", fileID{}, fmt.Errorf("binary %s: owned by %s, not root: chown root %s", real, pathtrust.UserName(st.Uid), real)
		}
		acl, err := pathtrust.ACL(real)
		if err != nil {
			return "", fileID{}, fmt.Errorf("binary %s: %w", real, err)
		}
		if w := pathtrust.Writers(&st, acl, binaryPolicy); w.Who != "" {
			return "", fileID{}, fmt.Errorf("binary %s: %s may write it: chmod go-w %s", real, w.Who, real)
		}
	}
	return abs, fileID{st.Dev, st.Ino}, nil
}

// selfCheck runs `BINARY upgrade-check` with this daemon's handover
// document on its stdin (its processes as their status shows them, without
// descriptors): the new binary must read the document, processes included,
// and parse the running configuration.
func (s *Supervisor) selfCheck(ctx context.Context, path string) (handover.Check, error) {
	var check handover.Check
	doc := s.baseDoc(path, handover.ReasonUpgrade)
	for _, p := range s.all() {
		st := p.Status()
		h := procgroup.StatusHandover(st)
		h.Pid = st.Pid
		doc.Processes = append(doc.Processes, h)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return check, fmt.Errorf("handover document: %w", err)
	}
	out, err := procgroup.RunArgv(ctx, s.rp, []string{path, "upgrade-check"}, b, upgradeCheckTimeout)
	if err != nil {
		return check, fmt.Errorf("the new binary failed its check, so it was not executed: %w", err)
	}
	if err := json.Unmarshal(out, &check); err != nil {
		return check, fmt.Errorf("the new binary's check said %q, not what gosup upgrade-check prints: is %s a gosup binary new enough to upgrade in place?", cut(out, 200), path)
	}
	if !slices.Contains(check.Readable, handover.Version) {
		return check, fmt.Errorf("%w: %s (%s) reads handover versions %v, this daemon writes %d", handover.ErrIncompatible, path, check.Build.Version, check.Readable, handover.Version)
	}
	return check, nil
}

func cut(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// baseDoc is the handover document without what only a freeze knows.
func (s *Supervisor) baseDoc(binary, reason string) *handover.Doc {
	cfg := s.config()
	s.up.mu.Lock()
	defer s.up.mu.Unlock()
	counters := s.counters.handover(s.up.failures)
	s.mu.RLock()
	last := s.lastReload
	s.mu.RUnlock()
	return &handover.Doc{
		Version: handover.Version, Reason: reason, From: s.opts.Build, Binary: binary,
		StartedAt: s.startedAt, Upgrades: s.up.upgrades, Rescues: s.up.rescues, UpgradedAt: time.Now(),
		RescuedAt:      s.up.rescuedAt,
		Config:         handover.Config{File: cfg.File, Files: cfg.Files, Sources: cfg.Sources, Insecure: s.opts.InsecureConfig},
		Reload:         last,
		WatchdogMissed: s.watchdogMissed.Load(),
		Counters:       counters,
	}
}

// reexec quiesces the daemon, writes the handover and executes binary. It
// returns only if that failed, having undone everything. given are
// processes already described (a rescue: the one whose owner panicked),
// not frozen again.
//
// want, when set, is the file binary named when it was checked: the exec
// is refused if the path names another by then.
func (s *Supervisor) reexec(binary string, want *fileID, reason string, given map[*procgroup.Process]*procgroup.Frozen) (err error) {
	rescue := reason == handover.ReasonRescue
	begun := time.Now()
	var freezeTook time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), upgradeQuiesce)
	defer cancel()
	var undo []func()
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()
	_ = s.notify.send("RELOADING=1", fmt.Sprintf("MONOTONIC_USEC=%d", monotonicUsec()), "STATUS=re-executing in place ("+reason+")")
	undo = append(undo, func() {
		_ = s.notify.send("READY=1", "STATUS=in-place re-execution failed: "+err.Error())
	})
	// The HTTP listener: new connections wait in its backlog for the
	// next image; the requests in flight are answered first. Before the
	// control socket pauses: /healthz pings it.
	httpDoc, resumeHTTP, err := s.http.handover()
	switch {
	case err == nil:
		undo = append(undo, resumeHTTP)
	case rescue:
		s.log.Error("the HTTP listener is not handed over; the next image listens afresh", "err", err)
	default:
		return err
	}
	// The control socket: new connections wait in its backlog for the
	// next image; the requests in flight are answered first.
	undo = append(undo, s.sock.stopWatch())
	resume, err := s.sock.pause(ctx)
	if err != nil {
		return err
	}
	undo = append(undo, resume)
	// Keep-alive connections would send their next request after the
	// drain, to be cut by the exec: idle ones are closed, busy ones close
	// after their answer.
	s.sock.srv.SetKeepAlivesEnabled(false)
	undo = append(undo, func() { s.sock.srv.SetKeepAlivesEnabled(true) })
	dctx, dcancel := context.WithTimeout(ctx, upgradeDrain)
	if n := s.conns.wait(dctx); n > 0 {
		s.log.Warn("requests still in flight are cut by the upgrade; their clients see an error", "count", n)
	}
	dcancel()
	// nginx and memmon.
	side, err := s.stopSideParts()
	undo = append(undo, func() { s.startSideParts(side) })
	if err != nil && !rescue {
		return err
	}
	// Reaping, then each process.
	hctx, hcancel := context.WithTimeout(ctx, upgradeFreeze)
	releaseReaper, err := s.rp.Hold(hctx)
	hcancel()
	switch {
	case err == nil:
		undo = append(undo, releaseReaper)
	case rescue:
		// A reaping loop that does not answer (it may be what
		// panicked) reaps nothing: the exits wait for the next image.
		s.log.Error("the reaper did not answer; re-executing without it", "err", err)
	default:
		return err
	}
	doc := s.baseDoc(binary, reason)
	doc.Nginx, doc.HAProxy, doc.Memmon, doc.Alerter = side.nginx, side.haproxy, side.memmon, side.alerter
	doc.HTTP = httpDoc
	// Every process at once: each freeze waits for its log copiers.
	freezeStart := time.Now()
	procs := s.all()
	frozen := make([]*procgroup.Frozen, len(procs))
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		if f := given[p]; f != nil {
			frozen[i] = f
			continue
		}
		wg.Go(func() {
			freeze := p.Freeze
			if rescue {
				freeze = p.FreezeForRescue
			}
			if frozen[i], errs[i] = freeze(ctx, upgradeFreeze); errs[i] != nil {
				errs[i] = fmt.Errorf("freeze %s: %w", p.Spec().FullName(), errs[i])
			}
		})
	}
	wg.Wait()
	freezeTook = time.Since(freezeStart)
	var files []*os.File
	for i, p := range procs {
		if f := frozen[i]; f != nil && given[p] == nil {
			undo = append(undo, f.Resume)
		}
	}
	if err := errors.Join(errs...); err != nil && !rescue {
		return err
	} else if err != nil {
		// A rescue goes on without them rather than end every process:
		// their children run on, unsupervised, and the new image starts
		// them afresh (a port they hold is reported).
		s.log.Error("processes left out of the rescue; their children run on unsupervised", "err", err)
	}
	for _, f := range frozen {
		if f != nil {
			doc.Processes = append(doc.Processes, f.Handover)
			files = append(files, f.Files...)
		}
	}
	if doc.Instance, err = s.inst.handover(); err != nil {
		return err
	}
	if doc.Socket, err = s.sock.handover(); err != nil {
		return err
	}
	s.downMu.Lock()
	for name := range s.down {
		doc.Down = append(doc.Down, name)
	}
	s.downMu.Unlock()
	slices.Sort(doc.Down)
	if rescue {
		doc.Rescues++
		doc.RescuedAt = time.Now()
	} else {
		doc.Upgrades++
	}
	s.touchMu.Lock()
	for name := range s.touchPending {
		doc.TouchPending = append(doc.TouchPending, string(name))
	}
	for name := range s.touchRunning {
		// Still waiting for its lane, which the upgrade holds: not begun.
		doc.TouchPending = append(doc.TouchPending, string(name))
	}
	s.touchMu.Unlock()
	slices.Sort(doc.TouchPending)
	doc.TouchPending = slices.Compact(doc.TouchPending)
	env := os.Environ()
	slot := len(env) // for the document's descriptor, known last
	env = append(env, "")
	if s.opts.NotifySocket != "" {
		env = append(env, "NOTIFY_SOCKET="+s.opts.NotifySocket)
		if s.opts.Watchdog > 0 {
			env = append(env, "WATCHDOG_USEC="+strconv.FormatInt(s.opts.Watchdog.Microseconds(), 10), "WATCHDOG_PID="+strconv.Itoa(os.Getpid()))
		}
	}
	argv0 := binary
	if rescue {
		argv0 = cmp.Or(s.opts.Binary, os.Args[0])
	}
	argv := append([]string{argv0}, s.opts.Args...)
	// The last checks run on the spawning thread just before execve, with
	// the document written then: a reload or a shutdown asked for up to
	// that moment is not lost, and the path still names the checked file.
	var b []byte
	var mf *os.File
	defer func() {
		if mf != nil {
			mf.Close()
		}
	}()
	hupIgnored := false
	lastLook := func() ([]int, []string, error) {
		if s.opts.BeforeExec != nil {
			s.opts.BeforeExec(doc)
		}
		select {
		case <-s.shutdownReq:
			// systemctl stop: the new image would never hear of it.
			return nil, nil, errors.New("a shutdown was asked for")
		default:
		}
		select {
		case <-s.reloadKick:
			doc.ReloadPending = true
		default:
			doc.ReloadPending = s.reloadsWaiting.Load() > 0
		}
		if want != nil {
			if now, err := idOf(binary); err != nil || now != *want {
				return nil, nil, fmt.Errorf("binary %s was replaced after its check; try again", binary)
			}
		}
		var err error
		if b, err = json.Marshal(doc); err != nil {
			return nil, nil, fmt.Errorf("handover document: %w", err)
		}
		// Logged before the daemon's log is snapshot for the new image,
		// so that this record is the last the old image hands over.
		s.log.Info("executing the new binary", "binary", binary, "processes", len(doc.Processes), "handover_bytes", len(b),
			"quiesce_took", time.Since(begun).Round(time.Millisecond), "freeze_took", freezeTook.Round(time.Millisecond))
		if ring := s.opts.DaemonLog; ring != nil {
			recs, over, overBytes := ring.Snapshot(handover.DaemonLogBytes)
			dl, err := json.Marshal(&handover.DaemonLog{Records: recs, Overwritten: over, OverwrittenBytes: overBytes})
			if err != nil {
				return nil, nil, fmt.Errorf("handover document: %w", err)
			}
			// doc.DaemonLog is nil, so left out: added as its last field.
			b = append(append(append(b[:len(b)-1:len(b)-1], `,"daemon_log":`...), dl...), '}')
		}
		if len(b) > handover.MaxBytes {
			return nil, nil, fmt.Errorf("handover document of %d MiB, more than the %d MiB a new image reads", len(b)>>20, handover.MaxBytes>>20)
		}
		if mf, err = handover.Memfd(b); err != nil {
			return nil, nil, err
		}
		mfd, err := procgroup.RawFD(mf)
		if err != nil {
			return nil, nil, err
		}
		env[slot] = handover.Env + "=" + strconv.Itoa(mfd)
		// A SIGHUP (systemctl reload) between the exec and the new
		// image's signal handlers would end it, and every child with it:
		// ignored, which the new image inherits until it handles SIGHUP
		// again (Go keeps an inherited SIG_IGN for SIGHUP). That reload
		// is lost; systemctl reload during an upgrade says so in the log.
		signal.Ignore(syscall.SIGHUP)
		hupIgnored = true
		return []int{mfd}, env, nil
	}
	err = s.rp.ExecWith(binary, argv, doc.FDs(), lastLook)
	if hupIgnored && s.opts.RestoreSignals != nil {
		s.opts.RestoreSignals()
	}
	if doc.ReloadPending {
		s.RequestReload() // asked for, and not handed over after all
	}
	// Alive until the exec: a finalizer must not close a descriptor the
	// document names.
	runtime.KeepAlive(files)
	runtime.KeepAlive(frozen)
	runtime.KeepAlive(given)
	return err
}

// sideState is nginx's and memmon's state between stopSideParts and
// startSideParts (or the next image).
type sideState struct {
	nginx   *nginx.State
	haproxy *nginx.State
	memmon  *memmon.WatchdogState
	alerter *memmon.AlerterState
}

// stopSideParts stops the nginx manager and memmon and takes their state:
// both are stopped whatever it returns (startSideParts starts them again).
// A memmon restart in flight is an error, with memmon's state left out
// (none can be: the upgrade holds every program's lane, which a restart
// takes first).
func (s *Supervisor) stopSideParts() (sideState, error) {
	var st sideState
	s.mu.RLock()
	stopMemmon, m, h, w, a := s.stopMemmon, s.nginx, s.haproxy, s.watchdog, s.alerter
	s.mu.RUnlock()
	stopMemmon()
	// The registry watch first: it submits to both managers.
	if f := s.fleet.Swap(nil); f != nil {
		f.stop()
	}
	if m != nil {
		m.Stop()
		ns := m.State()
		st.nginx = &ns
	}
	if h != nil {
		h.Stop()
		hs := h.State()
		st.haproxy = &hs
	}
	if a != nil {
		as := a.State()
		st.alerter = &as
	}
	if w != nil {
		ws, err := w.State()
		if err != nil {
			return st, err
		}
		st.memmon = &ws
	}
	return st, nil
}

// startSideParts starts memmon and nginx's manager again from st, after an
// upgrade that failed.
func (s *Supervisor) startSideParts(st sideState) {
	cfg := s.config()
	if cfg.Nginx != nil {
		m := s.newNginxFrom(nginxSettings(cfg.Nginx), st.nginx)
		s.mu.Lock()
		s.nginx = m
		s.mu.Unlock()
	}
	if cfg.HAProxy != nil {
		h := s.newBalancer(haproxySettings(cfg.HAProxy), &s.counters.haproxy, st.haproxy)
		s.mu.Lock()
		s.haproxy = h
		s.mu.Unlock()
	}
	if f, err := s.startFleet(cfg); err != nil {
		s.log.Error("registry: not watching", "err", err)
	} else {
		s.fleet.Store(f)
	}
	s.submitNginx()
	s.startMemmonFrom(cfg, nil, st.memmon, st.alerter)
}

// selfExe is the running image's own file, even when a package upgrade has
// replaced or removed it at its path: what a rescue executes.
const selfExe = "/proc/self/exe"

// rescue recovers from a panic in a process's owner goroutine, which
// containment cannot: the process is half-way through a change and has no
// owner. The daemon re-executes its own image (not a new binary: the
// same code) with a handover in which that process is described from what
// its loop held and the kernel knows (see procgroup.Process.OnPanic); every
// child stays. The operations in flight are not waited for (one may wait
// for the dead owner): their clients see an error. It returns only if the
// re-execution failed; the panic then ends the daemon, as before.
//
// A panic within rescueGap of the last rescue is not rescued: it may be
// the new image's own, and re-executing again would loop.
func (s *Supervisor) rescue(p *procgroup.Process, v any, stack []byte, f *procgroup.Frozen) {
	s.rescueMu.Lock()
	defer s.rescueMu.Unlock()
	s.log.Error("a process's owner goroutine panicked (a bug in gosup)", "process", p.Spec().FullName(), "panic", v, "stack", string(stack))
	s.up.mu.Lock()
	last := s.up.rescuedAt
	s.up.mu.Unlock()
	if !last.IsZero() && time.Since(last) < rescueGap {
		s.log.Error("the daemon panicked again within a minute of re-executing after a panic; not re-executing again: it ends, and with it every process (systemd starts it afresh)", "last_rescue", last)
		return
	}
	// One re-execution at a time: an upgrade under way ends first (it
	// cannot freeze this process and gives up within its bounds).
	s.upgrading <- struct{}{}
	defer func() { <-s.upgrading }()
	s.log.Error("re-executing the daemon in place to recover, keeping every process", "process", p.Spec().FullName())
	if err := s.reexec(selfExe, nil, handover.ReasonRescue, map[*procgroup.Process]*procgroup.Frozen{p: f}); err != nil {
		s.log.Error("could not re-execute the daemon after the panic; it ends, and with it every process", "err", err)
	}
}

// rescueGap is the least time between two rescues.
const rescueGap = time.Minute

// InjectPanic makes the owner goroutine of the process named (group:name)
// panic, as a bug in it would: for tests of the recovery (gosup built with
// the gosup_testhooks tag calls it).
func (s *Supervisor) InjectPanic(name string) error {
	for _, p := range s.all() {
		if p.Spec().FullName() == name {
			p.Panic("injected panic (gosup_testhooks)")
			return nil
		}
	}
	return fmt.Errorf("no process %q", name)
}
