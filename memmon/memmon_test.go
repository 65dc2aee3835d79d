package memmon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/gosup/gosup/procgroup"
)

// testdata/proc is a process table: 100 (gosup) → 200 (uwsgi, 1000 pages)
// → 201 (5000 pages) → 202 (3000 pages, a name with ") S 1 1" in it);
// 100 → 300 (10 pages).
func TestTableFromFixture(t *testing.T) {
	r := newReader("testdata/proc", true)
	tab, err := r.readAll()
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	for _, tc := range []struct {
		pid        int
		cumulative bool
		want       int64
	}{
		{200, false, 1000 * page},
		{200, true, 9000 * page},
		{201, true, 8000 * page},
		{202, false, 3000 * page},
		{300, true, 10 * page},
	} {
		have, ok := tab.RSS(tc.pid, tc.cumulative)
		if !ok || have != tc.want {
			t.Errorf("RSS(%d, cumulative=%v): want %d, have %d (%v)", tc.pid, tc.cumulative, tc.want, have, ok)
		}
	}
	if _, ok := tab.RSS(999, false); ok {
		t.Error("RSS of a pid not in the table")
	}
	some := r.readSome([]int{201, 999})
	if rss, ok := some.RSS(201, false); !ok || rss != 5000*page {
		t.Errorf("readSome: %d %v", rss, ok)
	}
	own := newReader("testdata/proc", false).readSome([]int{200, 201})
	if rss, ok := own.RSS(201, false); !ok || rss != 5000*page {
		t.Errorf("statm: %d %v", rss, ok)
	}
}

// The most specific limit wins: a program key naming the process (as
// group:name, then name, then its program's name) > its address group > any.
func TestLimitPrecedence(t *testing.T) {
	s := Settings{
		Any:     400 << 20,
		Program: map[string]procgroup.Size{"web_00": 300 << 20, "web:web_01": 350 << 20, "web_01": 999 << 20, "api": 500 << 20},
		Group:   map[string]procgroup.Size{"web": 1 << 30, "worker": 2 << 30},
	}
	for _, tc := range []struct {
		id   ID
		want procgroup.Size
		rule string
	}{
		{ID{"web", "web", "web_00"}, 300 << 20, "program web_00"},
		{ID{"web", "web", "web_01"}, 350 << 20, "program web:web_01"},
		{ID{"web", "web", "web_02"}, 1 << 30, "group web"},
		{ID{"api", "web", "api_00"}, 500 << 20, "program api"}, // program api in group web
		{ID{"worker", "worker", "worker_00"}, 2 << 30, "group worker"},
		{ID{"cron", "cron", "cron"}, 400 << 20, "any"},
	} {
		r := s.LimitFor(tc.id)
		if r.Limit != tc.want || r.Name != tc.rule {
			t.Errorf("%+v: want %d (%s), have %d (%s)", tc.id, tc.want, tc.rule, r.Limit, r.Name)
		}
	}
	if r := (&Settings{}).LimitFor(ID{"a", "a", "b"}); r.Limit != 0 {
		t.Errorf("no limits: %+v", r)
	}
}

// recordHost serves fixed targets and records the restarts asked for.
type recordHost struct {
	targets []Target
	mu      sync.Mutex
	calls   []string
}

func (h *recordHost) Targets() []Target { return h.targets }
func (h *recordHost) Restart(_ context.Context, name string, _ int, _ string, _ func()) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, name)
	return nil
}
func (h *recordHost) StderrTail(string, int, int) string { return "" }

// max_restarting counts per program, as documented: with 1, one process of
// a and one of b are restarted in the same tick while a's second waits,
// whatever the programs' address groups (testdata/proc: pids 200, 201 and
// 202 are over 100 pages).
func TestMaxRestartingPerProgram(t *testing.T) {
	for _, v := range []struct {
		name   string
		ga, gb procgroup.GroupName
	}{
		{"no group key", "a", "b"},
		{"group differs from the program", "g", "b"},
		{"two programs share a group", "g", "g"},
	} {
		t.Run(v.name, func(t *testing.T) {
			cfg := DefaultSettings()
			cfg.Any = procgroup.Size(100 * os.Getpagesize())
			cfg.Samples = 1
			cfg.MaxRestarting = 1
			target := func(prog procgroup.ProgramName, group procgroup.GroupName, proc string, pid int) Target {
				id := ID{Program: prog, Group: group, Process: proc}
				return Target{ID: id, Name: id.FullName(), Pid: pid}
			}
			host := &recordHost{targets: []Target{
				target("a", v.ga, "a_0", 200), target("a", v.ga, "a_1", 202), target("b", v.gb, "b_0", 201),
			}}
			w := New(cfg, host, nil, "testdata/proc", slog.New(slog.NewTextHandler(io.Discard, nil)))
			var wg sync.WaitGroup
			w.Tick(context.Background(), &wg)
			wg.Wait()
			slices.Sort(host.calls)
			want := []string{string(v.ga) + ":a_0", string(v.gb) + ":b_0"}
			slices.Sort(want)
			if !slices.Equal(host.calls, want) {
				t.Errorf("restarted %v, want %v", host.calls, want)
			}
		})
	}
}
