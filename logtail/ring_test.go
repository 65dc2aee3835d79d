package logtail

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// The ring holds the most recent records within its bound (their bytes
// and a fixed overhead each), and counts what it overwrote.
func TestRingBoundAndOverwritten(t *testing.T) {
	r := NewRing(4096)
	for i := range 1000 {
		fmt.Fprintf(r, "record %04d\n", i)
	}
	recs, next := r.Last(-1)
	held := 0
	for _, rec := range recs {
		held += len(rec) + ringOverhead
	}
	if held > 4096 {
		t.Fatalf("holds %d bytes, bound 4096", held)
	}
	if next != 1000 || string(recs[len(recs)-1]) != "record 0999\n" {
		t.Fatalf("next %d, last %q", next, recs[len(recs)-1])
	}
	over, overBytes := r.Overwritten()
	if over != int64(1000-len(recs)) || overBytes != over*12 {
		t.Fatalf("overwritten %d (%d bytes), holds %d of 1000", over, overBytes, len(recs))
	}
	if last, _ := r.Last(2); len(last) != 2 || string(last[0]) != "record 0998\n" {
		t.Fatalf("last 2: %q", last)
	}
	// A reader behind the ring is told how many it missed.
	got, next2, missed := r.Since(0)
	if missed != uint64(over) || len(got) != len(recs) || next2 != 1000 {
		t.Fatalf("since 0: %d records, missed %d, next %d", len(got), missed, next2)
	}
	fmt.Fprint(r, "no newline")
	got, _, missed = r.Since(1000)
	if missed != 0 || len(got) != 1 || string(got[0]) != "no newline\n" {
		t.Fatalf("since 1000: %q missed %d", got, missed)
	}
}

// A record over the bound keeps its start, and says how much was cut.
func TestRingOversizedRecord(t *testing.T) {
	r := NewRing(1024)
	fmt.Fprintln(r, "small")
	r.Write([]byte(strings.Repeat("z", 5000) + "\n"))
	recs, _ := r.Last(-1)
	if len(recs) != 1 || len(recs[0])+ringOverhead > 1024 || !bytes.HasSuffix(recs[0], []byte(" of this record cut]\n")) {
		t.Fatalf("records: %d, last %d bytes: %.40q…", len(recs), len(recs[0]), recs[len(recs)-1])
	}
}

// Snapshot and Restore carry the records across an in-place upgrade,
// before what the new image logged first.
func TestRingSnapshotRestore(t *testing.T) {
	old := NewRing(4096)
	for i := range 500 {
		fmt.Fprintf(old, "old %d\n", i)
	}
	recs, over, overBytes := old.Snapshot(0)
	fresh := NewRing(4096)
	fmt.Fprintln(fresh, "new image started")
	fresh.Restore(recs, over, overBytes)
	got, _ := fresh.Last(-1)
	if string(got[len(got)-1]) != "new image started\n" || string(got[len(got)-2]) != "old 499\n" {
		t.Fatalf("after restore: …%q", got[max(len(got)-3, 0):])
	}
	if o, _ := fresh.Overwritten(); o < over {
		t.Fatalf("overwritten %d, was %d", o, over)
	}
}

// A snapshot within a limit keeps the newest records that fit, and counts
// the others as overwritten.
func TestRingSnapshotLimit(t *testing.T) {
	r := NewRing(4096)
	for i := range 10 {
		fmt.Fprintf(r, "rec %d\n", i) // 6 bytes each
	}
	recs, over, overBytes := r.Snapshot(20)
	if string(recs) != "rec 7\nrec 8\nrec 9\n" || over != 7 || overBytes != 42 {
		t.Fatalf("snapshot(20): %q, overwritten %d (%d bytes)", recs, over, overBytes)
	}
}
