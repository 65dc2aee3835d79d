package importer

import (
	"cmp"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gosup/gosup/supervisor/config"
)

// oracle asks supervisord itself (its Python ServerOptions, Debian's
// `supervisor` package) which processes a supervisord.conf makes.
const oracle = `
import json, shlex, sys
from supervisor.options import ServerOptions
o = ServerOptions()
o.realize(args=["-c", sys.argv[1]])
out = []
for g in o.process_group_configs:
    if type(g).__name__ != "ProcessGroupConfig":
        continue
    for p in g.process_configs:
        out.append(dict(name=g.name + ":" + p.name, argv=shlex.split(p.command), env=p.environment or {},
            dir=p.directory, stopsignal=int(p.stopsignal), startsecs=p.startsecs, startretries=p.startretries,
            stopwaitsecs=p.stopwaitsecs, stopasgroup=p.stopasgroup, killasgroup=p.killasgroup,
            priority=p.priority, group_priority=g.priority, autostart=p.autostart, exitcodes=list(p.exitcodes),
            redirect_stderr=p.redirect_stderr))
json.dump(out, sys.stdout)
`

type supervisordProc struct {
	Name           string            `json:"name"`
	Argv           []string          `json:"argv"`
	Env            map[string]string `json:"env"`
	Dir            string            `json:"dir"`
	StopSignal     int               `json:"stopsignal"`
	StartSecs      int               `json:"startsecs"`
	StartRetries   int               `json:"startretries"`
	StopWaitSecs   int               `json:"stopwaitsecs"`
	StopAsGroup    bool              `json:"stopasgroup"`
	KillAsGroup    bool              `json:"killasgroup"`
	Priority       int               `json:"priority"`
	GroupPriority  int               `json:"group_priority"`
	AutoStart      bool              `json:"autostart"`
	ExitCodes      []int             `json:"exitcodes"`
	RedirectStderr bool              `json:"redirect_stderr"`
}

func supervisordExpansion(t *testing.T, conf string) []supervisordProc {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import supervisor.options").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("supervisord's Python package is missing; CI must install it (apt-get install supervisor): %v", err)
		}
		t.Skip("supervisord is not installed: apt-get install supervisor")
	}
	out, err := exec.Command(py, "-c", oracle, conf).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("supervisord's parser: %v %s", err, stderr)
	}
	var procs []supervisordProc
	if err := json.Unmarshal(out, &procs); err != nil {
		t.Fatal(err)
	}
	return procs
}

// The seed's supervisord.conf imports to a gosup configuration that passes
// gosup check and expands to what supervisord itself would run: the same
// process names, argv, environment, directory and lifecycle settings, with
// the uwsgi ports recorded as port_start.
func TestSeedMatchesSupervisord(t *testing.T) {
	dir := t.TempDir()
	seed, err := os.ReadFile("testdata/seed/supervisord.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "supervisord.conf")
	if err := os.WriteFile(conf, seed, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := supervisordExpansion(t, conf)
	if len(want) != 36 {
		t.Fatalf("supervisord makes %d processes, the seed has 36", len(want))
	}

	res, err := Import(conf)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "gosup.toml")
	if err := os.WriteFile(out, res.TOML, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(out)
	if err != nil {
		t.Fatalf("the import does not pass gosup check: %v\n%s", err, res.TOML)
	}
	again, err := Import(conf)
	if err != nil || string(again.TOML) != string(res.TOML) {
		t.Errorf("a second import gave different bytes (%v)", err)
	}

	have := map[string]supervisordProc{}
	ports := map[string]int{}
	for _, p := range cfg.Programs {
		for _, ps := range p.Procs {
			env := map[string]string{}
			for _, kv := range ps.Env {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			s := ps.Program
			have[ps.FullName()] = supervisordProc{
				Name: ps.FullName(), Argv: ps.Argv, Env: env, Dir: ps.Dir, StopSignal: int(s.StopSignal),
				StartSecs: s.StartSecs, StartRetries: s.StartRetries, StopWaitSecs: s.StopWaitSecs,
				StopAsGroup: s.StopAsGroup, KillAsGroup: s.KillAsGroup, Priority: s.Priority, AutoStart: s.AutoStart,
				ExitCodes: s.ExitCodes, RedirectStderr: s.RedirectStderr,
			}
			ports[ps.FullName()] = ps.Port
		}
	}
	// supervisord starts groups by their priority, then processes by
	// theirs; gosup's priorities must give the same order.
	for _, a := range want {
		for _, b := range want {
			sv := cmp.Or(cmp.Compare(a.GroupPriority, b.GroupPriority), cmp.Compare(a.Priority, b.Priority))
			gs := cmp.Compare(have[a.Name].Priority, have[b.Name].Priority)
			if sv != gs {
				t.Errorf("start order of %s and %s: supervisord %d, gosup %d", a.Name, b.Name, sv, gs)
			}
		}
	}
	for name, h := range have {
		h.Priority = 0
		have[name] = h
	}
	for i := range want {
		want[i].Priority, want[i].GroupPriority = 0, 0
	}
	if len(have) != len(want) {
		t.Errorf("gosup makes %d processes, supervisord %d", len(have), len(want))
	}
	for _, w := range want {
		h, ok := have[w.Name]
		if !ok {
			t.Errorf("%s: supervisord runs it, gosup has no such process", w.Name)
			continue
		}
		if w.Env == nil {
			w.Env = map[string]string{}
		}
		wj, _ := json.Marshal(w)
		hj, _ := json.Marshal(h)
		if string(wj) != string(hj) {
			t.Errorf("%s differs:\nsupervisord %s\ngosup       %s", w.Name, wj, hj)
		}
		if strings.Contains(w.Name, ":web_") {
			if p := ports[w.Name]; !slices.Contains(w.Argv, "127.0.0.1:"+itoa(p)) {
				t.Errorf("%s: port_start gives %d, the command says %q", w.Name, p, w.Argv)
			}
		}
	}
	if cfg.Memmon == nil || cfg.Memmon.Any != 400<<20 || cfg.Memmon.Program["worker_00"] != 600<<20 || cfg.Email == nil || cfg.Email.To[0] != "ops@example.com" {
		t.Errorf("memmon: %+v %+v", cfg.Memmon, cfg.Email)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
