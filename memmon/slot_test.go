package memmon

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/guard/guardtest"
)

// panicOnce is a slog handler that panics the first time a record's
// message starts with msg, and otherwise writes to its text handler.
type panicOnce struct {
	slog.Handler
	msg  string
	mu   *sync.Mutex
	done *bool
}

func (h panicOnce) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	hit := !*h.done && strings.HasPrefix(r.Message, h.msg)
	if hit {
		*h.done = true
	}
	h.mu.Unlock()
	if hit {
		panic("log bug")
	}
	return h.Handler.Handle(ctx, r)
}

func (h panicOnce) WithAttrs(a []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(a)
	return h
}

func (h panicOnce) WithGroup(g string) slog.Handler {
	h.Handler = h.Handler.WithGroup(g)
	return h
}

// A panic between the reservation of a max_restarting slot and the
// restart (in Tick's logging, or in the restart goroutine before it calls
// the host) gives the slot back: memmon restarts the process at a later
// tick instead of never again.
func TestPanicBeforeRestartFreesItsSlot(t *testing.T) {
	for _, msg := range []string{
		"restarting a process over its memory limit", // the restart goroutine, before Restart
		"over its limit, but max_restarting",         // Tick, after a (a_0's) slot was taken
	} {
		t.Run(msg, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newFakeHost(t, "a", "b")
				cfg := DefaultSettings()
				cfg.Interval = time.Second
				cfg.Any = 100 << 20
				cfg.Samples = 1
				cfg.MaxRestarts = 0
				var logs guardtest.LogBuffer
				log := slog.New(panicOnce{Handler: slog.NewTextHandler(&logs, nil), msg: msg, mu: &sync.Mutex{}, done: new(bool)})
				w := New(cfg, h, nil, h.root, log)
				g := guard.New(log)
				w.Guard = g
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { defer close(done); g.Run(ctx, "memmon", w.Run) }()
				// Ticks every second (and the loop restarted 1 s after a
				// panic): a minute is many chances for both.
				time.Sleep(time.Minute)
				synctest.Wait()
				if h.count("pool:a") < 2 || h.count("pool:b") < 2 {
					t.Errorf("after a minute: a restarted %d times, b %d: a slot was kept by the panic", h.count("pool:a"), h.count("pool:b"))
				}
				if n := len(g.Records()); n != 1 {
					t.Errorf("panics: %+v", g.Records())
				}
				cancel()
				<-done
			})
		})
	}
}

// gateHost is a fakeHost whose restarts of one process wait for gate, and
// which lists that process only once shown is set.
type gateHost struct {
	*fakeHost
	slow  string
	gate  chan struct{}
	shown sync.Mutex
	show  bool
}

func (h *gateHost) Targets() []Target {
	h.shown.Lock()
	show := h.show
	h.shown.Unlock()
	var out []Target
	for _, t := range h.fakeHost.Targets() {
		if t.Name != h.slow || show {
			out = append(out, t)
		}
	}
	return out
}

func (h *gateHost) Restart(ctx context.Context, name string, pid int, reason string, beforeStop func()) error {
	if name == h.slow {
		select {
		case <-h.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.fakeHost.Restart(ctx, name, pid, reason, beforeStop)
}

// The mail that memmon gave up on a process does not wait for a restart
// of another process that the same tick began and that takes long
// (stopwaitsecs = 600, or a busy program lane).
func TestGiveUpMailDoesNotWaitForSlowRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &gateHost{fakeHost: newFakeHost(t, "hog", "slow"), slow: "pool:slow", gate: make(chan struct{})}
		for i := range h.targets {
			h.targets[i].Program = procgroup.ProgramName("p_" + h.targets[i].Process) // a program each
		}
		box := &mailbox{}
		alerts := runMailAlerter(t, 10*time.Minute, box)
		cfg := DefaultSettings()
		cfg.Any = 100 << 20
		cfg.Samples = 1
		cfg.MaxRestarts = 1
		w := New(cfg, h, alerts, h.root, quiet())
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		w.Tick(ctx, &wg) // hog restarted
		wg.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(box.all()); n != 1 {
			t.Fatalf("after hog's restart: want 1 mail, have %d", n)
		}
		h.shown.Lock()
		h.show = true
		h.shown.Unlock()
		w.Tick(ctx, &wg) // memmon gives up on hog; slow's restart begins and hangs
		time.Sleep(time.Minute)
		synctest.Wait()
		mails := box.all()
		if len(mails) != 2 || !strings.Contains(mails[1], "memmon does not restart it any more") {
			t.Errorf("a minute into slow's restart: want hog's give-up mailed, have %d mails", len(mails))
		}
		close(h.gate)
		wg.Wait()
		cancel()
		if h.count("pool:slow") != 1 {
			t.Errorf("slow restarted %d times", h.count("pool:slow"))
		}
	})
}

// Processes a reload removed are forgotten once they have been gone
// longer than restart_window; one absent for less (as during its own
// memmon restart) keeps its restart history.
func TestRemovedProcessesAreForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(t, "a", "b")
		box := &mailbox{}
		alerts := runMailAlerter(t, 10*time.Minute, box)
		cfg := DefaultSettings()
		cfg.Any = 100 << 20
		cfg.Samples = 2
		cfg.MaxRestarting = 2
		w := New(cfg, h, alerts, h.root, quiet())
		tick(w)
		tick(w) // both restarted
		h.mu.Lock()
		h.targets = h.targets[:1] // b is removed
		h.mu.Unlock()
		time.Sleep(cfg.RestartWindow / 2)
		tick(w)
		w.mu.Lock()
		if _, ok := w.history["pool:b"]; !ok {
			t.Errorf("b forgotten after %s", cfg.RestartWindow/2)
		}
		w.mu.Unlock()
		time.Sleep(cfg.RestartWindow/2 + time.Second)
		tick(w)
		synctest.Wait()
		w.mu.Lock()
		for what, n := range map[string]int{"samples": len(w.samples), "over": len(w.over), "restarting": len(w.restarting),
			"history": len(w.history), "gaveUp": len(w.gaveUp), "busy": len(w.busy)} {
			if max := map[string]int{"samples": 1, "over": 1, "history": 1}[what]; n > max {
				t.Errorf("%s: %d entries, want at most %d (a only)", what, n, max)
			}
		}
		if _, ok := w.samples["pool:b"]; ok {
			t.Error("b's sample kept")
		}
		w.mu.Unlock()
	})
}
