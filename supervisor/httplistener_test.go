package supervisor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/web"
	"golang.org/x/sys/unix"
)

// httpClient is a client that keeps no connection (each request is a
// new one, as a scraper's or a load balancer's may be); dial, when not
// nil, replaces the dialer (a unix socket).
func httpClient(dial func(ctx context.Context) (net.Conn, error)) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if dial != nil {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// httpDo does one request; hdr may be nil.
func httpDo(cl *http.Client, method, url string, hdr http.Header) (int, http.Header, string, error) {
	var body io.Reader
	if method != http.MethodGet && method != http.MethodHead {
		body = strings.NewReader(`{"patterns":["all"]}`)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, nil, "", err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}

// waitHTTP polls GET url until it answers want (and, when not "",
// contains body), for up to a minute, and returns the body.
func waitHTTP(t *testing.T, cl *http.Client, url string, hdr http.Header, want int, body string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, _, got, err := httpDo(cl, "GET", url, hdr)
		if err == nil && code == want && strings.Contains(got, body) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %q %v; want %d with %q", url, code, got, err, want, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitHTTPState polls ctl info until the listener is in state.
func waitHTTPState(t *testing.T, cl *api.Client, state string) *api.HTTPInfo {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		info := mustInfo(t, cl)
		if info.HTTP != nil && info.HTTP.State == state {
			return info.HTTP
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTP listener not %s within a minute: %+v", state, info.HTTP)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refused reports whether nothing listens on the TCP address.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// TestHTTPListenerIsReadOnly: over the HTTP listener, every method but
// GET and HEAD gets 405 on every route (and on the control API's), the
// control API's routes do not exist, and nothing changed: the same
// children run, no reload happened, the daemon serves on.
func TestHTTPListenerIsReadOnly(t *testing.T) {
	port := freePort(t)
	file := writeConfig(t, fmt.Sprintf(`
[program.web]
command = "@HELPER@ sleep"
%s
numprocs = 2
process_name = "web_%%(process_num)02d"
startsecs = 0
[http]
listen = "127.0.0.1:%d"
`, helperEnv, port))
	cl, _ := startDaemon(t, file)
	hc := httpClient(nil)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, hc, base+"/healthz", nil, 200, "ok\n")
	before := waitAll(t, cl, "RUNNING")
	info := mustInfo(t, cl)
	paths := []string{"/", "/status.json", "/metrics", "/healthz", "/nope",
		"/v1/info", "/v1/status", "/v1/stop", "/v1/start", "/v1/restart", "/v1/signal", "/v1/reload", "/v1/shutdown", "/v1/upgrade", "/v1/test-alert", "/v1/reopen-logs"}
	methods := []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}
	for _, path := range paths {
		for _, m := range methods {
			code, hdr, _, err := httpDo(hc, m, base+path, nil)
			if err != nil || code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q %v; want 405 Allow \"GET, HEAD\"", m, path, code, hdr.Get("Allow"), err)
			}
		}
		if strings.HasPrefix(path, "/v1/") {
			if code, _, _, err := httpDo(hc, "GET", base+path, nil); err != nil || code != 404 {
				t.Errorf("GET %s: %d %v; want 404: no control route is reachable", path, code, err)
			}
		}
	}
	after := mustStatus(t, cl)
	for i := range before {
		if after[i].State != "RUNNING" || after[i].Pid != before[i].Pid {
			t.Errorf("%s after the requests: %s pid %d, was RUNNING pid %d", after[i].Name, after[i].State, after[i].Pid, before[i].Pid)
		}
	}
	now := mustInfo(t, cl)
	if now.Pid != info.Pid || now.State != "running" || !now.LastReload.At.Equal(info.LastReload.At) {
		t.Errorf("daemon after the requests: %+v", now)
	}
	if now.HTTP == nil || now.HTTP.State != "listening" || now.HTTP.Listen != fmt.Sprintf("127.0.0.1:%d", port) || now.HTTP.Auth != "none" ||
		now.HTTP.Accepted < int64(len(paths)*len(methods)) || now.HTTP.Refused != 0 {
		t.Errorf("ctl info's http: %+v", now.HTTP)
	}
}

// TestHTTPStopsWithTheDaemon: the port is free once the daemon stopped.
func TestHTTPStopsWithTheDaemon(t *testing.T) {
	port := freePort(t)
	file := writeConfig(t, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", port))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	_, _, stop := runDaemon(t, cfg, Options{})
	waitHTTP(t, httpClient(nil), fmt.Sprintf("http://127.0.0.1:%d/healthz", port), nil, 200, "ok")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !refused(fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Fatal("the HTTP port still accepts after the daemon stopped")
	}
}

// TestHealthzNamesWhatIsDown: /healthz is 503 with one line per
// autostart process that is not RUNNING, naming it with ctl status's
// description; a process stopped with ctl stop, and a one-shot job that
// exited as expected, count as healthy.
func TestHealthzNamesWhatIsDown(t *testing.T) {
	port := freePort(t)
	file := writeConfig(t, fmt.Sprintf(`
[program.web]
command = "@HELPER@ sleep"
%[1]s
numprocs = 2
process_name = "web_%%(process_num)02d"
startsecs = 0
[program.crash]
command = "@HELPER@ no-such-mode"
%[1]s
startsecs = 1
startretries = 0
[program.job]
command = "/bin/true"
startsecs = 0
autorestart = false
[program.manual]
command = "@HELPER@ no-such-mode"
autostart = false
[http]
listen = "127.0.0.1:%[2]d"
`, helperEnv, port))
	cl, _ := startDaemon(t, file)
	hc := httpClient(nil)
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	waitStatus(t, cl, "crash:crash", "FATAL", func(p api.ProcStatus) bool { return p.State == "FATAL" })
	waitStatus(t, cl, "job:job", "EXITED", func(p api.ProcStatus) bool { return p.State == "EXITED" })
	waitAll(t, cl, "RUNNING", "web:*")
	body := waitHTTP(t, hc, url, nil, 503, "crash:crash is FATAL: ")
	if lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "exited") {
		t.Fatalf("healthz with crash FATAL: want one line, the crash with its exit:\n%s", body)
	}
	// ctl stop is deliberate.
	if _, err := cl.Action(context.Background(), "stop", api.ActionRequest{Patterns: []string{"crash:crash", "web:web_01"}}); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, hc, url, nil, 200, "ok\n")
	// Started again, it is RUNNING: still healthy.
	if _, err := cl.Action(context.Background(), "start", api.ActionRequest{Patterns: []string{"web:web_01"}}); err != nil {
		t.Fatal(err)
	}
	waitAll(t, cl, "RUNNING", "web:*")
	waitHTTP(t, hc, url, nil, 200, "ok\n")
	code, _, body, err := httpDo(hc, "HEAD", url, nil)
	if err != nil || code != 200 || body != "" {
		t.Fatalf("HEAD /healthz: %d %q %v", code, body, err)
	}
}

// TestHTTPListenErrorKeepsTheDaemon: a port taken does not stop the
// daemon nor any child: the error is in ctl info and ctl status's
// warnings, and the listener listens once the port is free.
func TestHTTPListenErrorKeepsTheDaemon(t *testing.T) {
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	addr := squatter.Addr().String()
	file := writeConfig(t, fmt.Sprintf(`
[program.web]
command = "@HELPER@ sleep"
%s
startsecs = 0
[http]
listen = %q
`, helperEnv, addr))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	_, cl, _ := runDaemonWith(t, cfg, Options{}, func(s *Supervisor) { s.hooks.httpRetry = 20 * time.Millisecond })
	waitAll(t, cl, "RUNNING")
	in := waitHTTPState(t, cl, "failed")
	if !strings.Contains(in.Error, "address already in use") || in.Attempts < 1 || in.ErrorAt.IsZero() {
		t.Fatalf("ctl info's http: %+v", in)
	}
	_, warnings, err := cl.StatusWarning(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warnings, func(w string) bool {
		return strings.HasPrefix(w, "HTTP listener: cannot listen on "+addr) && strings.Contains(w, "address already in use")
	}) {
		t.Fatalf("ctl status warnings: %q", warnings)
	}
	// Retried until it works.
	squatter.Close()
	waitHTTPState(t, cl, "listening")
	waitHTTP(t, httpClient(nil), "http://"+addr+"/healthz", nil, 200, "ok\n")
	if st := mustStatus(t, cl); st[0].State != "RUNNING" {
		t.Fatalf("web: %+v", st[0])
	}
	_, warnings, _ = cl.StatusWarning(context.Background())
	if slices.ContainsFunc(warnings, func(w string) bool { return strings.HasPrefix(w, "HTTP listener") }) {
		t.Fatalf("warnings once listening: %q", warnings)
	}
}

// TestHTTPReload: a reload moves the listener to its new address (the
// old one is closed), re-reads the token file, and a reload without
// [http] closes it; ctl info follows.
func TestHTTPReload(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	file := writeConfig(t, "")
	dir := filepath.Dir(file)
	tokenFile := filepath.Join(dir, "token")
	writeToken := func(tok string) {
		if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeToken("first-token-0123456789")
	rewriteConfig(t, file, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\ntoken_file = \"token\"\n", p1))
	cl, _ := startDaemon(t, file)
	hc := httpClient(nil)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	url1, url2 := fmt.Sprintf("http://127.0.0.1:%d/healthz", p1), fmt.Sprintf("http://127.0.0.1:%d/healthz", p2)
	// /healthz answers its code to anyone; /metrics (a stub here, 404
	// once authenticated) needs the token.
	waitHTTP(t, hc, url1, nil, 200, "ok")
	metrics1 := fmt.Sprintf("http://127.0.0.1:%d/metrics", p1)
	if code, _, _, err := httpDo(hc, "GET", metrics1, nil); err != nil || code != 401 {
		t.Fatalf("GET /metrics without the token: %d %v", code, err)
	}
	if code, _, _, err := httpDo(hc, "GET", metrics1, bearer("first-token-0123456789")); err != nil || code == 401 {
		t.Fatalf("GET /metrics with the token: %d %v", code, err)
	}
	if in := mustInfo(t, cl).HTTP; in == nil || in.Auth != "bearer" {
		t.Fatalf("ctl info's http: %+v", in)
	}

	// Same address, new token: read again, the listener stays.
	writeToken("second-token-0123456789")
	if _, err := cl.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := httpDo(hc, "GET", metrics1, bearer("first-token-0123456789")); err != nil || code != 401 {
		t.Fatalf("the old token after the reload: %d %v; want 401", code, err)
	}
	if code, _, _, err := httpDo(hc, "GET", metrics1, bearer("second-token-0123456789")); err != nil || code == 401 {
		t.Fatalf("the new token after the reload: %d %v", code, err)
	}

	// A new address: the old one is closed.
	rewriteConfig(t, file, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\ntoken_file = \"token\"\n", p2))
	if _, err := cl.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, hc, url2, nil, 200, "ok")
	if !refused(fmt.Sprintf("127.0.0.1:%d", p1)) {
		t.Fatal("the old address still accepts after the reload moved the listener")
	}
	if in := mustInfo(t, cl).HTTP; in == nil || in.Listen != fmt.Sprintf("127.0.0.1:%d", p2) || in.State != "listening" {
		t.Fatalf("ctl info's http after the move: %+v", in)
	}

	// A token file made unreadable is a reload error: the listener and
	// its token stay as they were.
	if err := os.Chmod(tokenFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Reload(context.Background(), false); err == nil || !strings.Contains(err.Error(), "http.token_file") {
		t.Fatalf("reload with a token file others can read: %v", err)
	}
	if code, _, _, err := httpDo(hc, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", p2), bearer("second-token-0123456789")); err != nil || code == 401 {
		t.Fatalf("the token after the failed reload: %d %v", code, err)
	}

	// No [http]: closed.
	rewriteConfig(t, file, "")
	if _, err := cl.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if in := mustInfo(t, cl).HTTP; in != nil {
		t.Fatalf("ctl info's http without [http]: %+v", in)
	}
	if !refused(fmt.Sprintf("127.0.0.1:%d", p2)) {
		t.Fatal("the listener still accepts after a reload removed [http]")
	}
}

// TestHTTPUnixSocket: a unix socket listen is made with its mode from
// the start (0600 by default), in a directory of the daemon's own; a
// stale socket is replaced, anything else refused (the daemon runs on,
// and listens once the path is free); the file goes with the daemon.
func TestHTTPUnixSocket(t *testing.T) {
	file := writeConfig(t, "")
	dir := filepath.Dir(file)
	sock := filepath.Join(dir, "h", "http.sock")
	if err := os.Mkdir(filepath.Join(dir, "h"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A stale socket, as a killed daemon leaves it.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	rewriteConfig(t, file, fmt.Sprintf("[http]\nlisten = %q\n", sock))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	_, cl, stop := runDaemonWith(t, cfg, Options{}, func(s *Supervisor) { s.hooks.httpRetry = 20 * time.Millisecond })
	hc := httpClient(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	})
	waitHTTP(t, hc, "http://localhost/healthz", nil, 200, "ok\n")
	if in := mustInfo(t, cl).HTTP; in == nil || in.Listen != sock || in.State != "listening" {
		t.Fatalf("ctl info's http: %+v", in)
	}
	var st unix.Stat_t
	if err := unix.Lstat(sock, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Mode&0o777 != 0o600 {
		t.Fatalf("socket %s: mode %o %v; want a socket of mode 0600", sock, st.Mode, err)
	}
	if code, _, _, err := httpDo(hc, "POST", "http://localhost/v1/shutdown", nil); err != nil || code != 405 {
		t.Fatalf("POST over the unix socket: %d %v", code, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file after the daemon stopped: %v", err)
	}

	// A regular file there is not replaced: the daemon runs without the
	// listener, says why, and listens once the file is gone.
	if err := os.WriteFile(sock, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, cl, _ = runDaemonWith(t, cfg, Options{}, func(s *Supervisor) { s.hooks.httpRetry = 20 * time.Millisecond })
	in := waitHTTPState(t, cl, "failed")
	if !strings.Contains(in.Error, "is a regular file, not a socket") {
		t.Fatalf("ctl info's http with a file at the path: %+v", in)
	}
	if b, err := os.ReadFile(sock); err != nil || string(b) != "precious" {
		t.Fatalf("the file at the path: %q %v", b, err)
	}
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	waitHTTPState(t, cl, "listening")
	waitHTTP(t, hc, "http://localhost/healthz", nil, 200, "ok\n")

	// One a process listens on is not taken from it.
	other := filepath.Join(dir, "h", "other.sock")
	oln, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer oln.Close()
	if err := removeStaleSocket(other); err == nil || !strings.Contains(err.Error(), "another process listens on it") {
		t.Fatalf("removeStaleSocket of a live socket: %v", err)
	}
}

// TestHTTPConnectionBoundShown: past max_connections a connection gets
// 503 and is counted in ctl info; a reload changes the bound in place.
func TestHTTPConnectionBoundShown(t *testing.T) {
	port := freePort(t)
	file := writeConfig(t, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\nmax_connections = 1\n", port))
	cl, _ := startDaemon(t, file)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitHTTPState(t, cl, "listening")
	// One connection held, sending nothing yet.
	held, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for deadline := time.Now().Add(time.Minute); mustInfo(t, cl).HTTP.Active != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the held connection is not counted active: %+v", mustInfo(t, cl).HTTP)
		}
	}
	code, _, body, err := httpDo(httpClient(nil), "GET", "http://"+addr+"/healthz", nil)
	if err != nil || code != 503 || !strings.Contains(body, "too many connections") {
		t.Fatalf("a connection past max_connections: %d %q %v", code, body, err)
	}
	if in := mustInfo(t, cl).HTTP; in.Refused != 1 || in.MaxConnections != 1 {
		t.Fatalf("ctl info's http: %+v", in)
	}
	rewriteConfig(t, file, fmt.Sprintf("[http]\nlisten = %q\nmax_connections = 2\n", addr))
	if _, err := cl.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := httpDo(httpClient(nil), "GET", "http://"+addr+"/healthz", nil); err != nil || code != 200 {
		t.Fatalf("with max_connections = 2 and one held: %d %v", code, err)
	}
	if in := mustInfo(t, cl).HTTP; in.Refused != 1 || in.MaxConnections != 2 {
		t.Fatalf("ctl info's http after the reload: %+v", in)
	}
}

// TestHTTPRebindingDefence: a listener on loopback without credentials
// answers a request for another name than an IP address or localhost
// (DNS rebinding: a web page that got its name to resolve to 127.0.0.1)
// with 421; once a reload sets token_file, credentials are the defence
// and any Host is answered; ctl info does not change.
func TestHTTPRebindingDefence(t *testing.T) {
	port := freePort(t)
	file := writeConfig(t, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", port))
	dir := filepath.Dir(file)
	cl, _ := startDaemon(t, file)
	hc := httpClient(nil)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHTTP(t, hc, base+"/healthz", nil, 200, "ok\n")
	get := func(host string, hdr http.Header) (int, string) {
		req, err := http.NewRequest("GET", base+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(fmt.Sprintf("rebind.example:%d", port), nil); code != 421 || !strings.Contains(body, "DNS rebinding") {
		t.Fatalf("Host rebind.example: %d %q; want 421", code, body)
	}
	for _, host := range []string{fmt.Sprintf("localhost:%d", port), fmt.Sprintf("127.0.0.1:%d", port)} {
		if code, body := get(host, nil); code == 421 {
			t.Fatalf("Host %s: %d %q", host, code, body)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("rebind-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rewriteConfig(t, file, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\ntoken_file = \"token\"\n", port))
	if _, err := cl.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(fmt.Sprintf("rebind.example:%d", port), nil); code != 401 {
		t.Fatalf("Host rebind.example with token_file, no token: %d, want 401", code)
	}
	if code, body := get(fmt.Sprintf("gosup.example.net:%d", port), http.Header{"Authorization": {"Bearer rebind-token-0123456789"}}); code == 421 || code == 401 {
		t.Fatalf("Host gosup.example.net with the token: %d %q", code, body)
	}
}

// TestInfoDuringHTTPDrain: while the HTTP listener drains (an upgrade's
// handover waits for the requests in flight), ctl info and ctl status
// answer: a /healthz in flight asks ctl info over the control socket, so
// an info that waited for the drain made the drain wait for itself, and
// the upgrade cut the health check.
func TestInfoDuringHTTPDrain(t *testing.T) {
	port := freePort(t)
	file := writeConfig(t, fmt.Sprintf("[http]\nlisten = \"127.0.0.1:%d\"\n", port))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	lim := web.DefaultLimits()
	lim.ReadHeaderTimeout, lim.ReadTimeout = 10*time.Minute, 10*time.Minute
	s, cl, _ := runDaemonWith(t, cfg, Options{}, func(s *Supervisor) {
		s.hooks.httpDrain = 10 * time.Minute
		s.hooks.httpLimits = &lim
	})
	waitHTTPState(t, cl, "listening")
	// A connection in flight: the drain waits for it.
	held, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for deadline := time.Now().Add(time.Minute); mustInfo(t, cl).HTTP.Active != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the held connection is not counted active")
		}
	}
	type result struct {
		resume func()
		err    error
	}
	done := make(chan result, 1)
	go func() {
		_, resume, err := s.http.handover()
		done <- result{resume, err}
	}()
	// Draining: Accept parked.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if s.http.draining.Load() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the handover did not begin its drain")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.Info(ctx); err != nil {
		t.Fatalf("ctl info during the HTTP listener's drain: %v", err)
	}
	if _, _, err := cl.StatusWarning(ctx); err != nil {
		t.Fatalf("ctl status during the HTTP listener's drain: %v", err)
	}
	select {
	case <-done:
		t.Fatal("the drain ended with a connection still open")
	default:
	}
	held.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.resume()
	waitHTTP(t, httpClient(nil), fmt.Sprintf("http://127.0.0.1:%d/healthz", port), nil, 200, "ok\n")
}

// TestHTTPUnixSocketLeavesUmask: making the unix socket does not change
// the daemon's umask, not even for a moment: the umask is the process's,
// and a child spawned or a log file created meanwhile (a restart, a
// rotation: the listener is made at start, by a reload and by its
// retries, while children start) would keep 0177 (a child for its life).
func TestHTTPUnixSocketLeavesUmask(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "h", "http.sock")
	cfg := &config.HTTP{Listen: path, Unix: true, SocketMode: "0600", MaxConnections: 1}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	umaskKept(t, path, func() func() {
		b, err := listenHTTP(cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		return b.close
	})
}

// TestControlSocketLeavesUmask: the control socket too is made without
// touching the umask: the socket watcher makes it again, while children
// run, when someone removes it.
func TestControlSocketLeavesUmask(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gosup.sock")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	umaskKept(t, path, func() func() {
		ln, err := listen(path, 0o600, "", log)
		if err != nil {
			t.Fatal(err)
		}
		return func() { ln.Close() }
	})
}

// umaskKept makes a socket at path with mk, many times, while another
// goroutine reads the process's umask, and fails if it ever changed or
// the socket's mode was not 0600.
func umaskKept(t *testing.T, path string, mk func() (closeIt func())) {
	t.Helper()
	umask := func() string {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Error(err)
			return ""
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	want := umask()
	if want == "" {
		t.Fatal("no Umask in /proc/self/status")
	}
	stop := make(chan struct{})
	seen := make(chan string, 1)
	go func() {
		defer close(seen)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if got := umask(); got != want {
				seen <- got
				return
			}
		}
	}()
	for i := 0; i < 2000; i++ {
		closeIt := mk()
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil || st.Mode&0o777 != 0o600 {
			t.Fatalf("socket mode %o %v", st.Mode&0o777, err)
		}
		closeIt()
		if len(seen) > 0 {
			break
		}
	}
	close(stop)
	if got, ok := <-seen; ok {
		t.Fatalf("the daemon's umask was %s while the socket was made (is %s)", got, want)
	}
}
