package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// scrapeUnix GETs /metrics from the [http] listener on the unix socket
// sock until it answers (a minute at most), and parses it.
func scrapeUnix(t *testing.T, sock string) map[string]*dto.MetricFamily {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	defer cl.CloseIdleConnections()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		resp, err := cl.Get("http://localhost/metrics")
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				parser := expfmt.NewTextParser(model.UTF8Validation)
				fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
				if err != nil {
					t.Fatalf("parse /metrics: %v\n%s", err, body)
				}
				return fams
			}
			err = rerr
			if err == nil {
				err = &httpStatusError{resp.Status}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /metrics on %s: %v", sock, err)
		}
	}
}

type httpStatusError struct{ status string }

func (e *httpStatusError) Error() string { return e.status }

// metricValue is the value of the counter or gauge name whose labels
// include labels (name, value pairs); false: no such series.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestUpgradeKeepsTheMetricCounters: a process's exits by reason and
// restarts, the reloads by outcome and their durations, and the daemon's
// start go on across an in-place upgrade (a real binary execs itself),
// and the upgrade is counted.
func TestUpgradeKeepsTheMetricCounters(t *testing.T) {
	bin := buildGosup(t, t.TempDir(), "metrics-upgrade-test")
	d := startUpgradeDaemon(t, bin, 2)
	dir := filepath.Dir(d.log)
	cfg := filepath.Join(dir, "gosup.toml")
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "http.sock")
	// The listener comes with a reload: one counted ok.
	if err := os.WriteFile(cfg, append(body, "\n[http]\nlisten = \""+sock+"\"\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	old := d.pids["sl:sl_0"]
	if err := unix.Kill(old, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitRespawned(t, "sl:sl_0", old)
	check := func(when string, fams map[string]*dto.MetricFamily, name string, want float64, labels ...string) {
		t.Helper()
		if v, ok := metricValue(fams, name, labels...); !ok || v != want {
			t.Errorf("%s: %s%v = %v (present: %v), want %v", when, name, labels, v, ok, want)
		}
	}
	before := scrapeUnix(t, sock)
	started, _ := metricValue(before, "gosup_start_time_seconds")
	for _, c := range []struct {
		name   string
		want   float64
		labels []string
	}{
		{"gosup_process_exits_total", 1, []string{"process", "sl:sl_0", "reason", "killed"}},
		{"gosup_process_exits_total", 0, []string{"process", "sl:sl_1", "reason", "killed"}},
		{"gosup_process_restarts_total", 1, []string{"process", "sl:sl_0"}},
		{"gosup_config_reloads_total", 1, []string{"outcome", "ok"}},
		{"gosup_config_reload_duration_seconds", 1, nil},
	} {
		check("before the upgrade", before, c.name, c.want, c.labels...)
	}
	check("before the upgrade", before, "gosup_upgrades_total", 0, "outcome", "ok")
	if _, err := d.upgrade(t, ctx); err != nil {
		t.Fatal(err)
	}
	after := scrapeUnix(t, sock)
	for _, c := range []struct {
		name   string
		want   float64
		labels []string
	}{
		{"gosup_process_exits_total", 1, []string{"process", "sl:sl_0", "reason", "killed"}},
		{"gosup_process_exits_total", 0, []string{"process", "sl:sl_0", "reason", "stopped"}},
		{"gosup_process_restarts_total", 1, []string{"process", "sl:sl_0"}},
		{"gosup_config_reloads_total", 1, []string{"outcome", "ok"}},
		{"gosup_config_reload_duration_seconds", 1, nil},
		{"gosup_upgrades_total", 1, []string{"outcome", "ok"}},
		{"gosup_upgrades_total", 0, []string{"outcome", "failed"}},
		{"gosup_start_time_seconds", started, nil},
	} {
		check("after the upgrade", after, c.name, c.want, c.labels...)
	}
}
