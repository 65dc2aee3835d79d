package procgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gosup/gosup/procgroup/guard"
	"golang.org/x/sys/unix"
)

// outputs owns where one process's stdout and stderr go, across spawns.
// A file without rotation is handed to the child directly (the child's
// writes go straight to the page cache); a rotated file or syslog gets a
// pipe and a copier goroutine per spawn, writing into a sink that lives as
// long as the process slot.
type outputs struct {
	spec    *ProcSpec
	guard   *guard.Guard  // starts the copiers; set by the owner goroutine before files
	dropped *atomic.Int64 // bytes of output lost (the process's counter, across outputs)

	mu      sync.Mutex
	sinks   map[string]io.WriteCloser // stream → rotator or syslog writer
	devnull *os.File
	closed  bool
}

func newOutputs(spec *ProcSpec, dropped *atomic.Int64) *outputs {
	return &outputs{spec: spec, dropped: dropped, sinks: map[string]io.WriteCloser{}}
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
	stdout, err := o.stream("stdout", o.spec.Stdout, &opened)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	stderr := stdout
	if !o.spec.Program.RedirectStderr {
		if stderr, err = o.stream("stderr", o.spec.Stderr, &opened); err != nil {
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

func (o *outputs) stream(name string, ls LogSpec, opened *[]*os.File) (*os.File, error) {
	switch {
	case ls.Kind == LogNone:
		return o.nullFile()
	case ls.Kind == LogFile && ls.MaxBytes == 0:
		f, err := openLog(ls.Path)
		if err != nil {
			return nil, fmt.Errorf("%s_logfile: %w", name, err)
		}
		*opened = append(*opened, f)
		return f, nil
	}
	sink, err := o.sink(name, ls)
	if err != nil {
		return nil, err
	}
	r, w, err := childPipe()
	if err != nil {
		return nil, fmt.Errorf("%s pipe: %w", name, err)
	}
	*opened = append(*opened, w)
	// A copier that panics must not leave the child writing into a full
	// pipe (it would block) or a closed one (SIGPIPE kills most
	// programs): it keeps reading and discards, counting the bytes, until
	// the child and its descendants close their ends. The next spawn gets
	// a copier of its own.
	o.guard.With("process", o.spec.FullName(), "stream", name).Go("log copier",
		"the rest of that spawn's output is discarded (counted in its status) until it respawns",
		func() {
			copyOut(sink, r, o.dropped)
			r.Close()
		},
		func() {
			discard(r, o.dropped)
			r.Close()
		})
	return w, nil
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
func copyOut(sink io.Writer, r *os.File, dropped *atomic.Int64) {
	small := make([]byte, smallBuf)
	buf := small
	var large *[largeBuf]byte
	inFlight := 0 // bytes handed to a sink that has not returned
	defer func() {
		dropped.Add(int64(inFlight)) // lost to a panicking sink
		if large != nil {
			largeBufs.Put(large)
		}
	}()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			// A failing sink (disk full) must not stall the child: the
			// bytes are dropped, counted, and reading goes on.
			inFlight = n
			if w, err := sink.Write(buf[:n]); err != nil {
				dropped.Add(int64(n - min(max(w, 0), n)))
			}
			inFlight = 0
		}
		if err != nil {
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
func discard(r *os.File, dropped *atomic.Int64) {
	buf := make([]byte, smallBuf)
	for {
		n, err := r.Read(buf)
		dropped.Add(int64(n))
		if err != nil {
			return
		}
	}
}

func (o *outputs) sink(name string, ls LogSpec) (io.Writer, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, errors.New("outputs closed")
	}
	if s, ok := o.sinks[name]; ok {
		return s, nil
	}
	var s io.WriteCloser
	if ls.Kind == LogSyslog {
		prio := syslog.LOG_INFO
		if name == "stderr" {
			prio = syslog.LOG_ERR
		}
		w, err := syslog.New(prio|syslog.LOG_DAEMON, o.spec.FullName())
		if err != nil {
			return nil, fmt.Errorf("%s_logfile = syslog: %w", name, err)
		}
		s = &lineWriter{w: w}
	} else {
		r, err := newRotator(ls.Path, int64(ls.MaxBytes), ls.Backups)
		if err != nil {
			return nil, fmt.Errorf("%s_logfile: %w", name, err)
		}
		s = r
	}
	o.sinks[name] = s
	return s, nil
}

// setSpec applies a new spec's log limits to the open rotators; the
// destinations themselves change only with a new outputs.
func (o *outputs) setSpec(spec *ProcSpec) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.spec = spec
	for name, ls := range map[string]LogSpec{"stdout": spec.Stdout, "stderr": spec.Stderr} {
		if r, ok := o.sinks[name].(*rotator); ok {
			r.setLimits(int64(ls.MaxBytes), ls.Backups)
		}
	}
}

func (o *outputs) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	for _, s := range o.sinks {
		s.Close()
	}
	if o.devnull != nil {
		o.devnull.Close()
	}
}

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
	f        *os.File // nil until the first write, and after Close
	size     int64
	closed   bool
}

// newRotator makes a rotator; the file is opened at the first write, so a
// spawn never waits for a log file to be created.
func newRotator(path string, maxBytes int64, backups int) (*rotator, error) {
	return &rotator{path: path, maxBytes: maxBytes, backups: backups}, nil
}

// setLimits changes the size limit and the number of backups; they apply
// from the next write.
func (r *rotator) setLimits(maxBytes int64, backups int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxBytes, r.backups = maxBytes, backups
}

// open opens (or creates) the file and learns its size; called with r.mu held.
func (r *rotator) open() error {
	f, err := openLog(r.path)
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
	idle := 0 // rotations in a row that added nothing
	for len(b) > 0 {
		if r.f == nil {
			if err := r.open(); err != nil {
				return written, err
			}
		}
		chunk := b
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
	if err := r.open(); err != nil {
		return fmt.Errorf("reopen %s: %w", r.path, err)
	}
	return nil
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
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = l.w.Write(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 8<<10 { // an endless line: flush it in pieces
		_, _ = l.w.Write(l.buf)
		l.buf = l.buf[:0]
	}
	return len(b), nil
}

func (l *lineWriter) Close() error { return l.w.Close() }

// TailLines returns at most the last n lines of the file at path.
func TailLines(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	const chunk = 64 << 10
	size := fi.Size()
	var data []byte
	for off := size; off > 0 && bytes.Count(data, []byte{'\n'}) <= n; {
		step := min(int64(chunk), off)
		off -= step
		b := make([]byte, step)
		if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		data = append(b, data...)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), len(data)+1)
	var lines [][]byte
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var out bytes.Buffer
	for _, l := range lines {
		out.Write(l)
		out.WriteByte('\n')
	}
	return out.Bytes(), nil
}
