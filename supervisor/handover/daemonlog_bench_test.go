package handover

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gosup/gosup/logtail"
)

// BenchmarkDaemonLogHandover measures what the daemon's log adds to an
// upgrade's critical path, from a full ring (1 MiB of 120-byte records):
// its snapshot, the document's encoding and decoding, and the new ring's
// restore; against an empty document, the DaemonLogBytes handed over, and
// the whole ring.
//
//	go test -run '^$' -bench DaemonLogHandover -benchmem ./supervisor/handover/
func BenchmarkDaemonLogHandover(b *testing.B) {
	ring := logtail.NewRing(logtail.RingBytes)
	rec := bytes.Repeat([]byte("x"), 100)
	for i := 0; i < 20_000; i++ {
		fmt.Fprintf(ring, "time=%d level=INFO msg=%s\n", i, rec)
	}
	for _, limit := range []int{-1, DaemonLogBytes, 0} {
		full := limit >= 0
		b.Run(fmt.Sprint("limit=", limit), func(b *testing.B) {
			for b.Loop() {
				d := Doc{Version: Version}
				if full {
					recs, over, overBytes := ring.Snapshot(limit)
					d.DaemonLog = &DaemonLog{Records: recs, Overwritten: over, OverwrittenBytes: overBytes}
				}
				enc, err := json.Marshal(&d)
				if err != nil {
					b.Fatal(err)
				}
				got, err := Decode(enc)
				if err != nil {
					b.Fatal(err)
				}
				if full {
					logtail.NewRing(logtail.RingBytes).Restore(got.DaemonLog.Records, got.DaemonLog.Overwritten, got.DaemonLog.OverwrittenBytes)
				}
			}
		})
	}
}
