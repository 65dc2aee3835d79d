package procgroup

import (
	"bytes"
	"io"
	"sync/atomic"
	"time"

	"github.com/gosup/gosup/logtail"
)

// stampOut bounds what a stamper gathers before writing: a read of short
// lines grows by a stamp a line.
const stampOut = 64 << 10

// stamper starts each line written through it with the time it was
// written (log_timestamps): one stamp a line, however many reads it took
// to come. Its state is one bit, whether a line is begun: the bytes go on
// at once, so a line without its newline is in the file already. One
// stamper serves one copier (one stream of one spawn).
type stamper struct {
	w     io.Writer
	mid   atomic.Bool // a line is begun and not ended (read by a handover)
	stamp []byte      // the stamp of the current write, and a space
	out   []byte      // what is gathered for the sink, at most about stampOut
}

func newStamper(w io.Writer) *stamper {
	return &stamper{w: w}
}

// release lets go of the buffers while the stream is idle.
func (s *stamper) release() { s.stamp, s.out = nil, nil }

// Write writes b with a stamp at the start of each line. What the sink
// refused is reported as b's bytes not written (n), for the copier to
// count.
func (s *stamper) Write(b []byte) (int, error) {
	s.stamp = append(time.Now().AppendFormat(s.stamp[:0], logtail.TimeFormat), ' ')
	done := 0 // bytes of b whose output has been written
	out := s.out[:0]
	in := 0 // bytes of b in out
	flush := func() error {
		k, err := s.w.Write(out)
		if err != nil && k < len(out) {
			// What of b the sink took: in proportion (stamps included).
			done += int(int64(in) * int64(max(k, 0)) / int64(max(len(out), 1)))
			return err
		}
		done += in
		out, in = out[:0], 0
		return nil
	}
	mid := s.mid.Load()
	defer func() { s.mid.Store(mid) }()
	for rest := b; len(rest) > 0; {
		if !mid {
			out = append(out, s.stamp...)
			mid = true
		}
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, mid = rest[:i+1], false
		}
		out = append(out, line...)
		in += len(line)
		rest = rest[len(line):]
		if len(out) >= stampOut {
			if err := flush(); err != nil {
				s.keep(out)
				return done, err
			}
		}
	}
	var err error
	if len(out) > 0 {
		err = flush()
	}
	s.keep(out)
	return done, err
}

// keep keeps out's buffer for the next write, unless a burst grew it.
func (s *stamper) keep(out []byte) {
	if cap(out) <= 2*stampOut {
		s.out = out[:0]
	}
}

// end ends a line the process left without its newline (it exited, or
// closed its output): the next spawn's first line starts a line of its
// own, with its stamp.
func (s *stamper) end() {
	if s.mid.Load() {
		s.mid.Store(false)
		_, _ = s.w.Write([]byte{'\n'})
	}
}
