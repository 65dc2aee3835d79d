package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A file truncated (copytruncate) between the fstat that gave its size
// and the read is a truncation, not the end of the tail: what was read
// goes out, and the next poll reads the file again from its start.
func TestFeedTruncatedUnderIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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
