package api

import (
	"bytes"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gosup/gosup/logtail"
)

// MaxLineBytes bounds a line of a prefixed tail (ctl tail of several
// processes, or with --timestamps): the rest of a longer line is left out,
// and a marker at its end says how much.
const MaxLineBytes = 16 << 10

// partialWait is how long a line begun and not ended is held before it is
// sent as it is (a prompt, a progress bar): the rest then comes as a line
// of its own.
const partialWait = time.Second

// lineSplitter cuts one log's bytes into whole lines. It holds the line
// begun and not yet ended, at most max bytes of it; what is past max is
// counted, not held.
type lineSplitter struct {
	max   int
	part  []byte    // the line begun, at most max bytes
	cut   int64     // bytes of that line left out
	since time.Time // when it began
}

// emitFunc takes one line, without its newline, and the bytes cut from
// its end.
type emitFunc func(line []byte, cut int64) error

// feed splits b into lines, emitting each one ended; the rest is held
// (within the bound) for the next feed. now is when b was read.
func (s *lineSplitter) feed(b []byte, now time.Time, emit emitFunc) error {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.hold(b, now)
			return nil
		}
		line := b[:i]
		b = b[i+1:]
		if len(s.part) == 0 && s.cut == 0 && len(line) <= s.max {
			if err := emit(line, 0); err != nil {
				return err
			}
			continue
		}
		s.hold(line, now)
		if err := s.flush(emit); err != nil {
			return err
		}
	}
	return nil
}

// hold adds b to the line begun: what fits the bound, counting the rest.
func (s *lineSplitter) hold(b []byte, now time.Time) {
	if len(s.part) == 0 && s.cut == 0 {
		s.since = now
	}
	room := s.max - len(s.part)
	if len(b) > room {
		// Cut at a rune's start, so that the line stays UTF-8 (what is
		// not UTF-8 is cut where it is).
		k := room
		for k > 0 && room-k < utf8.UTFMax-1 && !utf8.RuneStart(b[k]) {
			k--
		}
		if !utf8.RuneStart(b[k]) {
			k = room
		}
		s.cut += int64(len(b) - k)
		b = b[:k]
	}
	s.part = append(s.part, b...)
}

// pending reports whether a line is begun and not ended, and since when.
func (s *lineSplitter) pending() (bool, time.Time) {
	return len(s.part) > 0 || s.cut > 0, s.since
}

// flush emits the line begun, if any, as a whole line.
func (s *lineSplitter) flush(emit emitFunc) error {
	if len(s.part) == 0 && s.cut == 0 {
		return nil
	}
	err := emit(s.part, s.cut)
	s.cut = 0
	if cap(s.part) > 4<<10 {
		s.part = nil // a long line's buffer is not kept
	} else {
		s.part = s.part[:0]
	}
	return err
}

// lineWriter writes whole lines for a tail: each with the name of its log,
// padded to width, and the time it was read, as asked.
type lineWriter struct {
	w          io.Writer
	prefix     bool
	width      int
	timestamps bool
	unknown    []byte // a stamp's place on a line whose time is not known: "-", padded
	buf        []byte // what is not yet written, flushed past lineWriterBuf
	wrote      bool   // something was written since the last flush of the response
}

// lineWriterBuf is how much the writer gathers before a write.
const lineWriterBuf = 32 << 10

// line writes one line of the log name, read at now; cut is how many bytes
// were left out of its end.
func (lw *lineWriter) line(name string, line []byte, cut int64, now time.Time) error {
	if lw.prefix {
		lw.buf = append(lw.buf, name...)
		if pad := lw.width - len(name); pad > 0 {
			lw.buf = append(lw.buf, strings.Repeat(" ", pad)...)
		}
		lw.buf = append(lw.buf, " | "...)
	}
	if lw.timestamps {
		if now.IsZero() {
			if lw.unknown == nil {
				lw.unknown = append([]byte{'-'}, bytes.Repeat([]byte{' '}, len(time.Now().Format(logtail.TimeFormat))-1)...)
			}
			lw.buf = append(lw.buf, lw.unknown...)
		} else {
			lw.buf = now.AppendFormat(lw.buf, logtail.TimeFormat)
		}
		lw.buf = append(lw.buf, ' ')
	}
	lw.buf = append(lw.buf, line...)
	if cut > 0 {
		lw.buf = append(lw.buf, " [gosup: "+logtail.FormatBytes(cut)+" of this line cut]"...)
	}
	lw.buf = append(lw.buf, '\n')
	if len(lw.buf) >= lineWriterBuf {
		return lw.flush()
	}
	return nil
}

// flush writes what was gathered.
func (lw *lineWriter) flush() error {
	if len(lw.buf) == 0 {
		return nil
	}
	_, err := lw.w.Write(lw.buf)
	lw.buf, lw.wrote = lw.buf[:0], true
	return err
}
