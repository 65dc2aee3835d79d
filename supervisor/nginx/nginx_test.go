package nginx

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/procgroup/reaper/reapertest"
	"github.com/gosup/gosup/templates"
)

// testReaper is the one reaper of the test process; the manager runs its
// test and reload commands through it.
var testReaper *reaper.Reaper

func TestMain(m *testing.M) {
	reapertest.Main(m, func([]string) int { return 2 }, func(rp *reaper.Reaper) { testReaper = rp })
}

// upstream is the data for one upstream "web" with a server on each port.
func upstream(ports ...int) templates.Data {
	u := templates.Upstream{Name: "web", Balance: "least_conn", Protocol: "http", Location: "/"}
	for _, p := range ports {
		u.Servers = append(u.Servers, templates.Server{Host: "127.0.0.1", Port: p, Name: fmt.Sprintf("web:%d", p), State: "up"})
	}
	return templates.Data{Upstreams: []templates.Upstream{u}}
}

// apply submits d and waits for its outcome.
func apply(t *testing.T, m *Manager, d templates.Data) error {
	t.Helper()
	done := make(chan error, 1)
	m.Submit(d, done)
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("no outcome within 30s")
		return nil
	}
}

// The manager writes what it renders, has the test command check it,
// restores the previous file when the test fails, and leaves an unchanged
// rendering alone. Real commands stand in for nginx: the test rejects a
// file naming port 9999, the reload appends to a log.
func TestManagerTestsRestoresAndSkipsUnchanged(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "gosup.conf")
	reloads := filepath.Join(dir, "reloads")
	tmpl, err := templates.Load("")
	if err != nil {
		t.Fatal(err)
	}
	m := New(Settings{
		Output: out, Template: tmpl,
		TestCommand:    fmt.Sprintf("! grep -q :9999 %s", out),
		ReloadCommand:  fmt.Sprintf("echo reload >> %s", reloads),
		CommandTimeout: 10 * time.Second,
	}, testReaper, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.Start()
	defer m.Stop()

	if err := apply(t, m, upstream(8001, 8002)); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(out)
	if err != nil || strings.Count(string(good), "server 127.0.0.1:") != 2 {
		t.Fatalf("rendered file (%v):\n%s", err, good)
	}
	if st := m.Status(); !st.OK || st.Reloads != 1 || st.Servers != 2 || st.Output != out {
		t.Errorf("status after an update: %+v", st)
	}

	err = apply(t, m, upstream(8001, 9999))
	if err == nil || !strings.Contains(err.Error(), "previous one restored") {
		t.Errorf("rejected file: want the test's failure, have %v", err)
	}
	if now, _ := os.ReadFile(out); string(now) != string(good) {
		t.Errorf("previous file not restored:\n%s", now)
	}
	if st := m.Status(); st.OK || st.Failures != 1 || st.Reloads != 1 || !strings.Contains(st.Error, "previous one restored") {
		t.Errorf("status after a rejected file: %+v", st)
	}

	if err := apply(t, m, upstream(8001, 8002)); err != nil {
		t.Fatal(err)
	}
	if st := m.Status(); !st.OK || st.Reloads != 1 {
		t.Errorf("an unchanged rendering reloaded nginx: %+v", st)
	}
	if b, _ := os.ReadFile(reloads); string(b) != "reload\n" {
		t.Errorf("reload command ran %q, want once", b)
	}
}
