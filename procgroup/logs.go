package procgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/pipepoll"
	"github.com/gosup/gosup/procgroup/safefile"
	"golang.org/x/sys/unix"
)

// Stdio is what every process of a daemon shares for its children's
// standard files: /dev/null (every child's stdin, and an output that goes
// nowhere) and the poller that wakes a log copier when its pipe has data.
// The daemon makes one and hands it to each Process (Process.Stdio) before
// Run; a Process without one makes its own for each set of outputs.
type Stdio struct {
	poll *pipepoll.Poller
	null *os.File
	// privileged says the daemon may grow pipes past the user's
	// pipe-user-pages-soft (CAP_SYS_RESOURCE or CAP_SYS_ADMIN); grown
	// counts the pipes grown while it may not.
	privileged bool
	grown      atomic.Int32
}

// Log pipes are made at the kernel's default size (64 KiB): an idle
// stream holds its 16 slots and no pages. A stream whose child fills the
// pipe grows it to grownPipe, so that a fast writer runs ahead of the
// copier with fewer wake-ups. A daemon without CAP_SYS_RESOURCE grows at
// most maxGrownUnprivileged at a time: 16 MiB of the 64 MiB the kernel
// lets one user's pipes hold (fs.pipe-user-pages-soft) before it makes
// every new pipe of that user 2 pages.
const (
	grownPipe            = 1 << 20
	maxGrownUnprivileged = 16
)

// NewStdio opens /dev/null and starts the log pipes' poller.
func NewStdio() (*Stdio, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	poll, err := pipepoll.New()
	if err != nil {
		null.Close()
		return nil, err
	}
	return &Stdio{poll: poll, null: null, privileged: pipePrivileged()}, nil
}

// pipePrivileged says the process's pipes are not held to the user's
// limits: it has CAP_SYS_RESOURCE or CAP_SYS_ADMIN (the kernel's
// pipe_is_unprivileged_user).
func pipePrivileged() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_SYS_RESOURCE|1<<unix.CAP_SYS_ADMIN) != 0
}

// grow grows the pipe fd to grownPipe, best effort. It reports whether
// the pipe holds one of the unprivileged daemon's grown places, to give
// back with shrunk when the pipe is closed.
func (s *Stdio) grow(fd int) (counted bool) {
	if !s.privileged {
		if s.grown.Add(1) > maxGrownUnprivileged {
			s.grown.Add(-1)
			return false
		}
		counted = true
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, grownPipe); err != nil && counted {
		s.grown.Add(-1)
		return false
	}
	return counted
}

// shrunk gives back a grown place (see grow).
func (s *Stdio) shrunk() { s.grown.Add(-1) }

// Close closes /dev/null and the poller, which goes on reading the pipes
// it has until every writer has closed them (a grandchild may hold one).
func (s *Stdio) Close() error {
	s.poll.Close()
	return s.null.Close()
}

// Pipes is the number of log pipes being read.
func (s *Stdio) Pipes() int { return s.poll.Pipes() }

// outputs owns where one process's stdout and stderr go, across spawns.
// A device (/dev/stdout in a container) is handed to the child directly;
// a log file or syslog gets a pipe and a copier per spawn, writing into a
// sink that lives as long as the process slot, so that the file can be
// rotated by size, reopened at its path after an external rotation
// (ReopenLogs), and every byte a failing disk refuses is counted.
type outputs struct {
	spec  *ProcSpec
	guard *guard.Guard // starts the copiers' reads; set by the owner goroutine before files
	drops *logDrops    // bytes of output lost (the process's counters, across outputs)
	log   *procLog
	// stdio is the daemon's (set by the owner goroutine before files),
	// nil for a process given none: own is made then, and closed with the
	// outputs.
	stdio *Stdio
	own   *Stdio

	// syslogAddr, when set (by tests), is the unix datagram socket that
	// stands for the local syslog; empty: the system's (/dev/log).
	syslogAddr string

	// The streams' sinks again, for status: read without o.mu, which
	// may be held while a sink is created (see failures).
	stdoutSink, stderrSink atomic.Pointer[streamSink]

	// mu is never held across a call into a sink: a sink's writer may
	// be stuck on a hung disk, and status must not wait for it.
	mu     sync.Mutex
	sinks  sinks
	closed bool
	// copiers are the live log copiers: this spawn's, and an earlier
	// spawn's whose pipe a grandchild still holds open (a few at most:
	// a slice, not a map).
	copiers []*copier
}

// sinks are the streams' sinks, *streamSink (tests may plant others);
// nil until the stream's first spawn. Two fields, not a map: a map costs
// each process some 300 bytes.
type sinks struct{ stdout, stderr io.WriteCloser }

// of is the field of stream.
func (s *sinks) of(stream string) *io.WriteCloser {
	if stream == "stderr" {
		return &s.stderr
	}
	return &s.stdout
}

// copier copies one pipe into a stream's sink. It holds no goroutine and
// no buffer while the pipe is empty: the poller wakes it when the pipe
// has data or every writer has closed it, and it then reads (on a
// goroutine of the guard's, with a buffer borrowed for the while) until
// the pipe is empty again, or moves the bytes into the log file with
// splice(2) when they need no look (see rotator.spliceFrom).
type copier struct {
	o      *outputs
	stream string
	// fd is the pipe's read end (non-blocking): closed when every writer
	// has closed the pipe, left open when the copier stops for a handover.
	fd   int
	sink io.Writer // the stamper when there is one
	// splice is the sink when the bytes may be spliced into its file:
	// a rotated log file, without stamps. Nil otherwise.
	splice  *streamSink
	dropped *atomic.Int64
	// g is the daemon's guard, then (named, at the first wake-up) one
	// naming the copier in what it logs: a stream never written holds
	// no guard of its own.
	g   *guard.Guard
	reg *pipepoll.Reg
	// inFlight is what the copier has read and the sink not yet taken.
	inFlight atomic.Int64
	// broken says a read panicked: the rest of the output is discarded,
	// counted, until every writer has closed the pipe.
	broken atomic.Bool
	// mu guards the state below. It is the copier's own, not the
	// outputs': the poller's wake-up takes it, and must never wait for
	// another process's outputs (which may be opening a log).
	mu sync.Mutex
	// reading says a goroutine is reading the pipe (woken, not yet armed
	// again); ended that the pipe is done and closed.
	reading, ended bool
	// named says g names the copier.
	named bool
	// finished says the copier has ended or stopped (see done).
	finished bool
	// handOff says the copier is being stopped for a handover: fd stays
	// open, for the next image.
	handOff bool
	// kept says the copier has stopped for a handover, leaving fd open:
	// decided once, so that a handover undone meanwhile (resumeCopiers)
	// knows whether to start a copier again.
	kept bool
	// done is closed when the copier has ended or stopped (finished):
	// made when asked for (doneC, by a handover), so that a copier
	// nobody waits for holds no channel.
	done chan struct{}
	// st stamps the lines (log_timestamps), nil when off.
	st *stamper
	// io is the daemon's Stdio. capacity is the pipe's size; grown says
	// it is grownPipe (or growing is not to be tried again), counted that
	// it holds one of io's grown places. The reading goroutine's, and
	// keep's once it has stopped.
	io       *Stdio
	capacity int
	grown    bool
	counted  bool
}

// mid reports whether the copier's log holds the start of a line the
// child has not ended (log_timestamps).
func (c *copier) mid() bool { return c.st != nil && c.st.mid.Load() }

// logDrops counts the bytes of one process's output that reached no log,
// per stream (stderr redirected to stdout counts as stdout).
type logDrops struct{ stdout, stderr atomic.Int64 }

func (d *logDrops) of(stream string) *atomic.Int64 {
	if stream == "stderr" {
		return &d.stderr
	}
	return &d.stdout
}

func newOutputs(spec *ProcSpec, drops *logDrops, log *procLog) *outputs {
	return &outputs{spec: spec, drops: drops, log: log}
}

// files returns stdin, stdout and stderr for a spawn and a func that closes
// the parent's copies once the child has them.
func (o *outputs) files() ([]*os.File, func(), error) {
	devnull, err := o.nullFile()
	if err != nil {
		return nil, nil, err
	}
	// The program's user may own its logs' directory (see safefile):
	// looked up once a spawn, for both streams; and a directory both
	// logs are in (the AUTO logs, in logdir) is checked once.
	sf := &spawnFiles{program: safefile.ProgramUser(o.spec.User)}
	stdout, err := o.stream("stdout", o.spec.Stdout, sf)
	if err != nil {
		sf.close()
		return nil, nil, err
	}
	stderr := stdout
	if !o.spec.Program.RedirectStderr {
		if stderr, err = o.stream("stderr", o.spec.Stderr, sf); err != nil {
			sf.close()
			return nil, nil, err
		}
	}
	return []*os.File{devnull, stdout, stderr}, sf.close, nil
}

// io is the daemon's Stdio, or the outputs' own (made at the first call).
func (o *outputs) io() (*Stdio, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stdio != nil {
		return o.stdio, nil
	}
	if o.closed {
		return nil, errors.New("outputs closed")
	}
	if o.own == nil {
		s, err := NewStdio()
		if err != nil {
			return nil, err
		}
		o.own = s
	}
	return o.own, nil
}

// nullFile is /dev/null opened read-write, the daemon's: stdin of every
// spawn, and stdout or stderr when they go nowhere.
func (o *outputs) nullFile() (*os.File, error) {
	s, err := o.io()
	if err != nil {
		return nil, err
	}
	return s.null, nil
}

// spawnFiles is what the streams of one spawn share: the program's user,
// the log directory already checked for it, and the parent's copies of
// the child's files, closed once the child has them.
type spawnFiles struct {
	program    int
	checkedDir string
	opened     []*os.File
}

func (sf *spawnFiles) close() {
	for _, f := range sf.opened {
		f.Close()
	}
}

func (o *outputs) stream(name string, ls LogSpec, sf *spawnFiles) (*os.File, error) {
	program := sf.program
	switch {
	case ls.Kind == LogNone:
		return o.nullFile()
	case ls.Device():
		f, err := openLog(ls.Path)
		if err != nil {
			return nil, fmt.Errorf("%s_logfile: %w", name, err)
		}
		sf.opened = append(sf.opened, f)
		return f, nil
	}
	if ls.Kind == LogFile {
		// A log directory another user could change refuses the start
		// (the error names it, its owner and mode); one that becomes so
		// later fails that log's writes, counted (see safefile).
		if dir := filepath.Dir(ls.Path); dir != sf.checkedDir {
			if err := safefile.Dir(dir, program, true); err != nil {
				return nil, fmt.Errorf("%s_logfile: %w", name, err)
			}
			sf.checkedDir = dir
		}
	}
	sink, err := o.sink(name, ls, program)
	if err != nil {
		return nil, err
	}
	r, w, err := childPipe()
	if err != nil {
		return nil, fmt.Errorf("%s pipe: %w", name, err)
	}
	sf.opened = append(sf.opened, w)
	if err := o.startCopier(name, sink, r, false); err != nil {
		unix.Close(r)
		return nil, fmt.Errorf("%s pipe: %w", name, err)
	}
	return w, nil
}

// startCopier copies the pipe r into sink until every writer has closed
// it, or a handover stops it; it owns r from then on, even when it fails.
// mid says the log holds the start of a line (log_timestamps: the copier
// it takes over from stamped it).
func (o *outputs) startCopier(name string, sink io.Writer, r int, mid bool) error {
	s, err := o.io()
	if err != nil {
		return err
	}
	c := &copier{o: o, stream: name, fd: r, sink: sink, dropped: o.drops.of(name), g: o.guard, io: s}
	// A pipe handed over from the copier before may have grown already.
	if c.capacity, err = unix.FcntlInt(uintptr(r), unix.F_GETPIPE_SZ, 0); err != nil || c.capacity >= grownPipe {
		c.grown = true
		if err == nil && !s.privileged {
			s.grown.Add(1)
			c.counted = true
		}
	}
	// log_timestamps: a stamp before each line this spawn writes to a
	// file (syslog stamps its messages itself).
	if o.spec.Program.LogTimestamps && rotatorOf(sink) != nil {
		c.st = newStamper(sink)
		c.st.mid.Store(mid)
		c.sink = c.st
	} else if ss, ok := sink.(*streamSink); ok && rotatorOf(ss) != nil {
		c.splice = ss
	}
	o.mu.Lock()
	o.copiers = append(o.copiers, c)
	o.mu.Unlock()
	// Under c.mu: the first wake-up may come at once, and must find the
	// registration.
	c.mu.Lock()
	reg, err := s.poll.Add(r, c.wake)
	c.reg = reg
	c.mu.Unlock()
	if err != nil {
		o.forget(c)
		return err
	}
	return nil
}

// forget drops c from the live copiers.
func (o *outputs) forget(c *copier) {
	o.mu.Lock()
	o.copiers = slices.DeleteFunc(o.copiers, func(d *copier) bool { return d == c })
	o.mu.Unlock()
}

// wake starts a read of the pipe (the poller calls it).
func (c *copier) wake() {
	c.mu.Lock()
	if c.reading || c.ended || c.kept {
		c.mu.Unlock()
		return // a wake-up from before a stop
	}
	c.reading = true
	if !c.named {
		c.g, c.named = c.g.With("process", c.o.log.name, "stream", c.stream), true
	}
	g := c.g
	c.mu.Unlock()
	// A read that panics must not leave the child writing into a full
	// pipe (it would block) or a closed one (SIGPIPE kills most
	// programs): the copier goes on reading and discards, counting the
	// bytes, until the child and its descendants close their ends. The
	// next spawn gets a copier of its own.
	g.Go("log copier",
		"the rest of that spawn's output is discarded (counted in its status) until it respawns",
		c.drain,
		func() {
			// Still the only reader: no other wake-up comes before
			// the pipe is armed again.
			c.dropped.Add(c.inFlight.Swap(0)) // lost to the panicking sink
			c.broken.Store(true)
			c.drain()
		})
}

// drain reads the pipe until it is empty (then arms it again), every
// writer has closed it (then the copier ends), or a handover stops it,
// with nothing read left unwritten.
func (c *copier) drain() {
	var buf *[largeBuf]byte
	defer func() {
		if buf != nil {
			largeBufs.Put(buf)
		}
	}()
	for {
		if c.stop(false) {
			return
		}
		err := c.step(&buf)
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN):
			if buf != nil {
				largeBufs.Put(buf)
				buf = nil
			}
			if c.st != nil {
				c.st.release()
			}
			if c.stop(true) {
				return
			}
		default: // every writer has closed the pipe (or it cannot be read)
			c.end()
			return
		}
	}
}

// stop stops the copier if a handover asks it to, leaving its pipe open;
// idle (the pipe is empty) arms the pipe again otherwise. It reports
// whether the reading goroutine is to return.
func (c *copier) stop(idle bool) bool {
	c.mu.Lock()
	if c.handOff {
		c.keep()
		c.mu.Unlock()
		return true
	}
	if !idle {
		c.mu.Unlock()
		return false
	}
	err := c.reg.Arm()
	if err == nil {
		c.reading = false
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()
	// Not possible for a pipe the copier holds (ENOMEM): it would never
	// be woken again. It waits for data here instead.
	c.o.log.Error("a log pipe cannot be armed; its copier waits for data on a thread of its own", "stream", c.stream, "err", err)
	_, _ = unix.Poll([]unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}, -1)
	return false
}

// keep stops the copier for a handover, leaving its pipe open; called
// with c.mu held.
func (c *copier) keep() {
	c.kept, c.reading = true, false
	c.giveBack()
	c.reg.Remove()
	c.finish()
	c.o.forget(c)
}

// finish marks the copier ended or stopped, closing done if it was made;
// called with c.mu held.
func (c *copier) finish() {
	c.finished = true
	if c.done != nil {
		close(c.done)
	}
}

// doneC is closed when the copier has ended or stopped.
func (c *copier) doneC() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.finished {
			close(c.done)
		}
	}
	return c.done
}

// end ends the copier once every writer has closed its pipe.
func (c *copier) end() {
	if c.st != nil {
		c.st.end()
	}
	c.mu.Lock()
	c.ended, c.reading = true, false
	c.reg.Remove()
	unix.Close(c.fd)
	c.giveBack()
	c.mu.Unlock()
	c.o.forget(c)
	c.mu.Lock()
	c.finish()
	c.mu.Unlock()
}

// giveBack gives back the grown place the pipe holds, if it holds one.
func (c *copier) giveBack() {
	if c.counted {
		c.counted = false
		c.io.shrunk()
	}
}

// step moves what the pipe holds into the log: spliced when the bytes fit
// as they are, else up to a buffer's worth read and written (borrowing the
// buffer into *buf). It returns EAGAIN once the pipe is empty, io.EOF once
// every writer has closed it.
func (c *copier) step(buf **[largeBuf]byte) error {
	spliced := c.splice != nil && !c.broken.Load()
	if spliced || !c.grown {
		// FIONREAD (TIOCINQ): the bytes the pipe holds.
		if avail, err := unix.IoctlGetInt(c.fd, unix.TIOCINQ); err == nil && avail > 0 {
			if !c.grown && avail >= c.capacity {
				// Full: the child writes faster than the copier reads.
				c.grown = true
				c.counted = c.io.grow(c.fd)
			}
			if spliced && c.splice.spliceFrom(c.fd, avail) {
				return nil
			}
		}
	}
	if *buf == nil {
		*buf = largeBufs.Get().(*[largeBuf]byte)
	}
	if c.broken.Load() {
		return discard(c.fd, (*buf)[:], c.dropped)
	}
	return copyOut(c.sink, c.fd, (*buf)[:], c.dropped, &c.inFlight)
}

// childPipe makes a pipe whose write end stays blocking (the child's
// stdout must not return EAGAIN) and whose read end is non-blocking, for
// the poller.
func childPipe() (r int, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return -1, nil, err
	}
	if err := unix.SetNonblock(p[0], true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return -1, nil, err
	}
	return p[0], os.NewFile(uintptr(p[1]), "|1"), nil
}

// Copy buffers are borrowed while a pipe is read and given back when it
// is empty: an idle stream holds none.
const largeBuf = 128 << 10

var largeBufs = sync.Pool{New: func() any { return new([largeBuf]byte) }}

// copyOut reads once from the pipe r into buf and writes what it read to
// sink; what the sink does not take is counted in dropped. It returns the
// read's error: EAGAIN when the pipe is empty, io.EOF once every writer has
// closed it.
func copyOut(sink io.Writer, r int, buf []byte, dropped, inFlight *atomic.Int64) error {
	n, err := readPipe(r, buf)
	if n > 0 {
		// A failing sink (disk full) must not stall the child: the
		// bytes are dropped, counted, and reading goes on.
		inFlight.Store(int64(n))
		if w, err := sink.Write(buf[:n]); err != nil {
			dropped.Add(int64(lostBytes(err, w, n)))
		}
		inFlight.Store(0)
	}
	return err
}

// discard reads once from r, counting the bytes as dropped.
func discard(r int, buf []byte, dropped *atomic.Int64) error {
	n, err := readPipe(r, buf)
	dropped.Add(int64(n))
	return err
}

// readPipe reads once from the pipe r: n > 0 and a nil error, or EAGAIN
// (empty), io.EOF (every writer has closed it), or another error.
func readPipe(r int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(r, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (o *outputs) sink(name string, ls LogSpec, program int) (io.Writer, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, errors.New("outputs closed")
	}
	if s := *o.sinks.of(name); s != nil {
		return s, nil
	}
	// stderr_logfile naming stdout's file shares its log: one writer of
	// the file, under one lock, with one size and one rotation. Two would
	// each write at the size they last saw (a splice) and rotate the file
	// under each other, writing over the other stream's output.
	if out := o.sinks.stdout; name == "stderr" && out != nil && ls.Kind == LogFile && o.spec.Stdout.Kind == LogFile && filepath.Clean(ls.Path) == filepath.Clean(o.spec.Stdout.Path) {
		o.sinks.stderr = out
		return out, nil
	}
	var s io.WriteCloser
	path := ls.Path
	if ls.Kind == LogSyslog {
		path = "syslog"
		prio := syslog.LOG_INFO
		if name == "stderr" {
			prio = syslog.LOG_ERR
		}
		network := ""
		if o.syslogAddr != "" {
			network = "unixgram"
		}
		w, err := syslog.Dial(network, o.syslogAddr, prio|syslog.LOG_DAEMON, o.spec.FullName())
		if err != nil {
			return nil, fmt.Errorf("%s_logfile = syslog: %w", name, err)
		}
		s = &lineWriter{w: w}
	} else {
		r, err := newRotator(ls.Path, int64(ls.MaxBytes), ls.Backups)
		if err != nil {
			return nil, fmt.Errorf("%s_logfile: %w", name, err)
		}
		r.program = program
		s = r
	}
	ss := &streamSink{w: s, stream: name, path: path, log: o.log}
	*o.sinks.of(name) = ss
	if name == "stderr" {
		o.stderrSink.Store(ss)
	} else {
		o.stdoutSink.Store(ss)
	}
	return ss, nil
}

// setSpec applies a new spec's log limits to the open rotators; the
// destinations themselves change only with a new outputs. It never waits
// for a write in progress (the owner goroutine calls it).
func (o *outputs) setSpec(spec *ProcSpec) {
	o.mu.Lock()
	o.spec = spec
	rs := map[*rotator]LogSpec{}
	for _, st := range []struct {
		name string
		ls   LogSpec
	}{{"stdout", spec.Stdout}, {"stderr", spec.Stderr}} {
		// A log both streams share takes stdout's limits.
		if r := rotatorOf(*o.sinks.of(st.name)); r != nil && rs[r] == (LogSpec{}) {
			rs[r] = st.ls
		}
	}
	o.mu.Unlock()
	for r, ls := range rs {
		r.setLimits(int64(ls.MaxBytes), ls.Backups)
	}
}

func rotatorOf(w io.Writer) *rotator {
	if s, ok := w.(*streamSink); ok {
		w = s.w
	}
	r, _ := w.(*rotator)
	return r
}

// reopen closes the log files the copiers write and opens them again at
// their paths: after an external rotation (logrotate renamed the file) the
// output goes to a file at the configured path again. It returns the paths
// reopened, and what failed; a file that could not be opened is opened
// again at the next write.
func (o *outputs) reopen() (paths []string, errs []error) {
	// Opening may wait on a slow disk: not under o.mu, which status takes.
	var rs []*rotator
	o.mu.Lock()
	for _, name := range []string{"stdout", "stderr"} {
		if r := rotatorOf(*o.sinks.of(name)); r != nil && !o.closed && !slices.Contains(rs, r) {
			rs = append(rs, r)
		}
	}
	o.mu.Unlock()
	for _, r := range rs {
		if err := r.Reopen(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		} else if err == nil {
			paths = append(paths, r.path)
		}
	}
	return paths, errs
}

// failures lists the streams whose log is failing now. It takes no lock
// (Status calls it): a copier stuck writing to a hung disk holds its
// log's locks, and one hung log must not hold up the status of any.
func (o *outputs) failures() []LogFailure {
	var out []LogFailure
	for _, s := range []*streamSink{o.stdoutSink.Load(), o.stderrSink.Load()} {
		if f := s.failure(); f != nil {
			out = append(out, *f)
		}
	}
	return out
}

// LogFailure is a log that refuses output now: since when, why, and how
// many bytes it has lost since.
type LogFailure struct {
	Stream  string
	Path    string
	Since   time.Time
	Err     string
	Dropped int64
}

// streamSink is one stream's log (a rotator or syslog) as the copiers see
// it. It notices when the log starts refusing output and when it takes it
// again, and says so in the daemon log once each per episode (WARN with
// the path and the error; INFO with the bytes lost meanwhile), never per
// write. The bytes themselves are counted by the copier.
type streamSink struct {
	w      io.WriteCloser
	stream string
	path   string
	log    *procLog

	// mu orders the bookkeeping of concurrent writes (two copiers share
	// a sink when stderr goes to stdout); it is never held across I/O.
	mu      sync.Mutex
	failing bool
	since   time.Time
	lastErr string
	lost    int64 // bytes lost in the current (or last) episode
	// now is the current episode as status sees it (nil: not failing),
	// replaced (never changed) under mu, read without it.
	now atomic.Pointer[LogFailure]
	// spliced counts the bytes moved into the file by splice (tests).
	spliced atomic.Int64
}

func (s *streamSink) Write(b []byte) (int, error) {
	n, tried, err := s.write(b)
	s.note(n, len(b), tried, err)
	return n, err
}

// spliceFrom moves the avail bytes the pipe r holds into the log file
// when they fit as they are (see rotator.spliceFrom), and notes the
// outcome as Write does. It reports false, having moved nothing, when the
// bytes are to be read and written instead.
func (s *streamSink) spliceFrom(r, avail int) bool {
	n, ok, err := s.w.(*rotator).spliceFrom(r, avail)
	if ok {
		s.spliced.Add(int64(n))
		s.note(n, n, true, err)
	}
	return ok
}

// note keeps the episode: a write of size bytes that wrote n, and tried
// to deliver (tried), with err.
func (s *streamSink) note(n, size int, tried bool, err error) {
	s.mu.Lock()
	var started, ended bool
	lost, since := s.lost, s.since
	switch {
	case err != nil:
		if !s.failing {
			s.failing, s.since, s.lost, started = true, time.Now(), 0, true
		}
		s.lastErr = err.Error()
		s.lost += int64(lostBytes(err, n, size))
		s.now.Store(&LogFailure{Stream: s.stream, Path: s.path, Since: s.since, Err: s.lastErr, Dropped: s.lost})
	case s.failing && tried:
		s.failing, ended = false, true
		s.now.Store(nil)
	}
	s.mu.Unlock()
	switch {
	case started && s.log != nil:
		s.log.Warn("log write failed; the output is dropped (and counted) until the log takes it again", "stream", s.stream, "path", s.path, "err", err)
	case ended && s.log != nil:
		s.log.Info("log writable again", "stream", s.stream, "path", s.path, "dropped_bytes", lost, "failed_for", time.Since(since).Round(time.Millisecond))
	}
}

// write writes b to the log and says whether anything was delivered (or
// tried): syslog may only buffer a partial line, which proves nothing about
// a failing log.
func (s *streamSink) write(b []byte) (n int, tried bool, err error) {
	if l, ok := s.w.(*lineWriter); ok {
		return l.write(b)
	}
	n, err = s.w.Write(b)
	return n, true, err
}

// failure is the current episode if the log is failing (nil otherwise),
// read without a lock.
func (s *streamSink) failure() *LogFailure {
	if s == nil {
		return nil
	}
	return s.now.Load()
}

func (s *streamSink) Close() error { return s.w.Close() }

// lostBytes is how many of the size bytes handed to a log that returned
// n, err were lost; a log that also lost bytes it had taken earlier (a
// partial syslog line) says how many in all with a lostError.
func lostBytes(err error, n, size int) int {
	var le *lostError
	if errors.As(err, &le) {
		return le.lost
	}
	return size - min(max(n, 0), size)
}

// lostError is a write error that lost lost bytes, some of them (held
// from earlier writes) beyond what the failed write handed over.
type lostError struct {
	err  error
	lost int
}

func (e *lostError) Error() string { return e.err.Error() }
func (e *lostError) Unwrap() error { return e.err }

// close closes the sinks, and the outputs' own Stdio if they made one
// (its poller goes on reading the pipes a grandchild still holds). It
// closes them outside o.mu: a sink's Close waits for a write in progress,
// which a hung disk may hold.
func (o *outputs) close() {
	o.mu.Lock()
	o.closed = true
	var cs []io.Closer
	for _, s := range []io.WriteCloser{o.sinks.stdout, o.sinks.stderr} {
		if s != nil && (len(cs) == 0 || cs[0] != s) { // stderr may share stdout's
			cs = append(cs, s)
		}
	}
	if o.own != nil {
		cs = append([]io.Closer{o.own}, cs...)
	}
	o.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// openLog opens a device log (/dev/stdout in a container), which the
// child writes directly: a symlink is followed there (/dev/stdout is one).
func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// rotator is a log file that rotates by size with supervisord's naming:
// when it reaches maxBytes, path.N-1 becomes path.N, …, path becomes
// path.1, and a new path is started; at most backups old files are kept.
type rotator struct {
	mu       sync.Mutex
	path     string
	maxBytes int64
	backups  int
	program  int      // the program's uid, which may own the log's directory (safefile.NoUser: none)
	f        *os.File // nil until the first write, and after Close
	size     int64
	closed   bool
	// spliced says f's O_APPEND is off, for splice(2), which refuses a
	// file opened to append: Write turns it on again before it writes.
	spliced bool
	// noSplice says f's file takes no splice (its filesystem, or an
	// append-only file): every byte goes through Write.
	noSplice bool
	// limits set while a write may be in progress, taken up by the
	// next write (setLimits must not wait for a hung disk).
	next atomic.Pointer[rotatorLimits]
}

type rotatorLimits struct {
	maxBytes int64
	backups  int
}

// newRotator makes a rotator; the file is opened at the first write, so a
// spawn never waits for a log file to be created.
func newRotator(path string, maxBytes int64, backups int) (*rotator, error) {
	return &rotator{path: path, maxBytes: maxBytes, backups: backups, program: safefile.NoUser}, nil
}

// setLimits changes the size limit and the number of backups; they apply
// from the next write. It does not wait for a write in progress.
func (r *rotator) setLimits(maxBytes int64, backups int) {
	r.next.Store(&rotatorLimits{maxBytes: maxBytes, backups: backups})
}

// takeLimits applies limits set since; called with r.mu held.
func (r *rotator) takeLimits() {
	if l := r.next.Swap(nil); l != nil {
		r.maxBytes, r.backups = l.maxBytes, l.backups
	}
}

// Reopen closes the file and opens the one at the path now (a new one if
// it was renamed away): what logrotate's postrotate asks for. If the open
// fails the next write tries again.
func (r *rotator) Reopen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return os.ErrClosed
	}
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	return r.open() // its error names the path
}

// resync learns the file's size again: a copytruncate rotation (or anyone
// truncating the file) makes the size counted so far too large, and the
// file would rotate early. Writes need no fixing: the file is opened with
// O_APPEND, so they go to its end whatever happened to it. Called with
// r.mu held, only when a write would rotate.
func (r *rotator) resync() {
	if fi, err := r.f.Stat(); err == nil && fi.Size() < r.size {
		r.size = fi.Size()
	}
}

// open opens (or creates) the file and learns its size; called with r.mu
// held. The file and its directory are checked every time (safefile): a
// symlink or a hard link planted at the path, or a directory another user
// can now change, fails the open, and the writes are counted as dropped.
func (r *rotator) open() error {
	f, err := safefile.OpenAppend(r.path, r.program)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size, r.spliced, r.noSplice = f, fi.Size(), false, false
	return nil
}

// spliceFrom moves the avail bytes that the pipe r holds into the file
// with splice(2), without reading them into the daemon, when Write would
// write them as they are: they fit before maxBytes (a cut at a line break
// must see the bytes; it is left to Write), the file is open or opens, and
// takes splices. ok false: nothing was moved, the bytes are for Write
// (which also meets and reports the error of a file that cannot be
// opened, or a full disk). n is what was moved; err is a rotation's
// after it, as Write's.
//
// The file is written at its size (fstat), not appended to (O_APPEND
// refuses splices): a copytruncate rotation is followed as with O_APPEND,
// unless the file is truncated between the fstat and the splice.
func (r *rotator) spliceFrom(pipe, avail int) (n int, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, false, nil
	}
	r.takeLimits()
	if r.f == nil && r.open() != nil {
		return 0, false, nil
	}
	if r.noSplice {
		return 0, false, nil
	}
	fd, err := RawFD(r.f)
	if err != nil {
		return 0, false, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, false, nil
	}
	if st.Size < r.size {
		r.size = st.Size // truncated (copytruncate): resync
	}
	if r.maxBytes > 0 && int64(avail) > r.maxBytes-r.size {
		return 0, false, nil
	}
	if !r.spliced {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_APPEND)
		}
		if err != nil { // an append-only file (chattr +a)
			r.noSplice = true
			return 0, false, nil
		}
		r.spliced = true
	}
	off := st.Size
	for n < avail {
		k, err := unix.Splice(pipe, nil, fd, &off, avail-n, unix.SPLICE_F_NONBLOCK)
		if err == unix.EINTR {
			continue
		}
		if k > 0 {
			n += int(k)
			r.size += k
		}
		if err != nil || k == 0 {
			if n == 0 && (err == unix.EINVAL || err == unix.ENOSYS || err == unix.EOPNOTSUPP) {
				r.noSplice = true
			}
			// Anything else (a full disk) shows again in Write, which
			// drops and counts the bytes.
			break
		}
	}
	if n == 0 {
		return 0, false, nil
	}
	if r.maxBytes > 0 && r.size >= r.maxBytes {
		return n, true, r.rotate()
	}
	return n, true, nil
}

// appending turns O_APPEND on again after splices; called with r.mu held.
func (r *rotator) appending() error {
	if !r.spliced {
		return nil
	}
	fd, err := RawFD(r.f)
	if err != nil {
		return err
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_APPEND)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", r.path, err)
	}
	r.spliced = false
	return nil
}

// Write appends b, rotating by size. The rules, which hold whatever the
// limit was when the file was opened or last written:
//   - no file is ever written past maxBytes: a file already at or over it
//     (left by a larger limit before a reload lowered it, or found at
//     start-up) rotates before anything is added to it;
//   - a file rotates as soon as it reaches maxBytes;
//   - a write that does not fit is cut after the last line break that
//     fits; when no line break fits and the file already holds data, the
//     file rotates first so the line starts a new file;
//   - a line longer than maxBytes is split into maxBytes pieces, so it
//     still goes out, one full file per piece;
//   - maxBytes <= 0 means no limit: the file is only appended to.
//
// Every byte of b lands in exactly one file, in order, unless an error is
// returned (written tells how many did).
func (r *rotator) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	written := 0
	if r.closed {
		return 0, os.ErrClosed
	}
	r.takeLimits()
	idle := 0 // rotations in a row that added nothing
	for len(b) > 0 {
		if r.f == nil {
			if err := r.open(); err != nil {
				return written, err
			}
		}
		chunk := b
		if r.maxBytes > 0 && int64(len(b)) > r.maxBytes-r.size {
			r.resync()
		}
		if r.maxBytes > 0 {
			room := r.maxBytes - r.size
			switch {
			case int64(len(b)) <= room:
			case room <= 0:
				chunk = nil
			default:
				chunk = b[:room]
				if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
					chunk = b[:i+1]
				} else if r.size > 0 {
					chunk = nil
				}
			}
		}
		if len(chunk) > 0 {
			if err := r.appending(); err != nil {
				return written, err
			}
			n, err := r.f.Write(chunk)
			written += n
			r.size += int64(n)
			b = b[n:]
			if err != nil {
				return written, err
			}
			idle = 0
		}
		if r.maxBytes > 0 && (r.size >= r.maxBytes || len(b) > 0) {
			// A fresh file is empty, so one rotation always makes room;
			// a second without progress means something else refills
			// the path, and looping on it would hold the child up.
			if idle++; idle > 1 {
				return written, fmt.Errorf("rotate %s: still %d bytes after rotation, limit %d", r.path, r.size, r.maxBytes)
			}
			if err := r.rotate(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (r *rotator) rotate() error {
	r.f.Close()
	r.f = nil
	// Renames follow no symlink (a planted path.N is moved or replaced,
	// never what it points to), but they are made only in a directory
	// that no other user can change.
	if err := safefile.Dir(filepath.Dir(r.path), r.program, false); err != nil {
		return fmt.Errorf("rotate %s: %w", r.path, err)
	}
	if r.backups > 0 {
		for i := r.backups - 1; i >= 1; i-- {
			_ = os.Rename(r.path+"."+strconv.Itoa(i), r.path+"."+strconv.Itoa(i+1))
		}
		if err := os.Rename(r.path, r.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate %s: %w", r.path, err)
		}
	} else if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate %s: %w", r.path, err)
	}
	r.removeExtraBackups()
	return r.open() // its error names the path
}

// removeExtraBackups removes path.N for every N above the backups kept: a
// reload or a restart that lowered the count leaves them otherwise for
// ever. It scans the directory rather than trusting a remembered count, so
// it also catches those of an earlier daemon. A file it cannot remove is
// left; the next rotation tries again.
func (r *rotator) removeExtraBackups() {
	dir, base := filepath.Split(r.path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || e.IsDir() {
			continue
		}
		if n, err := strconv.Atoi(suffix); err == nil && n > r.backups && strconv.Itoa(n) == suffix {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func (r *rotator) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// lineWriter hands complete lines to syslog, one message per line.
type lineWriter struct {
	mu  sync.Mutex
	w   *syslog.Writer
	buf []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	n, _, err := l.write(b)
	return n, err
}

// write sends every complete line of what it holds and b, and says
// whether it sent (or tried to send) anything. A line syslog refuses is
// lost, newline included: the error is a *lostError counting every byte
// lost (a partial line taken by an earlier write included), and n is what
// of b was not lost.
func (l *lineWriter) write(b []byte) (n int, tried bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	lost := 0
	send := func(msg []byte, size int) {
		tried = true
		if _, werr := l.w.Write(msg); werr != nil {
			lost += size
			err = werr
		}
	}
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		send(l.buf[:i], i+1)
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 8<<10 { // an endless line: flush it in pieces
		send(l.buf, len(l.buf))
		l.buf = l.buf[:0]
	}
	if err != nil {
		return len(b) - min(lost, len(b)), tried, &lostError{err: err, lost: lost}
	}
	return len(b), tried, nil
}

func (l *lineWriter) Close() error { return l.w.Close() }
