package importer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{"command=gunicorn -b 127.0.0.1:70%(process_num)d\nnumprocs=12", "not a plain sequence"},
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

[eventlistener:memmon]
command=/usr/local/bin/memmon -p web_00=200MB -p sentry:web_01=210MB -g web=300MB -a 400MB -c -u 3600 -m ops@example.com -m dev@example.com -n web-3 -s "/usr/sbin/sendmail -t"
events=TICK_60,TICK_5
buffer_size=100
`)
	got := string(res.TOML)
	for _, want := range []string{
		`interval = "5s"`, `any = "400MB"`, "cumulative = true", `alert_max_uptime = "3600s"`, `name = "web-3"`,
		"[memmon.program]", `web_00 = "200MB"`, `"sentry:web_01" = "210MB"`, "[memmon.group]", `web = "300MB"`,
		"[email]", `to = ["ops@example.com", "dev@example.com"]`, `sendmail = "/usr/sbin/sendmail -t"`,
		"# [eventlistener:memmon] buffer_size = 100: not needed",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("want %q in\n%s", want, got)
		}
	}
	if w := warnings(res); w != "" {
		t.Errorf("warnings: %s", w)
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
		`group = "sentry"`, "priority = 5", `umask = "002"`, "[program.web.environment]\nB = \"2\"\nA = \"3\"",
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
