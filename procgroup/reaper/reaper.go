// Package reaper is the single waiter for every child of the gosup daemon,
// and owns the one thread that spawns them.
//
// Exactly one goroutine calls wait4 in the process: it runs on SIGCHLD, reaps
// every exited child (including orphaned grandchildren re-parented to a child
// subreaper) and hands each exit to the subscriber registered for that pid.
// Spawns go through Spawn (or Start), which registers the subscriber
// before the reaper can look the pid up, so an instant exit is never
// missed. Nothing else in a
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
//
// # The spawning thread's own descriptor table
//
// A fork copies the forking thread's descriptor table and the child's
// exec then closes every close-on-exec entry: each spawn costs time in
// proportion to the descriptors the daemon holds (its children's log
// pipes, their pidfds), and a burst of N spawns costs O(N²) (500 children
// exec'd 40% later with the daemon's 1,500 descriptors than with none).
// So Bind gives the spawning thread a table of its own (unshare
// CLONE_FILES) holding only stdin, stdout, stderr and the runtime's poller:
// a spawn's descriptors are passed into it (SCM_RIGHTS over a socket pair
// both tables hold) just for the fork, and closed there after it. Every
// other thread shares the process's table, as before: the runtime starts
// its threads from a template thread, not from a locked one (see
// runtime.LockOSThread). The spawning goroutine itself must therefore
// never hand a descriptor it opened to another goroutine, nor use one
// another goroutine opened: Spawn and Exec carry every descriptor across,
// and the child's pidfd is opened by the caller of Spawn
// (os.FindProcess), in the process's table. Exec brings the descriptors
// it keeps into the spawning thread's table, at their numbers, before
// execve (the new image has the table of the thread that called execve).
// Where the kernel refuses (unshare or the socket pair failing), the
// thread shares the process's table as before and descriptors are used
// where they are.
package reaper

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

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
	cmd   *Cmd
	fn    func() (*os.Process, error) // Start's
	umask int                         // -1: inherit
	// files are the numbers of cmd.Files (-1 for nil); fds the distinct
	// ones, passed to the spawning thread's table with the request (see
	// sendFDs), in that order, in messages that carry id.
	files []int
	fds   []int
	id    uint64
	reply chan spawnRes
	// exec, when set, makes the request an Exec instead of a spawn.
	exec *execReq
}

type spawnRes struct {
	proc *os.Process
	pid  int
	exit <-chan Exit
	err  error
}

// Cmd is a process for Spawn to start: os.StartProcess's arguments.
type Cmd struct {
	Path string
	Argv []string
	// Env is the child's environment; nil: the daemon's (os.Environ).
	Env []string
	Dir string
	// Files are the child's descriptors 0, 1, 2, ...: a nil entry is
	// closed in the child. They are the caller's: Spawn neither closes
	// them nor keeps them.
	Files []*os.File
	Sys   *syscall.SysProcAttr
	// Umask, when UmaskSet, is the process umask while the child is
	// forked: the child inherits it.
	Umask    int
	UmaskSet bool
	// Clock, when set, is read on the spawning thread right before and
	// right after the fork, into Before and After (the child's start
	// time is stamped between them: see proctree.StartBetween).
	Clock         func() int64
	Before, After int64
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
	// thread is the spawning thread's id, once Run has locked it.
	thread atomic.Int64
	bound  sync.Once
	// ready is closed once Bind has run: own and pass are set.
	ready chan struct{}
	// own says the spawning thread has a descriptor table of its own
	// (see the package comment); pass is the socket pair descriptors
	// cross into it by: pass[0] is written by the callers of Spawn and
	// Exec, each message naming its request (ids from lastID), pass[1]
	// read by the spawning thread, which keeps in passed what it read
	// for requests it has not taken yet.
	own    bool
	pass   [2]int
	lastID atomic.Uint64
	passed map[uint64][]int
	oob    []byte
	// reaping is the pid the reaping loop is about to reap, from before
	// it reaps it until the exit is handed out: a Spawn's caller that
	// finds its child there after opening its pidfd knows that the pid
	// was (or is being) freed, so that the pidfd may name another
	// process.
	reaping atomic.Int64
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
	r := &Reaper{
		subs:   make(map[int]chan Exit),
		spawns: make(chan spawnReq),
		sigc:   make(chan os.Signal, 1),
		pings:  make(chan struct{}),
		holds:  make(chan hold),
		done:   make(chan struct{}),
		ready:  make(chan struct{}),
		passed: make(map[uint64][]int),
		oob:    make([]byte, unix.CmsgSpace(maxPass*4)),
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
	r.bound.Do(func() {
		r.thread.Store(int64(unix.Gettid()))
		r.own = r.ownTable()
		close(r.ready)
	})
}

// ownTable gives the calling (locked) thread a descriptor table of its
// own holding stdin, stdout, stderr, the runtime's poller and pass[1],
// and reports whether it did (see the package comment).
func (r *Reaper) ownTable() bool {
	// The runtime's poller is made at its first use, by whichever thread:
	// made now, it is in both tables (a thread whose table lacked it
	// would fail the poll that a stop of the world, say, makes on it).
	if pr, pw, err := os.Pipe(); err == nil {
		pr.Close()
		pw.Close()
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return false
	}
	r.pass = [2]int{fds[0], fds[1]}
	// What the table holds besides: the copies of the process's
	// descriptors, closed here (the process keeps its own). The
	// runtime's poller and its wake-up event stay: an eventpoll or an
	// eventfd, close-on-exec (anything else so named is kept too, and
	// made close-on-exec: it is one descriptor, never a child's).
	ents, err := os.ReadDir("/proc/thread-self/fd")
	if err != nil {
		// The table cannot be told apart (nor shared again): it stays
		// a copy, close-on-exec, so that no child inherits any of it.
		// Spawns then pay for its size, as without a table of their own.
		_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
		return true
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || fd == fds[0] || fd == fds[1] {
			continue
		}
		link, _ := os.Readlink("/proc/thread-self/fd/" + e.Name())
		if link == "anon_inode:[eventpoll]" || link == "anon_inode:[eventfd]" {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
			continue
		}
		unix.Close(fd)
	}
	// The writing end is the callers', in the process's table.
	unix.Close(fds[0])
	return true
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

// Spawn starts c's process from the spawning thread and subscribes to its
// exit. The returned channel receives exactly one Exit. Spawns run one at
// a time.
func (r *Reaper) Spawn(c *Cmd) (*os.Process, <-chan Exit, error) {
	req := spawnReq{cmd: c, umask: -1, reply: make(chan spawnRes, 1)}
	if c.UmaskSet {
		req.umask = c.Umask
	}
	// The numbers, read here (Fd puts a descriptor in blocking mode: in
	// the process's table, where it is).
	req.files = make([]int, len(c.Files))
	for i, f := range c.Files {
		req.files[i] = -1
		if f != nil {
			req.files[i] = int(f.Fd())
			if !slices.Contains(req.fds, req.files[i]) {
				req.fds = append(req.fds, req.files[i])
			}
		}
	}
	if err := r.request(req); err != nil {
		return nil, nil, err
	}
	res := <-req.reply
	runtime.KeepAlive(c.Files) // passed by number until the reply
	return r.finish(res)
}

// finish is the caller's side of a spawn: the process of res, whose spawn
// holds r.inflight for reading until finish returns. The reaping loop
// meanwhile reaps at most the one pid it then waits on the lock with,
// which it says in r.reaping before it reaps it.
func (r *Reaper) finish(res spawnRes) (*os.Process, <-chan Exit, error) {
	if res.err != nil {
		return nil, nil, res.err
	}
	defer r.inflight.RUnlock()
	if res.proc != nil {
		return res.proc, res.exit, nil
	}
	// The pidfd is opened here, in the process's table (the spawning
	// thread's is its own). Until the child is reaped its pid names it;
	// once the reaping loop has taken the pid, the pidfd may name
	// another process, and is given up (Signal then fails): the exit is
	// on its way.
	p, _ := os.FindProcess(res.pid) // never fails on Linux
	if int(r.reaping.Load()) == res.pid {
		p.Release()
		p.Pid = res.pid // Release sets -1
	}
	return p, res.exit, nil
}

// Start runs fn on the spawning thread and subscribes to the exit of the
// process it returns. The returned channel receives exactly one Exit. fn
// must not use a descriptor opened elsewhere, nor return a process whose
// pidfd it opened (os.StartProcess does): the spawning thread's table is
// its own (see the package comment). Use Spawn.
func (r *Reaper) Start(fn func() (*os.Process, error)) (*os.Process, <-chan Exit, error) {
	req := spawnReq{fn: fn, umask: -1, reply: make(chan spawnRes, 1)}
	if err := r.request(req); err != nil {
		return nil, nil, err
	}
	return r.finish(<-req.reply)
}

// request hands req to the spawning thread, its descriptors first (see
// sendFDs): by the time the thread takes req, they wait in the socket.
func (r *Reaper) request(req spawnReq) error {
	select {
	case <-r.ready:
	case <-r.done:
		return ErrClosed
	}
	if !r.own || len(req.fds) == 0 {
		req.fds = nil // none passed
	} else {
		req.id = r.lastID.Add(1)
		if err := sendFDs(r.pass[0], req.id, req.fds); err != nil {
			return fmt.Errorf("pass descriptors to the spawning thread: %w", err)
		}
	}
	select {
	case r.spawns <- req:
		return nil
	case <-r.done:
		// Never taken: what was passed stays in the socket, as good as
		// closed (the spawning thread has ended).
		return ErrClosed
	}
}

// maxPass is the most descriptors one message passes (the kernel's
// SCM_MAX_FD is 253).
const maxPass = 250

// sendFDs writes fds to the socket s, in messages of up to maxPass, each
// carrying id.
func sendFDs(s int, id uint64, fds []int) error {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], id)
	for len(fds) > 0 {
		n := min(len(fds), maxPass)
		for {
			err := unix.Sendmsg(s, b[:], unix.UnixRights(fds[:n]...), nil, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			break
		}
		fds = fds[n:]
	}
	return nil
}

// recvFDs reads one message of sendFDs from s, with oob as its buffer:
// its id, and its descriptors, new in the caller's table, close-on-exec.
func recvFDs(s int, oob []byte) (uint64, []int, error) {
	var b [8]byte
	for {
		n, oobn, flags, _, err := unix.Recvmsg(s, b[:], oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return 0, nil, err
		}
		var fds []int
		for _, m := range msgs {
			more, err := unix.ParseUnixRights(&m)
			if err != nil {
				return 0, nil, err
			}
			fds = append(fds, more...)
		}
		if flags&unix.MSG_CTRUNC != 0 || n != len(b) {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return 0, nil, errors.New("a message cut short")
		}
		return binary.NativeEndian.Uint64(b[:]), fds, nil
	}
}

// take reads the descriptors passed with req (those read already for it
// first) into the spawning thread's table, keeping those of other requests
// for them, and returns them by the number they have in the process's.
func (r *Reaper) take(req spawnReq) (map[int]int, error) {
	all := r.passed[req.id]
	delete(r.passed, req.id)
	for len(all) < len(req.fds) {
		id, fds, err := recvFDs(r.pass[1], r.oob)
		if err != nil {
			for _, fd := range all {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("take the descriptors passed to the spawning thread: %w", err)
		}
		if id != req.id {
			r.passed[id] = append(r.passed[id], fds...)
			continue
		}
		all = append(all, fds...)
	}
	if len(all) != len(req.fds) {
		for _, fd := range all {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("%d descriptors passed to the spawning thread for %d", len(all), len(req.fds))
	}
	got := make(map[int]int, len(all))
	for i, fd := range req.fds {
		got[fd] = all[i]
	}
	return got, nil
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
// refuses the exec, which then returns that error. The descriptors prepare
// gives are opened by it, on the spawning thread, in that thread's table
// (see the package comment): ExecWith closes them if the exec fails, and
// nothing else may use or close them (no *os.File may wrap them).
func (r *Reaper) ExecWith(path string, argv []string, keep []int, prepare func() (keep []int, env []string, err error)) error {
	keep = slices.Compact(slices.Sorted(slices.Values(keep)))
	req := spawnReq{exec: &execReq{path: path, argv: argv, keep: keep, prepare: prepare}, fds: keep, reply: make(chan spawnRes, 1)}
	if err := r.request(req); err != nil {
		return err
	}
	return (<-req.reply).err
}

// Leader reports whether the spawning thread is the process's main
// thread (tid == pid): what an Exec that keeps every child needs.
func (r *Reaper) Leader() bool {
	return r.thread.Load() == int64(os.Getpid())
}

// Subscribed reports whether pid is a child spawned through Spawn or Start whose
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
				req.reply <- spawnRes{err: r.execve(req)}
				continue
			}
			res := r.spawn(req)
			if res.err == nil {
				ch := make(chan Exit, 1)
				r.mu.Lock()
				r.subs[res.pid] = ch
				r.mu.Unlock()
				res.exit = ch
			} else {
				res.proc = nil
				r.inflight.RUnlock()
			}
			// On success r.inflight stays held for reading: the caller
			// releases it (finish).
			req.reply <- res
		}
	}
}

// spawn makes req's spawn with the umask it asks for and returns holding
// r.inflight for reading; the caller registers the pid.
func (r *Reaper) spawn(req spawnReq) spawnRes {
	var fds map[int]int
	if len(req.fds) > 0 {
		var err error
		if fds, err = r.take(req); err != nil {
			r.inflight.RLock() // as for any failed spawn: the caller releases it
			return spawnRes{err: err}
		}
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
	}
	if req.umask >= 0 {
		old := unix.Umask(req.umask)
		defer unix.Umask(old)
	}
	r.inflight.RLock()
	if req.fn != nil {
		p, err := req.fn()
		if err != nil || p == nil {
			if err == nil {
				err = errors.New("spawn returned no process")
			}
			return spawnRes{err: err}
		}
		if !r.own {
			return spawnRes{proc: p, pid: p.Pid}
		}
		// Its pidfd is in this thread's table: the caller opens its own.
		pid := p.Pid
		p.Release()
		return spawnRes{pid: pid}
	}
	c := req.cmd
	files := make([]uintptr, len(req.files))
	for i, fd := range req.files {
		switch {
		case fd < 0:
			files[i] = ^uintptr(0) // closed in the child
		case fds != nil:
			files[i] = uintptr(fds[fd])
		default:
			files[i] = uintptr(fd)
		}
	}
	env := c.Env
	if env == nil {
		env = os.Environ()
	}
	if c.Clock != nil {
		c.Before = c.Clock()
	}
	pid, err := syscall.ForkExec(c.Path, c.Argv, &syscall.ProcAttr{Dir: c.Dir, Env: env, Files: files, Sys: c.Sys})
	if c.Clock != nil {
		c.After = c.Clock()
	}
	if err != nil {
		return spawnRes{err: &os.PathError{Op: "fork/exec", Path: c.Path, Err: err}}
	}
	return spawnRes{pid: pid}
}

// place takes the descriptors passed with an Exec (the process's keep)
// into the spawning thread's table at the numbers they have in the
// process's table, and returns those it placed (to close if the exec
// fails). A number the thread's table holds already (stdin, stdout,
// stderr, the runtime's poller) is refused: it is not the process's to
// hand over.
func (r *Reaper) place(req spawnReq) (placed []int, err error) {
	keep := req.fds
	got, err := r.take(req)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, fd := range got {
			unix.Close(fd)
		}
	}()
	// Above every number to place first, so that none sits where
	// another is to go.
	top := slices.Max(keep) + 1
	for k, fd := range got {
		if fd >= top {
			continue
		}
		high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, top)
		if err != nil {
			return nil, fmt.Errorf("keep descriptor %d: %w", k, err)
		}
		unix.Close(fd)
		got[k] = high
	}
	for _, k := range keep {
		if _, err := unix.FcntlInt(uintptr(k), unix.F_GETFD, 0); err == nil {
			return placed, fmt.Errorf("keep descriptor %d: the spawning thread's own", k)
		}
		if err := unix.Dup3(got[k], k, unix.O_CLOEXEC); err != nil {
			return placed, fmt.Errorf("keep descriptor %d: %w", k, err)
		}
		placed = append(placed, k)
	}
	return placed, nil
}

// execve runs on the spawning thread.
func (r *Reaper) execve(req spawnReq) error {
	e := req.exec
	if int64(unix.Gettid()) != r.thread.Load() {
		return errors.New("exec: not on the spawning thread") // a bug in this package
	}
	if !r.Leader() {
		return ErrNotLeader
	}
	keep := e.keep
	if len(req.fds) > 0 {
		// The kept descriptors, at their numbers, in this thread's
		// table: the one the new image gets.
		placed, err := r.place(req)
		defer func() {
			for _, fd := range placed {
				unix.Close(fd)
			}
		}()
		if err != nil {
			return fmt.Errorf("exec %s: %w", e.path, err)
		}
	}
	syscall.ForkLock.Lock()
	defer syscall.ForkLock.Unlock()
	more, env, err := e.prepare()
	defer func() {
		for _, fd := range more {
			unix.Close(fd) // the exec failed
		}
	}()
	if err != nil {
		return err
	}
	var cleared []int
	defer func() {
		for _, fd := range cleared {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}()
	for _, fd := range append(slices.Clip(keep), more...) {
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
		// A look first, leaving the child unreaped: its pid goes in
		// r.reaping before the reap frees it (see finish).
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		pid := siginfoPid(&info)
		if err != nil || pid <= 0 {
			return
		}
		r.reaping.Store(int64(pid))
		var ws unix.WaitStatus
		for {
			_, err = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		if err != nil {
			r.reaping.Store(0)
			return
		}
		ex := Exit{Pid: pid, Status: ws, ExitedAt: time.Now(), Seq: r.reaped.Add(1)}
		r.inflight.Lock()
		r.mu.Lock()
		ch := r.subs[pid]
		delete(r.subs, pid)
		r.mu.Unlock()
		r.reaping.Store(0)
		r.inflight.Unlock()
		switch {
		case ch != nil:
			ch <- ex
		case r.Orphan != nil:
			r.Orphan(ex)
		}
	}
}

// siginfoPid is si_pid of a siginfo that waitid filled: after three ints,
// at the union's alignment (a pointer's).
func siginfoPid(info *unix.Siginfo) int {
	off := uintptr(12)
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), off)))
}
