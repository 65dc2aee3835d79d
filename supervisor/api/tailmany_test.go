package api

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// openThreeLines opens a log holding three lines, closed when the test ends.
func openThreeLines(t *testing.T) (string, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return path, f
}

// A file truncated (copytruncate) between the fstat that gave its size
// and the read is a truncation, not the end of the tail: what was read
// goes out, and the next poll reads the file again from its start.
func TestFeedTruncatedUnderIt(t *testing.T) {
	path, f := openThreeLines(t)
	var c collect
	mt := &multiTail{buf: make([]byte, 64), limit: 1 << 20, now: time.Now()}
	tf := &tailFile{TailLog: TailLog{Name: "a:a", Path: path}, lines: lineSplitter{max: MaxLineBytes}, emit: c.emit}
	tf.setFile(f)
	// The fstat said 100 bytes; by the read the file holds 14, then 4
	// (copytruncate, and a new line).
	tf.off = 0
	if err := mt.feed(tf, 0, 100); err != nil {
		t.Fatalf("feed of a file truncated under it: %v; want the lines read, and the tail going on", err)
	}
	if got := strings.Join(c.lines, "|"); got != "one|two|three" {
		t.Fatalf("lines %q, want one|two|three", got)
	}
	if tf.off != 0 {
		t.Fatalf("offset %d after a short read: want 0, the next poll to start again", tf.off)
	}
	if err := os.WriteFile(path, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := mt.send(tf); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.lines, "|"); got != "one|two|three|new" {
		t.Fatalf("lines %q after the next poll, want one|two|three|new", got)
	}
}

// A single log's -f (no prefix, no stamps) whose file is truncated between
// the fstat and the read (copytruncate) goes on from the file's start:
// it ended the whole tail, silently, with "unexpected EOF".
func TestFollowOneTruncatedUnderIt(t *testing.T) {
	_, f := openThreeLines(t)
	rec := httptest.NewRecorder()
	dw, done := newDeadlineWriter(rec, httptest.NewRequest(http.MethodGet, "/v1/tail", nil))
	defer done()
	// The fstat said 100 bytes, from offset 50; by the read the file
	// holds 14.
	off, err := sendAppended(dw, f, 100, 50, 1<<20)
	if err != nil {
		t.Fatalf("a file truncated under the read: %v; want the tail going on", err)
	}
	if off != 0 {
		t.Fatalf("offset %d after the truncation: want 0, the next poll to start again", off)
	}
	if off, err = sendAppended(dw, f, 14, off, 1<<20); err != nil || off != 14 || rec.Body.String() != "one\ntwo\nthree\n" {
		t.Fatalf("the next poll: offset %d, %v, sent %q; want 14, the whole file", off, err, rec.Body.String())
	}
}
