// Package reaper is the single waiter for every child of the gosup daemon.
//
// Exactly one goroutine calls wait4 in the process: it runs on SIGCHLD, reaps
// every exited child (including orphaned grandchildren re-parented to a child
// subreaper) and hands each exit to the subscriber registered for that pid.
// Spawns go through Start, which registers the subscriber before the reaper
// can look the pid up, so an instant exit is never missed. Nothing else in a
// process that uses a Reaper may call wait4, waitpid or exec.Cmd.Wait.
//
// Start runs every spawn on goroutines locked to their OS threads for the
// Reaper's lifetime, so a parent-death signal set in SysProcAttr.Pdeathsig
// fires when the daemon dies and not when some Go thread happens to exit
// (golang/go#27505).
package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is the wait status of one reaped process.
type Exit struct {
	Pid      int
	Status   unix.WaitStatus
	ExitedAt time.Time
}

// Code is the exit code, or 128+signal for a killed process (as a shell shows it).
func (e Exit) Code() int {
	if e.Status.Signaled() {
		return 128 + int(e.Status.Signal())
	}
	return e.Status.ExitStatus()
}

// String describes the exit the way an operator reads it.
func (e Exit) String() string {
	if e.Status.Signaled() {
		return fmt.Sprintf("terminated by %s", unix.SignalName(e.Status.Signal()))
	}
	return fmt.Sprintf("exit status %d", e.Status.ExitStatus())
}

// ErrClosed is returned by Start after Run has returned.
var ErrClosed = errors.New("reaper is closed")

type spawnReq struct {
	fn    func() (*os.Process, error)
	umask int // -1: inherit
	reply chan spawnRes
}

type spawnRes struct {
	proc *os.Process
	exit <-chan Exit
	err  error
}

// Reaper owns wait4 for the whole process. Create it with New, run it with Run.
type Reaper struct {
	// inflight is held for reading by every spawn from before the fork
	// until its subscription is registered, and for writing by the reaper
	// while it looks up a reaped pid: an exit is never dispatched while a
	// spawn that may have produced that pid is unregistered.
	inflight sync.RWMutex
	mu       sync.Mutex // guards subs
	subs     map[int]chan Exit
	// umask is process-wide: a spawn that sets it holds this exclusively,
	// every other spawn holds it shared.
	umask    sync.RWMutex
	spawners int
	spawns   chan spawnReq
	sigc     chan os.Signal
	pings    chan struct{} // received by the reaping loop between reaps
	done     chan struct{}
	// Orphan, when set, is called (from the reaper goroutine) for exits
	// nobody subscribed to: re-parented grandchildren.
	Orphan func(Exit)
}

// New makes the process a child subreaper and starts listening for SIGCHLD.
// Call Run to start reaping.
func New() (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	r := &Reaper{
		subs:   make(map[int]chan Exit),
		spawns: make(chan spawnReq),
		sigc:   make(chan os.Signal, 1),
		pings:  make(chan struct{}),
		done:   make(chan struct{}),
		// Spawning is mostly kernel work (clone, exec): one thread per
		// CPU keeps every CPU busy.
		spawners: max(2, runtime.GOMAXPROCS(0)),
	}
	signal.Notify(r.sigc, syscall.SIGCHLD)
	return r, nil
}

// Run reaps until ctx is cancelled, then stops accepting spawns. Cancelling
// ctx ends the spawning threads, which fires the parent-death signal of any
// child still alive: cancel only after every child has been stopped.
func (r *Reaper) Run(ctx context.Context) {
	defer close(r.done)
	defer signal.Stop(r.sigc)
	for range r.spawners {
		go r.spawner(ctx)
	}
	r.reapAll()
	for {
		select {
		case <-ctx.Done():
			r.reapAll()
			return
		case <-r.sigc:
			r.reapAll()
		case <-r.pings:
		}
	}
}

// Ping returns once the reaping loop is free to take its next SIGCHLD, or
// ctx's error if it is not by then: a liveness check for a watchdog. A
// loop stuck in a reap (a spawn that never returns holds every lookup)
// does not answer.
func (r *Reaper) Ping(ctx context.Context) error {
	select {
	case r.pings <- struct{}{}:
		return nil
	case <-r.done:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("reaper did not answer: %w", ctx.Err())
	}
}

// Start runs fn on the spawning thread and subscribes to the exit of the
// process it returns. The returned channel receives exactly one Exit.
func (r *Reaper) Start(fn func() (*os.Process, error)) (*os.Process, <-chan Exit, error) {
	return r.StartUmask(-1, fn)
}

// StartUmask is Start with the process umask set to mask (when mask >= 0)
// while fn runs, so the child inherits it. No other spawn runs meanwhile.
func (r *Reaper) StartUmask(mask int, fn func() (*os.Process, error)) (*os.Process, <-chan Exit, error) {
	req := spawnReq{fn: fn, umask: mask, reply: make(chan spawnRes, 1)}
	select {
	case r.spawns <- req:
	case <-r.done:
		return nil, nil, ErrClosed
	}
	res := <-req.reply
	return res.proc, res.exit, res.err
}

// Subscribed reports whether pid is a child spawned through Start whose
// exit has not been handed out yet: a child the daemon spawned, not an
// orphan re-parented to it.
func (r *Reaper) Subscribed(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.subs[pid]
	return ok
}

func (r *Reaper) spawner(ctx context.Context) {
	// Never unlocked: the thread dies with the daemon, and with it the
	// parent-death signal fires for every child spawned here.
	runtime.LockOSThread()
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-r.spawns:
			p, err := r.spawn(req)
			var ch chan Exit
			if err == nil {
				ch = make(chan Exit, 1)
				r.mu.Lock()
				r.subs[p.Pid] = ch
				r.mu.Unlock()
			}
			r.inflight.RUnlock()
			req.reply <- spawnRes{proc: p, exit: ch, err: err}
		}
	}
}

// spawn runs req.fn with the umask it asks for and returns holding
// r.inflight for reading; the caller registers the pid and releases it.
func (r *Reaper) spawn(req spawnReq) (*os.Process, error) {
	if req.umask >= 0 {
		r.umask.Lock()
		defer r.umask.Unlock()
		old := unix.Umask(req.umask)
		defer unix.Umask(old)
	} else {
		r.umask.RLock()
		defer r.umask.RUnlock()
	}
	r.inflight.RLock()
	return req.fn()
}

func (r *Reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		ex := Exit{Pid: pid, Status: ws, ExitedAt: time.Now()}
		r.inflight.Lock()
		r.mu.Lock()
		ch := r.subs[pid]
		delete(r.subs, pid)
		r.mu.Unlock()
		r.inflight.Unlock()
		switch {
		case ch != nil:
			ch <- ex
		case r.Orphan != nil:
			r.Orphan(ex)
		}
	}
}
