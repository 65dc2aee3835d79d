package supervisor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
)

// procsOf expands programs (name → group key, "" for none) of two
// processes each, NAME_0 and NAME_1, as unstarted processes.
func procsOf(t *testing.T, programs ...[2]string) []*procgroup.Process {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var out []*procgroup.Process
	for _, pg := range programs {
		s := procgroup.DefaultSpec()
		s.Command = "app"
		s.NumProcs = 2
		s.ProcessName = "%(program_name)s_%(process_num)d"
		s.Group = pg[1]
		specs, err := s.Expand(pg[0], procgroup.ExpandContext{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range specs {
			out = append(out, procgroup.NewProcess(&specs[i], nil, log))
		}
	}
	return out
}

// The resolution order, three ways: no group key, a group that differs
// from the program's name, and two programs sharing a group.
func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name     string
		programs [][2]string
		want     map[string]string // pattern → full names, space-separated ("" for ErrNoMatch)
	}{
		{"no group key", [][2]string{{"web", ""}, {"worker", ""}}, map[string]string{
			"all":          "web:web_0 web:web_1 worker:worker_0 worker:worker_1",
			"web":          "web:web_0 web:web_1",
			"web:*":        "web:web_0 web:web_1",
			"web:":         "web:web_0 web:web_1",
			"web:web_1":    "web:web_1",
			"w*":           "web:web_0 web:web_1 worker:worker_0 worker:worker_1",
			"web:web_[01]": "web:web_0 web:web_1",
			"web_1":        "web:web_1",
			"*_0":          "web:web_0 worker:worker_0",
			"nope":         "",
			"nope:*":       "",
			"web:nope":     "",
		}},
		{"group differs from the program", [][2]string{{"web", "sentry"}, {"worker", ""}}, map[string]string{
			"sentry":          "sentry:web_0 sentry:web_1",
			"sentry:*":        "sentry:web_0 sentry:web_1",
			"sentry:web_0":    "sentry:web_0",
			"web":             "sentry:web_0 sentry:web_1", // no group web: the program
			"web_0":           "sentry:web_0",
			"web:*":           "",
			"web:web_0":       "",
			"sen*":            "sentry:web_0 sentry:web_1",
			"worker:worker_1": "worker:worker_1",
		}},
		{"two programs share a group", [][2]string{{"web", "site"}, {"api", "site"}, {"site", "other"}}, map[string]string{
			"site":       "site:web_0 site:web_1 site:api_0 site:api_1", // the group first, not the program site
			"site:*":     "site:web_0 site:web_1 site:api_0 site:api_1",
			"site:api_1": "site:api_1",
			"api":        "site:api_0 site:api_1",
			"other":      "other:site_0 other:site_1",
			"site_0":     "other:site_0",
			"api:*":      "",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			procs := procsOf(t, tc.programs...)
			for pat, want := range tc.want {
				sel, err := resolve(procs, []string{pat})
				var have []string
				for _, p := range sel {
					have = append(have, p.Spec().FullName())
				}
				if want == "" {
					if !errors.Is(err, ErrNoMatch) {
						t.Errorf("%q: want no match, have %v %v", pat, have, err)
					}
					continue
				}
				if err != nil || !slices.Equal(have, strings.Fields(want)) {
					t.Errorf("%q: want %s, have %v %v", pat, want, have, err)
				}
			}
		})
	}
	procs := procsOf(t, [2]string{"web", "sentry"})
	// Several patterns: pattern by pattern, each process once.
	if sel, err := resolve(procs, []string{"sentry:web_1", "web"}); err != nil || len(sel) != 2 || sel[0].Spec().Name != "web_1" {
		t.Errorf("two patterns: %v %v", sel, err)
	}
	// A malformed glob is an error of its own; a program's name before the
	// colon says which group to use.
	if _, err := resolve(procs, []string{"web_[0"}); !errors.Is(err, ErrBadPattern) || errors.Is(err, ErrNoMatch) || !strings.Contains(err.Error(), `bad pattern "web_[0"`) {
		t.Errorf("malformed glob: %v", err)
	}
	if _, err := resolve(procs, []string{"web:*"}); err == nil || !strings.Contains(err.Error(), "program web is in group sentry: its processes are sentry:*") {
		t.Errorf("program before the colon: %v", err)
	}
}

// A malformed glob is a bad request (400) wherever a pattern is taken,
// not "unavailable" (503, which tells a client to retry) nor "not found";
// the running process is left alone.
func TestBadPatternIsInvalid(t *testing.T) {
	file := writeConfig(t, `
[program.web]
command = "@HELPER@ sleep"
startsecs = 0
`+helperEnv)
	cl, _ := startDaemon(t, file)
	before := waitAll(t, cl, "RUNNING")
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != http.StatusBadRequest || !strings.Contains(ae.Msg, `bad pattern "web["`) {
			t.Errorf("%s web[: want a 400 naming the bad pattern, have %#v", what, err)
		}
	}
	for _, verb := range []string{"start", "stop", "restart", "signal"} {
		_, err := cl.Action(ctx, verb, api.ActionRequest{Patterns: []string{"web["}, Signal: "HUP"})
		check(verb, err)
		_, err = cl.Action(ctx, verb, api.ActionRequest{Patterns: []string{"web", "web:["}, Signal: "HUP", Rolling: verb == "restart"})
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != http.StatusBadRequest {
			t.Errorf("%s web web:[: want 400, have %#v", verb, err)
		}
	}
	_, err := cl.Status(ctx, "web[")
	check("status", err)
	// Not a bad pattern: a well-formed one that matches nothing is 404.
	_, err = cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"nope"}})
	if ae := (*api.Error)(nil); !errors.As(err, &ae) || ae.Code != http.StatusNotFound {
		t.Errorf("stop nope: want 404, have %#v", err)
	}
	after := waitAll(t, cl, "RUNNING")
	if after[0].Pid != before[0].Pid {
		t.Errorf("the process was touched: pid %d, then %d", before[0].Pid, after[0].Pid)
	}
}
