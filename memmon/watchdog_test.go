package memmon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeHost serves targets whose RSS lives in a /proc root of the test's:
// every pid it hands out is over 100 MB. Restart gives the process a new
// pid (over its limit again at once, as a leak that starts at boot) and
// counts.
type fakeHost struct {
	t    *testing.T
	root string

	mu       sync.Mutex
	targets  []Target
	next     int
	restarts map[string]int
	order    []string // restarts, in order
	// callOff makes Restart answer that it was called off before it
	// began (the watchdog stopped while it waited for its lane).
	callOff bool
}

func newFakeHost(t *testing.T, names ...string) *fakeHost {
	h := &fakeHost{t: t, root: t.TempDir(), next: 1000, restarts: map[string]int{}}
	for _, n := range names {
		h.targets = append(h.targets, Target{ID: ID{Program: "pool", Group: "pool", Process: n}, Name: "pool:" + n, Pid: h.newPid(), StartedAt: time.Now(), StderrLog: "/var/log/" + n + ".stderr.log"})
	}
	return h
}

// newPid writes a statm of 200 MB resident for a new pid.
func (h *fakeHost) newPid() int {
	h.next++
	dir := filepath.Join(h.root, strconv.Itoa(h.next))
	pages := (200 << 20) / os.Getpagesize()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "statm"), fmt.Appendf(nil, "%d %d 0 0 0 0 0\n", pages, pages), 0o644); err != nil {
		h.t.Fatal(err)
	}
	return h.next
}

func (h *fakeHost) Targets() []Target {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Target(nil), h.targets...)
}

func (h *fakeHost) Restart(_ context.Context, name string, pid int, _ string, _ func()) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.callOff {
		return fmt.Errorf("%w: waiting for its lane: %w", ErrNotBegun, context.Canceled)
	}
	for i := range h.targets {
		if h.targets[i].Name == name {
			if h.targets[i].Pid != pid {
				return fmt.Errorf("%s %w %d", name, ErrPidGone, pid)
			}
			h.targets[i].Pid, h.targets[i].StartedAt = h.newPid(), time.Now()
			h.restarts[name]++
			h.order = append(h.order, strings.TrimPrefix(name, "pool:"))
			return nil
		}
	}
	return fmt.Errorf("no process %s", name)
}

func (h *fakeHost) StderrTail(string, int, int) string { return "MemoryError" }

// replace gives a process a new pid, as ctl restart or a crash would.
func (h *fakeHost) replace(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.targets {
		if h.targets[i].Name == name {
			h.targets[i].Pid, h.targets[i].StartedAt = h.newPid(), time.Now()
		}
	}
}

func (h *fakeHost) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.restarts[name]
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// tick runs one watchdog tick and waits for the restarts it started.
func tick(w *Watchdog) {
	var wg sync.WaitGroup
	w.Tick(context.Background(), &wg)
	wg.Wait()
}

// Four processes of one program stay over the limit, max_restarting = 1,
// and memmon acts on one sample: each gets its turn, the one over its
// limit longest first, instead of the first in config order every time.
func TestTickRestartsInTurn(t *testing.T) {
	h := newFakeHost(t, "a", "b", "c", "d")
	cfg := DefaultSettings()
	cfg.Any = 100 << 20
	cfg.Samples = 1
	cfg.MaxRestarting = 1
	w := New(cfg, h, nil, h.root, quiet())
	for range 8 {
		tick(w)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if got, want := strings.Join(h.order, ""), "abcdabcd"; got != want {
		t.Errorf("restart order over 8 ticks: want %s, have %s", want, got)
	}
}

// runMailAlerter runs an alerter that mails through box, until the test's
// bubble ends.
func runMailAlerter(t *testing.T, rate time.Duration, box *mailbox) *Alerter {
	cfg := DefaultEmail()
	cfg.To = []string{"ops@example.com"}
	cfg.From = "gosup@web-3.test"
	cfg.Sendmail = "/usr/sbin/sendmail -t -i"
	cfg.RateLimit = rate
	a := NewAlerter(cfg, 0, box.sendmail, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// A process over its limit again after every restart is restarted
// max_restarts times within restart_window, then left running: memmon
// says so in its sample and in one alert, and however long it stays over
// its limit, nothing more happens until it runs as another pid.
func TestGiveUpAfterMaxRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(t, "a")
		box := &mailbox{}
		alerts := runMailAlerter(t, 10*time.Minute, box)
		cfg := DefaultSettings() // max_restarts 3 within 10m
		cfg.Any = 100 << 20
		cfg.Samples = 1
		w := New(cfg, h, alerts, h.root, quiet())
		w.Tally = &Tally{}
		step := func() {
			time.Sleep(time.Minute)
			tick(w)
			synctest.Wait() // the alerter has mailed what it will
		}
		for range 4 {
			step()
		}
		if c := w.Tally.Counts(); c != (TallyCounts{Samples: 4, Restarts: 3, GiveUps: 1}) {
			t.Errorf("tally after giving up: %+v", c)
		}
		time.Sleep(Coalesce) // the give-up's mail
		synctest.Wait()
		if n := h.count("pool:a"); n != 3 {
			t.Fatalf("want 3 restarts, have %d", n)
		}
		s, _ := w.Sample("pool:a")
		if s.GaveUp != "3 restarts within 10m0s (max_restarts), still over 100.0MB (any)" || s.GaveUpPid != h.Targets()[0].Pid {
			t.Errorf("sample: %+v", s)
		}
		mails := box.all()
		if len(mails) != 2 {
			t.Fatalf("want 2 mails (the first restart; then the give-up with the 2 held back), have %d", len(mails))
		}
		for _, want := range []string{"Subject: memmon: pool:a restarted 2 times on", "then no more (digest)",
			"NOT restarted: gave up after 3 restarts within 10m0s", "memmon does not restart it any more", "gosup ctl restart pool:a"} {
			if !strings.Contains(mails[1], want) {
				t.Errorf("give-up mail lacks %q:\n%s", want, mails[1])
			}
		}
		// An hour over the limit: no restart, no mail.
		for range 60 {
			step()
		}
		if n, m := h.count("pool:a"), len(box.all()); n != 3 || m != 2 {
			t.Errorf("after giving up: %d restarts, %d mails", n, m)
		}
		// Started again by other means: watched afresh, with a new budget.
		h.replace("pool:a")
		for range 4 {
			step()
		}
		if n := h.count("pool:a"); n != 6 {
			t.Errorf("after a restart by hand: want 3 more restarts, have %d in all", n-3)
		}
		if s, _ := w.Sample("pool:a"); s.GaveUp == "" {
			t.Errorf("did not give up again: %+v", s)
		}
		if c := w.Tally.Counts(); c != (TallyCounts{Samples: 68, Restarts: 6, GiveUps: 2}) {
			t.Errorf("tally at the end: %+v, want 68 samples (one a tick), 6 restarts, 2 give-ups", c)
		}
	})
}

// Restarts further apart than restart_window never add up to a give-up.
func TestRestartWindowSlides(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(t, "a")
		cfg := DefaultSettings()
		cfg.Any = 100 << 20
		cfg.Samples = 1
		w := New(cfg, h, nil, h.root, quiet())
		for range 10 {
			tick(w)
			time.Sleep(4 * time.Minute) // at most 3 restarts in any 10 minutes
		}
		if n := h.count("pool:a"); n != 10 {
			t.Errorf("want 10 restarts, have %d", n)
		}
		cfg.MaxRestarts = 0 // no limit
		w = New(cfg, h, nil, h.root, quiet())
		for range 10 {
			tick(w)
		}
		if n := h.count("pool:a"); n != 20 {
			t.Errorf("max_restarts = 0: want 10 more restarts, have %d", n-10)
		}
	})
}

// One tick's restarts of several processes go out as one mail, though each
// hands its alert over as it ends.
func TestTickMailsOneBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(t, "a", "b", "c")
		box := &mailbox{}
		alerts := runMailAlerter(t, 10*time.Minute, box)
		cfg := DefaultSettings()
		cfg.Any = 100 << 20
		cfg.Samples = 1
		cfg.MaxRestarting = 3
		w := New(cfg, h, alerts, h.root, quiet())
		tick(w)
		time.Sleep(Coalesce)
		synctest.Wait()
		mails := box.all()
		if len(mails) != 1 {
			t.Fatalf("3 restarts in one tick: want 1 mail, have %d", len(mails))
		}
		m := mails[0]
		for _, want := range []string{"Subject: memmon: 3 restarts of 3 processes on", "(pool:a, pool:b, pool:c)",
			"==== pool:a ====", "==== pool:c ====", "process:   pool:b"} {
			if !strings.Contains(m, want) {
				t.Errorf("batch mail lacks %q:\n%s", want, m)
			}
		}
		if alerts.Stats().Sent != 1 {
			t.Errorf("sent: %d", alerts.Stats().Sent)
		}
	})
}

// Four processes of one program stay over their limits with max_restarting
// = 1: each tick restarts one, another each time, then memmon gives up on
// all four, one a tick. Mail is rate limited per host, not per process:
// the first restart is mailed (alone: the next one is more than Coalesce
// later); the first give-up takes what rate_limit held back with it; the
// other give-ups, within GiveUpGap of that, share one more mail. Every
// restart and every give-up is in one of the three mails; nothing after.
func TestWaveOfRestartsIsThreeMails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(t, "a", "b", "c", "d")
		box := &mailbox{}
		alerts := runMailAlerter(t, 10*time.Minute, box)
		cfg := DefaultSettings() // max_restarts 3 within 10m
		cfg.Any = 100 << 20
		cfg.Samples = 1
		cfg.MaxRestarting = 1
		w := New(cfg, h, alerts, h.root, quiet())
		for range 13 { // 12 restarts, then 4 give-ups
			tick(w)
			time.Sleep(7 * time.Second)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(h.order); n != 12 {
			t.Fatalf("want 12 restarts, have %d", n)
		}
		mails := box.all()
		if len(mails) != 3 {
			t.Fatalf("want 3 mails, have %d:\n%s", len(mails), strings.Join(mails, "\n\n"))
		}
		for i, want := range []string{
			"Subject: memmon: pool:a restarted on ",
			"Subject: memmon: 9 restarts of 4 processes, gave up on 1 on ",
			"Subject: memmon: 2 restarts of 3 processes, gave up on 3 on ",
		} {
			if !strings.HasPrefix(mails[i], want) {
				t.Errorf("mail %d: want %q, have %.200q", i+1, want, mails[i])
			}
		}
		if alerts.Stats().Sent != 3 || alerts.Stats().Dropped != 0 {
			t.Errorf("sent %d, dropped %d", alerts.Stats().Sent, alerts.Stats().Dropped)
		}
	})
}

// roundTrip hands w's state, through JSON as the daemon's handover does,
// to a new watchdog of the same settings and host.
func roundTrip(t *testing.T, w *Watchdog, cfg Settings, h Host, root string) *Watchdog {
	t.Helper()
	st, err := w.State()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back WatchdogState
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	next := New(cfg, h, nil, root, quiet())
	next.Restore(back)
	return next
}

// A watchdog handed over to a new one (an upgrade of the daemon) carries
// on: a process 2 samples of 3 over its limit is restarted at the next
// sample over it, the restart budget and a give-up survive (a process
// memmon gave up on stays given up on while it runs as that pid), and the
// counters continue.
func TestWatchdogStateRoundTrip(t *testing.T) {
	h := newFakeHost(t, "a")
	cfg := DefaultSettings() // 3 samples; max_restarting 1
	cfg.Any = 100 << 20
	cfg.MaxRestarts = 2
	w := New(cfg, h, nil, h.root, quiet())
	for range 5 { // a restart at tick 3, then 2 samples over the limit
		tick(w)
	}
	if n := h.count("pool:a"); n != 1 {
		t.Fatalf("before the handover: want 1 restart, have %d", n)
	}
	w = roundTrip(t, w, cfg, h, h.root)
	tick(w)
	if n := h.count("pool:a"); n != 2 || w.Restarts.Load() != 2 || w.Ticks.Load() != 6 {
		t.Fatalf("the sample after the handover: want restart 2 (counters 2 restarts, 6 ticks), have %d (%d, %d)", n, w.Restarts.Load(), w.Ticks.Load())
	}
	if s, _ := w.Sample("pool:a"); s.LastRestartAt.IsZero() || !strings.Contains(s.LastReason, "for 3 samples") {
		t.Errorf("sample: %+v", s)
	}
	tick(w)
	tick(w)
	w = roundTrip(t, w, cfg, h, h.root)
	tick(w) // over its limit for 3 samples, after 2 restarts: given up on
	pid := h.Targets()[0].Pid
	if s, _ := w.Sample("pool:a"); h.count("pool:a") != 2 || s.GaveUpPid != pid || !strings.HasPrefix(s.GaveUp, "2 restarts within 10m0s") {
		t.Fatalf("after the second handover: %d restarts, sample %+v", h.count("pool:a"), s)
	}
	gaveUpAt := func() time.Time { s, _ := w.Sample("pool:a"); return s.GaveUpAt }()
	w = roundTrip(t, w, cfg, h, h.root)
	for range 6 {
		tick(w)
	}
	// Not given up on again either (that would mail again).
	if s, _ := w.Sample("pool:a"); h.count("pool:a") != 2 || s.GaveUpPid != pid || !s.GaveUpAt.Equal(gaveUpAt) {
		t.Fatalf("given up on at %s before the handover, 6 samples over the limit after it: %d restarts, sample %+v", gaveUpAt, h.count("pool:a"), s)
	}
	// Another pid: watched afresh.
	h.replace("pool:a")
	for range 3 {
		tick(w)
	}
	if s, _ := w.Sample("pool:a"); h.count("pool:a") != 3 || s.GaveUp != "" {
		t.Errorf("running as another pid: want a restart after 3 samples, have %d restarts in all, sample %+v", h.count("pool:a"), s)
	}
}

// blockingHost holds every Restart until release is closed.
type blockingHost struct {
	*fakeHost
	entered chan string
	release chan struct{}
}

func (h *blockingHost) Restart(ctx context.Context, name string, pid int, reason string, beforeStop func()) error {
	h.entered <- name
	<-h.release
	return h.fakeHost.Restart(ctx, name, pid, reason, beforeStop)
}

// State refuses while a restart is in flight, naming the process: the
// daemon hands over only once they ended.
func TestWatchdogStateRefusesRestartInFlight(t *testing.T) {
	h := &blockingHost{fakeHost: newFakeHost(t, "a"), entered: make(chan string, 1), release: make(chan struct{})}
	cfg := DefaultSettings()
	cfg.Any = 100 << 20
	cfg.Samples = 1
	w := New(cfg, h, nil, h.root, quiet())
	var wg sync.WaitGroup
	w.Tick(context.Background(), &wg)
	<-h.entered
	if _, err := w.State(); err == nil || err.Error() != "memmon restarts in flight: pool:a" {
		t.Errorf("state during a restart: %v", err)
	}
	close(h.release)
	wg.Wait()
	if st, err := w.State(); err != nil || st.Restarts != 1 || len(st.History["pool:a"]) != 1 {
		t.Errorf("state after the restart: %+v, %v", st, err)
	}
}

// A restart called off before it began (the watchdog stopped, for an
// upgrade, while it waited for its program's lane) is no restart: not
// counted towards max_restarts, no alert, and the process is restarted
// by a later sample as if it had not been tried.
func TestRestartCalledOffIsNotARestart(t *testing.T) {
	h := newFakeHost(t, "a")
	h.callOff = true
	cfg := DefaultSettings() // 3 samples
	cfg.Any = 100 << 20
	cfg.MaxRestarts = 1
	a := NewAlerter(DefaultEmail(), 0, nil, quiet())
	w := New(cfg, h, a, h.root, quiet())
	for range 4 {
		tick(w)
	}
	if st, _ := w.State(); w.Restarts.Load() != 0 || len(st.History["pool:a"]) != 0 || len(a.queue) != 0 {
		t.Fatalf("after a restart called off: %d restarts, history %v, %d alerts queued", w.Restarts.Load(), st.History, len(a.queue))
	}
	h.mu.Lock()
	h.callOff = false
	h.mu.Unlock()
	for range 3 { // its samples over the limit counted afresh
		tick(w)
	}
	if n := h.count("pool:a"); n != 1 || w.Restarts.Load() != 1 {
		t.Fatalf("the next sample over the limit: %d restarts (counted %d), want 1: max_restarts 1 not used up by the one called off", n, w.Restarts.Load())
	}
}
