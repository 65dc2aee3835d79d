package procgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/safefile"
	"golang.org/x/sys/unix"
)

// outputs owns where one process's stdout and stderr go, across spawns.
// A device (/dev/stdout in a container) is handed to the child directly;
// a log file or syslog gets a pipe and a copier goroutine per spawn,
// writing into a sink that lives as long as the process slot, so that
// the file can be rotated by size, reopened at its path after an external
// rotation (ReopenLogs), and every byte a failing disk refuses is counted.
type outputs struct {
	spec  *ProcSpec
	guard *guard.Guard // starts the copiers; set by the owner goroutine before files
	drops *logDrops    // bytes of output lost (the process's counters, across outputs)
	log   *slog.Logger

	// syslogAddr, when set (by tests), is the unix datagram socket that
	// stands for the local syslog; empty: the system's (/dev/log).
	syslogAddr string

	// The streams' sinks again, for status: read without o.mu, which
	// may be held while a sink is created (see failures).
	stdoutSink, stderrSink atomic.Pointer[streamSink]

	// mu is never held across a call into a sink: a sink's writer may
	// be stuck on a hung disk, and status must not wait for it.
	mu      sync.Mutex
	sinks   map[string]io.WriteCloser // stream → *streamSink (tests may plant others)
	devnull *os.File
	closed  bool
	// copiers are the live log copiers: this spawn's, and an earlier
	// spawn's whose pipe a grandchild still holds open.
	copiers map[*copier]struct{}
}

// copier is one goroutine copying one pipe into a stream's sink.
type copier struct {
	stream string
	r      *os.File
	// inFlight is what the copier has read and the sink not yet taken.
	inFlight atomic.Int64
	// mu is the outputs' mu, which guards handOff and kept.
	mu *sync.Mutex
	// handOff says the copier is being stopped for a handover: r stays
	// open, for the next image.
	handOff bool
	// kept says the copier has stopped (or is stopping) for a handover,
	// leaving r open: decided once, under mu, so that a handover undone
	// meanwhile (resumeCopiers) knows whether to start a copier again.
	kept bool
	done chan struct{}
	// st stamps the lines (log_timestamps), nil when off.
	st *stamper
}

// mid reports whether the copier's log holds the start of a line the
// child has not ended (log_timestamps).
func (c *copier) mid() bool { return c.st != nil && c.st.mid.Load() }

// stopping reports whether a read deadline means a handover stops the
// copier (otherwise it was a handover undone: read on). A true answer is
// final: the copier returns and leaves r open.
func (c *copier) stopping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handOff {
		c.kept = true
	}
	return c.kept
}

// wasKept reports whether the copier stopped for a handover, r left open.
func (c *copier) wasKept() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kept
}

// logDrops counts the bytes of one process's output that reached no log,
// per stream (stderr redirected to stdout counts as stdout).
type logDrops struct{ stdout, stderr atomic.Int64 }

func (d *logDrops) of(stream string) *atomic.Int64 {
	if stream == "stderr" {
		return &d.stderr
	}
	return &d.stdout
}

func newOutputs(spec *ProcSpec, drops *logDrops, log *slog.Logger) *outputs {
	return &outputs{spec: spec, drops: drops, log: log, sinks: map[string]io.WriteCloser{}, copiers: map[*copier]struct{}{}}
}

// files returns stdin, stdout and stderr for a spawn and a func that closes
// the parent's copies once the child has them.
func (o *outputs) files() ([]*os.File, func(), error) {
	var opened []*os.File
	cleanup := func() {
		for _, f := range opened {
			f.Close()
		}
	}
	devnull, err := o.nullFile()
	if err != nil {
		return nil, nil, err
	}
	// The program's user may own its logs' directory (see safefile):
	// looked up once a spawn, for both streams.
	program := safefile.ProgramUser(o.spec.User)
	stdout, err := o.stream("stdout", o.spec.Stdout, program, &opened)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	stderr := stdout
	if !o.spec.Program.RedirectStderr {
		if stderr, err = o.stream("stderr", o.spec.Stderr, program, &opened); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	return []*os.File{devnull, stdout, stderr}, cleanup, nil
}

// nullFile is /dev/null opened read-write once for the slot's lifetime:
// stdin of every spawn, and stdout or stderr when they go nowhere.
func (o *outputs) nullFile() (*os.File, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.devnull == nil {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		o.devnull = f
	}
	return o.devnull, nil
}

func (o *outputs) stream(name string, ls LogSpec, program int, opened *[]*os.File) (*os.File, error) {
	switch {
	case ls.Kind == LogNone:
		return o.nullFile()
	case ls.Device():
		f, err := openLog(ls.Path)
		if err != nil {
			return nil, fmt.Errorf("%s_logfile: %w", name, err)
		}
		*opened = append(*opened, f)
		return f, nil
	}
	if ls.Kind == LogFile {
		// A log directory another user could change refuses the start
		// (the error names it, its owner and mode); one that becomes so
		// later fails that log's writes, counted (see safefile).
		if err := safefile.Dir(filepath.Dir(ls.Path), program, true); err != nil {
			return nil, fmt.Errorf("%s_logfile: %w", name, err)
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
	*opened = append(*opened, w)
	o.startCopier(name, sink, r, false)
	return w, nil
}

// startCopier copies r into sink on a goroutine until every writer has
// closed r, or a handover stops it. mid says the log holds the start of a
// line (log_timestamps: the copier it takes over from stamped it).
func (o *outputs) startCopier(name string, sink io.Writer, r *os.File, mid bool) {
	c := &copier{stream: name, r: r, mu: &o.mu, done: make(chan struct{})}
	// log_timestamps: a stamp before each line this spawn writes to a
	// file (syslog stamps its messages itself).
	if o.spec.Program.LogTimestamps && rotatorOf(sink) != nil {
		c.st = newStamper(sink)
		c.st.mid.Store(mid)
		sink = c.st
	}
	st := c.st
	o.mu.Lock()
	o.copiers[c] = struct{}{}
	o.mu.Unlock()
	finish := func() {
		o.mu.Lock()
		delete(o.copiers, c)
		kept := c.kept
		o.mu.Unlock()
		if !kept {
			r.Close()
		}
		close(c.done)
	}
	// A copier that panics must not leave the child writing into a full
	// pipe (it would block) or a closed one (SIGPIPE kills most
	// programs): it keeps reading and discards, counting the bytes, until
	// the child and its descendants close their ends. The next spawn gets
	// a copier of its own.
	dropped := o.drops.of(name)
	o.guard.With("process", o.spec.FullName(), "stream", name).Go("log copier",
		"the rest of that spawn's output is discarded (counted in its status) until it respawns",
		func() {
			copyOut(sink, r, dropped, c)
			if st != nil && !c.wasKept() {
				st.end()
			}
			finish()
		},
		func() {
			discard(r, dropped, c)
			finish()
		})
}

// childPipe makes a pipe whose write end stays blocking (the child's
// stdout must not return EAGAIN) and outside the poller, and whose read end
// is non-blocking so that reading parks a goroutine, not a thread.
func childPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	// A bigger pipe lets a fast writer run ahead of the copier; best effort.
	_, _ = unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20)
	if err := unix.SetNonblock(p[0], true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, err
	}
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// Copy buffers: an idle stream holds a small one; a stream that fills it
// borrows a large one for as long as the burst lasts.
const (
	smallBuf = 4 << 10
	largeBuf = 128 << 10
)

var largeBufs = sync.Pool{New: func() any { return new([largeBuf]byte) }}

// copyOut copies a child's output into sink until every writer has closed
// the pipe (the child and any grandchild that inherited it); what the sink
// does not take is counted in dropped.
//
// A read deadline in the past stops it (a handover), with nothing read
// left unwritten.
func copyOut(sink io.Writer, r *os.File, dropped *atomic.Int64, c *copier) {
	inFlight := &c.inFlight
	small := make([]byte, smallBuf)
	buf := small
	var large *[largeBuf]byte
	defer func() {
		dropped.Add(inFlight.Swap(0)) // lost to a panicking sink
		if large != nil {
			largeBufs.Put(large)
		}
	}()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			// A failing sink (disk full) must not stall the child: the
			// bytes are dropped, counted, and reading goes on.
			inFlight.Store(int64(n))
			if w, err := sink.Write(buf[:n]); err != nil {
				dropped.Add(int64(lostBytes(err, w, n)))
			}
			inFlight.Store(0)
		}
		if err != nil && !(errors.Is(err, os.ErrDeadlineExceeded) && !c.stopping()) {
			return
		}
		switch {
		case large == nil && n == len(buf):
			large = largeBufs.Get().(*[largeBuf]byte)
			buf = large[:]
		case large != nil && n < smallBuf:
			largeBufs.Put(large)
			large, buf = nil, small
		}
	}
}

// discard reads r until every writer has closed it, counting the bytes.
func discard(r *os.File, dropped *atomic.Int64, c *copier) {
	buf := make([]byte, smallBuf)
	for {
		n, err := r.Read(buf)
		dropped.Add(int64(n))
		if err != nil && !(errors.Is(err, os.ErrDeadlineExceeded) && (c == nil || !c.stopping())) {
			return
		}
	}
}

func (o *outputs) sink(name string, ls LogSpec, program int) (io.Writer, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, errors.New("outputs closed")
	}
	if s, ok := o.sinks[name]; ok {
		return s, nil
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
	o.sinks[name] = ss
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
	for name, ls := range map[string]LogSpec{"stdout": spec.Stdout, "stderr": spec.Stderr} {
		if r := rotatorOf(o.sinks[name]); r != nil {
			rs[r] = ls
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
		if r := rotatorOf(o.sinks[name]); r != nil && !o.closed {
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
	log    *slog.Logger

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
}

func (s *streamSink) Write(b []byte) (int, error) {
	n, tried, err := s.write(b)
	s.mu.Lock()
	var started, ended bool
	lost, since := s.lost, s.since
	switch {
	case err != nil:
		if !s.failing {
			s.failing, s.since, s.lost, started = true, time.Now(), 0, true
		}
		s.lastErr = err.Error()
		s.lost += int64(lostBytes(err, n, len(b)))
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
	return n, err
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

// close closes the sinks and /dev/null. It closes them outside o.mu: a
// sink's Close waits for a write in progress, which a hung disk may hold.
func (o *outputs) close() {
	o.mu.Lock()
	o.closed = true
	var cs []io.Closer
	for _, s := range o.sinks {
		cs = append(cs, s)
	}
	if o.devnull != nil {
		cs = append(cs, o.devnull)
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
	r.f, r.size = f, fi.Size()
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
