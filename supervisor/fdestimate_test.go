package supervisor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// openFDs counts the descriptors this process has open, sockets left out:
// a client's connection to the daemon and the daemon's end of it (both in
// this process) close at times of their own, and the daemon's listeners
// are part of config.DaemonFDs, not of a process.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(link, "socket:") {
			continue // gone (the directory's own descriptor), or a socket
		}
		n++
	}
	return n
}

// TestFDEstimate checks procgroup.FDsPerProcess, what gosup check adds up
// and compares with RLIMIT_NOFILE, against the descriptors a real daemon
// holds for real children: for each kind of logging, the processes of one
// program are started, write to both streams and are sampled (ctl status)
// and scraped (GET /metrics), and what the daemon then holds more is the
// real count. The estimate must not be below it, nor above it by more than
// a quarter of a descriptor a process. The first program started (warm)
// takes what the daemon opens once, at its first spawn or scrape; that and
// what the daemon holds for itself must leave config.DaemonFDs headroom.
func TestFDEstimate(t *testing.T) {
	before := openFDs(t)
	dir := t.TempDir()
	say := `command = "sh -c 'echo out; echo err >&2; exec sleep 3600'"` + "\nstartsecs = 0\nautostart = false\n"
	body := fmt.Sprintf(`[http]
listen = %q
[program.warm]
%s
[program.both]
%snumprocs = 6
process_name = "both%%(process_num)d"
[program.redirect]
%snumprocs = 4
process_name = "redirect%%(process_num)d"
redirect_stderr = true
[program.none]
%snumprocs = 3
process_name = "none%%(process_num)d"
stdout_logfile = "NONE"
stderr_logfile = "NONE"
[program.device]
%snumprocs = 3
process_name = "device%%(process_num)d"
stdout_logfile = "/dev/null"
stderr_logfile = "/dev/null"
`, filepath.Join(dir, "http.sock"), say, say, say, say, say)
	file := writeConfig(t, body)
	_, cl, cfg := startSupervisor(t, file)
	defer cl.Close()
	hc := socketHTTPClient(cfg.HTTP.Listen)
	ctx := context.Background()
	own := openFDs(t) - before

	// run starts the program, waits for its processes to be RUNNING and
	// to have written their logs, samples and scrapes them, and returns
	// how many more descriptors the daemon then holds.
	run := func(name string) (n, real, est int) {
		t.Helper()
		var procs []procgroup.ProcSpec
		for _, p := range cfg.Programs {
			if p.Name == name {
				procs = p.Procs
			}
		}
		for i := range procs {
			est += procgroup.FDsPerProcess(&procs[i], true)
		}
		n0 := openFDs(t)
		res, err := cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{name + ":*"}})
		if err != nil || len(res) != len(procs) {
			t.Fatalf("start %s: %+v %v", name, res, err)
		}
		waitAll(t, cl, "RUNNING", name+":*")
		for _, ps := range procs {
			for _, ls := range []procgroup.LogSpec{ps.Stdout, ps.Stderr} {
				if ls.Kind == procgroup.LogFile && !ls.Device() {
					waitNonEmpty(t, ls.Path)
				}
			}
		}
		mustStatus(t, cl, name+":*")
		resp, err := hc.Get("http://localhost/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(metrics), `gosup_process_open_fds{`) {
			t.Fatalf("GET /metrics: %s\n%.500s", resp.Status, metrics)
		}
		return len(procs), openFDs(t) - n0, est
	}

	_, wreal, west := run("warm")
	for _, name := range []string{"both", "redirect", "none", "device"} {
		n, real, est := run(name)
		t.Logf("%s: %d processes hold %d descriptors, estimated %d", name, n, real, est)
		if est < real || est-real > n/4 {
			t.Errorf("%s: %d processes hold %d descriptors in the daemon; procgroup.FDsPerProcess says %d: update it", name, n, real, est)
		}
	}
	lazy := wreal - west
	t.Logf("daemon: %d descriptors of its own (sockets left out), %d more at its first spawn and scrape", own, lazy)
	if own+lazy > config.DaemonFDs/2 {
		t.Errorf("the daemon holds %d descriptors of its own (%d at start, %d more at its first spawn and scrape, sockets left out): config.DaemonFDs (%d) must leave at least half for what comes and goes", own+lazy, own, lazy, config.DaemonFDs)
	}
	if total := openFDs(t) - before; total > cfg.FDs() {
		t.Errorf("the daemon holds %d descriptors, sockets left out; config.FDs estimates %d in all", total, cfg.FDs())
	}
}

// waitNonEmpty waits for the file at path to hold a byte.
func waitNonEmpty(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still empty after 30s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
