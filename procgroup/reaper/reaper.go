// Package reaper is the single waiter for every child of the gosup daemon,
// and owns the one thread that spawns them.
//
// Exactly one goroutine calls wait4 in the process: it runs on SIGCHLD, reaps
// every exited child (including orphaned grandchildren re-parented to a child
// subreaper) and hands each exit to the subscriber registered for that pid.
// Spawns go through Start, which registers the subscriber before the reaper
// can look the pid up, so an instant exit is never missed. Nothing else in a
// process that uses a Reaper may call wait4, waitpid or exec.Cmd.Wait.
//
// # One spawning thread, which is also the one that execs
//
// Children are spawned with a parent-death signal (SysProcAttr.Pdeathsig =
// SIGKILL), so that they die with the daemon instead of running on
// unsupervised. Linux sends that signal when the *thread* that forked the
// child exits, not the process (golang/go#27505); and execve ends every
// thread of the process except the caller, so a child forked by any other
// thread gets SIGKILL when the daemon re-executes itself. An in-place
// upgrade must keep every child, so:
//
//   - Every spawn runs on one goroutine locked to one OS thread for the
//     Reaper's life: the goroutine that calls Run. The daemon calls Run on
//     its main goroutine, which gosup's main package locks to the main
//     thread in an init function, so the spawning thread is the thread
//     group leader (tid == pid).
//   - Exec runs execve on that same thread. The caller of execve survives
//     it (it becomes the leader, keeping the pid), so no child's
//     parent-death signal fires; the threads that die had forked nothing.
//   - After execve the new image starts on that thread as its main thread,
//     locks it again, and spawns from it: the children of every image have
//     the same parent thread, across any number of upgrades.
//   - The daemon dying (a crash, SIGKILL, a runtime fatal error) ends the
//     thread, and the signal fires for every child, as before.
//
// Spawns are serialized on the one thread; a fork with CLONE_VFORK blocks
// its caller only until the child execs, as a loop of vfork and exec in C
// does.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gosup/gosup/procgroup/forkexec"
	"github.com/gosup/gosup/procgroup/proctree"
	"golang.org/x/sys/unix"
)

// Exit is the wait status of one reaped process.
type Exit struct {
	Pid      int
	Status   unix.WaitStatus
	ExitedAt time.Time
	// Seq numbers the reaps, from 1 (see ChildrenAfter).
	Seq uint64
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
	// exec, when set, makes the request an Exec instead of a spawn.
	exec *execReq
}

type spawnRes struct {
	proc *os.Process
	exit <-chan Exit
	err  error
}

type execReq struct {
	path    string
	argv    []string
	keep    []int
	prepare func() (keep []int, env []string, err error)
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
	spawns   chan spawnReq
	sigc     chan os.Signal
	pings    chan struct{} // received by the reaping loop between reaps
	holds    chan hold     // received by the reaping loop between reaps
	done     chan struct{}
	// preparing bounds the spawns being prepared or made at once (see
	// Prepare).
	preparing chan struct{}
	// spawner forks the children (see Spawner).
	spawner *forkexec.Spawner
	// thread is the spawning thread's id, once Run has locked it.
	thread atomic.Int64
	// Orphan, when set, is called (from the reaper goroutine) for exits
	// nobody subscribed to: re-parented grandchildren.
	Orphan func(Exit)
	// reaped counts the reaps (Exit.Seq).
	reaped atomic.Uint64
	// kids is the last reading of the process's children, made after
	// reap number kidsSeq.
	kidsMu  sync.Mutex
	kids    []int
	kidsSeq uint64
	kidsOK  bool
}

// hold parks the reaping loop: it says so on parked and waits for release.
type hold struct {
	parked  chan struct{}
	release chan struct{}
}

// New makes the process a child subreaper and starts listening for SIGCHLD.
// Call Run to start reaping.
func New() (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	// The spawner's slots are among the lowest free descriptors: made
	// before the daemon opens its listeners and logs.
	sp, err := forkexec.New()
	if err != nil {
		return nil, err
	}
	r := &Reaper{
		spawner: sp,
		subs:    make(map[int]chan Exit),
		spawns:  make(chan spawnReq),
		sigc:    make(chan os.Signal, 1),
		pings:   make(chan struct{}),
		holds:   make(chan hold),
		done:    make(chan struct{}),
		// Two per CPU: one preparing while one forks.
		preparing: make(chan struct{}, 2*runtime.GOMAXPROCS(0)),
	}
	signal.Notify(r.sigc, syscall.SIGCHLD)
	return r, nil
}

// Run reaps, on a goroutine of its own, and runs every spawn and Exec on
// the calling goroutine, which it locks to its OS thread for good: that
// thread is the parent of every child (see the package comment). It
// returns when ctx is cancelled, after the last reap. If the calling
// goroutine then ends, its thread ends with it and the parent-death
// signal fires for any child still alive: cancel only after every child
// has been stopped.
func (r *Reaper) Run(ctx context.Context) {
	r.Bind()
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		r.reapLoop(ctx)
	}()
	r.serve(ctx)
	<-reaped
	close(r.done)
	r.spawner.Close()
}

func (r *Reaper) reapLoop(ctx context.Context) {
	defer signal.Stop(r.sigc)
	r.reapAll()
	for {
		select {
		case <-ctx.Done():
			r.reapAll()
			return
		case <-r.sigc:
			r.reapAll()
		case <-r.pings:
		case h := <-r.holds:
			close(h.parked)
			select {
			case <-h.release:
			case <-ctx.Done():
				return
			}
			r.reapAll()
		}
	}
}

// Bind locks the calling goroutine to its thread and makes that thread the
// spawning thread, as Run does. Call it before Run, on the goroutine that
// will call Run, when something may ask for Leader before Run starts.
func (r *Reaper) Bind() {
	// Never unlocked: the thread dies with the goroutine (for the daemon,
	// the main goroutine: with the process), and with it the parent-death
	// signal fires for every child spawned here.
	runtime.LockOSThread()
	r.thread.Store(int64(unix.Gettid()))
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

// Hold stops reaping until release is called: a child that exits
// meanwhile stays a zombie, its exit kept by the kernel (for the next
// image, after an Exec). It returns once the reaping loop is parked, or
// ctx's error. Spawns go on while reaping is held.
func (r *Reaper) Hold(ctx context.Context) (release func(), err error) {
	h := hold{parked: make(chan struct{}), release: make(chan struct{})}
	select {
	case r.holds <- h:
	case <-r.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("reaper did not answer: %w", ctx.Err())
	}
	<-h.parked
	return sync.OnceFunc(func() { close(h.release) }), nil
}

// Adopt subscribes to the exit of pid, a child of this process that an
// earlier image of it spawned (before an Exec): the returned channel
// receives exactly one Exit, also if the child has exited already (a
// zombie). It fails if pid is not an unreaped child of this process.
// Call it before Run reaps, or while reaping is held: an exit reaped
// before the subscription goes to Orphan.
func (r *Reaper) Adopt(pid int) (<-chan Exit, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("adopt pid %d: not a pid", pid)
	}
	// WNOWAIT: look, leave the zombie for the reaping loop. ECHILD says
	// the kernel knows no such child of ours.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		return nil, fmt.Errorf("adopt pid %d: not a child of this process: %w", pid, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.subs[pid]; ok {
		return nil, fmt.Errorf("adopt pid %d: already subscribed", pid)
	}
	ch := make(chan Exit, 1)
	r.subs[pid] = ch
	return ch, nil
}

// Start runs fn on the spawning thread and subscribes to the exit of the
// process it returns. The returned channel receives exactly one Exit.
// Spawns run one at a time.
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

// Prepare waits for a turn to prepare a spawn (open its files, check its
// paths) and make it, and returns what ends the turn. Every spawn is made
// on the one spawning thread: hundreds of goroutines preparing theirs at
// once (a daemon starting 500 processes) only crowd that thread off the
// CPUs, and the spawns come later, not sooner.
func (r *Reaper) Prepare() (done func()) {
	r.preparing <- struct{}{}
	return func() { <-r.preparing }
}

// ErrNotLeader is returned by Exec when the spawning thread is not the
// process's main thread: an image that spawned from elsewhere would give
// the next one children of a thread it does not run on.
var ErrNotLeader = errors.New("the spawning thread is not the main thread")

// Exec replaces the process image (execve) from the spawning thread, so
// that every child keeps its parent (see the package comment). keep are
// the descriptors the new image inherits: their close-on-exec flag is
// cleared while syscall.ForkLock is held, so no fork elsewhere in the
// process inherits them meanwhile. beforeExec, if set, runs last, on the
// spawning thread, with the lock held. Exec returns only if execve failed,
// with the flags set again.
func (r *Reaper) Exec(path string, argv, env []string, keep []int, beforeExec func()) error {
	return r.ExecWith(path, argv, keep, func() ([]int, []string, error) {
		if beforeExec != nil {
			beforeExec()
		}
		return nil, env, nil
	})
}

// ExecWith is Exec with the environment, and more descriptors to keep,
// given by prepare, which runs on the spawning thread with the lock held,
// just before execve: what it decides is the last word. An error from it
// refuses the exec, which then returns that error.
func (r *Reaper) ExecWith(path string, argv []string, keep []int, prepare func() (keep []int, env []string, err error)) error {
	req := spawnReq{exec: &execReq{path: path, argv: argv, keep: keep, prepare: prepare}, reply: make(chan spawnRes, 1)}
	select {
	case r.spawns <- req:
	case <-r.done:
		return ErrClosed
	}
	return (<-req.reply).err
}

// Leader reports whether the spawning thread is the process's main
// thread (tid == pid): what an Exec that keeps every child needs.
func (r *Reaper) Leader() bool {
	return r.thread.Load() == int64(os.Getpid())
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

// ChildrenAfter lists the process's children as read after reap number
// seq (an Exit's Seq). What an exited child left running was re-parented
// to this process (a subreaper) before the child could be reaped, so any
// reading made after its reap shows it (seq 0 reads the list anew): one
// reading serves every exit of a burst (ctl stop all) reaped before it
// was made, instead of one reading of the whole list for each. The list
// is shared: do not change it.
func (r *Reaper) ChildrenAfter(seq uint64) []int {
	r.kidsMu.Lock()
	defer r.kidsMu.Unlock()
	if r.kidsOK && seq > 0 && r.kidsSeq >= seq {
		return r.kids
	}
	now := r.reaped.Load() // before the reading: every reap up to it is in it
	r.kids, r.kidsSeq, r.kidsOK = proctree.Children(os.Getpid()), now, true
	return r.kids
}

// serve runs spawns and Execs on the calling (locked) thread until ctx ends.
func (r *Reaper) serve(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-r.spawns:
			if req.exec != nil {
				req.reply <- spawnRes{err: r.execve(req.exec)}
				continue
			}
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

// Spawner forks children without a copy of the daemon's descriptor
// table (package forkexec). Call its Start only in a function given to
// Start, on the spawning thread.
func (r *Reaper) Spawner() *forkexec.Spawner { return r.spawner }

// spawn runs req.fn and returns holding r.inflight for reading; the
// caller registers the pid and releases it.
func (r *Reaper) spawn(req spawnReq) (*os.Process, error) {
	r.inflight.RLock()
	return req.fn()
}

// execve runs on the spawning thread.
func (r *Reaper) execve(e *execReq) error {
	if int64(unix.Gettid()) != r.thread.Load() {
		return errors.New("exec: not on the spawning thread") // a bug in this package
	}
	if !r.Leader() {
		return ErrNotLeader
	}
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	more, env, err := e.prepare()
	if err != nil {
		return err
	}
	var cleared []int
	defer func() {
		for _, fd := range cleared {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}()
	for _, fd := range append(e.keep, more...) {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("exec %s: keep descriptor %d open: %w", e.path, fd, err)
		}
		cleared = append(cleared, fd)
	}
	if err := syscall.Exec(e.path, e.argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", e.path, err)
	}
	return nil // not reached
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
		ex := Exit{Pid: pid, Status: ws, ExitedAt: time.Now(), Seq: r.reaped.Add(1)}
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
