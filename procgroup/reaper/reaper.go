// Package reaper is the single waiter for every child of the gosup daemon.
//
// Exactly one goroutine calls wait4 in the process: it runs on SIGCHLD, reaps
// every exited child (including orphaned grandchildren re-parented to a child
// subreaper) and hands each exit to the subscriber registered for that pid.
// Spawns go through Start, which registers the subscriber before the reaper
// can look the pid up, so an instant exit is never missed. Nothing else in a
// process that uses a Reaper may call wait4, waitpid or exec.Cmd.Wait.
//
// Start runs every spawn on one goroutine locked to its OS thread for the
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
	reply chan spawnRes
}

type spawnRes struct {
	proc *os.Process
	exit <-chan Exit
	err  error
}

// Reaper owns wait4 for the whole process. Create it with New, run it with Run.
type Reaper struct {
	mu     sync.Mutex
	subs   map[int]chan Exit
	spawns chan spawnReq
	sigc   chan os.Signal
	done   chan struct{}
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
		done:   make(chan struct{}),
	}
	signal.Notify(r.sigc, syscall.SIGCHLD)
	return r, nil
}

// Run reaps until ctx is cancelled, then stops accepting spawns.
func (r *Reaper) Run(ctx context.Context) {
	defer close(r.done)
	defer signal.Stop(r.sigc)
	go r.spawner(ctx)
	r.reapAll()
	for {
		select {
		case <-ctx.Done():
			r.reapAll()
			return
		case <-r.sigc:
			r.reapAll()
		}
	}
}

// Start runs fn on the spawning thread and subscribes to the exit of the
// process it returns. The returned channel receives exactly one Exit.
func (r *Reaper) Start(fn func() (*os.Process, error)) (*os.Process, <-chan Exit, error) {
	req := spawnReq{fn: fn, reply: make(chan spawnRes, 1)}
	select {
	case r.spawns <- req:
	case <-r.done:
		return nil, nil, ErrClosed
	}
	res := <-req.reply
	return res.proc, res.exit, res.err
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
			r.mu.Lock()
			p, err := req.fn()
			var ch chan Exit
			if err == nil {
				ch = make(chan Exit, 1)
				r.subs[p.Pid] = ch
			}
			r.mu.Unlock()
			req.reply <- spawnRes{proc: p, exit: ch, err: err}
		}
	}
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
		r.mu.Lock()
		ch := r.subs[pid]
		delete(r.subs, pid)
		r.mu.Unlock()
		switch {
		case ch != nil:
			ch <- ex
		case r.Orphan != nil:
			r.Orphan(ex)
		}
	}
}
