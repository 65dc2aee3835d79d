package procgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/procgroup/safefile"
	"golang.org/x/sys/unix"
)

// Handover is one process as the daemon hands it to its next image across
// an exec (an in-place upgrade): what its owner goroutine knew, and the log
// pipes that carry its child's output. It is plain data (JSON); the pipes
// are descriptor numbers the next image inherits.
type Handover struct {
	Name  string `json:"name"` // group:process
	State State  `json:"state"`
	// The child, if one runs (or has exited unreaped): Pid 0 if none.
	Pid int `json:"pid,omitempty"`
	// PidStart is the child's start time (see Status.PidStart); the next
	// image reads it again from the child it adopts.
	PidStart  uint64    `json:"pid_start,omitempty"`
	Marker    string    `json:"marker,omitempty"` // its GOSUP_SPAWN entry
	SpawnedAt time.Time `json:"spawned_at,omitzero"`
	// What the status shows.
	StartedAt    time.Time `json:"started_at,omitzero"`
	StoppedAt    time.Time `json:"stopped_at,omitzero"`
	Spawns       int       `json:"spawns"`
	ExitStatus   *int      `json:"exit_status,omitempty"`
	ExitDesc     string    `json:"exit_desc,omitempty"`
	SpawnError   string    `json:"spawn_error,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	RespawnAt    time.Time `json:"respawn_at,omitzero"`
	IllegalMoves int       `json:"illegal_moves,omitempty"`
	// Exits continues the counts of exits by reason (Status.Exits).
	Exits ExitCounts `json:"exits,omitzero"`
	// StdoutDropped and StderrDropped continue the counts of lost output.
	StdoutDropped int64 `json:"stdout_dropped,omitempty"`
	StderrDropped int64 `json:"stderr_dropped,omitempty"`
	// The restart policy's counters.
	Backoff int `json:"backoff"`
	Crashes int `json:"crashes"`
	// Readiness of the current spawn, and a stop in progress.
	Ready        bool      `json:"ready"`
	StartWaited  bool      `json:"start_waited"`
	NotReady     string    `json:"not_ready,omitempty"`
	GroupStopped bool      `json:"group_stopped,omitempty"`
	StopDeadline time.Time `json:"stop_deadline,omitzero"`
	// Pipes are the read ends of the child's (and an earlier child's)
	// output pipes, still open.
	Pipes []Pipe `json:"pipes,omitempty"`
	// StdoutPartial and StderrPartial are output a syslog log held as the
	// start of a line not ended yet: the next image's log goes on from it.
	StdoutPartial []byte `json:"stdout_partial,omitempty"`
	StderrPartial []byte `json:"stderr_partial,omitempty"`
}

// Pipe is one output pipe handed over: the stream it carries and the
// descriptor number it has (in the image that wrote the Handover, and so
// in the next, which inherits it).
type Pipe struct {
	Stream string `json:"stream"` // stdout or stderr
	FD     int    `json:"fd"`
	// Mid says the log (log_timestamps) holds the start of a line the
	// child has not ended: the next copier stamps no line until its
	// newline.
	Mid bool `json:"mid,omitempty"`
}

// MarshalText names the state as the status does.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	i := slices.Index(stateNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("unknown process state %q", b)
	}
	*s = State(i)
	return nil
}

// StatusHandover is a process as its status shows it, for a handover:
// without its child (Pid 0 unless the caller knows it is still a child),
// its pipes or what only its owner goroutine knows.
func StatusHandover(st Status) Handover {
	return Handover{
		Name: st.FullName(), State: st.State, PidStart: st.PidStart, StartedAt: st.StartedAt, StoppedAt: st.StoppedAt,
		Spawns: st.Spawns, ExitStatus: st.ExitStatus, ExitDesc: st.ExitDesc, SpawnError: st.SpawnError,
		Reason: st.Reason, RespawnAt: st.RespawnAt, IllegalMoves: st.IllegalMoves,
		StdoutDropped: st.StdoutDropped, StderrDropped: st.StderrDropped, Exits: st.Exits,
	}
}

// handover adds to h what the owner goroutine knows (not the pid: the
// callers decide whether the child is still one).
func (l *loop) handover(h Handover) Handover {
	h.State, h.Marker, h.SpawnedAt = l.state, l.marker, l.spawnedAt
	h.Backoff, h.Crashes, h.Ready, h.StartWaited, h.NotReady = l.backoff, l.crashes, l.ready, l.startWaited, l.notReady
	h.GroupStopped, h.StopDeadline = l.groupStopped, l.stopDeadline
	return h
}

// ErrHandedOver is what requests to a process get while it is frozen for a
// handover.
var ErrHandedOver = errors.New("the daemon is being upgraded")

// Frozen is a process stopped for a handover: its owner goroutine waits,
// doing nothing, until Resume (the upgrade failed before the exec) or the
// exec. Files are the pipes of Handover.Pipes, open.
type Frozen struct {
	Handover Handover
	Files    []*os.File
	resume   chan struct{}
}

// Resume lets the process go on as before the freeze.
func (f *Frozen) Resume() { close(f.resume) }

type freezeReq struct {
	wait time.Duration
	// force: a rescue, which cannot refuse. Leftovers being stopped are
	// SIGKILLed at once, and a copier stuck writing has its pipe handed
	// over anyway (what it holds is counted as dropped).
	force bool
	reply chan freezeRes
}

type freezeRes struct {
	f   *Frozen
	err error
}

// Freeze stops the process for a handover: the owner goroutine first takes
// the exit already reaped for it, if any, and waits for a leftover sweep in
// progress to end; then it stops its timers and readiness check and the
// log copiers (each after it has written what it read) and describes the
// process. The child is not touched. Until Resume, the process takes no
// request and no event. The caller must hold the reaper (reaper.Hold) so
// that no exit is reaped meanwhile. A log copier that does not stop within
// wait (a write stuck on a hung disk) fails the freeze, leaving the
// process as it was.
func (p *Process) Freeze(ctx context.Context, wait time.Duration) (*Frozen, error) {
	return p.freezeWith(ctx, freezeReq{wait: wait})
}

// FreezeForRescue is Freeze for a rescue after a panic elsewhere, which
// must not fail for a slow part: the processes its last child left running
// are SIGKILLed at once rather than waited for, and a log copier stuck in a
// write has its pipe handed over anyway, what it holds counted as dropped.
func (p *Process) FreezeForRescue(ctx context.Context, wait time.Duration) (*Frozen, error) {
	return p.freezeWith(ctx, freezeReq{wait: wait, force: true})
}

// ErrPanicked is what a Freeze of a process whose owner goroutine has
// panicked gets.
var ErrPanicked = errors.New("its owner goroutine panicked")

func (p *Process) freezeWith(ctx context.Context, req freezeReq) (*Frozen, error) {
	req.reply = make(chan freezeRes, 1)
	select {
	case p.reqs <- &request{kind: reqFreeze, freeze: &req}:
	case <-p.done:
		return nil, ErrClosed
	case <-p.panicking:
		return nil, ErrPanicked
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-req.reply:
		return res.f, res.err
	case <-ctx.Done():
		// Too late for the caller, which undoes its handover: the
		// process goes on once it has frozen.
		go func() {
			if res := <-req.reply; res.f != nil {
				res.f.Resume()
			}
		}()
		return nil, ctx.Err()
	}
}

// ErrSweeping refuses a freeze while the processes a process's last child
// left running are being stopped: that takes up to its stopwaitsecs, too
// long to hold everything else frozen.
var ErrSweeping = errors.New("it is stopping the processes its last child left running (up to its stopwaitsecs); try again once they are gone")

// freeze runs on the owner goroutine; it returns once the process may go
// on (Resume), or never (an exec), with a panic or an end (Panic,
// Pool.Remove) that came while it was frozen, for the owner to take after.
func (p *Process) freeze(l *loop, req freezeReq) *request {
	select {
	case ex := <-l.exitC:
		p.onExit(l, ex)
	default:
	}
	if l.sweepC != nil && req.force {
		l.sweepCancel() // SIGKILL what is left, at once
		p.onSwept(l, <-l.sweepC)
		select {
		case ex := <-l.exitC:
			p.onExit(l, ex)
		default:
		}
	}
	if l.sweepC != nil {
		req.reply <- freezeRes{err: fmt.Errorf("%s: %w", p.spec.FullName(), ErrSweeping)}
		return nil
	}
	pipes, files, err := p.out.handOver(req.wait, req.force)
	if err != nil {
		req.reply <- freezeRes{err: fmt.Errorf("%s: %w", p.spec.FullName(), err)}
		return nil
	}
	// Timers and the readiness check stop; their state is in the Handover.
	kind := l.timerKind
	l.stopTimer()
	p.stopProbe(l)
	st := p.Status()
	h := l.handover(StatusHandover(st))
	h.Pipes = pipes
	if l.proc != nil {
		h.Pid = l.pid
	}
	if kind != timerRespawn {
		h.RespawnAt = time.Time{}
	}
	h.StdoutPartial, h.StderrPartial = p.out.partial("stdout"), p.out.partial("stderr")
	f := &Frozen{Handover: h, Files: files, resume: make(chan struct{})}
	req.reply <- freezeRes{f: f}
	// Frozen: a request is answered at once (none should come: the
	// upgrade holds every lane), a second freeze refused; a panic or an
	// end waits for the resume (no request is taken after it).
	var after *request
	reqs := p.reqs
	for frozen := true; frozen; {
		select {
		case <-f.resume:
			frozen = false
		case r := <-reqs:
			switch r.kind {
			case reqOp:
				r.reply <- ErrHandedOver
			case reqFreeze:
				r.freeze.reply <- freezeRes{err: fmt.Errorf("%s: already frozen", p.spec.FullName())}
			default:
				after, reqs = r, nil
			}
		}
	}
	l.timerKind = timerNone
	p.restore(l, h, files)
	return after
}

// Adopt makes a new process (before Run) take over one handed over by the
// previous image: its child (whose exit arrives on exitC, from
// reaper.Adopt), its counters and timers, and its output pipes (files, in
// the order of h.Pipes). The spec must be the one the child was spawned
// with.
func (p *Process) Adopt(h Handover, exitC <-chan reaper.Exit, files []*os.File) error {
	if h.Name != p.spec.FullName() {
		return fmt.Errorf("handover of %s given to %s", h.Name, p.spec.FullName())
	}
	if h.Pid > 0 && exitC == nil {
		return fmt.Errorf("%s: pid %d handed over without its exit channel", h.Name, h.Pid)
	}
	p.adopt = &adoption{h: h, exitC: exitC, files: files}
	// The status shows the process as handed over from now on, not as
	// STOPPED until Run starts: the control socket may already answer.
	p.update(func(s *Status) {
		s.Pid = 0
		if exitC != nil {
			s.Pid, s.PidStart = h.Pid, h.PidStart
		}
		s.StartedAt, s.StoppedAt, s.Spawns = h.StartedAt, h.StoppedAt, h.Spawns
		s.Restarts = max(0, h.Spawns-1)
		s.ExitStatus, s.ExitDesc, s.SpawnError, s.Reason = h.ExitStatus, h.ExitDesc, h.SpawnError, h.Reason
		s.RespawnAt, s.IllegalMoves, s.Exits = h.RespawnAt, h.IllegalMoves, h.Exits
		s.State = h.State
	})
	p.logDrops.stdout.Store(h.StdoutDropped)
	p.logDrops.stderr.Store(h.StderrDropped)
	return nil
}

// adoption is what Adopt gave Run.
type adoption struct {
	h     Handover
	exitC <-chan reaper.Exit
	files []*os.File
}

// adopted sets up the loop from an adoption, at the start of Run.
func (p *Process) adopted(l *loop, a *adoption) {
	h := a.h
	if h.Pid > 0 {
		proc, err := os.FindProcess(h.Pid)
		if err != nil {
			// Not possible for an unreaped child of ours; the exit still
			// arrives, and is handled without the handle.
			p.log.Error("adopted child has no handle", "pid", h.Pid, "err", err)
		}
		l.proc, l.exitC, l.pid, l.marker = proc, a.exitC, h.Pid, h.Marker
		p.Spawns.add(h.Marker)
	}
	l.state = h.State
	if p.OnState != nil {
		p.OnState(p, h.State)
	}
	if l.proc != nil && p.OnSpawn != nil {
		p.OnSpawn(p, l.pid, h.PidStart, h.SpawnedAt)
	}
	p.out.seedPartial("stdout", h.StdoutPartial)
	p.out.seedPartial("stderr", h.StderrPartial)
	p.restore(l, h, a.files)
}

// restore takes up the loop's timers, readiness check and log copiers from
// h: after a Resume, or in the image that adopted the process.
func (p *Process) restore(l *loop, h Handover, files []*os.File) {
	l.spawnedAt, l.backoff, l.crashes = h.SpawnedAt, h.Backoff, h.Crashes
	l.ready, l.startWaited, l.notReady = h.Ready, h.StartWaited, h.NotReady
	l.groupStopped, l.stopDeadline = h.GroupStopped, h.StopDeadline
	p.out.guard, p.out.stdio = p.Guard, p.Stdio
	for i, pipe := range h.Pipes {
		if i < len(files) {
			p.out.adoptPipe(pipe, files[i])
		}
	}
	l.disarm()
	switch l.state {
	case Starting:
		if l.proc == nil {
			// Frozen between a sweep and its launch: not possible (a
			// freeze waits for the sweep), but never left STARTING
			// without a child.
			p.startChild(l)
			return
		}
		if !l.ready {
			// What is left of ready_timeout, as if nothing happened.
			p.startProbe(l, time.Until(l.spawnedAt.Add(time.Duration(p.spec.Program.ReadyTimeout))))
		}
		if !l.startWaited {
			l.arm(timerStartSecs, max(0, time.Until(l.spawnedAt.Add(p.policy.StartWait))))
		}
	case Stopping:
		if l.proc != nil {
			l.arm(timerKill, max(0, time.Until(l.stopDeadline)))
		}
	case Exited, Backoff:
		if !h.RespawnAt.IsZero() {
			l.arm(timerRespawn, max(0, time.Until(h.RespawnAt)))
		}
	}
}

// handOver stops every log copier, each after it has written what it read,
// and returns their pipes, open. A copier still writing after wait (a hung
// disk) fails it, and every copier goes on as before; with force (a
// rescue), its pipe is handed over anyway, a duplicate, and what it holds
// is counted as dropped.
func (o *outputs) handOver(wait time.Duration, force bool) ([]Pipe, []*os.File, error) {
	o.mu.Lock()
	cs := slices.Clone(o.copiers)
	o.mu.Unlock()
	for _, c := range cs {
		c.mu.Lock()
		c.handOff = true
		if !c.reading && !c.ended && !c.kept {
			// Idle: it stops here and now. One reading stops after its
			// write (copier.stop).
			c.keep()
		}
		c.mu.Unlock()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	timedOut := false
	type kept struct {
		c  *copier
		fd int
	}
	var ks []kept
	for _, c := range cs {
		done := c.doneC()
		if !timedOut {
			select {
			case <-done:
			case <-timer.C:
				timedOut = true
			}
		}
		if timedOut {
			select {
			case <-done:
			default:
				if !force {
					o.resumeCopiers(cs)
					return nil, nil, fmt.Errorf("its %s log copier is still writing after %s (a hung disk?)", c.stream, wait)
				}
				fd, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
				if err != nil {
					o.log.Error("a log pipe could not be handed over; its writer gets SIGPIPE after the re-execution", "stream", c.stream, "err", err)
					continue
				}
				held := c.inFlight.Load()
				o.drops.of(c.stream).Add(held)
				o.log.Error("a log copier is stuck writing; its pipe is handed over anyway and what it held is counted as dropped", "stream", c.stream, "dropped_bytes", held)
				ks = append(ks, kept{c, fd})
				continue
			}
		}
		c.mu.Lock()
		k := c.kept // set before done was closed
		c.mu.Unlock()
		if k {
			ks = append(ks, kept{c, c.fd})
		} // else it had reached the end of its pipe
	}
	pipes := make([]Pipe, 0, len(ks))
	files := make([]*os.File, 0, len(ks))
	for _, k := range ks {
		pipes = append(pipes, Pipe{Stream: k.c.stream, FD: k.fd, Mid: k.c.mid()})
		files = append(files, os.NewFile(uintptr(k.fd), "|0"))
	}
	return pipes, files, nil
}

// resumeCopiers undoes a handOver that failed: a copier that has not
// stopped goes on; one that has is started again on its pipe, which it
// left open.
func (o *outputs) resumeCopiers(cs []*copier) {
	for _, c := range cs {
		c.mu.Lock()
		c.handOff = false
		stopped := c.kept
		c.mu.Unlock()
		if stopped {
			o.adoptFD(c.stream, c.fd, c.mid())
		}
	}
}

// partial is what stream's log holds of a line not ended yet: only a
// syslog log holds any (it sends whole lines).
func (o *outputs) partial(stream string) []byte {
	o.mu.Lock()
	s := *o.sinks.of(stream)
	o.mu.Unlock()
	if ss, ok := s.(*streamSink); ok {
		if lw, ok := ss.w.(*lineWriter); ok {
			lw.mu.Lock()
			defer lw.mu.Unlock()
			if len(lw.buf) > 0 {
				return bytes.Clone(lw.buf)
			}
		}
	}
	return nil
}

// seedPartial gives stream's log the start of a line that the previous
// image's log held (see partial), before any copier writes to it: the
// line goes out whole when it ends. Bytes no log takes are counted lost.
func (o *outputs) seedPartial(stream string, b []byte) {
	if len(b) == 0 {
		return
	}
	o.mu.Lock()
	ls := o.spec.Stdout
	if stream == "stderr" {
		ls = o.spec.Stderr
	}
	o.mu.Unlock()
	dropped := o.drops.of(stream)
	if ls.Kind == LogNone || ls.Device() {
		dropped.Add(int64(len(b)))
		return
	}
	sink, err := o.sink(stream, ls, safefile.ProgramUser(o.spec.User))
	if err != nil {
		dropped.Add(int64(len(b)))
		return
	}
	if ss, ok := sink.(*streamSink); ok {
		if lw, ok := ss.w.(*lineWriter); ok {
			lw.mu.Lock()
			lw.buf = append(bytes.Clone(b), lw.buf...)
			lw.mu.Unlock()
			return
		}
	}
	// The log is a file now (a changed spec): the bytes go to it as they are.
	if n, err := sink.Write(b); err != nil {
		dropped.Add(int64(lostBytes(err, n, len(b))))
	}
}

// adoptPipe starts a copier on a pipe handed over (or handed back). The
// copier reads a duplicate of r's descriptor, outside the runtime's
// poller; r is closed.
func (o *outputs) adoptPipe(pipe Pipe, r *os.File) {
	fd, err := RawFD(r)
	if err == nil {
		fd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	}
	r.Close()
	if err == nil {
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		o.log.Error("a log pipe handed over cannot be read; its writer gets SIGPIPE", "stream", pipe.Stream, "err", err)
		return
	}
	o.adoptFD(pipe.Stream, fd, pipe.Mid)
}

// adoptFD starts a copier on the pipe fd, which it owns from then on.
func (o *outputs) adoptFD(stream string, fd int, mid bool) {
	o.mu.Lock()
	ls := o.spec.Stdout
	if stream == "stderr" {
		ls = o.spec.Stderr
	}
	o.mu.Unlock()
	sink, err := o.sink(stream, ls, safefile.ProgramUser(o.spec.User))
	if err != nil {
		// The output has nowhere to go: read and count it, so the child
		// never blocks on a full pipe.
		// A copier like any other, so that the next upgrade hands the
		// pipe over too.
		o.log.Error("log of an adopted process cannot be opened; its output is discarded (counted)", "stream", stream, "err", err)
		sink, mid = noLog{err}, false
	}
	if err := o.startCopier(stream, sink, fd, mid); err != nil {
		o.log.Error("a log pipe cannot be read; its writer gets SIGPIPE", "stream", stream, "err", err)
		unix.Close(fd)
	}
}

// noLog takes nothing: the copier counts every byte as dropped.
type noLog struct{ err error }

func (n noLog) Write([]byte) (int, error) { return 0, n.err }

// RawFD is c's descriptor number, leaving c as it is (File.Fd would make
// it blocking): what a handover names.
func RawFD(c syscall.Conn) (int, error) {
	sc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := sc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// InheritedFile wraps a descriptor inherited across an exec, marking it
// close-on-exec again.
func InheritedFile(fd int, name string) (*os.File, error) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("descriptor %d: %w", fd, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// PipeFile makes a pipe read end inherited across an exec into a file the
// poller reads (non-blocking, close-on-exec again).
func PipeFile(fd int, name string) (*os.File, error) {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe %d: %w", fd, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pipe %d: %w", fd, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Panic makes the owner goroutine panic with v, as a bug in it would: for
// tests of the daemon's recovery. It returns once the panic has begun, or
// at once if the process has ended.
func (p *Process) Panic(v any) {
	select {
	case p.reqs <- &request{kind: reqPanic, panic: v}:
	case <-p.done:
	}
}

// recoverCore hands a panic of the owner goroutine to OnPanic, with the
// process described from what the loop held and what the kernel says.
func (p *Process) recoverCore(l *loop) {
	if p.OnPanic == nil {
		return
	}
	v := recover()
	if v == nil {
		return
	}
	close(p.panicking)
	stack := debug.Stack()
	f := p.rescue(l)
	p.OnPanic(p, v, stack, f)
	panic(v)
}

// rescueWait bounds the wait for the log copiers in a rescue.
const rescueWait = 2 * time.Second

// rescue describes the process after its owner goroutine panicked: the
// loop may be half-way through a change, so the child is taken from the
// kernel (an unreaped child of ours, or none), and a state that claims a
// child the kernel does not show becomes EXITED, respawning at once. Its
// log copiers are stopped as for a freeze (their pipes stay open); one that
// does not stop leaves its pipe out (the next image cannot read it).
func (p *Process) rescue(l *loop) *Frozen {
	st := p.Status()
	h := l.handover(StatusHandover(st))
	if l.pid > 0 && l.proc != nil {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, l.pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err == nil {
			h.Pid = l.pid
		}
	}
	switch {
	case h.Pid == 0 && h.State == Stopping:
		// Asked to stop, and nothing is left to stop.
		h.State, h.RespawnAt = Stopped, time.Time{}
		h.Reason = "stopped"
	case h.Pid == 0 && (h.State == Starting || h.State == Running):
		h.State, h.RespawnAt = Exited, time.Now()
		h.Reason = "its child was lost when the daemon recovered from a panic"
	case h.State == Stopping && h.StopDeadline.IsZero():
		h.StopDeadline = time.Now()
	}
	pipes, files, err := p.out.handOver(rescueWait, true)
	if err != nil {
		p.log.Error("log copiers did not stop; that output will not reach the log after the recovery", "err", err)
	}
	h.Pipes = pipes
	return &Frozen{Handover: h, Files: files, resume: make(chan struct{})}
}
