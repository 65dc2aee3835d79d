package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/nginx"
	"github.com/gosup/gosup/templates"
)

// needTool finds a program the end-to-end tests need. Under CI (CI=true)
// a missing one fails the test: .ci/run installs it. Elsewhere the test is
// skipped with the way to install it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found; CI must install it (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not installed; run `apt-get install %s` to run this test", name, pkg)
	return ""
}

// testNginx is a real nginx master with its own prefix, config, pid file
// and error log in a temp dir, listening on 127.0.0.1 only.
type testNginx struct {
	bin, prefix, conf, include string
	port                       int
}

func (n *testNginx) args(extra ...string) string {
	return strings.Join(append([]string{n.bin, "-p", n.prefix + "/", "-c", n.conf}, extra...), " ")
}

func startNginx(t *testing.T) *testNginx {
	t.Helper()
	n := prepareNginx(t)
	n.start(t)
	return n
}

// prepareNginx writes a real nginx's prefix, config and include file in a
// temp dir, without starting it (start does).
func prepareNginx(t *testing.T) *testNginx {
	t.Helper()
	bin := needTool(t, "nginx", "nginx")
	prefix, err := os.MkdirTemp("", "ngx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(prefix) })
	n := &testNginx{bin: bin, prefix: prefix, conf: filepath.Join(prefix, "nginx.conf"), include: filepath.Join(prefix, "gosup.conf"), port: freePort(t)}
	if b, err := os.ReadFile("/etc/nginx/uwsgi_params"); err == nil {
		_ = os.WriteFile(filepath.Join(prefix, "uwsgi_params"), b, 0o644)
	}
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp_body;
    proxy_temp_path %[1]s/tmp_proxy;
    fastcgi_temp_path %[1]s/tmp_fastcgi;
    uwsgi_temp_path %[1]s/tmp_uwsgi;
    scgi_temp_path %[1]s/tmp_scgi;
    include %[2]s;
}
`, prefix, n.include)
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.include, []byte("# empty until gosup writes it\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// start runs nginx in the foreground (its own process group) until the
// test ends, and returns once it has written its pid file.
func (n *testNginx) start(t *testing.T) {
	t.Helper()
	bin, prefix := n.bin, n.prefix
	logf, err := os.Create(filepath.Join(prefix, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	proc, exitC := spawnBinary(t, bin, &syscall.SysProcAttr{Setpgid: true}, logf, "-p", prefix+"/", "-c", n.conf, "-g", "daemon off;")
	t.Cleanup(func() {
		_ = proc.Signal(syscall.SIGQUIT)
		select {
		case <-exitC:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-proc.Pid, syscall.SIGKILL)
			<-exitC
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(prefix, "nginx.pid")); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return
		}
		select {
		case ex := <-exitC:
			b, _ := os.ReadFile(filepath.Join(prefix, "stderr.log"))
			e, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Fatalf("nginx exited (%s): %s %s", ex, b, e)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx did not write its pid file")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var portRE = regexp.MustCompile(`port (\d+)`)

// portsBehind sends requests through nginx until it has seen want distinct
// backend ports (or times out) and returns the ones it saw.
func portsBehind(t *testing.T, url string, want int) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for len(seen) < want && time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if m := portRE.FindSubmatch(b); resp.StatusCode == 200 && m != nil {
			seen[string(m[1])] = true
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return seen
}

func webConfig(t *testing.T, n *testNginx, dir string, numprocs, portStart int, extra string) string {
	t.Helper()
	body := fmt.Sprintf(`[supervisor]
socket = "s/gosup.sock"
logdir = "log"

[program.web]
command = "%s http"
numprocs = %d
process_name = "web_%%(process_num)d"
port_start = %d
startsecs = 0
upstream = "web"
%s

[nginx]
output = %q
test_command = %q
reload_command = %q
command_timeout = "10s"
%s

[nginx.upstream.web]
protocol = "http"
listen = "127.0.0.1:%d"
`, os.Args[0], numprocs, portStart, helperEnv, n.include, n.args("-t", "-q"), n.args("-s", "reload"), extra, n.port)
	file := filepath.Join(dir, "gosup.toml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func waitNginx(t *testing.T, cl *api.Client, reloads int) api.NginxStatus {
	t.Helper()
	return waitNginxWithin(t, cl, reloads, 15*time.Second)
}

// waitNginxWithin waits up to d for an ok nginx status with at least
// reloads reloads.
func waitNginxWithin(t *testing.T, cl *api.Client, reloads int, d time.Duration) api.NginxStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := cl.Nginx(context.Background())
		if err == nil && st.OK && st.Reloads >= reloads {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx never updated: %+v %v", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gosup renders the upstream for 4 web children, nginx -t passes, nginx
// reloads and sends traffic to all 4; a broken template or a configuration
// nginx rejects leaves the previous file live and nginx serving; scaling to
// 6 (by restarting the daemon on the new spec) re-renders, reloads nginx and
// the new children get traffic.
func TestNginxEndToEnd(t *testing.T) {
	n := startNginx(t)
	dir, err := os.MkdirTemp("", "gsn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	base := freePortRange(t, 6)
	url := fmt.Sprintf("http://127.0.0.1:%d/", n.port)

	file := webConfig(t, n, dir, 4, base, "")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, cl, stop := runDaemon(t, cfg, Options{})
	st := waitNginx(t, cl, 1)
	if st.Servers != 4 {
		t.Errorf("nginx status: want 4 servers, have %+v", st)
	}
	rendered, err := os.ReadFile(n.include)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rendered, []byte("least_conn;")) || bytes.Count(rendered, []byte("    server 127.0.0.1:")) != 4 {
		t.Errorf("rendered file:\n%s", rendered)
	}
	// Until readiness checks exist (a later issue), wait for the children
	// to listen: nginx takes a backend that refused a connection out of
	// rotation for fail_timeout (10 s).
	waitListening(t, base, 4)
	if seen := portsBehind(t, url, 4); len(seen) != 4 {
		t.Fatalf("through nginx, want 4 backends, saw %v", seen)
	}

	// A broken user template is a configuration error: nothing is written.
	broken := filepath.Join(dir, "broken.tmpl")
	if err := os.WriteFile(broken, []byte("upstream {{ .NoSuchField }} {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(webConfig(t, n, dir, 4, base, fmt.Sprintf("template = %q", broken)))
	if err == nil || !strings.Contains(err.Error(), "nginx.template") || !strings.Contains(err.Error(), "NoSuchField") {
		t.Errorf("broken template: want a config error naming nginx.template, have %v", err)
	}

	// A template nginx rejects: the test fails, the previous file is restored.
	rejected := filepath.Join(dir, "rejected.tmpl")
	if err := os.WriteFile(rejected, []byte("upstream web { not_a_directive; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad, err := config.Load(webConfig(t, n, dir, 4, base, fmt.Sprintf("template = %q", rejected)))
	if err != nil {
		t.Fatal(err)
	}
	m := nginx.New(nginxSettings(bad.Nginx), testReaper, log)
	m.Start()
	defer m.Stop()
	applied := make(chan error, 1)
	m.Submit(bad.NginxData(nil, nil), applied)
	err = <-applied
	if err == nil || !strings.Contains(err.Error(), "not_a_directive") || !strings.Contains(err.Error(), "previous one restored") {
		t.Errorf("rejected config: want nginx's error text, have %v", err)
	}
	if now, _ := os.ReadFile(n.include); !bytes.Equal(now, rendered) {
		t.Errorf("previous file not restored:\n%s", now)
	}
	if st := m.Status(); st.OK || !strings.Contains(st.Error, "not_a_directive") || st.Failures != 1 {
		t.Errorf("status after a rejected config: %+v", st)
	}
	if seen := portsBehind(t, url, 4); len(seen) != 4 {
		t.Errorf("nginx stopped serving after a rejected config: saw %v", seen)
	}

	// Scale 4 → 6 by restarting the daemon on the new spec.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	file = webConfig(t, n, dir, 6, base, "")
	cfg6, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	_, cl6, _ := runDaemon(t, cfg6, Options{})
	if st := waitNginx(t, cl6, 1); st.Servers != 6 {
		t.Errorf("after scaling: %+v", st)
	}
	waitListening(t, base, 6)
	if seen := portsBehind(t, url, 6); len(seen) != 6 {
		t.Errorf("after scaling to 6, saw %v", seen)
	}
}

// A reload command that hangs is killed at command_timeout, reported, and
// retried; the supervisor answers status meanwhile (while the hanging
// command is still alive).
func TestNginxReloadHangIsBounded(t *testing.T) {
	dir, err := os.MkdirTemp("", "gsh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pids := filepath.Join(dir, "hang.pids")
	body := fmt.Sprintf(`[supervisor]
socket = "s/gosup.sock"

[program.web]
command = "%s sleep"
port_start = %d
startsecs = 0
upstream = "web"
%s

[nginx]
output = "out.conf"
test_command = ""
reload_command = "echo $$ >> %s; exec sleep 30"
command_timeout = "3s"

[nginx.upstream.web]
protocol = "http"
`, os.Args[0], freePort(t), helperEnv, pids)
	file := filepath.Join(dir, "gosup.toml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, _ := startDaemon(t, file)
	var hung int
	for deadline := time.Now().Add(30 * time.Second); hung == 0; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(pids); err == nil {
			hung, _ = strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
		}
		if time.Now().After(deadline) {
			t.Fatal("the reload command never ran")
		}
	}
	if _, err := cl.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !alive(hung) {
		t.Errorf("status answered only after the hanging reload command %d ended", hung)
	}
	var st api.NginxStatus
	for deadline := time.Now().Add(30 * time.Second); st.Failures < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, err = cl.Nginx(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if st.Failures < 2 || st.OK || !strings.Contains(st.Error, "did not finish within 3s") || st.RetryAt.IsZero() {
		t.Fatalf("want a reported, retried timeout, have %+v", st)
	}
	if alive(hung) {
		t.Errorf("the hanging reload command %d outlived command_timeout", hung)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.conf")); err != nil {
		t.Errorf("the rendered file was not written: %v", err)
	}
	_, warnings, err := cl.StatusWarning(context.Background())
	if warning := strings.Join(warnings, "\n"); err != nil || !strings.Contains(warning, "nginx: configuration written and tested, but reload failed") {
		t.Errorf("status warning: %q %v", warnings, err)
	}
}

// freePortRange finds n consecutive free ports.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for base := 20000 + os.Getpid()%20000; base < 60000; base += n {
		ok := true
		for i := range n {
			if portBusy(base+i) || !canListen(base+i) {
				ok = false
				break
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

func canListen(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// The seed's deployment: single-process uwsgi children behind the rendered
// uwsgi_pass configuration answer HTTP requests through nginx.
func TestUwsgiBehindNginx(t *testing.T) {
	uwsgi := needTool(t, "uwsgi", "uwsgi-core uwsgi-plugin-python3")
	n := startNginx(t)
	app, err := filepath.Abs("testdata/wsgi_app.py")
	if err != nil {
		t.Fatal(err)
	}
	base := freePortRange(t, 3)
	dir, err := os.MkdirTemp("", "gsu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	body := fmt.Sprintf(`[supervisor]
socket = "s/gosup.sock"
logdir = "log"

[program.web]
command = "%s --plugin python3 --socket 127.0.0.1:%%(port)d --processes 1 --wsgi-file %s --need-app --disable-logging"
numprocs = 3
process_name = "web_%%(process_num)02d"
port_start = %d
startsecs = 1
stopsignal = "QUIT"
stopasgroup = true
upstream = "internal"

[nginx]
output = %q
test_command = %q
reload_command = %q

[nginx.upstream.internal]
protocol = "uwsgi"
listen = "127.0.0.1:%d"
server_name = "sentry.test"
`, uwsgi, app, base, n.include, n.args("-t", "-q"), n.args("-s", "reload"), n.port)
	file := filepath.Join(dir, "gosup.toml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING")
	waitNginx(t, cl, 1)
	waitListening(t, base, 3)
	seen := portsBehind(t, fmt.Sprintf("http://127.0.0.1:%d/", n.port), 3)
	if len(seen) != 3 {
		out, _ := os.ReadFile(n.include)
		errlog, _ := os.ReadFile(filepath.Join(n.prefix, "error.log"))
		t.Fatalf("through nginx and uwsgi, want 3 backends, saw %v\nrendered:\n%s\nnginx error.log:\n%s", seen, out, errlog)
	}
	rendered, _ := os.ReadFile(n.include)
	for _, want := range []string{"uwsgi_pass internal;", `uwsgi_param HTTP_TRANSFER_ENCODING "";`, "least_conn;"} {
		if !bytes.Contains(rendered, []byte(want)) {
			t.Errorf("rendered file lacks %s", want)
		}
	}
}

// waitListening waits until ports base..base+n-1 accept connections.
func waitListening(t *testing.T, base, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := range n {
		for !portBusy(base + i) {
			if time.Now().After(deadline) {
				t.Fatalf("port %d never accepted a connection", base+i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// nginxSettings carries every field the manager has from the [nginx]
// table: a field added to nginx.Settings and not copied shows up here.
func TestHAProxySettingsCopiesEverything(t *testing.T) {
	h := config.HAProxy{Output: "/o", Template: &templates.Template{}, TestCommand: "t", ReloadCommand: "r",
		CommandTimeout: time.Second, Socket: "/run/haproxy/admin.sock"}
	got := haproxySettings(&h)
	if got.Name != "haproxy" || got.Output != h.Output || got.Template != h.Template || got.TestCommand != h.TestCommand ||
		got.ReloadCommand != h.ReloadCommand || got.CommandTimeout != h.CommandTimeout || got.Runtime == nil || got.Identity == nil {
		t.Errorf("settings %+v from %+v", got, h)
	}
	h.Socket = ""
	if st := haproxySettings(&h); st.Runtime != nil || st.Identity != nil {
		t.Error("a runtime API without a socket")
	}
}

func TestNginxSettingsCopiesEverything(t *testing.T) {
	n := config.Nginx{Output: "/o", Template: &templates.Template{}, TemplateFile: "/t",
		TestCommand: "t", ReloadCommand: "r", CommandTimeout: time.Second}
	got := reflect.ValueOf(nginxSettings(&n))
	for i := range got.NumField() {
		name := got.Type().Field(i).Name
		if name == "Name" || name == "Runtime" || name == "Identity" {
			continue // HAProxy's: nginx is the default name, and has no runtime API
		}
		if got.Field(i).IsZero() {
			t.Errorf("nginx.Settings.%s is not set from config.Nginx", name)
		}
		if src := reflect.ValueOf(n).FieldByName(name); !src.IsValid() || !reflect.DeepEqual(src.Interface(), got.Field(i).Interface()) {
			t.Errorf("nginx.Settings.%s: config.Nginx has no such field with that value", name)
		}
	}
}

// gosup started before nginx (its pid file empty, as a failed or pending
// start leaves it): the file is written and tested, the status says nginx
// is not running, with the true server count, and the log says so once, at
// WARN, over several retries (no ERROR, no nginx "invalid PID number").
// Once nginx runs, gosup reloads it and the status is ok; a daemon
// restarted on the same configuration (the file unchanged) still counts
// the servers in the file.
func TestNginxStartedAfterGosup(t *testing.T) {
	n := prepareNginx(t)
	pidfile := filepath.Join(n.prefix, "nginx.pid")
	if err := os.WriteFile(pidfile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	base := freePortRange(t, 3)
	cfg, err := config.Load(webConfig(t, n, dir, 3, base, ""))
	if err != nil {
		t.Fatal(err)
	}
	_, cl, logs, stop := loggedDaemon(t, cfg, nil)

	// Three attempts (the first and two retries), each seen failing.
	var st api.NginxStatus
	attempts := map[time.Time]bool{}
	for deadline := time.Now().Add(60 * time.Second); len(attempts) < 3; time.Sleep(50 * time.Millisecond) {
		if st, err = cl.Nginx(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !st.LastAttempt.IsZero() {
			attempts[st.LastAttempt] = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("want 3 attempts to reload nginx, saw %d: %+v", len(attempts), st)
		}
	}
	want := "nginx is not running: " + n.include + " written and checked; it will be reloaded once nginx runs"
	if st.OK || !strings.HasPrefix(st.Error, want) || st.Servers != 3 {
		t.Errorf("status while nginx is not running: want not ok, %q, 3 servers; have %+v", want, st)
	}
	if rendered, _ := os.ReadFile(n.include); bytes.Count(rendered, []byte("    server 127.0.0.1:")) != 3 {
		t.Errorf("rendered file:\n%s", rendered)
	}
	text := logs.String()
	if c := strings.Count(text, "nginx is not running"); c != 1 || !strings.Contains(text, "level=WARN msg=\""+want+"\"") {
		t.Errorf("want one WARN line %q, have %d:\n%s", want, c, text)
	}
	if strings.Contains(text, "level=ERROR") || strings.Contains(text, "invalid PID number") {
		t.Errorf("the log has an ERROR or nginx's pid complaint:\n%s", text)
	}

	n.start(t)
	st = waitNginxWithin(t, cl, 1, 60*time.Second)
	if st.Servers != 3 || st.Error != "" {
		t.Errorf("status once nginx runs: %+v", st)
	}
	waitListening(t, base, 3)
	if seen := portsBehind(t, fmt.Sprintf("http://127.0.0.1:%d/", n.port), 3); len(seen) != 3 {
		t.Errorf("through nginx, want 3 backends, saw %v", seen)
	}

	// The same configuration again: the file is unchanged, nothing is
	// reloaded, and the status still counts its servers.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, cl2, _ := runDaemon(t, cfg, Options{})
	if st := waitNginx(t, cl2, 0); st.Servers != 3 {
		t.Errorf("status after a restart on an unchanged file: want 3 servers, have %+v", st)
	}
}

// The default template's forwarded headers reach the app under the names
// it reads (a WSGI app: HTTP_X_FORWARDED_PROTO in its environ), with
// nginx's values, not what the client sent: a real nginx in front of a
// real uwsgi running a WSGI app that echoes its environ, and of an HTTP
// child that echoes its request headers.
func TestForwardedHeadersReachTheApp(t *testing.T) {
	for _, protocol := range []string{"uwsgi", "http"} {
		t.Run(protocol, func(t *testing.T) {
			n := startNginx(t)
			port := freePort(t)
			command := fmt.Sprintf(`"%s http"`+"\n"+helperEnv, os.Args[0])
			path := "/headers"
			if protocol == "uwsgi" {
				uwsgi := needTool(t, "uwsgi", "uwsgi-core uwsgi-plugin-python3")
				app, err := filepath.Abs("testdata/wsgi_environ.py")
				if err != nil {
					t.Fatal(err)
				}
				command = fmt.Sprintf(`"%s --plugin python3 --socket 127.0.0.1:%%(port)d --processes 1 --wsgi-file %s --need-app --disable-logging"`+"\nstopsignal = \"QUIT\"", uwsgi, app)
				path = "/environ"
			}
			file := writeConfig(t, fmt.Sprintf(`
[program.web]
command = %s
port_start = %d
startsecs = 0
upstream = "web"

[nginx]
output = %q
test_command = %q
reload_command = %q

[nginx.upstream.web]
protocol = %q
listen = "127.0.0.1:%d"
server_name = "app.test"
`, command, port, n.include, n.args("-t", "-q"), n.args("-s", "reload"), protocol, n.port))
			cl, _ := startDaemon(t, file)
			waitNginx(t, cl, 1)
			waitListening(t, port, 1)
			req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", n.port, path), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "app.test"
			// What a client may claim: nginx must replace or extend it.
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Real-IP", "203.0.113.7")
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errlog, _ := os.ReadFile(filepath.Join(n.prefix, "error.log"))
				t.Fatalf("through nginx: %s\n%s\nnginx error.log:\n%s", resp.Status, body, errlog)
			}
			env := map[string]string{}
			for line := range strings.Lines(string(body)) {
				if k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "="); ok {
					env[k] = v
				}
			}
			for k, want := range map[string]string{
				"HTTP_HOST":              "app.test",
				"HTTP_X_FORWARDED_PROTO": "http",
				"HTTP_X_REAL_IP":         "127.0.0.1",
				"HTTP_X_FORWARDED_FOR":   "203.0.113.9, 127.0.0.1",
			} {
				if env[k] != want {
					t.Errorf("%s: want %q, have %q", k, want, env[k])
				}
			}
			for _, k := range []string{"Host", "X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto"} {
				if v, ok := env[k]; ok {
					t.Errorf("the app sees %s=%q: a name no WSGI app reads", k, v)
				}
			}
			if t.Failed() {
				rendered, _ := os.ReadFile(n.include)
				t.Logf("the app saw:\n%s\nrendered:\n%s", body, rendered)
			}
		})
	}
}
