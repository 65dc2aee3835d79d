package supervisor

import (
	"flag"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"testing"
	"time"
)

// BenchmarkIdleBytesPerChild is what the daemon holds in memory for each
// idle child with the default (AUTO) logs: live heap objects and goroutine
// stacks, after a collection, of a daemon with n+1 running sleepers less
// those of one with 1, divided by n (the daemon's fixed costs cancel out).
// It also reports the goroutines and open descriptors a child adds. The
// ns/op says nothing (the timer is stopped throughout). Target (issue
// 16): under 8 kB a child, with the process's RSS (which this does not
// see) at most half of supervisord's with 1,000 children.
//
//	go test -run '^$' -bench IdleBytesPerChild -benchtime 1x -count 5 ./supervisor/
//
// With -memprofile FILE, the heap profile of the daemon with n+1 children,
// taken while they run, goes to FILE.idle (FILE itself is written at the
// end, when every daemon has stopped): add -memprofilerate 1 and read it
// with go tool pprof -sample_index=inuse_space.
func BenchmarkIdleBytesPerChild(b *testing.B) {
	const n = 1000
	for b.Loop() {
		one := idleFootprint(b, 1, "")
		many := idleFootprint(b, n+1, idleProfile())
		b.ReportMetric(float64(many.heap-one.heap)/n, "heap-B/child")
		b.ReportMetric(float64(many.stacks-one.stacks)/n, "stack-B/child")
		b.ReportMetric(float64(many.heap+many.stacks-one.heap-one.stacks)/n, "B/child")
		b.ReportMetric(float64(many.goroutines-one.goroutines)/n, "goroutines/child")
		b.ReportMetric(float64(many.fds-one.fds)/n, "fds/child")
	}
}

type footprint struct {
	heap, stacks    uint64
	goroutines, fds int
}

// idleFootprint runs a daemon with n sleepers until every one is RUNNING
// and sampled by the CPU tick, and measures the test process while it runs.
// If profile is not empty, the heap profile goes there.
func idleFootprint(b *testing.B, n int, profile string) footprint {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	s, _, stop := benchDaemon(b, n, true)
	defer stop()
	deadline := time.Now().Add(2 * time.Minute)
	for !allRunning(s) {
		if time.Now().After(deadline) {
			b.Fatalf("%d children not RUNNING after 2 minutes", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// What the daemon keeps for a child it has sampled (the CPU tick's
	// entry and its open /proc/PID/statm) comes at the first tick after
	// the spawn, up to procstat.TickEvery later: counted too.
	for s.stats.Open() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d children of %d sampled after 2 minutes", s.stats.Open(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// What the start left (the spawns' garbage) is collected twice, so
	// that what is counted is live.
	runtime.GC()
	runtime.GC()
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(samples)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			b.Fatal(err)
		}
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	return footprint{
		heap:       samples[0].Value.Uint64(),
		stacks:     samples[1].Value.Uint64(),
		goroutines: runtime.NumGoroutine(),
		fds:        len(fds),
	}
}

// idleProfile is where BenchmarkIdleBytesPerChild writes the heap profile
// of its daemon with children: -memprofile's file with .idle added, or ""
// without -memprofile.
func idleProfile() string {
	if f := flag.Lookup("test.memprofile"); f != nil && f.Value.String() != "" {
		return f.Value.String() + ".idle"
	}
	return ""
}
