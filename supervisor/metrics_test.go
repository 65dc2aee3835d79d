package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/supervisor/api"
)

// scrape GETs /metrics through the [http] unix socket at sock.
func scrape(t testing.TB, sock string) []byte {
	t.Helper()
	resp, err := socketHTTPClient(sock).Get("http://localhost/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	return body
}

// families parses a text exposition.
func families(t testing.TB, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// series is a family's series whose labels include want, or nil.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is the value of a counter, gauge or untyped series, and whether
// there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	m := series(fams, name, want)
	switch {
	case m == nil:
		return 0, false
	case m.Counter != nil:
		return m.Counter.GetValue(), true
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

// A real daemon's /metrics, scraped through its [http] listener: each
// process's state, exits by reason (each reason made to happen: an exit
// in exitcodes, one not, kill -9, ctl stop, memmon's restart), restarts,
// figures, the reloads by outcome with their durations, the daemon's own;
// and promtool check metrics accepts it.
func TestMetricsOfARealDaemon(t *testing.T) {
	port := freePort(t)
	dir, err := os.MkdirTemp("", "gsm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "http.sock")
	body := program("web", "listen", 1, fmt.Sprintf("port_start = %d", port)) +
		program("idle", "sleep", 1, "") +
		program("crash", "sleep", 1, "") +
		program("hog", "hog 128", 1, "") + `
[program.once]
command = "/bin/true"
startsecs = 0
autorestart = false

[program.fails]
command = "/bin/false"
startsecs = 0
autorestart = false

[memmon]
interval = "200ms"
samples = 3
program = { hog = "80MB" }

[http]
listen = "` + sock + `"
`
	file := writeConfig(t, body)
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING", "web", "idle", "crash")
	waitState(t, cl, "once:once", "EXITED")
	waitState(t, cl, "fails:fails", "EXITED")
	crash := mustStatus(t, cl, "crash")[0]
	if err := unix.Kill(crash.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNewPid(t, cl, "crash:crash_0", crash.Pid)
	if _, err := cl.Action(context.Background(), "stop", api.ActionRequest{Patterns: []string{"idle"}}); err != nil {
		t.Fatal(err)
	}
	hog := waitStatus(t, cl, "hog:hog_0", "restarted by memmon", func(p api.ProcStatus) bool { return p.MemmonReason != "" && p.State == "RUNNING" })
	// A reload that changes nothing, and one of a file that does not load.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	rewriteConfig(t, file, body+"\n[program.broken\n")
	if _, err := cl.Reload(ctx, false); err == nil {
		t.Fatal("a reload of a broken file succeeded")
	}
	rewriteConfig(t, file, body)

	raw := scrape(t, sock)
	fams := families(t, raw)
	check := func(name string, want float64, labels ...string) {
		t.Helper()
		if v, ok := value(fams, name, labels...); !ok || v != want {
			t.Errorf("%s%v = %v (present: %v), want %v", name, labels, v, ok, want)
		}
	}
	atLeast := func(name string, least float64, labels ...string) {
		t.Helper()
		if v, ok := value(fams, name, labels...); !ok || v < least {
			t.Errorf("%s%v = %v (present: %v), want at least %v", name, labels, v, ok, least)
		}
	}
	absent := func(name string, labels ...string) {
		t.Helper()
		if v, ok := value(fams, name, labels...); ok {
			t.Errorf("%s%v = %v, want no series", name, labels, v)
		}
	}
	// Every process's stateset has its one state at 1.
	for _, p := range mustStatus(t, cl) {
		sum := 0.0
		for _, st := range []string{"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"} {
			v, ok := value(fams, "gosup_process_state", "process", p.Name, "state", st)
			if !ok {
				t.Errorf("%s: no gosup_process_state series for %s", p.Name, st)
			}
			sum += v
		}
		if sum != 1 {
			t.Errorf("%s: the states sum to %v, want 1", p.Name, sum)
		}
	}
	web0 := []string{"group", "web", "program", "web", "process", "web:web_0", "port", strconv.Itoa(port)}
	check("gosup_process_state", 1, append(web0, "state", "RUNNING")...)
	check("gosup_process_up", 1, web0...)
	atLeast("gosup_process_start_time_seconds", float64(time.Now().Add(-time.Hour).Unix()), web0...)
	atLeast("gosup_process_resident_memory_bytes", 1, web0...)
	atLeast("gosup_process_tree_resident_memory_bytes", 1, web0...)
	atLeast("gosup_process_open_fds", 3, web0...)
	atLeast("gosup_process_cpu_seconds_total", 0, web0...)
	check("gosup_process_log_dropped_bytes_total", 0, append(web0, "stream", "stderr")...)
	check("gosup_process_up", 0, "process", "idle:idle_0", "port", "")
	check("gosup_process_state", 1, "process", "idle:idle_0", "state", "STOPPED")
	check("gosup_process_exits_total", 1, "process", "idle:idle_0", "reason", "stopped")
	absent("gosup_process_start_time_seconds", "process", "idle:idle_0")
	absent("gosup_process_resident_memory_bytes", "process", "idle:idle_0")
	check("gosup_process_exits_total", 1, "process", "crash:crash_0", "port", "", "reason", "killed")
	check("gosup_process_exits_total", 0, "process", "crash:crash_0", "reason", "unexpected")
	check("gosup_process_restarts_total", 1, "process", "crash:crash_0")
	check("gosup_process_exits_total", 1, "process", "once:once", "reason", "expected")
	check("gosup_process_exits_total", 1, "process", "fails:fails", "reason", "unexpected")
	check("gosup_process_exits_total", 0, "process", "fails:fails", "reason", "expected")
	atLeast("gosup_process_exits_total", 1, "process", "hog:hog_0", "reason", "memmon")
	check("gosup_process_exits_total", 0, "process", "hog:hog_0", "reason", "stopped")
	atLeast("gosup_memmon_restarts_total", 1)
	atLeast("gosup_memmon_samples_total", 3)
	check("gosup_processes", 6)

	check("gosup_config_reloads_total", 1, "outcome", "ok")
	check("gosup_config_reloads_total", 1, "outcome", "invalid")
	check("gosup_config_reloads_total", 0, "outcome", "failed")
	check("gosup_config_last_reload_successful", 0)
	if h := series(fams, "gosup_config_reload_duration_seconds", nil); h == nil || h.Histogram.GetSampleCount() != 2 {
		t.Errorf("reload duration histogram: %v, want 2 reloads", h)
	}
	atLeast("gosup_config_last_reload_success_timestamp_seconds", float64(time.Now().Add(-time.Hour).Unix()))
	check("gosup_upgrades_total", 0, "outcome", "ok")
	check("gosup_upgrades_total", 0, "outcome", "failed")
	check("gosup_nginx_reloads_total", 0, "outcome", "ok")
	absent("gosup_nginx_servers")
	absent("gosup_nginx_last_update_successful")
	atLeast("gosup_start_time_seconds", float64(time.Now().Add(-time.Hour).Unix()))
	check("gosup_build_info", 1, "goversion", "")
	atLeast("gosup_http_connections_total", 1)
	check("gosup_http_connections_refused_total", 0)
	atLeast("go_goroutines", 1)
	atLeast("process_open_fds", 1)
	if t.Failed() {
		t.Logf("hog: %+v\n%s", hog, raw)
	}
	promtoolCheck(t, raw)

	// A reload that changes [memmon] replaces the watchdog: its counters
	// go on.
	restarts, _ := value(fams, "gosup_memmon_restarts_total")
	samples, _ := value(fams, "gosup_memmon_samples_total")
	rewriteConfig(t, file, strings.Replace(body, "samples = 3", "samples = 4", 1))
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	fams = families(t, scrape(t, sock))
	check("gosup_config_reloads_total", 2, "outcome", "ok")
	check("gosup_config_last_reload_successful", 1)
	atLeast("gosup_memmon_restarts_total", restarts)
	atLeast("gosup_memmon_samples_total", samples)
	check("gosup_process_exits_total", 1, "process", "crash:crash_0", "reason", "killed")
}

// promtoolCheck runs promtool check metrics on a scrape: Prometheus' own
// linter of the exposition format and its naming conventions.
func promtoolCheck(t *testing.T, raw []byte) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool (Debian's prometheus package) is needed: %v", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
