package metrics

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// refCollector is the per-process families through client_golang's
// generic path (a const metric a series): what appendProcesses must
// match.
type refCollector struct{ ps []Process }

func (refCollector) Describe(chan<- *prometheus.Desc) {} // unchecked

func (c refCollector) Collect(ch chan<- prometheus.Metric) {
	desc := func(f family, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(f.name, f.help, append(slices.Clone(processLabels), extra...), nil)
	}
	typ := map[string]prometheus.ValueType{"gauge": prometheus.GaugeValue, "counter": prometheus.CounterValue}
	for _, p := range c.ps {
		port := ""
		if p.Port > 0 {
			port = strconv.Itoa(p.Port)
		}
		send := func(f family, v float64, extra ...string) {
			var names []string
			if len(extra) > 0 {
				names = extra[:1]
			}
			ch <- prometheus.MustNewConstMetric(desc(f, names...), typ[f.typ], v, append([]string{p.Group, p.Program, p.Name, port}, extra[min(1, len(extra)):]...)...)
		}
		for _, st := range States {
			send(famState, bool01(st == p.State), "state", st)
		}
		send(famUp, bool01(p.State == "RUNNING"))
		if !p.StartTime.IsZero() {
			send(famStartTime, float64(p.StartTime.UnixNano())/1e9)
		}
		send(famRestarts, float64(p.Restarts))
		for i, r := range ExitReasons {
			send(famExits, float64(p.Exits[i]), "reason", r)
		}
		if p.Sampled {
			if p.CPUOK {
				send(famCPU, p.CPU.Seconds())
			}
			send(famRSS, float64(p.RSS))
			send(famTreeRSS, float64(max(p.TreeRSS, p.RSS)))
			if p.FDsOK {
				send(famFDs, float64(p.FDs))
			}
		}
		send(famLogDropped, float64(p.StdoutDropped), "stream", "stdout")
		send(famLogDropped, float64(p.StderrDropped), "stream", "stderr")
	}
}

// parse reads a text exposition.
func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, b)
	}
	return fams
}

// oddProcesses are processes in every state, with and without a child,
// figures and a port, and names that need escaping.
func oddProcesses() []Process {
	now := time.Unix(1764500000, 123456789)
	ps := []Process{
		{Group: "web", Program: "web", Name: "web:web_0", Port: 9000, State: "RUNNING", StartTime: now, Restarts: 3, Exits: [5]int64{1, 2, 3, 4, 5},
			Sampled: true, CPU: 1234567 * time.Microsecond, CPUOK: true, RSS: 123 << 20, TreeRSS: 0, FDs: 9, FDsOK: true, StdoutDropped: 7},
		{Group: "web", Program: "web", Name: "web:web_1", Port: 9001, State: "STOPPED", Exits: [5]int64{0, 0, 0, 1, 0}},
		{Group: `g"q`, Program: `back\slash`, Name: "g\"q:new\nline", State: "BACKOFF", Sampled: true, RSS: 1, TreeRSS: 1 << 40, StderrDropped: 1 << 60},
		{Group: "w", Program: "w", Name: "w:w", State: "FATAL"},
	}
	for _, st := range States {
		ps = append(ps, Process{Group: "all", Program: "all", Name: "all:" + strings.ToLower(st), State: st, StartTime: now.Add(time.Duration(len(ps)) * time.Millisecond)})
	}
	return ps
}

// appendProcesses writes the same families, series and values as
// client_golang does from const metrics.
func TestAppendProcessesMatchesClientGolang(t *testing.T) {
	ps := oddProcesses()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(refCollector{ps})
	want, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := parse(t, appendProcesses(nil, ps))
	if len(got) != len(want) {
		t.Errorf("%d families, want %d", len(got), len(want))
	}
	for _, w := range want {
		g := got[w.GetName()]
		if g == nil {
			t.Errorf("no %s", w.GetName())
			continue
		}
		// The parser leaves the series in the order written, client_golang
		// sorts them; the labels are sorted by both.
		slices.SortFunc(g.Metric, func(a, b *dto.Metric) int { return strings.Compare(a.String(), b.String()) })
		slices.SortFunc(w.Metric, func(a, b *dto.Metric) int { return strings.Compare(a.String(), b.String()) })
		if !proto.Equal(g, w) {
			t.Errorf("%s differs:\nhave %v\nwant %v", w.GetName(), g, w)
		}
	}
	if b := appendProcesses(nil, nil); len(b) != 0 {
		t.Errorf("no process: want nothing, have %q", b)
	}
}

// snapshotOdd is a snapshot of oddProcesses with every daemon figure set.
func snapshotOdd() Snapshot {
	return Snapshot{
		Processes: oddProcesses(), MemmonSamples: 10, MemmonRestarts: 2, MemmonGiveUps: 1,
		AlertMailsSent: 1, AlertsMailed: 2, AlertFailures: 3, AlertRetries: 4, AlertsDropped: 5, AlertsGivenUp: 6, AlertsHeld: 7,
		NginxRenders: [3]int64{1, 2, 3}, NginxTests: [2]int64{4, 5}, NginxReloads: [3]int64{6, 7, 8}, NginxLastSuccess: time.Unix(1764500000, 0),
		Nginx: true, NginxServers: 4, NginxDown: 1,
		Reloads:       map[string]int64{"ok": 3, "invalid": 1},
		ReloadSeconds: Histogram{Count: 4, Sum: 1.5, Buckets: map[float64]uint64{0.1: 2, 1: 4}},
		LastReloadOK:  true, LastReloadSuccess: time.Unix(1764500000, 0),
		Upgrades: 2, UpgradeFailures: 1, Rescues: 1, Panics: map[string]int64{"nginx manager": 2},
		WatchdogMissed: 3, StartTime: time.Unix(1764400000, 0), Version: "v1.2.3", Revision: "abc", GoVersion: "go1.26",
		HTTPConnections: 9, HTTPRefused: 1,
		Registry: true, RegistryReachable: true, RegistryMembers: 4, RegistryDown: 1, RegistryFailedWrites: 2, RegistryLeaseGrants: 1,
		HAProxy: true, HAProxyReloads: [3]int64{5, 1, 0}, HAProxyRuntime: [2]int64{7, 1}, HAProxyServers: 8, HAProxyDown: 2,
		Watch: true, WatchReachable: true, WatchMembers: 8, WatchIgnored: 1, WatchDropped: 2,
	}
}

func get(t *testing.T, h http.Handler, gz bool) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip, deflate")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	resp := w.Result()
	body := w.Body.Bytes()
	if gz && resp.Header.Get("Content-Encoding") == "gzip" {
		r, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body, err = io.ReadAll(r); err != nil {
			t.Fatal(err)
		}
	}
	return resp, body
}

// A scrape has every metric of the snapshot, the Go runtime's and the
// process's, in the text format, gzipped when asked; promtool accepts it.
func TestHandlerServesEverything(t *testing.T) {
	snap := snapshotOdd()
	calls := 0
	h := NewHandler(func() Snapshot { calls++; return snap }, Options{})
	resp, body := get(t, h, false)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") || calls != 1 {
		t.Fatalf("%s %q, %d snapshots taken", resp.Status, resp.Header.Get("Content-Type"), calls)
	}
	fams := parse(t, body)
	for _, name := range []string{"gosup_process_state", "gosup_process_exits_total", "gosup_memmon_give_ups_total", "gosup_alert_retries_total",
		"gosup_nginx_renders_total", "gosup_nginx_servers_down", "gosup_nginx_last_update_successful", "gosup_config_reload_duration_seconds", "gosup_upgrades_total",
		"gosup_panics_total", "gosup_build_info", "gosup_http_connections_refused_total", "go_goroutines", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if h := fams["gosup_config_reload_duration_seconds"].Metric[0].Histogram; h.GetSampleCount() != 4 || h.GetSampleSum() != 1.5 {
		t.Errorf("histogram: %v", h)
	}
	resp, zbody := get(t, h, true)
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("asked for gzip, have Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	if len(parse(t, zbody)) != len(fams) {
		t.Errorf("the gzipped scrape has other families")
	}
	promtool(t, body)
}

// promtool runs promtool check metrics: Prometheus' linter of the format
// and its naming conventions.
func promtool(t *testing.T, body []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool (Debian's prometheus package) is needed: %v", err)
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// Scrapes beyond MaxInFlight at once get a 503 at once; those in flight
// finish.
func TestHandlerBoundsScrapesInFlight(t *testing.T) {
	entered, release := make(chan struct{}, 2), make(chan struct{})
	h := NewHandler(func() Snapshot {
		entered <- struct{}{}
		<-release
		return Snapshot{}
	}, Options{MaxInFlight: 2})
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Go(func() {
			resp, _ := get(t, h, false)
			codes[i] = resp.StatusCode
		})
	}
	<-entered
	<-entered // both in flight, held
	resp, body := get(t, h, false)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a third scrape: %s %s, want 503", resp.Status, body)
	}
	close(release)
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 {
		t.Errorf("the scrapes in flight: %v", codes)
	}
}

// A processWriter kept from one scrape to the next writes what a fresh
// one does as the processes change: renamed, another port, fewer, more.
func TestProcessWriterFollowsTheProcesses(t *testing.T) {
	var pw processWriter
	ps := oddProcesses()
	steps := [][]Process{ps, ps}
	renamed := slices.Clone(ps)
	renamed[0].Name, renamed[1].Port, renamed[2].Group = "web:web_9", 9100, "other"
	steps = append(steps, renamed, renamed[:2], append(slices.Clone(renamed), oddProcesses()...), nil, ps[:1])
	for i, step := range steps {
		if got, want := pw.append(nil, step), appendProcesses(nil, step); !bytes.Equal(got, want) {
			t.Errorf("step %d: the kept writer wrote\n%s\nwant\n%s", i, got, want)
		}
	}
}
