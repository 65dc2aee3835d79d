package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosup/gosup/procgroup"
)

// Each bad file must fail with an error that names the file, the line and
// the key, and says what is wrong.
func TestBadConfigs(t *testing.T) {
	for file, want := range map[string]string{
		"unknown_key.bad.toml":      `unknown_key.bad.toml:3: program.web.comand: unknown key (did you mean "command"?)`,
		"unknown_section.bad.toml":  `unknown_section.bad.toml:1: programs.web: unknown key (did you mean "program"?)`,
		"bad_type.bad.toml":         `bad_type.bad.toml:3: program.web.numprocs: incompatible types`,
		"bad_toml.bad.toml":         `bad_toml.bad.toml:2: `,
		"dup_port.bad.toml":         `dup_port.bad.toml:5: program.web.port_start: port 9003 is also claimed by api:api`,
		"dup_name.bad.toml":         `dup_name.bad.toml:7: program.b.process_name: process name "same" is also used by program "a"`,
		"name_not_varying.bad.toml": `name_not_varying.bad.toml:1: program.web.process_name: "%(program_name)s" gives the same name "web" to several processes; with numprocs = 20 it must contain %(process_num)d`,
		"bad_signal.bad.toml":       `bad_signal.bad.toml:3: program.web.stopsignal: invalid signal "TERMINATE"`,
		"bad_size.bad.toml":         `bad_size.bad.toml:3: program.web.stdout_logfile_maxbytes: invalid size "50XB"`,
		"bad_duration.bad.toml":     `bad_duration.bad.toml:2: supervisor.shutdown_timeout: invalid duration "30 seconds"`,
		"bad_autorestart.bad.toml":  `bad_autorestart.bad.toml:3: program.web.autorestart: invalid autorestart sometimes`,
		"numprocs_zero.bad.toml":    `numprocs_zero.bad.toml:3: program.web.numprocs: must be at least 1, have 0`,
		"no_command.bad.toml":       `no_command.bad.toml:1: program.web.command: is required`,
		"port_no_start.bad.toml":    `port_no_start.bad.toml:2: program.web.command: uses %(port)d but the program has no port_start`,
		"bad_umask.bad.toml":        `bad_umask.bad.toml:3: program.web.umask: invalid umask "099"`,
		"bad_program_name.bad.toml": `bad_program_name.bad.toml:1: program.web;evil: program name "web;evil" may only contain`,
		"long_socket.bad.toml":      `long_socket.bad.toml:2: supervisor.socket: path "/tmp/aaaa`,
		"shared_log.bad.toml":       `shared_log.bad.toml:5: program.b: log file /tmp/same.log is also written by a:a`,
	} {
		t.Run(file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", file))
			if err == nil {
				t.Fatal("loaded a bad config")
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("want error containing\n\t%s\nhave\n\t%v", want, err)
			}
			if !strings.HasPrefix(err.Error(), filepath.Join(mustAbs(t, "testdata"), file)) {
				t.Errorf("error does not start with the file's path: %v", err)
			}
		})
	}
	files, _ := filepath.Glob("testdata/*.bad.toml")
	if len(files) != 27 {
		t.Errorf("want a table entry for each of the %d bad files", len(files))
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
	sentry, err := Load("../examples/sentry.toml")
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
	qs, err := Load("../examples/quickstart.toml")
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
	out, err := cfg.Nginx.tmpl.Render(nginxData(cfg, map[string]bool{"web:web_1": true}))
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
