package memmon

import (
	"context"
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

func (h *fakeHost) Restart(_ context.Context, name string, pid int, _ string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
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

func (h *fakeHost) StderrTail(string, int) string { return "MemoryError" }

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

// One tick's restarts of several processes go out as one mail.
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
		if alerts.Sent.Load() != 1 {
			t.Errorf("sent: %d", alerts.Sent.Load())
		}
	})
}
