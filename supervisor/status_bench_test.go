package supervisor

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"
)

// BenchmarkStatus1000 is BenchmarkStatus100 with 1,000 children: the
// daemon's side of a status decoded into []api.ProcStatus (ctl top, the
// tests) at the scale of issue 16.
func BenchmarkStatus1000(b *testing.B) { benchStatus(b, 1000) }

// BenchmarkStatusCLI is the daemon's side of `gosup ctl status` (the
// table) and `gosup ctl status --json` with 100 and 1,000 children: the
// round trip over the control socket and what the daemon does (the
// status built, formatted or encoded), the answer copied out as the CLI
// copies it. Run:
//
//	go test -run '^$' -bench StatusCLI -benchtime 200x -count 5 ./supervisor/
func BenchmarkStatusCLI(b *testing.B) {
	for _, n := range []int{100, 1000} {
		s, cl, stop := benchDaemon(b, n, true)
		for !allRunning(s) {
			time.Sleep(time.Millisecond)
		}
		ctx := context.Background()
		b.Run(fmt.Sprintf("%d/text", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := cl.StatusTable(ctx, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%d/json", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := cl.StatusJSON(ctx, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
		stop()
	}
}
