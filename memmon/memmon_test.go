package memmon

import (
	"os"
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

// The most specific limit wins: process (group:name, then name) > group > any.
func TestLimitPrecedence(t *testing.T) {
	s := Settings{
		Any:     400 << 20,
		Program: map[string]procgroup.Size{"web_00": 300 << 20, "web:web_01": 350 << 20, "web_01": 999 << 20},
		Group:   map[string]procgroup.Size{"web": 1 << 30, "worker": 2 << 30},
	}
	for _, tc := range []struct {
		group, process string
		want           procgroup.Size
		rule           string
	}{
		{"web", "web_00", 300 << 20, "program web_00"},
		{"web", "web_01", 350 << 20, "program web:web_01"},
		{"web", "web_02", 1 << 30, "group web"},
		{"worker", "worker_00", 2 << 30, "group worker"},
		{"cron", "cron", 400 << 20, "any"},
	} {
		r := s.LimitFor(tc.group, tc.process)
		if r.Limit != tc.want || r.Name != tc.rule {
			t.Errorf("%s:%s: want %d (%s), have %d (%s)", tc.group, tc.process, tc.want, tc.rule, r.Limit, r.Name)
		}
	}
	if r := (&Settings{}).LimitFor("a", "b"); r.Limit != 0 {
		t.Errorf("no limits: %+v", r)
	}
}
