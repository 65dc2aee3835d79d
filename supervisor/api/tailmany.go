package api

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gosup/gosup/logtail"
)

// TailLog is one log a tail reads: a process's stream, by the process's
// name.
type TailLog struct {
	Name string
	Path string
}

// DaemonLogName is the name the daemon's own log goes by among the logs of
// a tail (a process's name always has a colon).
const DaemonLogName = "gosup"

// multiTail is one request's tail of several logs (and of the daemon's own
// log): every log is read by this one goroutine, into one buffer, and
// written as whole lines, each prefixed as asked.
type multiTail struct {
	r     *http.Request
	dw    *deadlineWriter
	lw    *lineWriter
	files []*tailFile
	ring  *ringTail
	limit int    // bytes per log per read
	buf   []byte // the reads' buffer, shared by every log
	now   time.Time
	// stamp is the time of the lines being written (-t): mt.now for
	// those read live, a record's own for the daemon's log, zero (not
	// known: "-") for the lines of a file from before the tail began.
	stamp time.Time
	polls int // polls so far: the paths are checked for rotation every fourth
}

// tailFile is one log file of a multiTail.
type tailFile struct {
	TailLog
	f        *os.File // nil: not there (yet)
	fd       int      // f's
	dev, ino uint64   // f's, to tell a file renamed over its path
	off      int64    // what has been read of f
	lines    lineSplitter
	emit     emitFunc // writes its lines
}

// setFile makes f (nil: none) the log's file, read from its start.
func (tf *tailFile) setFile(f *os.File) {
	tf.f, tf.off, tf.dev, tf.ino = f, 0, 0, 0
	if f == nil {
		return
	}
	tf.fd = int(f.Fd()) // a regular file: it is not in the poller
	var st syscall.Stat_t
	if syscall.Fstat(tf.fd, &st) == nil {
		tf.dev, tf.ino = uint64(st.Dev), st.Ino
	}
}

// ringTail is the daemon's own log in a multiTail.
type ringTail struct {
	ring  *logtail.Ring
	next  uint64 // the next record to read
	lines lineSplitter
	emit  emitFunc
}

// tailMany serves a tail of the logs that the patterns p (stream's of
// each matching process) and daemon=1 (the daemon's own log) name. One
// log without prefix or timestamps is served as tail serves it, byte for
// byte; otherwise each line goes whole, at most MaxLineBytes of it, after
// its log's name (prefix=1, the default for more than one log) and the
// time it was read (timestamps=1). With follow=1 every log is followed by
// this one request, the set of logs fixed when it begins.
func (s server) tailMany(w http.ResponseWriter, r *http.Request, n, limit int) {
	q := r.URL.Query()
	var logs []TailLog
	var notes []string
	if patterns := q["p"]; len(patterns) > 0 {
		var err error
		if logs, notes, err = s.d.TailLogs(patterns, q.Get("stream")); err != nil {
			// With the daemon's log: that one alone, and the notes.
			if !errors.As(err, new(noLogFile)) || q.Get("daemon") != "1" {
				writeErr(w, err)
				return
			}
			logs = nil
		}
	}
	var ring *logtail.Ring
	if q.Get("daemon") == "1" {
		if ring = s.d.DaemonLog(); ring == nil {
			writeErr(w, NotFound(errors.New("this daemon keeps no log of its own in memory")))
			return
		}
	}
	sources := len(logs)
	if ring != nil {
		sources++
	}
	if sources == 0 {
		writeErr(w, Invalid(errors.New("nothing to tail: give a pattern such as web:web_00, web:*, web or all, or ask for the daemon's log")))
		return
	}
	prefix := sources > 1
	switch q.Get("prefix") {
	case "1":
		prefix = true
	case "0":
		prefix = false
	}
	timestamps := q.Get("timestamps") == "1"
	for _, note := range notes {
		w.Header().Add(WarningHeader, note)
	}
	if len(logs) == 1 && ring == nil && !prefix && !timestamps {
		s.tailFile(w, r, logs[0].Name, q.Get("stream"), logs[0].Path, n, limit)
		return
	}
	if len(logs) > 0 {
		release, err := s.tails.take(len(logs))
		if err != nil {
			writeErr(w, err)
			return
		}
		defer release()
	}
	mt := &multiTail{r: r, limit: limit, now: time.Now()}
	defer func() {
		for _, tf := range mt.files {
			if tf.f != nil {
				tf.f.Close()
			}
		}
	}()
	width := 0
	for _, l := range logs {
		// A log not written yet is an empty one; one that cannot be
		// read is said so, and left out.
		f, err := logtail.Open(l.Path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			if sources == 1 {
				writeErr(w, err)
				return
			}
			w.Header().Add(WarningHeader, fmt.Sprintf("%s: %v; not tailed", l.Name, err))
			continue
		}
		tf := &tailFile{TailLog: l, lines: lineSplitter{max: MaxLineBytes}}
		tf.setFile(f)
		tf.emit = mt.emitter(l.Name)
		mt.files = append(mt.files, tf)
		width = max(width, len(l.Name))
	}
	if ring != nil {
		mt.ring = &ringTail{ring: ring, lines: lineSplitter{max: MaxLineBytes}, emit: mt.emitter(DaemonLogName)}
		width = max(width, len(DaemonLogName))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	dw, done := newDeadlineWriter(w, r)
	defer done()
	mt.dw = dw
	mt.lw = &lineWriter{w: dw, prefix: prefix, width: width, timestamps: timestamps}
	mt.buf = make([]byte, 32<<10)
	err := mt.first(n, Follows(r))
	if err == nil && Follows(r) {
		err = mt.follow()
	}
	if err != nil && (timedOut(err) || r.Context().Err() == nil) {
		var names []string
		for _, tf := range mt.files {
			names = append(names, tf.Name)
		}
		if ring != nil {
			names = append(names, DaemonLogName)
		}
		what := strings.Join(names[:min(len(names), 3)], " ")
		if len(names) > 3 {
			what += fmt.Sprintf(" and %d more", len(names)-3)
		}
		if timedOut(err) {
			logf(r, "control socket: tail of %s (%s): the client took no bytes for %s; dropped", what, cmp.Or(q.Get("stream"), "stdout"), dw.d)
		} else {
			logf(r, "control socket: tail of %s (%s) ended: %v", what, cmp.Or(q.Get("stream"), "stdout"), err)
		}
	}
}

// first writes the last n lines of every log, log by log; without follow
// a last line without its newline is written too.
func (mt *multiTail) first(n int, follow bool) error {
	for _, tf := range mt.files {
		if tf.f == nil {
			continue
		}
		t, err := logtail.Last(tf.f, n, mt.limit)
		if err != nil {
			return fmt.Errorf("tail %s: %w", tf.Path, err)
		}
		if err := mt.marker(tf.Name, t); err != nil {
			return err
		}
		if err := mt.feed(tf, t.Start, t.End); err != nil {
			return err
		}
		if !follow {
			if err := tf.lines.flush(tf.emit); err != nil {
				return err
			}
		}
	}
	if rt := mt.ring; rt != nil {
		recs, next := rt.ring.Last(n)
		if over, overBytes := rt.ring.Overwritten(); over > 0 && (n < 0 || n > len(recs)) {
			line := fmt.Sprintf("[gosup: %d earlier records (%s) of the daemon's log were overwritten in memory]", over, logtail.FormatBytes(overBytes))
			if err := mt.lw.line(DaemonLogName, []byte(line), 0, time.Time{}); err != nil {
				return err
			}
		}
		rt.next = next
		if err := mt.records(rt, recs); err != nil {
			return err
		}
	}
	if err := mt.lw.flush(); err != nil {
		return err
	}
	return mt.dw.Flush()
}

// emitter writes the lines of the log name, stamped with mt.stamp.
func (mt *multiTail) emitter(name string) emitFunc {
	return func(line []byte, cut int64) error { return mt.lw.line(name, line, cut, mt.stamp) }
}

// marker writes the line that says what a read of a log left out, if it
// did.
func (mt *multiTail) marker(name string, t logtail.Tail) error {
	m := t.Marker()
	if m == "" {
		return nil
	}
	return mt.lw.line(name, []byte(m[:len(m)-1]), 0, mt.stamp)
}

// feed reads [from, to) of a log into its lines, and sets the log's
// offset past it. A file that holds less than to by the read was truncated
// under it (copytruncate between the fstat and the read): what was read
// goes out, the line begun with it too, and the next poll reads the file
// from its start.
func (mt *multiTail) feed(tf *tailFile, from, to int64) error {
	for from < to {
		b := mt.buf[:min(int64(len(mt.buf)), to-from)]
		k, err := tf.f.ReadAt(b, from)
		if k > 0 {
			if err := tf.lines.feed(b[:k], mt.now, tf.emit); err != nil {
				return err
			}
			from += int64(k)
		}
		if k < len(b) {
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read %s at %d: %w", tf.Path, from, err)
			}
			return mt.truncated(tf)
		}
	}
	tf.off = to
	return nil
}

// truncated starts tf again at its file's start: the line begun goes out
// as it is.
func (mt *multiTail) truncated(tf *tailFile) error {
	tf.off = 0
	return tf.lines.flush(tf.emit)
}

// records writes records of the daemon's log, each stamped with its own
// time.
func (mt *multiTail) records(rt *ringTail, recs [][]byte) error {
	live := mt.stamp
	defer func() { mt.stamp = live }()
	for _, rec := range recs {
		mt.stamp = recordTime(rec)
		if err := rt.lines.feed(rec, mt.now, rt.emit); err != nil {
			return err
		}
	}
	return nil
}

// recordTime is the time a record of the daemon's log says it was
// written (log/slog's text: "time=2026-11-30T07:51:25.123Z ..."); zero
// when it says none.
func recordTime(rec []byte) time.Time {
	v, ok := bytes.CutPrefix(rec, []byte("time="))
	if !ok {
		return time.Time{}
	}
	if i := bytes.IndexByte(v, ' '); i >= 0 {
		v = v[:i]
	}
	t, err := time.Parse(time.RFC3339Nano, string(v))
	if err != nil {
		return time.Time{}
	}
	return t.Local()
}

// follow writes what every log gets appended, whole lines, checking four
// times a second (as tail -F), until the client goes away or a write fails
// (a client that stops reading: the writer's deadline), which it returns.
// A log renamed away (rotation) is read to its end, then followed at its
// path from its start; one truncated (copytruncate), from its start.
func (mt *multiTail) follow() error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-mt.r.Context().Done():
			return nil
		case <-tick.C:
		}
		mt.now = time.Now()
		mt.stamp = mt.now
		mt.polls++
		for _, tf := range mt.files {
			if err := mt.poll(tf); err != nil {
				return err
			}
		}
		if rt := mt.ring; rt != nil {
			recs, next, missed := rt.ring.Since(rt.next)
			if missed > 0 {
				line := "[gosup: " + strconv.FormatUint(missed, 10) + " records of the daemon's log overwritten before they were sent]"
				if err := mt.lw.line(DaemonLogName, []byte(line), 0, mt.now); err != nil {
					return err
				}
			}
			rt.next = next
			if err := mt.records(rt, recs); err != nil {
				return err
			}
		}
		if len(mt.lw.buf) > 0 || mt.lw.wrote {
			if err := mt.lw.flush(); err != nil {
				return err
			}
			mt.lw.wrote = false
			if err := mt.dw.Flush(); err != nil {
				return err
			}
		}
	}
}

// poll reads what one log got since the last poll. Every fourth poll
// (once a second) it checks whether its path names another file
// (rotated): the old one is read to its end, then the new one from its
// start. No allocation when nothing was appended.
func (mt *multiTail) poll(tf *tailFile) error {
	if tf.f == nil || mt.polls%4 == 0 {
		var st syscall.Stat_t
		if err := syscall.Stat(tf.Path, &st); err == nil && (tf.f == nil || uint64(st.Dev) != tf.dev || st.Ino != tf.ino) {
			if tf.f != nil {
				if err := mt.send(tf); err != nil {
					return err
				}
				tf.f.Close()
				// The old file's last line is all there is of it.
				if err := tf.lines.flush(tf.emit); err != nil {
					return err
				}
			}
			nf, err := logtail.Open(tf.Path)
			if err != nil {
				nf = nil
			}
			tf.setFile(nf)
		}
	}
	if tf.f != nil {
		if err := mt.send(tf); err != nil {
			return err
		}
	}
	if pending, since := tf.lines.pending(); pending && mt.now.Sub(since) >= partialWait {
		return tf.lines.flush(tf.emit)
	}
	return nil
}

// send reads what tf.f holds past what was read, at most mt.limit of it
// (a marker line stands for the rest).
func (mt *multiTail) send(tf *tailFile) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(tf.fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", tf.Path, err)
	}
	size := st.Size
	if size < tf.off {
		// Truncated (copytruncate): start again at its beginning.
		if err := mt.truncated(tf); err != nil {
			return err
		}
	}
	if size == tf.off {
		return nil
	}
	t, err := logtail.Find(tf.f, tf.off, size, -1, mt.limit)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// Truncated since the fstat: the next poll starts again.
		return mt.truncated(tf)
	}
	if err != nil {
		return fmt.Errorf("tail %s: %w", tf.Path, err)
	}
	if t.Cut > 0 {
		if err := tf.lines.flush(tf.emit); err != nil {
			return err
		}
		if err := mt.marker(tf.Name, t); err != nil {
			return err
		}
	}
	return mt.feed(tf, t.Start, t.End)
}

// tailBudget bounds the log files open for tails, all requests together:
// each log a tail follows holds a descriptor (and up to MaxLineBytes of a
// line begun) for as long as it runs, and scripted tails of every log
// must not take the descriptors the processes' spawns need.
type tailBudget struct {
	mu      sync.Mutex
	max     int
	files   int   // open now
	tails   int   // the tails holding them
	refused int64 // tails refused since the start
}

// DefaultTailFiles is the bound of the log files open for tails: a
// quarter of the descriptors the daemon may open (RLIMIT_NOFILE), at most
// 4,096, so that spawning always keeps the rest.
func DefaultTailFiles() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 256
	}
	return int(min(4096, max(rl.Cur/4, 16)))
}

// take reserves n files for a tail, or refuses it (503) when they would
// go past the bound; release gives them back.
func (b *tailBudget) take(n int) (release func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.files+n > b.max {
		b.refused++
		tails := "tails"
		if b.tails == 1 {
			tails = "tail"
		}
		return nil, Unavailable(fmt.Errorf("%d log files are open for %d %s already, and this one needs %d: at most %d at once, the descriptors the processes need are kept; end a ctl tail -f, or tail fewer processes", b.files, b.tails, tails, n, b.max))
	}
	b.files += n
	b.tails++
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.files -= n
		b.tails--
	}, nil
}

// count puts the budget's figures in info.
func (b *tailBudget) count(info *Info) {
	b.mu.Lock()
	defer b.mu.Unlock()
	info.TailFiles, info.Tails, info.TailFilesMax, info.TailsRefused = b.files, b.tails, b.max, b.refused
}
