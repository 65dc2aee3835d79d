package memmon

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/guard/guardtest"
)

// fixtureHost offers pid 200 of testdata/proc (1000 pages) as a target;
// its first Restart panics.
type fixtureHost struct {
	mu    sync.Mutex
	calls int
}

func (h *fixtureHost) Targets() []Target {
	return []Target{{ID: ID{Program: "web", Group: "web", Process: "web_0"}, Name: "web:web_0", Pid: 200}}
}

func (h *fixtureHost) Restart(context.Context, string, int, string, func()) error {
	h.mu.Lock()
	h.calls++
	n := h.calls
	h.mu.Unlock()
	if n == 1 {
		panic("restart bug")
	}
	return nil
}

func (h *fixtureHost) StderrTail(string, int, int) string { return "" }

func (h *fixtureHost) restarts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

func fixtureWatchdog(host Host, logs *guardtest.LogBuffer) (*Watchdog, *guard.Guard) {
	cfg := DefaultSettings()
	cfg.Interval = time.Second
	cfg.Samples = 1
	cfg.Any = 1 << 10 // pid 200 is over it
	log := slog.New(slog.NewTextHandler(logs, nil))
	w := New(cfg, host, nil, "testdata/proc", log)
	w.Guard = guard.New(log)
	return w, w.Guard
}

// A restart that panics is counted, against "memmon restart" (not the
// loop's "memmon"), and gives its max_restarting slot back: at the next
// tick memmon restarts the process.
func TestRestartPanicFreesItsSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host := &fixtureHost{}
		var logs guardtest.LogBuffer
		w, g := fixtureWatchdog(host, &logs)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		time.Sleep(time.Second) // tick 1: a restart that panics
		synctest.Wait()
		if host.restarts() != 1 || g.Panics("memmon restart") != 1 || g.Panics("memmon") != 0 {
			t.Fatalf("after tick 1: %d restarts, %d restart panics, %d loop panics", host.restarts(), g.Panics("memmon restart"), g.Panics("memmon"))
		}
		time.Sleep(time.Second) // tick 2: restarted
		synctest.Wait()
		if host.restarts() != 2 || w.Restarts.Load() != 1 {
			t.Errorf("after tick 2: %d restart calls, %d done; the panicked restart kept its slot", host.restarts(), w.Restarts.Load())
		}
		if out := logs.String(); !strings.Contains(out, `component="memmon restart" panic="restart bug"`) || !strings.Contains(out, "fixtureHost).Restart") {
			t.Errorf("log:\n%s", out)
		}
		cancel()
		<-done
	})
}

// A tick that panics ends the watchdog's loop; the guard starts it again
// after 1 s, then 2 s, and sampling goes on.
func TestTickPanicRestartsTheWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs guardtest.LogBuffer
		w, g := fixtureWatchdog(benchHost{}, &logs)
		w.tickHook = func() {
			if w.Ticks.Load() <= 2 {
				panic("tick bug")
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); g.Run(ctx, "memmon", w.Run) }()
		// Tick 1 at 1 s panics; Run again at 2 s; tick 2 at 3 s panics;
		// Run again at 5 s; ticks at 6, 7, 8 s.
		time.Sleep(8*time.Second + 500*time.Millisecond)
		synctest.Wait()
		if n := w.Ticks.Load(); n != 5 {
			t.Errorf("ticks after 8.5 s: want 5, have %d", n)
		}
		if n := g.Panics("memmon"); n != 2 {
			t.Errorf("panics: want 2, have %d", n)
		}
		if r := g.Records(); len(r) != 1 || !strings.HasPrefix(r[0].State, "restarted at ") || r[0].Last != "tick bug" {
			t.Errorf("records: %+v", r)
		}
		out := logs.String()
		for _, want := range []string{`level=ERROR msg="panic recovered" component=memmon panic="tick bug"`, "memmon.(*Watchdog).Tick", `msg="restarting after a panic" component=memmon in=2s`} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
		cancel()
		<-done
	})
}
