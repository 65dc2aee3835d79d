package procgroup

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

var stampRE = `[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}(Z|[+-][0-9]{2}:[0-9]{2}) `

// One stamp a line, however many writes it takes to come; a line left
// without its newline is ended by end.
func TestStamperOneStampALine(t *testing.T) {
	var out bytes.Buffer
	s := newStamper(&out)
	for _, b := range []string{"one\ntw", "o-", "half\nthree\n", "no newline"} {
		if n, err := s.Write([]byte(b)); n != len(b) || err != nil {
			t.Fatalf("write %q: %d, %v", b, n, err)
		}
	}
	s.end()
	s.end() // once
	want := regexp.MustCompile(`\A` + stampRE + `one\n` + stampRE + `two-half\n` + stampRE + `three\n` + stampRE + `no newline\n\z`)
	if !want.Match(out.Bytes()) {
		t.Fatalf("got %q", out.String())
	}
}

// A write of many short lines goes to the sink in pieces of about
// stampOut, each of whole stamped lines.
func TestStamperBounded(t *testing.T) {
	var sizes []int
	var all bytes.Buffer
	s := newStamper(writerFunc(func(b []byte) (int, error) {
		sizes = append(sizes, len(b))
		all.Write(b)
		return len(b), nil
	}))
	in := strings.Repeat("x\n", 64<<10)
	if n, err := s.Write([]byte(in)); n != len(in) || err != nil {
		t.Fatalf("%d, %v", n, err)
	}
	for _, n := range sizes {
		if n > stampOut+64 {
			t.Fatalf("a write of %d bytes, bound about %d", n, stampOut)
		}
	}
	if got := bytes.Count(all.Bytes(), []byte("x\n")); got != 64<<10 || !regexp.MustCompile(`\A(`+stampRE+`x\n)+\z`).Match(all.Bytes()) {
		t.Fatalf("%d lines, or not all stamped", got)
	}
}

// What the sink refuses is reported as bytes of the input not written, for
// the copier to count.
func TestStamperRefused(t *testing.T) {
	s := newStamper(writerFunc(func(b []byte) (int, error) { return 0, errors.New("disk full") }))
	if n, err := s.Write([]byte("lost\n")); n != 0 || err == nil {
		t.Fatalf("%d, %v: want 0 and the error", n, err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
