package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosup/gosup/procgroup/hostlimits"

	"golang.org/x/sys/unix"
)

// TestLimitWarnings: the limits a test cannot lower on this host (pid_max,
// a cgroup's pids.max, RLIMIT_NPROC for root's children with user =) warn
// when the processes take more than half of them, and only then.
func TestLimitWarnings(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gosup.toml")
	body := "[supervisor]\nsocket = \"s.sock\"\nlogdir = \"log\"\n" +
		"[program.web]\ncommand = \"/bin/sleep 3600\"\nnumprocs = 1000\nprocess_name = \"web%(process_num)d\"\n" +
		"[program.job]\ncommand = \"/bin/sleep 3600\"\nuser = \"nobody\"\nnumprocs = 10\nprocess_name = \"job%(process_num)d\"\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	roomy := hostlimits.Limits{NoFile: 1 << 20, NProc: unix.RLIM_INFINITY, PidMax: 4194304, Pids: 0}
	if w := LimitWarnings(cfg, roomy); len(w) != 0 {
		t.Fatalf("warnings on a roomy host: %v", w)
	}
	for _, c := range []struct {
		name string
		set  func(*hostlimits.Limits)
		want string // "": no warning
	}{
		{"pid_max", func(h *hostlimits.Limits) { h.PidMax = 2000 }, "the 1010 processes take more than half of this host's pids (kernel.pid_max 2000)"},
		{"pid_max roomy", func(h *hostlimits.Limits) { h.PidMax = 2020 }, ""},
		{"pids.max", func(h *hostlimits.Limits) { h.Pids, h.PidsCgroup = 1500, "/system.slice/gosup.service" }, "more than half of the 1500 tasks (processes and threads) that the cgroup this runs in allows (/system.slice/gosup.service: pids.max"},
		{"nproc", func(h *hostlimits.Limits) { h.NProc = 1500 }, "1010 processes, and their threads, would run under a user whose processes are bounded to 1500 here (RLIMIT_NPROC"},
		{"nproc root", func(h *hostlimits.Limits) { h.NProc, h.Root = 1500, true }, ""},
		{"nproc root users", func(h *hostlimits.Limits) { h.NProc, h.Root = 15, true }, "10 processes, and their threads, would run under a user"},
		{"nofile", func(h *hostlimits.Limits) { h.NoFile = 4096 }, "the daemon needs up to 6124 file descriptors for the 1010 processes"},
	} {
		h := roomy
		c.set(&h)
		w := LimitWarnings(cfg, h)
		switch {
		case c.want == "" && len(w) != 0:
			t.Errorf("%s: %v", c.name, w)
		case c.want != "" && (len(w) != 1 || !strings.Contains(w[0].Warning(), c.want)):
			t.Errorf("%s: %v, want one with %q", c.name, w, c.want)
		case c.want != "" && !strings.HasPrefix(w[0].Warning(), file+":6: warning: program.web.numprocs: "):
			t.Errorf("%s: %s does not point at program.web.numprocs", c.name, w[0].Warning())
		}
	}
}
