package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// oldDaemon serves, on a unix socket, what a daemon from before the
// progress streams answers: plain JSON, whatever the Accept.
func oldDaemon(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/restart", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.ActionResponse{Results: []api.Result{{Name: "web:web_0", OK: true, Message: "started"}}})
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return sock
}

// ctl restart --json against a daemon that does not stream: the one
// line it prints (the outcome, made up from the plain reply) has the
// time it was printed and the seconds since the request, as a streamed
// outcome has, not a zero time.
func TestJSONOutcomeFromOldDaemonIsStamped(t *testing.T) {
	sock := oldDaemon(t)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"--socket", sock, "ctl", "restart", "--json", "web"})
	before := time.Now()
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	var lines []api.Event
	for sc.Scan() {
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, ev)
	}
	if len(lines) != 1 || lines[0].Step != api.StepResult || len(lines[0].Results) != 1 {
		t.Fatalf("want the outcome alone, have %q", out.String())
	}
	ev := lines[0]
	if ev.Time.Before(before) || ev.Time.After(time.Now()) {
		t.Errorf("outcome's time %v, want the time it was printed (after %v)", ev.Time, before)
	}
	if ev.ElapsedS <= 0 || ev.ElapsedS > time.Since(before).Seconds() {
		t.Errorf("outcome's elapsed_s %v, want the seconds since the request (> 0, < %v)", ev.ElapsedS, time.Since(before).Seconds())
	}
}

// A reload's human output says each failure once: a failure shown as a
// step is not repeated in the outcome, nginx's failed step says how long
// it took and leaves its text to the outcome's "nginx: FAILED (...)" line.
func TestReloadOutcomeSaysFailuresOnce(t *testing.T) {
	var out bytes.Buffer
	pp := newProgressPrinter(&out, false)
	plan := &api.ReloadPlan{Config: "gosup.toml", Changes: []api.Change{{Program: "web", Action: "changed", InPlace: []string{"stdout_logfile"}}}}
	pp.event(api.Event{ElapsedS: 0, Step: api.StepPlan, Plan: plan})
	pp.event(api.Event{ElapsedS: 0, Process: "web:web_0", Step: api.StepFailed, Message: "open /nope/out.log: no such file or directory"})
	pp.event(api.Event{ElapsedS: 1.5, Step: api.StepFailed, Message: "nginx: nginx -t failed: unknown directive", TookS: 1.2})
	done := *plan
	done.Results = []api.Result{
		{Name: "web:web_0", Message: "open /nope/out.log: no such file or directory"},
		{Name: "web:web_1", Message: "not shown as a step"},
	}
	done.Nginx = "nginx -t failed: unknown directive"
	printOutcome(&out, &done, pp)
	got := out.String()
	for _, want := range []string{
		"[   0.0s] web:web_0 FAILED: open /nope/out.log: no such file or directory\n",
		"[   1.5s] nginx: FAILED after 1.2s (below)\n",
		"web:web_1: ERROR (not shown as a step)\n",
		"nginx: FAILED (nginx -t failed: unknown directive)\n",
	} {
		if strings.Count(got, want) != 1 {
			t.Errorf("want once %q, have:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "no such file or directory"); n != 1 {
		t.Errorf("web_0's failure said %d times, want once:\n%s", n, got)
	}
	if n := strings.Count(got, "unknown directive"); n != 1 {
		t.Errorf("nginx's failure said %d times, want once:\n%s", n, got)
	}
}
