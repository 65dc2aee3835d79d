// Package logtail reads the end of a log file within a byte bound, from
// the end backwards, and says what it left out: what ctl tail, ctl tail
// -f and memmon's alert excerpts show. It uses only the standard library,
// so that the control API (and its clients) need nothing of the daemon.
package logtail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"
)

// Bounds of a tail: what `ctl tail`, `ctl tail -f` (per read) and memmon's
// alert excerpts show of a log.
const (
	// DefaultBytes is the most a tail holds unless asked for more.
	DefaultBytes = 64 << 10
	// MaxBytes is the most a tail may be asked to hold.
	MaxBytes = 4 << 20
	// maxScan bounds how far back from the end a tail reads to find
	// where the lines asked for begin, which only sizes the cut (the
	// marker then says "more than").
	maxScan = 64 << 20
	// chunkBytes is what one read takes: a tail's memory is this buffer
	// and what it returns.
	chunkBytes = 64 << 10
)

// A Tail is where the last lines of a file are and which of their bytes
// fit its limit.
type Tail struct {
	Start, End int64 // the bytes to show: [Start, End)
	// Cut is how many bytes of the lines asked for, before Start, are
	// left out; with CutAtLeast the lines begin further back than a tail
	// looks (maxScan) and Cut is only a lower bound.
	Cut        int64
	CutAtLeast bool
}

// Limit is limit as a tail's byte cap: DefaultBytes when limit <= 0,
// MaxBytes at most.
func Limit(limit int) int {
	if limit <= 0 {
		return DefaultBytes
	}
	return min(limit, MaxBytes)
}

// Find locates the last n lines (every line when n < 0) of the bytes
// [from, end) of r, of which it keeps at most limit bytes (see Limit):
// whole lines are left out from the front while they do not fit, and when
// even the last line does not, its front is cut, at a UTF-8 boundary. A
// final newline ends the last line; a missing one leaves it partial. It
// reads backwards in chunks of chunkBytes bytes, at most maxScan of them
// (plus what it keeps), and holds nothing it reads.
func Find(r io.ReaderAt, from, end int64, n, limit int) (Tail, error) {
	return find(r, from, end, n, limit, chunkBytes, maxScan)
}

// find is Find reading at most maxChunk bytes at a time, at most scan bytes
// back from end before the limit (tests make them small).
func find(r io.ReaderAt, from, end int64, n, limit int, maxChunk, scan int64) (Tail, error) {
	t := Tail{Start: end, End: end}
	if n == 0 || end <= from {
		return t, nil
	}
	low := max(from, end-int64(Limit(limit))) // the earliest byte that fits
	floor := max(from, min(end-scan, low-1))  // the earliest byte read: low-1 tells whether low starts a line
	start, startKnown := from, false          // where the lines asked for begin
	if n < 0 {
		// Every line: they begin at from; only the line starts at or
		// after low matter (a newline at low-1 makes low one).
		startKnown = true
		floor = max(from, low-1)
	}
	fit := end // the earliest line start at or after low seen so far
	need := n  // newlines still to find before the first line asked for
	pos := end // [pos, end) has been read
	// The first read is small: most tails are a few short lines.
	var buf []byte
	size := min(maxChunk, 4<<10)
scan:
	for pos > floor {
		off := max(floor, pos-size)
		if int64(cap(buf)) < pos-off {
			buf = make([]byte, min(size, pos-floor))
		}
		chunk := buf[:pos-off]
		if err := readFull(r, chunk, off); err != nil {
			return Tail{}, err
		}
		size = maxChunk
		hi := len(chunk)
		if pos == end && chunk[hi-1] == '\n' {
			hi-- // the last line's own newline
		}
		pos = off
		if n > 0 && off+int64(hi) < low {
			// Below the limit only the count of newlines matters.
			if c := bytes.Count(chunk[:hi], nl); c < need {
				need -= c
				continue
			}
		}
		for hi > 0 {
			i := bytes.LastIndexByte(chunk[:hi], '\n')
			if i < 0 {
				break
			}
			lineStart := off + int64(i) + 1
			if lineStart >= low {
				fit = lineStart
			} else if n < 0 {
				break scan
			}
			if n > 0 {
				if need--; need == 0 {
					start, startKnown = lineStart, true
					break scan
				}
			}
			hi = i
		}
	}
	if !startKnown && pos == from {
		start, startKnown = from, true // fewer than n lines
	}
	t.Start = fit
	if startKnown && start >= low {
		t.Start = start
	}
	if t.Start == end && low > from {
		// The last line alone is over the limit: keep its end, from a
		// rune's first byte (skipping at most three bytes: what is not
		// UTF-8 is cut where it is).
		t.Start = low
		var head [utf8.UTFMax - 1]byte
		k, err := r.ReadAt(head[:min(int64(len(head)), end-low)], low)
		if err != nil && !errors.Is(err, io.EOF) {
			return Tail{}, err
		}
		for i := 0; i < k && !utf8.RuneStart(head[i]); i++ {
			t.Start++
		}
	}
	if startKnown {
		t.Cut = t.Start - start
	} else {
		t.Cut, t.CutAtLeast = t.Start-floor, true
	}
	return t, nil
}

// TimeFormat is the time of a line, in `ctl tail --timestamps` and in a
// log written with log_timestamps: RFC 3339 with milliseconds, local time.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

var nl = []byte{'\n'}

// readFull fills b from r at off; a file that shrank under it is an error.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	k, err := r.ReadAt(b, off)
	if k == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read at %d: %w", off, err)
}

// Marker is the line that stands where a tail cut bytes: "[gosup: 9.9MB
// cut]"; empty when it cut nothing.
func (t Tail) Marker() string {
	if t.Cut <= 0 {
		return ""
	}
	more := ""
	if t.CutAtLeast {
		more = "more than "
	}
	return "[gosup: " + more + FormatBytes(t.Cut) + " cut]\n"
}

// Copy writes the marker, if any, and the bytes of the tail, read from r
// in chunks of at most chunkBytes.
func (t Tail) Copy(w io.Writer, r io.ReaderAt) (int64, error) {
	m, err := io.WriteString(w, t.Marker())
	if err != nil {
		return int64(m), err
	}
	k, err := io.CopyBuffer(w, io.NewSectionReader(r, t.Start, t.End-t.Start), make([]byte, min(chunkBytes, max(t.End-t.Start, 1))))
	return int64(m) + k, err
}

// Last finds the last n lines of f, at most limit bytes of them (see
// Find and Limit); none when f was truncated between its fstat and the
// read (copytruncate).
func Last(f *os.File, n, limit int) (Tail, error) {
	fi, err := f.Stat()
	if err != nil {
		return Tail{}, err
	}
	t, err := Find(f, 0, fi.Size(), n, limit)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return Tail{}, nil
	}
	return t, err
}

// Lines returns the last n lines of the file at path, at most limit
// bytes of them (see Last), after a marker line when it cut any. A last
// line without its newline gets one.
func Lines(path string, n, limit int) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := Last(f, n, limit)
	if err != nil {
		return nil, fmt.Errorf("tail %s: %w", path, err)
	}
	out := make([]byte, 0, len(t.Marker())+int(t.End-t.Start)+1)
	out = append(out, t.Marker()...)
	body := out[len(out) : len(out)+int(t.End-t.Start)]
	if err := readFull(f, body, t.Start); err != nil {
		return nil, fmt.Errorf("tail %s: %w", path, err)
	}
	out = out[:len(out)+len(body)]
	if len(body) > 0 && body[len(body)-1] != '\n' {
		out = append(out, '\n')
	}
	return out, nil
}

// Open opens a log file to read it (ctl tail, alert excerpts) as the
// daemon writes it: never through a symlink at its path, never blocking on
// a FIFO, and only a regular file. In a log directory that belongs to the
// program's user, that user could otherwise have ctl tail or an alert mail
// show a file of root's (app.log -> /etc/shadow).
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("open %s: it is a symbolic link; gosup reads a log only at its own path", path)
	}
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("open %s: not a regular file (%s)", path, fi.Mode().Type())
		}
		return nil, err
	}
	return f, nil
}

// FormatBytes writes n as 512B, 64.0KB, 9.9MB or 1.2GB (1024-based).
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + "GB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "MB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + "KB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseLimit reads a tail's byte cap as an operator writes it: "4096",
// "64KB", "1MB" (1024-based), from 1 byte to MaxBytes.
func ParseLimit(s string) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 1 || n > MaxBytes/mult {
		return 0, fmt.Errorf("%q: want 1 to %s: a number of bytes, or one with KB or MB", s, SizeString(MaxBytes))
	}
	return n * mult, nil
}

// SizeString writes n as ParseLimit reads it: 64KB, 4MB, 1000.
func SizeString(n int) string {
	switch {
	case n != 0 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MB"
	case n != 0 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KB"
	}
	return strconv.Itoa(n)
}
