package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup"
)

// Each bad file must fail with an error that names the file, the line and
// the key, and says what is wrong.
func TestBadConfigs(t *testing.T) {
	// Every testdata/*.bad.toml is loaded; a fixture without an expectation
	// here, or an expectation without a fixture, fails the test.
	expected := map[string]string{
		"tasks_max_one.bad.toml":           `tasks_max_one.bad.toml:3: supervisor.tasks_max: must be at least 258 (256 for gosup + 1 for each of its 2 processes) or "infinity", have 1`,
		"tasks_max_word.bad.toml":          `tasks_max_word.bad.toml:3: supervisor.tasks_max: invalid tasks_max "unlimited": want a number of tasks or "infinity"`,
		"tasks_max_negative.bad.toml":      `tasks_max_negative.bad.toml:3: supervisor.tasks_max: must be a number of tasks or "infinity", have -1`,
		"unknown_key.bad.toml":             `unknown_key.bad.toml:3: program.web.comand: unknown key (did you mean "command"?)`,
		"unknown_section.bad.toml":         `unknown_section.bad.toml:1: programs.web: unknown key (did you mean "program"?)`,
		"bad_type.bad.toml":                `bad_type.bad.toml:3: program.web.numprocs: incompatible types`,
		"bad_toml.bad.toml":                `bad_toml.bad.toml:2: `,
		"dup_port.bad.toml":                `dup_port.bad.toml:5: program.web.port_start: port 9003 is also claimed by api:api`,
		"dup_name.bad.toml":                `dup_name.bad.toml:7: program.b.process_name: process name "same" is also used by program "a"`,
		"name_not_varying.bad.toml":        `name_not_varying.bad.toml:1: program.web.process_name: "%(program_name)s" gives the same name "web" to several processes; with numprocs = 20 it must contain %(process_num)d`,
		"bad_signal.bad.toml":              `bad_signal.bad.toml:3: program.web.stopsignal: invalid signal "TERMINATE"`,
		"bad_size.bad.toml":                `bad_size.bad.toml:3: program.web.stdout_logfile_maxbytes: invalid size "50XB"`,
		"bad_duration.bad.toml":            `bad_duration.bad.toml:2: supervisor.shutdown_timeout: invalid duration "30 seconds"`,
		"bad_autorestart.bad.toml":         `bad_autorestart.bad.toml:3: program.web.autorestart: invalid autorestart sometimes`,
		"numprocs_zero.bad.toml":           `numprocs_zero.bad.toml:3: program.web.numprocs: must be at least 1, have 0`,
		"max_unavailable_word.bad.toml":    `max_unavailable_word.bad.toml:3: program.web.max_unavailable: invalid max_unavailable "a quarter": want a number of processes such as 2 or a percentage of numprocs such as "25%"`,
		"max_unavailable_percent.bad.toml": `max_unavailable_percent.bad.toml:5: program.web.max_unavailable: a percentage of numprocs must be 1%-100%, have 150%`,
		"max_unavailable_zero.bad.toml":    `max_unavailable_zero.bad.toml:4: program.web.max_unavailable: must be at least 1 (or a percentage of numprocs such as "25%"), have 0`,
		"no_command.bad.toml":              `no_command.bad.toml:1: program.web.command: is required`,
		"port_no_start.bad.toml":           `port_no_start.bad.toml:2: program.web.command: uses %(port)d but the program has no port_start`,
		"bad_umask.bad.toml":               `bad_umask.bad.toml:3: program.web.umask: invalid umask "099"`,
		"log_timestamps_no_file.bad.toml":  `log_timestamps_no_file.bad.toml:5: program.web.log_timestamps: stamps the lines of a log file gosup writes, and this program has none: stdout_logfile is /dev/stdout, stderr_logfile none`,
		"bad_program_name.bad.toml":        `bad_program_name.bad.toml:1: program.web;evil: program name "web;evil" may only contain`,
		"long_socket.bad.toml":             `long_socket.bad.toml:2: supervisor.socket: path "/tmp/aaaa`,
		"shared_log.bad.toml":              `shared_log.bad.toml:5: program.b: log file /tmp/same.log is also written by a:a`,
		"backoff_zero.bad.toml":            `backoff_zero.bad.toml:3: program.web.backoff_reset: must be positive, have 0s`,
		"memmon_group_is_program.bad.toml": `memmon_group_is_program.bad.toml:9: memmon.group.web: "web" is a program in group site: limit it with program = { web = ... } or group = { site = ... }`,
		"nginx_balance.bad.toml":           `nginx_balance.bad.toml:10: nginx.upstream.web.balance: invalid balance "random two"`,
		"nginx_injection.bad.toml":         `nginx_injection.bad.toml:11: nginx.upstream.web.server_name: "x; include /etc/shadow" cannot go into nginx's configuration`,
		"nginx_key_typo.bad.toml":          `nginx_key_typo.bad.toml:10: nginx.upstream.web.balanse: unknown key (did you mean "balance"?)`,
		"nginx_missing_template.bad.toml":  `nginx_missing_template.bad.toml:8: nginx.template: read template: open `,
		"nginx_no_section.bad.toml":        `nginx_no_section.bad.toml:4: program.web.upstream: upstream "web" needs an [nginx] table with [nginx.upstream.web]`,
		"nginx_unknown_upstream.bad.toml":  `nginx_unknown_upstream.bad.toml:4: program.web.upstream: upstream "api" is not defined`,
		"nginx_unused_upstream.bad.toml":   `nginx_unused_upstream.bad.toml:11: nginx.upstream.other: no program has upstream = "other"`,
		"nginx_upstream_no_port.bad.toml":  `nginx_upstream_no_port.bad.toml:3: program.web.upstream: program is a server of upstream "web" but has no port_start`,
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.bad.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.bad.toml fixtures")
	}
	seen := map[string]bool{}
	for _, path := range files {
		file := filepath.Base(path)
		seen[file] = true
		t.Run(file, func(t *testing.T) {
			want, ok := expected[file]
			if !ok {
				t.Fatalf("no expected error for %s: add one to the table", file)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("loaded a bad config")
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("want error containing\n\t%s\nhave\n\t%v", want, err)
			}
			if !strings.HasPrefix(err.Error(), filepath.Join(mustAbs(t, "testdata"), file)+":") {
				t.Errorf("error does not start with the file's path and line: %v", err)
			}
		})
	}
	for file := range expected {
		if !seen[file] {
			t.Errorf("expected error for %s, which is not in testdata", file)
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoadDefaultsAndOrder(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gosup.toml")
	err := os.WriteFile(file, []byte(`
[supervisor]
socket = "run/gosup.sock"
logdir = "log"

[program.web]
command = "uwsgi -s 127.0.0.1:90%(process_num)02d --processes 1"
numprocs = 20
process_name = "%(program_name)s_%(process_num)02d"
port_start = 9000
stopasgroup = true

[program.worker]
command = "sentry run worker -c 4"
numprocs = 16
process_name = "%(program_name)s_%(process_num)02d"
priority = 10
killasgroup = false
stopasgroup = true
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Supervisor.Socket != filepath.Join(dir, "run/gosup.sock") || cfg.Supervisor.LogDir != filepath.Join(dir, "log") {
		t.Errorf("relative paths not resolved against the config: %+v", cfg.Supervisor)
	}
	if cfg.Supervisor.SocketMode != "0600" || cfg.Supervisor.ShutdownTimeout.String() != "30s" {
		t.Errorf("defaults: %+v", cfg.Supervisor)
	}
	if cfg.Programs[0].Name != "worker" || cfg.Programs[1].Name != "web" {
		t.Errorf("programs not in priority order: %s, %s", cfg.Programs[0].Name, cfg.Programs[1].Name)
	}
	web := cfg.Programs[1]
	if !web.Spec.KillAsGroup {
		t.Error("stopasgroup = true must imply killasgroup = true")
	}
	if cfg.Programs[0].Spec.KillAsGroup {
		t.Error("an explicit killasgroup = false was overridden")
	}
	s := web.Spec
	if s.StartSecs != 1 || s.StartRetries != 3 || s.StopWaitSecs != 10 || s.AutoRestart != procgroup.RestartUnexpected || s.Priority != 999 || !s.AutoStart {
		t.Errorf("supervisord defaults not applied: %+v", s)
	}
	last := web.Procs[19]
	if last.Name != "web_19" || last.Port != 9019 || last.Argv[2] != "127.0.0.1:9019" {
		t.Errorf("web_19: %+v", last)
	}
}

// The shipped examples load, and expand the way supervisord would run them.
func TestExamples(t *testing.T) {
	sentry, err := Load("../../examples/sentry.toml")
	if err != nil {
		t.Fatal(err)
	}
	var web *Program
	for _, p := range sentry.Programs {
		if p.Name == "web" {
			web = p
		}
	}
	if web == nil || len(web.Procs) != 20 {
		t.Fatalf("sentry.toml: want 20 web processes, have %+v", web)
	}
	for i, p := range web.Procs {
		want := fmt.Sprintf("127.0.0.1:%d", 9000+i)
		if p.Name != fmt.Sprintf("web_%02d", i) || p.Port != 9000+i || p.Argv[2] != want {
			t.Errorf("web %d: name %s port %d argv %q", i, p.Name, p.Port, p.Argv)
		}
	}
	if n := len(sentry.Programs[0].Procs); sentry.Programs[0].Name != "worker" || n != 16 {
		t.Errorf("sentry.toml: want 16 workers first (priority 500), have %s ×%d", sentry.Programs[0].Name, n)
	}
	qs, err := Load("../../examples/quickstart.toml")
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, p := range qs.Programs {
		for _, ps := range p.Procs {
			if ps.Port > 0 {
				ports = append(ports, ps.Port)
			}
		}
	}
	if fmt.Sprint(ports) != "[9100 9101 9102 9103]" {
		t.Errorf("quickstart ports: %v", ports)
	}
}

// The template data carries each server's state: a drained server renders down.
func TestNginxDownServer(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gosup.toml")
	err := os.WriteFile(file, []byte(`
[program.web]
command = "app"
numprocs = 3
process_name = "web_%(process_num)d"
port_start = 9000
upstream = "web"
weight = 2

[nginx]
output = "out.conf"

[nginx.upstream.web]
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Nginx.Template.Render(cfg.NginxData(map[string]bool{"web:web_1": true}, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"    server 127.0.0.1:9000 weight=2;  # web:web_0\n",
		"    server 127.0.0.1:9001 weight=2 down;  # web:web_1\n",
		"    server 127.0.0.1:9002 weight=2;  # web:web_2\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered file lacks %q:\n%s", want, out)
		}
	}
}

// An [nginx] table without output is for gosup render alone: it loads,
// renders, and the daemon gets no nginx to manage (Nginx is nil).
func TestNginxRenderOnly(t *testing.T) {
	dir := writeTree(t, map[string]string{"gosup.toml": `
[program.web]
command = "app"
numprocs = 2
process_name = "web_%(process_num)d"
port_start = 9000
upstream = "web"

[nginx]

[nginx.upstream.web]
protocol = "http"
`})
	cfg, err := Load(filepath.Join(dir, "gosup.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Nginx != nil {
		t.Errorf("Nginx = %+v, want nil: without output the daemon manages no nginx", cfg.Nginx)
	}
	if cfg.NginxRenderOnly == nil {
		t.Fatal("NginxRenderOnly is nil")
	}
	out, err := cfg.RenderNginx(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"upstream web {\n    least_conn;\n", "    server 127.0.0.1:9001;  # web:web_1\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered file lacks %q:\n%s", want, out)
		}
	}
}

// writeTree writes files (relative path → content) under a new temporary
// directory and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Programs split across the main file and conf.d: each knows its file, its
// relative paths and %(here)s follow that file, and the order is priority
// then name whatever the file.
func TestIncludeLoad(t *testing.T) {
	cfg, err := Load("testdata/include/gosup.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := mustAbs(t, "testdata/include")
	main := filepath.Join(dir, "gosup.toml")
	confd := filepath.Join(dir, "conf.d")
	wantFiles := []string{main, filepath.Join(confd, "web.toml"), filepath.Join(confd, "worker.toml")}
	if fmt.Sprint(cfg.Files) != fmt.Sprint(wantFiles) {
		t.Errorf("Files:\nwant %q\nhave %q", wantFiles, cfg.Files)
	}
	wantInclude := []string{filepath.Join(dir, "conf.d/*.toml"), filepath.Join(dir, "vassals.d/*.toml")}
	if fmt.Sprint(cfg.Include) != fmt.Sprint(wantInclude) {
		t.Errorf("Include:\nwant %q\nhave %q", wantInclude, cfg.Include)
	}
	if !cfg.Supervisor.Watch {
		t.Error("watch = true not parsed")
	}
	var order []string
	progs := map[string]*Program{}
	for _, p := range cfg.Programs {
		order = append(order, p.Name)
		progs[p.Name] = p
	}
	if fmt.Sprint(order) != "[api beat worker web]" {
		t.Errorf("want programs in priority then name order, have %v", order)
	}
	for name, file := range map[string]string{"api": main, "beat": wantFiles[2], "worker": wantFiles[2], "web": wantFiles[1]} {
		if progs[name].File != file {
			t.Errorf("%s: File %q, want %q", name, progs[name].File, file)
		}
	}
	api := progs["api"]
	if api.Procs[0].Argv[4] != dir {
		t.Errorf("api: %%(here)s must be the main file's directory: %q", api.Procs[0].Argv)
	}
	if fmt.Sprint(api.TouchReload) != fmt.Sprint([]string{filepath.Join(dir, "api.reload")}) {
		t.Errorf("api TouchReload: %q", api.TouchReload)
	}
	web := progs["web"]
	w1 := web.Procs[1]
	if w1.Argv[4] != filepath.Join(confd, "app") || w1.Dir != filepath.Join(confd, "app") {
		t.Errorf("web: %%(here)s and directory must follow conf.d/web.toml: argv %q dir %q", w1.Argv, w1.Dir)
	}
	if w1.Stdout.Path != filepath.Join(confd, "logs/1.log") {
		t.Errorf("web: relative log path resolved to %q", w1.Stdout.Path)
	}
	if w1.Stderr.Path != filepath.Join(dir, "log", "web_1.stderr.log") {
		t.Errorf("web: AUTO log must go to the main file's logdir, have %q", w1.Stderr.Path)
	}
	wantTouch := []string{filepath.Join(confd, "app/reload.txt"), "/srv/web/deploy"}
	if fmt.Sprint(web.TouchReload) != fmt.Sprint(wantTouch) {
		t.Errorf("web TouchReload:\nwant %q\nhave %q", wantTouch, web.TouchReload)
	}
	if fmt.Sprint(web.Spec.TouchReload) != `[app/reload.txt /srv/web/deploy]` {
		t.Errorf("Spec.TouchReload must stay as written: %q", web.Spec.TouchReload)
	}
}

// An empty or missing conf.d is normal; watch defaults to false.
func TestIncludeNothingMatches(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"gosup.toml": "include = [\"conf.d/*.toml\", \"/nonexistent-gosup-dir/*.toml\"]\n\n[program.web]\ncommand = \"web\"\n",
	})
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(filepath.Join(dir, "gosup.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Files) != 1 || cfg.Files[0] != filepath.Join(dir, "gosup.toml") {
		t.Errorf("Files: %q", cfg.Files)
	}
	if want := []string{filepath.Join(dir, "conf.d/*.toml"), "/nonexistent-gosup-dir/*.toml"}; fmt.Sprint(cfg.Include) != fmt.Sprint(want) {
		t.Errorf("Include: want %q, have %q", want, cfg.Include)
	}
	if cfg.Supervisor.Watch {
		t.Error("watch must default to false")
	}
	if len(cfg.Programs) != 1 || cfg.Programs[0].File != cfg.File || cfg.Programs[0].TouchReload != nil {
		t.Errorf("programs: %+v", cfg.Programs)
	}
}

// A file matched by two patterns, or the main file matched by its own
// pattern, is read once; a directory that matches is skipped.
func TestIncludeReadsEachFileOnce(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"gosup.toml":           "include = [\"*.toml\", \"conf.d/*.toml\", \"conf.d/b.toml\"]\n\n[program.main]\ncommand = \"main\"\n",
		"conf.d/b.toml":        "[program.b]\ncommand = \"b\"\n",
		"conf.d/a.toml":        "[program.a]\ncommand = \"a\"\n",
		"conf.d/old.toml/x.md": "a directory named like a vassal",
	})
	cfg, err := Load(filepath.Join(dir, "gosup.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "gosup.toml"), filepath.Join(dir, "conf.d/a.toml"), filepath.Join(dir, "conf.d/b.toml")}
	if fmt.Sprint(cfg.Files) != fmt.Sprint(want) {
		t.Errorf("Files:\nwant %q\nhave %q", want, cfg.Files)
	}
	if len(cfg.Programs) != 3 {
		t.Errorf("want 3 programs, have %d", len(cfg.Programs))
	}
}

// Every error in an included file names that file, the line in it and the
// key; a clash names both files.
func TestIncludeErrors(t *testing.T) {
	const main = "include = [\"conf.d/*.toml\"]\n\n[program.api]\ncommand = \"api\"\nport_start = 9000\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // DIR stands for the directory
	}{
		{"clash with main", map[string]string{
			"conf.d/b.toml": "[program.api]\ncommand = \"other\"\n",
		}, "DIR/conf.d/b.toml:1: program.api: also defined in DIR/gosup.toml:3; program names must be unique across included files"},
		{"clash between included", map[string]string{
			"conf.d/a.toml": "# first\n[program.web]\ncommand = \"web\"\n",
			"conf.d/b.toml": "[program.x]\ncommand = \"x\"\n\n[program.web]\ncommand = \"web\"\ncomand = \"not reported: the clash is\"\n",
		}, "DIR/conf.d/b.toml:4: program.web: also defined in DIR/conf.d/a.toml:2; program names must be unique across included files"},
		{"unknown key", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\"\ncomand = \"web\"\n",
		}, `DIR/conf.d/web.toml:3: program.web.comand: unknown key (did you mean "command"?)`},
		{"validation", map[string]string{
			"conf.d/web.toml": "\n[program.web]\ncommand = \"web\"\nnumprocs = 0\n",
		}, "DIR/conf.d/web.toml:4: program.web.numprocs: must be at least 1, have 0"},
		{"type", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\"\nnumprocs = \"2\"\n",
		}, "DIR/conf.d/web.toml:3: program.web.numprocs: incompatible types"},
		{"bad toml", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\n",
		}, "DIR/conf.d/web.toml:2: "},
		{"forbidden table", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\"\n\n[supervisor]\nwatch = true\n",
		}, "DIR/conf.d/web.toml:4: supervisor: only [program.NAME] tables may appear in an included file"},
		{"forbidden nested table", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\"\n\n[nginx.upstream.web]\n",
		}, "DIR/conf.d/web.toml:4: nginx: only [program.NAME] tables may appear in an included file"},
		{"nested include", map[string]string{
			"conf.d/web.toml": "include = [\"more/*.toml\"]\n[program.web]\ncommand = \"web\"\n",
		}, "DIR/conf.d/web.toml:1: include: an included file cannot include further files; only [program.NAME] tables may appear in an included file"},
		{"port across files", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\"\nnumprocs = 2\nprocess_name = \"web_%(process_num)d\"\nport_start = 8999\n",
		}, "DIR/conf.d/web.toml:5: program.web.port_start: port 9000 is also claimed by api:api (defined in DIR/gosup.toml:3)"},
		{"log across files", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\"\nstdout_logfile = \"../api.log\"\n",
			"gosup.toml":      main + "stdout_logfile = \"api.log\"\n",
		}, "DIR/conf.d/web.toml:1: program.web: log file DIR/api.log is also written by api:api (defined in DIR/gosup.toml:3); two processes may not share a log file"},
		{"process name across files", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\"\nprocess_name = \"api\"\nstdout_logfile = \"none\"\nstderr_logfile = \"none\"\n",
		}, `DIR/conf.d/web.toml:3: program.web.process_name: process name "api" is also used by program "api" (defined in DIR/gosup.toml:3); process names must be unique`},
		{"upstream in included", map[string]string{
			"conf.d/web.toml": "[program.web]\ncommand = \"web\"\nport_start = 9100\nupstream = \"nope\"\n",
			"gosup.toml":      main + "upstream = \"api\"\n\n[nginx]\noutput = \"out.conf\"\n\n[nginx.upstream.api]\n",
		}, `DIR/conf.d/web.toml:4: program.web.upstream: upstream "nope" is not defined; add [nginx.upstream.nope]`},
		{"malformed pattern", map[string]string{
			"gosup.toml": "include = [\"conf.d/[*.toml\"]\n",
		}, `DIR/gosup.toml:1: include: pattern "conf.d/[*.toml": syntax error in pattern`},
		{"empty pattern", map[string]string{
			"gosup.toml": "include = [\"\"]\n",
		}, `DIR/gosup.toml:1: include: empty pattern`},
		{"include after a table", map[string]string{
			"gosup.toml": "[supervisor]\ninclude = [\"conf.d/*.toml\"]\n",
		}, `DIR/gosup.toml:2: supervisor.include: unknown key (include is a top-level key: put it before the first table)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"gosup.toml": main}
			for k, v := range tc.files {
				files[k] = v
			}
			dir := writeTree(t, files)
			_, err := Load(filepath.Join(dir, "gosup.toml"))
			if err == nil {
				t.Fatal("loaded a bad config")
			}
			want := strings.ReplaceAll(tc.want, "DIR", dir)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("want error containing\n\t%s\nhave\n\t%v", want, err)
			}
			if strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("want exactly one error, have\n%v", err)
			}
		})
	}
}

// What gosup systemd-unit reads of a program: how long one start attempt
// may take (and which key says so), and the files its processes log to.
func TestProgramStartAttemptAndLogFiles(t *testing.T) {
	dir := writeTree(t, map[string]string{"gosup.toml": `
[supervisor]
socket = "s.sock"
logdir = "auto"
[program.plain]
command = "app"
startsecs = 4
[program.web]
command = "app"
numprocs = 2
process_name = "web_%(process_num)d"
port_start = 9000
startsecs = 2
ready_timeout = "30s"
stdout_logfile = "logs/%(process_num)d.out"
stderr_logfile = "none"
[program.quick]
command = "app"
port_start = 9100
startsecs = 40
ready = "tcp"
ready_timeout = "50s"
stdout_logfile = "none"
redirect_stderr = true
`})
	cfg, err := Load(filepath.Join(dir, "gosup.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		d    time.Duration
		key  string
		logs []string
	}{
		{"plain", 4 * time.Second, "startsecs", []string{filepath.Join(dir, "auto/plain.stdout.log"), filepath.Join(dir, "auto/plain.stderr.log")}},
		{"web", 30 * time.Second, "ready_timeout", []string{filepath.Join(dir, "logs/0.out"), filepath.Join(dir, "logs/1.out")}},
		{"quick", 50 * time.Second, "ready_timeout", nil},
	} {
		i := slices.IndexFunc(cfg.Programs, func(p *Program) bool { return p.Name == tc.name })
		if i < 0 {
			t.Fatalf("no program %s", tc.name)
		}
		p := cfg.Programs[i]
		if d, key := p.StartAttempt(); d != tc.d || key != tc.key {
			t.Errorf("%s: StartAttempt = %s %s, want %s %s", tc.name, d, key, tc.d, tc.key)
		}
		if got := p.LogFiles(); !slices.Equal(got, tc.logs) {
			t.Errorf("%s: LogFiles = %q, want %q", tc.name, got, tc.logs)
		}
	}
}

// A configuration file over 4 MiB (a log matched by an include by
// mistake) is refused, naming it, rather than read whole; so is a link to
// /dev/zero, which would never end, when files are not checked for their
// owner (as root, a device is refused as not a regular file).
func TestFileSizeBound(t *testing.T) {
	big := strings.Repeat("# "+strings.Repeat("x", 97)+"\n", 5<<20/100)
	const want = ": more than 4 MiB: too large for a configuration file (is it one?)"
	t.Run("included", func(t *testing.T) {
		dir := writeTree(t, map[string]string{
			"gosup.toml":      "include = [\"conf.d/*.toml\"]\n\n[program.web]\ncommand = \"web\"\n",
			"conf.d/big.toml": big,
		})
		for _, o := range []LoadOptions{{}, {InsecureFiles: true}} {
			_, err := LoadWith(filepath.Join(dir, "gosup.toml"), o)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "conf.d/big.toml")+want) {
				t.Errorf("%+v: %v", o, err)
			}
		}
	})
	t.Run("main", func(t *testing.T) {
		dir := writeTree(t, map[string]string{"gosup.toml": "[program.web]\ncommand = \"web\"\n" + big})
		file := filepath.Join(dir, "gosup.toml")
		if _, err := Load(file); err == nil || err.Error() != file+want {
			t.Errorf("Load: %v", err)
		}
		if _, err := SocketOf(file); err == nil || err.Error() != file+want {
			t.Errorf("SocketOf: %v", err)
		}
	})
	t.Run("devzero", func(t *testing.T) {
		dir := writeTree(t, map[string]string{"gosup.toml": "include = [\"conf.d/*.toml\"]\n"})
		if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/dev/zero", filepath.Join(dir, "conf.d/zero.toml")); err != nil {
			t.Fatal(err)
		}
		_, err := LoadWith(filepath.Join(dir, "gosup.toml"), LoadOptions{InsecureFiles: true})
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "conf.d/zero.toml")+want) {
			t.Errorf("%v", err)
		}
	})
}

// max_unavailable is a number of processes or a percentage of numprocs,
// rounded down and at least 1 (Kubernetes' maxUnavailable).
func TestMaxUnavailablePercent(t *testing.T) {
	for _, tc := range []struct {
		value    string
		numprocs int
		want     int
	}{
		{`2`, 10, 2},
		{`"3"`, 10, 3},
		{`"25%"`, 20, 5},
		{`"25%"`, 10, 2}, // 2.5, rounded down
		{`"25%"`, 3, 1},  // 0.75: at least 1
		{`"100%"`, 7, 7},
		{`" 50 % "`, 5, 2},
	} {
		t.Run(tc.value, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "gosup.toml")
			body := fmt.Sprintf("[program.web]\ncommand = \"app\"\nprocess_name = \"web_%%(process_num)d\"\nnumprocs = %d\nmax_unavailable = %s\n", tc.numprocs, tc.value)
			if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(file)
			if err != nil {
				t.Fatal(err)
			}
			spec := cfg.Programs[0].Spec
			if got := spec.MaxUnavailable.Of(spec.NumProcs); got != tc.want {
				t.Errorf("max_unavailable = %s with numprocs = %d: got %d at once, want %d", tc.value, tc.numprocs, got, tc.want)
			}
		})
	}
}

// %(here)s in [nginx]'s commands and [email] sendmail is the file's
// directory, as in a program's command: a configuration that carries its
// own nginx.conf and mail command runs from any working directory.
func TestHereInNginxAndSendmail(t *testing.T) {
	dir := writeTree(t, map[string]string{"gosup.toml": `
[program.web]
command = "app"
port_start = 9000
upstream = "web"

[nginx]
output = "out.conf"
test_command = "nginx -p %(here)s/run/ -c %(here)s/nginx.conf -t -q"
reload_command = "nginx -p %(here)s/run/ -c %(here)s/nginx.conf -s reload"

[nginx.upstream.web]

[memmon]
any = "1GB"

[email]
to = ["ops@example.com"]
sendmail = "%(here)s/bin/gosup demo-sendmail %(here)s/run/alerts.mbox"
`})
	cfg, err := Load(filepath.Join(dir, "gosup.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		cfg.Nginx.TestCommand:   "nginx -p " + dir + "/run/ -c " + dir + "/nginx.conf -t -q",
		cfg.Nginx.ReloadCommand: "nginx -p " + dir + "/run/ -c " + dir + "/nginx.conf -s reload",
		cfg.Email.Sendmail:      dir + "/bin/gosup demo-sendmail " + dir + "/run/alerts.mbox",
	} {
		if got != want {
			t.Errorf("want %q, have %q", want, got)
		}
	}
}

// A relative path as [email] sendmail's program is relative to the file's
// directory, as every relative path in a file is: check looked it up from
// its own working directory, the daemon ran it from its own (/ under
// systemd), and check could pass while every alert failed. A name looked
// up in $PATH, an absolute path and a shell command line are left as they
// are.
func TestSendmailRelativePathFollowsTheFile(t *testing.T) {
	for sendmail, want := range map[string]string{
		"bin/mta -t -i":              "DIR/bin/mta -t -i",
		"  ./bin/mta -t":             "DIR/bin/mta -t",
		"sendmail -t -i":             "sendmail -t -i",
		"/usr/sbin/sendmail -t -i":   "/usr/sbin/sendmail -t -i",
		"bin/mta -t >> run/mail.log": "bin/mta -t >> run/mail.log",
	} {
		dir := writeTree(t, map[string]string{"gosup.toml": fmt.Sprintf(`
[program.web]
command = "app"

[email]
to = ["ops@example.com"]
sendmail = %q
`, sendmail)})
		cfg, err := Load(filepath.Join(dir, "gosup.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if want = strings.ReplaceAll(want, "DIR", dir); cfg.Email.Sendmail != want {
			t.Errorf("sendmail = %q: want %q, have %q", sendmail, want, cfg.Email.Sendmail)
		}
	}
}

// A user template calling one of sprig's functions that gosup does not
// provide (slim-sprig's set) fails to load, naming the config key, the
// template's file and line, the function, and why it is missing; an unknown
// function that is not sprig's gets text/template's error alone.
func TestNginxTemplateSprigFunctionNotProvided(t *testing.T) {
	for _, c := range []struct {
		fn, want string
	}{
		{"semver", `function "semver" not defined (semver is one of sprig's functions gosup does not provide: see docs/nginx.md)`},
		{"nosuchfunc", `function "nosuchfunc" not defined`},
	} {
		t.Run(c.fn, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"gosup.toml": `
[program.web]
command = "app"
port_start = 9000
upstream = "web"

[nginx]
template = "mine.tmpl"

[nginx.upstream.web]
`, "mine.tmpl": "# {{ .Source }}\n# {{ " + c.fn + ` "1.2.3" }}` + "\n"})
			_, err := Load(filepath.Join(dir, "gosup.toml"))
			if err == nil {
				t.Fatal("loaded a template calling a function gosup does not provide")
			}
			want := filepath.Join(dir, "gosup.toml") + ":8: nginx.template: parse template: template: " +
				filepath.Join(dir, "mine.tmpl") + ":2: " + c.want
			if !strings.HasSuffix(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to end with:\n%s", err, want)
			}
			if c.fn == "nosuchfunc" && strings.Contains(err.Error(), "sprig") {
				t.Errorf("error blames sprig for a function that is not sprig's: %v", err)
			}
		})
	}
}
