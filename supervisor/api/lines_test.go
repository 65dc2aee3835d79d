package api

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gosup/gosup/logtail"
)

// collect is an emitFunc that keeps the lines, and their cut counts.
type collect struct {
	lines []string
	cuts  []int64
}

func (c *collect) emit(line []byte, cut int64) error {
	c.lines = append(c.lines, string(line))
	c.cuts = append(c.cuts, cut)
	return nil
}

// Lines come whole whatever the reads: one split across feeds is one line;
// a line begun is held until its newline, or a flush.
func TestLineSplitterWholeLines(t *testing.T) {
	s := lineSplitter{max: 64}
	var c collect
	t0 := time.Unix(1000, 0)
	for _, b := range []string{"a\nb", "c", "d\ne\n", "f"} {
		if err := s.feed([]byte(b), t0, c.emit); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(c.lines, "|"); got != "a|bcd|e" {
		t.Fatalf("lines %q, want a|bcd|e", got)
	}
	if p, since := s.pending(); !p || !since.Equal(t0) {
		t.Fatalf("pending %v since %v: want the line f, begun at %v", p, since, t0)
	}
	if err := s.flush(c.emit); err != nil {
		t.Fatal(err)
	}
	if c.lines[len(c.lines)-1] != "f" {
		t.Fatalf("flush: %q", c.lines)
	}
	if p, _ := s.pending(); p {
		t.Fatal("pending after flush")
	}
}

// A line longer than the bound keeps its first max bytes (at a rune's
// start) and counts the rest; the splitter never holds more than max
// bytes, however long the line and however many reads it takes.
func TestLineSplitterBoundsALongLine(t *testing.T) {
	const max = 100
	s := lineSplitter{max: max}
	var c collect
	long := strings.Repeat("x", 10_000)
	for i := 0; i < len(long); i += 333 {
		if err := s.feed([]byte(long[i:min(i+333, len(long))]), time.Now(), c.emit); err != nil {
			t.Fatal(err)
		}
		if cap(s.part) > 2*max {
			t.Fatalf("holds %d bytes of a line, bound %d", cap(s.part), max)
		}
	}
	if err := s.feed([]byte("\nnext\n"), time.Now(), c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.lines) != 2 || c.lines[0] != long[:max] || c.cuts[0] != 10_000-max || c.lines[1] != "next" || c.cuts[1] != 0 {
		t.Fatalf("lines %d, first %d bytes cut %d, then %q", len(c.lines), len(c.lines[0]), c.cuts[0], c.lines[1:])
	}
	// In one read too.
	c = collect{}
	if err := s.feed([]byte(long+"\n"), time.Now(), c.emit); err != nil {
		t.Fatal(err)
	}
	if len(c.lines) != 1 || len(c.lines[0]) != max || c.cuts[0] != 10_000-max {
		t.Fatalf("one read: %d lines, %d bytes, cut %v", len(c.lines), len(c.lines[0]), c.cuts)
	}
	// A cut falls on a rune's first byte: the line stays UTF-8.
	c = collect{}
	wide := strings.Repeat("é", 200) // two bytes each
	if err := s.feed([]byte("a"+wide+"\n"), time.Now(), c.emit); err != nil {
		t.Fatal(err)
	}
	if got := c.lines[0]; !utf8.ValidString(got) || len(got) != max-1 || int(c.cuts[0]) != 1+len(wide)-len(got) {
		t.Fatalf("cut in a rune: %d bytes, valid %v, cut %d", len(got), utf8.ValidString(got), c.cuts[0])
	}
}

// Prefixes are the log's name padded to the widest, then " | "; with
// timestamps the time read, RFC 3339 with milliseconds; a cut line ends
// with how much was left out.
func TestLineWriterPrefixTimestampCut(t *testing.T) {
	var out bytes.Buffer
	lw := lineWriter{w: &out, prefix: true, width: len("web:web_10"), timestamps: true}
	at := time.Date(2026, 11, 30, 7, 51, 25, 123456789, time.FixedZone("", 3600))
	if err := lw.line("web:web_10", []byte("hello"), 0, at); err != nil {
		t.Fatal(err)
	}
	if err := lw.line("w:w", []byte("long"), 83616, at); err != nil {
		t.Fatal(err)
	}
	if err := lw.flush(); err != nil {
		t.Fatal(err)
	}
	want := "web:web_10 | 2026-11-30T07:51:25.123+01:00 hello\n" +
		"w:w        | 2026-11-30T07:51:25.123+01:00 long [gosup: 81.7KB of this line cut]\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	if !regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}(Z|[+-][0-9]{2}:[0-9]{2})$`).MatchString(at.UTC().Format(logtail.TimeFormat)) {
		t.Fatalf("UTC: %s", at.UTC().Format(logtail.TimeFormat))
	}
}

// The writer gathers at most about lineWriterBuf before it writes.
func TestLineWriterBounded(t *testing.T) {
	var writes []int
	lw := lineWriter{w: writerFunc(func(b []byte) (int, error) { writes = append(writes, len(b)); return len(b), nil })}
	line := []byte(strings.Repeat("y", 1000))
	for range 1000 {
		if err := lw.line("x", line, 0, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range writes {
		if n > lineWriterBuf+MaxLineBytes+200 {
			t.Fatalf("a write of %d bytes", n)
		}
	}
	if len(writes) < 1000*1001/(lineWriterBuf+1001) {
		t.Fatalf("%d writes", len(writes))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
