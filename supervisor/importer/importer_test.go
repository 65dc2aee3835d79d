package importer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosup/gosup/supervisor/config"
)

func importString(t *testing.T, ini string) *Result {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "supervisord.conf")
	if err := os.WriteFile(file, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Import(file)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func warnings(res *Result) string {
	var b strings.Builder
	for _, w := range res.Warnings {
		b.WriteString(w.String() + "\n")
	}
	return b.String()
}

// One [program:x] key at a time: what supervisord's line becomes in gosup,
// and whether it warns.
func TestProgramKeys(t *testing.T) {
	for _, tc := range []struct {
		line, want, warn string
	}{
		{"command = /usr/bin/uwsgi --ini app.ini", `command = "/usr/bin/uwsgi --ini app.ini"`, ""},
		{"process_name=%(program_name)s_%(process_num)02d", `process_name = "%(program_name)s_%(process_num)02d"`, ""},
		{"numprocs=20", "numprocs = 20", ""},
		{"numprocs_start=5", "numprocs_start = 5", ""},
		{"priority=100", "priority = 100", ""},
		{"autostart=false", "autostart = false", ""},
		{"autostart=No", "autostart = false", ""},
		{"autostart=maybe", "# autostart = maybe: not imported", "autostart not imported"},
		{"startsecs=5", "startsecs = 5", ""},
		{"startretries=10", "startretries = 10", ""},
		{"autorestart=unexpected", `autorestart = "unexpected"`, ""},
		{"autorestart=true", "autorestart = true", ""},
		{"autorestart=off", "autorestart = false", ""},
		{"exitcodes=0,2", "exitcodes = [0, 2]", ""},
		{"stopsignal=QUIT", `stopsignal = "QUIT"`, ""},
		{"stopsignal=sigint", `stopsignal = "INT"`, ""},
		{"stopwaitsecs=30", "stopwaitsecs = 30", ""},
		{"stopasgroup=true", "stopasgroup = true", ""},
		{"killasgroup=1", "killasgroup = true", ""},
		{"user=sentry", `user = "sentry"`, ""},
		{"redirect_stderr=true", "redirect_stderr = true", ""},
		{"stdout_logfile=/var/log/web.log", `stdout_logfile = "/var/log/web.log"`, ""},
		{"stdout_logfile=NONE", `stdout_logfile = "none"`, ""},
		{"stdout_logfile=syslog", `stdout_logfile = "syslog"`, ""},
		{"stderr_logfile=AUTO", `stderr_logfile = "AUTO"`, ""},
		{"stdout_logfile_maxbytes=50mb", `stdout_logfile_maxbytes = "50MB"`, ""},
		{"stderr_logfile_maxbytes=0", `stderr_logfile_maxbytes = "0"`, ""},
		{"stdout_logfile_backups=3", "stdout_logfile_backups = 3", ""},
		{"stderr_logfile_backups=0", "stderr_logfile_backups = 0", ""},
		{"directory=/srv/app", `directory = "/srv/app"`, ""},
		{"directory=%(here)s", `directory = "@DIR@"`, ""},
		{"umask=022", `umask = "022"`, ""},
		{`environment=SENTRY_CONF="/etc/sentry",A="x,y",B=plain`, "[program.web.environment]\nSENTRY_CONF = \"/etc/sentry\"\nA = \"x,y\"\nB = \"plain\"", ""},
		{"stdout_capture_maxbytes=1MB", "# stdout_capture_maxbytes = 1MB: not imported: gosup has no capture mode", "stdout_capture_maxbytes not imported"},
		{"stdout_events_enabled=true", "# stdout_events_enabled = true: not imported", "stdout_events_enabled not imported"},
		{"serverurl=AUTO", "# serverurl = AUTO: not imported", "serverurl not imported"},
		{"colour=blue", "# colour = blue: not imported: not a [program:x] setting", "colour not imported"},
	} {
		t.Run(tc.line, func(t *testing.T) {
			res := importString(t, "[program:web]\ncommand=/bin/true\n"+tc.line+"\n")
			got := string(res.TOML)
			want := strings.ReplaceAll(tc.want, "@DIR@", filepath.Dir(res.Files[0]))
			if !strings.Contains(got, want) {
				t.Errorf("want\n%s\nin\n%s", want, got)
			}
			w := warnings(res)
			if tc.warn == "" && w != "" {
				t.Errorf("unexpected warnings: %s", w)
			}
			if tc.warn != "" && (!strings.Contains(w, tc.warn) || !strings.Contains(w, "supervisord.conf:3: ")) {
				t.Errorf("want a warning at line 3 containing %q, have %q", tc.warn, w)
			}
		})
	}
}

func TestPortStart(t *testing.T) {
	for _, tc := range []struct {
		program, want string
	}{
		{"command=uwsgi -s 127.0.0.1:90%(process_num)02d\nnumprocs=20", "port_start = 9000"},
		{"command=app --port %(process_num)s\nnumprocs=3\nnumprocs_start=8000", "port_start = 8000"},
		{"command=app --port=81%(process_num)02d\nnumprocs=2", "port_start = 8100"},
		{"command=gunicorn -b 127.0.0.1:300%(process_num)d\nnumprocs=12", "not a plain sequence"},
		{"command=celery worker -n w%(process_num)d\nnumprocs=4", ""},
	} {
		res := importString(t, "[program:web]\n"+tc.program+"\nprocess_name=w%(process_num)d\n")
		got := string(res.TOML)
		if tc.want == "" {
			if strings.Contains(got, "port_start") {
				t.Errorf("%q: no port expected:\n%s", tc.program, got)
			}
			continue
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%q: want %q in\n%s", tc.program, tc.want, got)
		}
		if !strings.Contains(got, `command = "`+strings.SplitN(strings.TrimPrefix(tc.program, "command="), "\n", 2)[0]+`"`) {
			t.Errorf("%q: the command is not kept verbatim:\n%s", tc.program, got)
		}
	}
}

// A program listening on a sequence of ports is the upstream of its name,
// with the protocol its command speaks; the result passes gosup check and
// renders with no edit, the daemon writing no nginx file (no output).
func TestUpstream(t *testing.T) {
	for _, tc := range []struct {
		command, protocol string
	}{
		{"uwsgi -s 127.0.0.1:90%(process_num)02d --module app", "uwsgi"},
		{"/opt/venv/bin/uwsgi --socket :90%(process_num)02d", "uwsgi"},
		{"uwsgi --uwsgi-socket=127.0.0.1:90%(process_num)02d", "uwsgi"},
		// Debian's uwsgi packages: the plugin's own binary, uwsgi-core.
		{"/usr/bin/uwsgi_python3 -s 127.0.0.1:90%(process_num)02d --module app", "uwsgi"},
		{"uwsgi_python311 --socket :90%(process_num)02d", "uwsgi"},
		{"/usr/bin/uwsgi-core --plugin python3 -s :90%(process_num)02d", "uwsgi"},
		// pip's pyuwsgi, also as a module.
		{"/srv/venv/bin/pyuwsgi -s 127.0.0.1:90%(process_num)02d", "uwsgi"},
		{"/srv/venv/bin/python -m pyuwsgi --socket :90%(process_num)02d", "uwsgi"},
		// --protocol=http makes uwsgi's socket speak HTTP, wherever it is.
		{"uwsgi --socket :90%(process_num)02d --protocol=http --module app", "http"},
		{"uwsgi --protocol http -s 127.0.0.1:90%(process_num)02d", "http"},
		{"uwsgi --socket :90%(process_num)02d --protocol uwsgi", "uwsgi"},
		{"uwsgi --http :90%(process_num)02d --module app", "http"},
		{"uwsgi --http-socket 127.0.0.1:90%(process_num)02d", "http"},
		{"gunicorn -b 127.0.0.1:90%(process_num)02d app:wsgi", "http"},
		{"app --port=90%(process_num)02d", "http"},
		{"app -s 90%(process_num)02d", "http"},
		{"app 127.0.0.1:90%(process_num)02d", "http"},
	} {
		res := importString(t, "[program:web]\ncommand="+tc.command+"\nprocess_name=w%(process_num)d\nnumprocs=3\n")
		got := string(res.TOML)
		for _, want := range []string{
			"\nport_start = 9000  #",
			"\nupstream = \"web\"  #",
			"\n[nginx]\n# output = ",
			"\n[nginx.upstream.web]\n",
			"\nprotocol = \"" + tc.protocol + "\"  #",
			"\nbalance = \"least_conn\"  #",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("%q: want %q in\n%s", tc.command, want, got)
			}
		}
		if want := "web (" + tc.protocol + ", 3 servers)"; len(res.Upstreams) != 1 || res.Upstreams[0] != want {
			t.Errorf("%q: Upstreams = %q, want [%q]", tc.command, res.Upstreams, want)
		}
		file := filepath.Join(t.TempDir(), "gosup.toml")
		if err := os.WriteFile(file, res.TOML, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(file)
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.command, err, got)
		}
		if cfg.Nginx != nil {
			t.Errorf("%q: the daemon would write %s: output must stay commented out", tc.command, cfg.Nginx.Output)
		}
		out, err := cfg.RenderNginx(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "upstream web {\n    least_conn;\n    server 127.0.0.1:9000;  # web:w0\n") {
			t.Errorf("%q: rendered\n%s", tc.command, out)
		}
	}
	// No port, no upstream, no [nginx].
	res := importString(t, "[program:worker]\ncommand=celery worker -n w%(process_num)d\nprocess_name=w%(process_num)d\nnumprocs=4\n")
	if got := string(res.TOML); strings.Contains(got, "upstream") || strings.Contains(got, "[nginx") || len(res.Upstreams) > 0 {
		t.Errorf("a program without ports got an upstream:\n%s", got)
	}
}

// The INI dialect: comments, continuation lines, keys' case, merged sections, includes.
func TestDialect(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	main := `; a comment
# another
[supervisord]
childlogdir = /var/log/sv ; inline comment

[program:web]
Command = /usr/bin/app --flag=a;b
    --more
Numprocs: 2
process_name=web_%(process_num)d

[include]
files = conf.d/*.conf
`
	inc := "[program:worker]\ncommand=%(here)s/worker\n\n[program:web]\nnumprocs=3\n"
	if err := os.WriteFile(filepath.Join(dir, "supervisord.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "w.conf"), []byte(inc), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Import(filepath.Join(dir, "supervisord.conf"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(res.TOML)
	for _, want := range []string{
		`logdir = "/var/log/sv"`,
		`command = "/usr/bin/app --flag=a;b\n--more"`,
		"numprocs = 3", // the included file's later value wins
		`command = "` + filepath.Join(dir, "conf.d") + `/worker"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in\n%s", want, got)
		}
	}
	if len(res.Files) != 2 {
		t.Errorf("files read: %v", res.Files)
	}
}

func TestMalformed(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		ini  string
		line int
		msg  string
	}{
		"no section": {"command=x\n", 1, "comes before any [section] header"},
		"no equals":  {"[program:web]\ncommand=x\nthis is not a pair\n", 3, "is not a key = value line (in [program:web])"},
		"empty key":  {"[program:web]\n= value\n", 2, "is not a key = value line"},
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".conf")
		if err := os.WriteFile(file, []byte(tc.ini), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Import(file)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != tc.line || pe.File != file || !strings.Contains(pe.Msg, tc.msg) {
			t.Errorf("%s: want %s:%d: ...%s, have %v", name, file, tc.line, tc.msg, err)
		}
	}
}

// Every memmon flag, and the TICK event setting the interval.
func TestMemmonFlags(t *testing.T) {
	res := importString(t, `[program:web]
command=/bin/true
numprocs=2
process_name=web_%(process_num)02d

[group:sentry]
programs=web

[eventlistener:memmon]
command=/usr/local/bin/memmon -p web_00=200MB -p sentry:web_01=210MB -g sentry=300MB -a 400MB -c -u 3600 -m dev@example.com -m ops@example.com -n web-3 -s "/usr/sbin/sendmail -t"
events=TICK_60,TICK_5
buffer_size=100
`)
	got := string(res.TOML)
	for _, want := range []string{
		`interval = "5s"`, `any = "400MB"`, "cumulative = true", `alert_max_uptime = "3600s"`, `name = "web-3"`,
		"[memmon.program]", `web_00 = "200MB"`, `"sentry:web_01" = "210MB"`, "[memmon.group]", `sentry = "300MB"`,
		"[email]", `to = ["ops@example.com"]`, `sendmail = "/usr/sbin/sendmail -t"`,
		"# [eventlistener:memmon] buffer_size = 100: not needed",
		"# max_restarts = 3 within restart_window = \"10m\" (gosup's default)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in\n%s", want, got)
		}
	}
	if w := warnings(res); !strings.Contains(w, "memmon -m given 2 times: memmon mailed only the last, ops@example.com") || strings.Count(w, "\n") != 1 {
		t.Errorf("warnings: %s", w)
	}
	// memmon run by python, -u with a unit, a limit memmon never matched,
	// and a specific limit larger than -a (memmon took the smallest).
	py := importString(t, "[program:web]\ncommand=/bin/true\n[eventlistener:m]\ncommand=python3 /usr/local/bin/memmon.py -a 200MB -p web=1GB -p nope=1GB -u 2h\nevents=TICK_5\n")
	if got := string(py.TOML); !strings.Contains(got, `alert_max_uptime = "7200s"`) || !strings.Contains(got, `web = "1GB"`) || strings.Contains(got, "nope = ") {
		t.Errorf("memmon.py:\n%s", got)
	}
	if w := warnings(py); !strings.Contains(w, "memmon -p nope: no process has that name") || !strings.Contains(w, "memmon -p web=1GB is larger than the general limit 200MB") {
		t.Errorf("memmon.py warnings: %s", w)
	}
	other := importString(t, "[eventlistener:crashmail]\ncommand=crashmail -a -m ops@example.com\nevents=PROCESS_STATE_EXITED\n")
	if w := warnings(other); !strings.Contains(w, "supervisord.conf:1: [eventlistener:crashmail] not imported: an event listener") {
		t.Errorf("another listener: %s", w)
	}
	if !strings.Contains(string(other.TOML), "#   command = crashmail -a -m ops@example.com") {
		t.Errorf("another listener is not kept as a comment:\n%s", other.TOML)
	}
}

func TestServerSections(t *testing.T) {
	res := importString(t, `[unix_http_server]
file=/run/supervisor.sock
chmod=0770
chown=root:ops
username=u

[inet_http_server]
port=127.0.0.1:9001

[supervisorctl]
serverurl=unix:///run/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisord]
loglevel=blather
environment=A="1"
umask=002
nodaemon=true

[program:web]
command=/bin/true
environment=B="2",A="3"

[group:sentry]
programs=web
priority=5
`)
	got := string(res.TOML)
	for _, want := range []string{
		`socket = "/run/supervisor.sock"`, `socket_mode = "0770"`, `socket_group = "ops"`, `loglevel = "debug"`,
		`group = "sentry"`, "priority = 10  # supervisord's order: group sentry at priority 5", `umask = "002"`, "[program.web.environment]\nB = \"2\"\nA = \"3\"",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in\n%s", want, got)
		}
	}
	w := warnings(res)
	for _, want := range []string{"supervisord.conf:5: [unix_http_server] username not imported", "supervisord.conf:8: [inet_http_server] port not imported", "supervisord.conf:20: [supervisord] nodaemon not imported"} {
		if !strings.Contains(w, want) {
			t.Errorf("want warning %q in\n%s", want, w)
		}
	}
	if strings.Contains(w, "rpcinterface") {
		t.Errorf("the standard rpcinterface section warns: %s", w)
	}
}

// What the first review found: each case imports to something gosup check
// accepts and that runs what supervisord ran.
func TestSupervisordSemantics(t *testing.T) {
	t.Setenv("HOME", "/home/ops")
	for _, tc := range []struct {
		name, ini string
		want      []string
		not       []string
		warn      string
	}{
		{"device logs stay shared", "[program:web]\ncommand=/bin/true\nnumprocs=2\nprocess_name=w%(process_num)d\nstdout_logfile=/dev/stdout\n",
			[]string{`stdout_logfile = "/dev/stdout"`}, nil, ""},
		{"a shared file becomes one per process", "[program:a]\ncommand=/bin/true\nstdout_logfile=/var/log/app.log\n[program:b]\ncommand=/bin/true\nstdout_logfile=/var/log/app.log\n",
			[]string{`stdout_logfile = "/var/log/app.%(program_name)s-%(process_num)d.log"`}, nil, "/var/log/app.log is written by 2 processes"},
		{"process names unique across programs", "[program:web]\ncommand=/bin/true\nprocess_name=%(process_num)02d\n[program:worker]\ncommand=/bin/true\nprocess_name=%(process_num)02d\n",
			[]string{`process_name = "%(process_num)02d"`, `process_name = "%(program_name)s_%(process_num)02d"`}, nil, "gives names that program web's processes have too"},
		{"ENV_X from supervisord's and the program's environment", "[supervisord]\nenvironment=APP_HOME=\"/srv/app\"\n[program:web]\nenvironment=WID=\"7\"\ncommand=/bin/app %(ENV_APP_HOME)s %(ENV_WID)s %(ENV_HOME)s\n",
			[]string{`command = "/bin/app /srv/app 7 %(ENV_HOME)s"`, `APP_HOME = "/srv/app"  # from [supervisord] environment`}, nil, ""},
		{"expansions in keys gosup does not expand", "[program:web]\ncommand=/bin/true\nuser=%(program_name)s\nnumprocs=%(ENV_NP)s\nprocess_name=w%(process_num)d\n[supervisord]\nenvironment=NP=\"3\"\n",
			[]string{`user = "web"`, "numprocs = 3"}, nil, ""},
		{"syslog instead of NONE", "[program:a]\ncommand=/bin/true\nstderr_logfile=NONE\nstderr_syslog=true\n",
			[]string{`stderr_logfile = "syslog"`}, []string{`stderr_logfile = "none"`}, ""},
		{"off is none", "[program:a]\ncommand=/bin/true\nstdout_logfile=off\n", []string{`stdout_logfile = "none"`}, nil, ""},
		{"tilde", "[program:a]\ncommand=/bin/true\nstdout_logfile=~/a.log\n[supervisord]\nchildlogdir=~/log\n",
			[]string{`stdout_logfile = "/home/ops/a.log"`, `logdir = "/home/ops/log"`}, nil, ""},
		{"DEFAULT applies to programs", "[DEFAULT]\nstartsecs=0\n[program:a]\ncommand=/bin/true\n", []string{"startsecs = 0"}, nil, ""},
		{"long stopwaitsecs", "[program:a]\ncommand=/bin/true\nstopwaitsecs=600\npriority=1\n[program:b]\ncommand=/bin/true\nstopwaitsecs=60\n",
			[]string{`shutdown_timeout = "670s"`}, nil, ""},
		{"program names gosup accepts", "[program:celery@default ]\ncommand=/bin/true\n", []string{"[program.celery_default]"}, nil, "imported as program.celery_default"},
		{"a group naming no program", "[program:a]\ncommand=/bin/true\n[group:g]\nprograms=a,ghost\n", []string{`group = "g"`}, nil, "no [program:ghost]"},
		{"a program in two groups", "[program:a]\ncommand=/bin/true\n[group:g1]\nprograms=a\n[group:g2]\nprograms=a\n", []string{`group = "g1"`}, nil, "imported in group g1 only"},
		{"no port from a shard number", "[program:shard]\ncommand=app --shard=%(process_num)d -Q queue:%(process_num)d\nnumprocs=4\nnumprocs_start=1\nprocess_name=s%(process_num)d\n", nil, []string{"port_start"}, ""},
		{"environment separators and comments as supervisord reads them", "[program:a]\ncommand=/bin/true\nenvironment=A=1;B=\"2\",C=x # D=4\n",
			[]string{"A = \"1\"\nB = \"2\"\nC = \"x\""}, []string{"D = "}, ""},
		{"supervisord's user runs the children", "[supervisord]\nuser=sentry\n[program:a]\ncommand=/bin/true\n[program:b]\ncommand=/bin/true\nuser=nobody\n",
			[]string{`user = "sentry"  # from [supervisord] user`, `user = "nobody"`}, nil, ""},
		{"empty exitcodes", "[program:a]\ncommand=/bin/true\nexitcodes=\n", nil, nil, "exitcodes not imported"},
		{"gosup's restart backoff is kept, and said", "[program:a]\ncommand=/bin/true\n",
			[]string{"# A program that keeps exiting unexpectedly is respawned after 1s, 2s, 4s ... up to backoff_max (60s),", `set backoff_max = "0s" in a program`}, []string{"\nbackoff_max"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := importString(t, tc.ini)
			got := string(res.TOML)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("want %q in\n%s", w, got)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(got, w) {
					t.Errorf("do not want %q in\n%s", w, got)
				}
			}
			if w := warnings(res); (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
				t.Errorf("warnings: want %q, have %q", tc.warn, w)
			}
			checkTOML(t, res)
		})
	}
}

// checkTOML writes the import next to its source and loads it as gosup would.
func checkTOML(t *testing.T, res *Result) {
	t.Helper()
	out := filepath.Join(filepath.Dir(res.Files[0]), "gosup.toml")
	if err := os.WriteFile(out, res.TOML, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(out); err != nil {
		t.Errorf("gosup check: %v\n%s", err, res.TOML)
	}
}

func TestIncludeLikeSupervisord(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"supervisord.conf":       "[include]\nfiles = conf.d/* none.d/*.conf\n",
		"conf.d/a.conf":          "[program:a]\ncommand=/bin/true\n[include]\nfiles=/etc/elsewhere/*.conf\n",
		"conf.d/.hidden.conf":    "[program:hidden]\ncommand=/bin/true\n",
		"conf.d/sub/inside.conf": "[program:inside]\ncommand=/bin/true\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Import(filepath.Join(dir, "supervisord.conf"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(res.TOML)
	if !strings.Contains(got, "[program.a]") || strings.Contains(got, "hidden") || strings.Contains(got, "inside") {
		t.Errorf("includes:\n%s", got)
	}
	w := warnings(res)
	if !strings.Contains(w, "conf.d/a.conf:3: [include] in an included file: supervisord does not follow it") || !strings.Contains(w, "none.d/*.conf matches no file") {
		t.Errorf("warnings: %s", w)
	}
}

// A file over 4 MiB, the main one or an included one, is refused with
// its name rather than read whole; so is a link to /dev/zero, which would
// never end.
func TestFileSizeBound(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("; "+strings.Repeat("x", 97)+"\n", 5<<20/100)
	const want = "more than 4 MiB: too large for a supervisord configuration (is it one?)"
	main := filepath.Join(dir, "big.conf")
	if err := os.WriteFile(main, []byte("[program:web]\ncommand=web\n"+big), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(main); err == nil || err.Error() != "read "+main+": "+want {
		t.Errorf("main: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "conf.d/zero.conf")); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "supervisord.conf")
	if err := os.WriteFile(top, []byte("[program:web]\ncommand=web\n\n[include]\nfiles = conf.d/*.conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(top); err == nil || err.Error() != top+":5: [include] files: "+filepath.Join(dir, "conf.d/zero.conf")+": "+want {
		t.Errorf("include: %v", err)
	}
}
