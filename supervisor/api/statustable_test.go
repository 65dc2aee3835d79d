package api

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
)

// AppendStatusTable lays the table out as text/tabwriter does, whatever
// the cells hold (multi-byte and invalid UTF-8 counted as tabwriter
// counts them; tabs and newlines through tabwriter itself).
func TestAppendStatusTableIsTabwritersLayout(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 1))
	for round := range 2000 {
		procs := make([]ProcStatus, rng.IntN(6))
		for i := range procs {
			fill(t, rng, reflect.ValueOf(&procs[i]).Elem(), false)
		}
		rows := [][len(statusHeader)]string{statusHeader}
		for i := range procs {
			rows = append(rows, statusRow(&procs[i]))
		}
		want := appendTabwriter(nil, rows)
		if got := AppendStatusTable(nil, procs); !bytes.Equal(got, want) {
			t.Fatalf("round %d:\n got %q\nwant %q", round, got, want)
		}
	}
}

// BenchmarkStatusTable1000 formats the status table of 1,000 processes:
// AppendStatusTable against text/tabwriter.
func BenchmarkStatusTable1000(b *testing.B) {
	procs := benchProcs()
	b.Run("append", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = AppendStatusTable(buf[:0], procs)
		}
	})
	b.Run("tabwriter", func(b *testing.B) {
		for b.Loop() {
			rows := [][len(statusHeader)]string{statusHeader}
			for i := range procs {
				rows = append(rows, statusRow(&procs[i]))
			}
			appendTabwriter(nil, rows)
		}
	})
}
