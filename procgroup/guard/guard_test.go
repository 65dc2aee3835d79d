package guard

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gosup/gosup/procgroup/guard/guardtest"
)

func newTestGuard() (*Guard, *guardtest.LogBuffer) {
	var buf guardtest.LogBuffer
	return New(slog.New(slog.NewTextHandler(&buf, nil))), &buf
}

func panicHere() { panic("boom") }

func TestGoRecoversCountsAndRunsAfter(t *testing.T) {
	g, logs := newTestGuard()
	done := make(chan struct{})
	g.With("process", "web:web_0", "stream", "stdout").Go("log copier", "output discarded", panicHere, func() { close(done) })
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("after never ran")
	}
	if have := g.Panics("log copier"); have != 1 {
		t.Errorf("panics: want 1, have %d", have)
	}
	recs := g.Records()
	if len(recs) != 1 {
		t.Fatalf("want one record, have %+v", recs)
	}
	r := recs[0]
	if r.Component != "log copier" || r.Last != "web:web_0 stdout: boom" || r.State != "output discarded" || r.LastAt.IsZero() {
		t.Errorf("record: %+v", r)
	}
	if s := r.String(); !strings.Contains(s, "log copier panicked once") || !strings.Contains(s, "output discarded") {
		t.Errorf("status line: %s", s)
	}
	out := logs.String()
	for _, want := range []string{"level=ERROR", "component=\"log copier\"", "process=web:web_0", "panic=boom", "guard.panicHere", "guard_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestDoReportsPanic(t *testing.T) {
	g, _ := newTestGuard()
	if g.Do("control socket", "", func() {}) {
		t.Error("Do reported a panic that did not happen")
	}
	for range 2 {
		if !g.Do("control socket", "", panicHere) {
			t.Error("Do did not report a panic")
		}
	}
	if have := g.Panics("control socket"); have != 2 {
		t.Errorf("panics: want 2, have %d", have)
	}
	if len(g.Records()) != 1 {
		t.Errorf("want one component, have %+v", g.Records())
	}
}

func TestNilGuardRecovers(t *testing.T) {
	var g *Guard
	if !g.With("x", 1).Do("c", "", panicHere) {
		t.Error("a nil Guard did not recover")
	}
	if g.Records() != nil || g.Panics("c") != 0 {
		t.Error("a nil Guard counted")
	}
}

// A loop that panics at every start is restarted after 1 s, 2 s, 4 s, ...
// up to a minute; one that ran a minute before panicking starts over at
// 1 s; cancelling ctx during the backoff ends Run.
func TestRunBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, _ := newTestGuard()
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		var starts []time.Duration
		calls := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.Run(ctx, "nginx manager", func(ctx context.Context) {
				calls++
				starts = append(starts, time.Since(start))
				if calls == 9 {
					time.Sleep(2 * time.Minute) // healthy for a while, then panics again
				}
				panic("bad")
			})
		}()
		// Starts at 0, 1, 3, 7, 15, 31 s, then a minute apart: 63, 123, 183 s.
		time.Sleep(183*time.Second + 500*time.Millisecond)
		synctest.Wait()
		want := []time.Duration{0, 1, 3, 7, 15, 31, 63, 123, 183}
		for i := range want {
			want[i] *= time.Second
		}
		if !slices.Equal(starts, want) {
			t.Fatalf("starts: want %v, have %v", want, starts)
		}
		if r := g.Records()[0]; r.Panics != 8 || !strings.HasPrefix(r.State, "restarted at ") {
			t.Errorf("record while the 9th run runs: %+v", r)
		}
		// The 9th runs 2 minutes, then panics at 303 s: it had been
		// healthy long enough, so the 10th start waits 1 s, at 304 s.
		time.Sleep(2*time.Minute + time.Second)
		synctest.Wait()
		if want := append(want, 304*time.Second); !slices.Equal(starts, want) {
			t.Fatalf("starts: want %v, have %v", want, starts)
		}
		// The 10th panicked at once: Run waits 2 s; cancel in between.
		if r := g.Records()[0]; r.Panics != 10 || !strings.HasPrefix(r.State, "restarting at ") {
			t.Errorf("record during the backoff: %+v", r)
		}
		cancel()
		<-done
		if calls != 10 {
			t.Errorf("Run started f after ctx ended: %d calls", calls)
		}
		if r := g.Records()[0]; r.State != "stopped" {
			t.Errorf("record after cancel: %+v", r)
		}
	})
}

// Run returns when f returns without panicking, and when ctx ends.
func TestRunReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, _ := newTestGuard()
		g.Run(t.Context(), "file watcher", func(context.Context) {})
		if len(g.Records()) != 0 {
			t.Errorf("records without a panic: %+v", g.Records())
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.Run(ctx, "file watcher", func(ctx context.Context) { <-ctx.Done() })
		}()
		synctest.Wait()
		cancel()
		<-done
	})
}
