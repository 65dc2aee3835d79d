package supervisor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLiveMemoSharesChecks: /healthz requests at once share one run of
// the liveness checks (each asks ctl info over the control socket), and
// its answer serves the requests of the next maxAge.
func TestLiveMemoSharesChecks(t *testing.T) {
	var m liveMemo
	var runs, waiting atomic.Int64
	release := make(chan struct{})
	check := func() []string {
		runs.Add(1)
		<-release
		return []string{"reaper does not answer"}
	}
	const n = 16
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			waiting.Add(1)
			if r := m.get(context.Background(), time.Minute, check); len(r) != 1 {
				t.Errorf("reasons %q", r)
			}
		})
	}
	for deadline := time.Now().Add(time.Minute); runs.Load() == 0 || waiting.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("runs %d, callers %d", runs.Load(), waiting.Load())
		}
	}
	close(release)
	wg.Wait()
	m.get(context.Background(), time.Minute, check)
	if runs.Load() != 1 {
		t.Fatalf("%d callers ran the checks %d times, want 1", n+1, runs.Load())
	}
	// Past maxAge, checked again.
	if m.get(context.Background(), 0, func() []string { runs.Add(1); return nil }) != nil || runs.Load() != 2 {
		t.Fatalf("runs %d after maxAge", runs.Load())
	}
}
