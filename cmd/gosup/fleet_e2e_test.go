package main

// Issue 17's "How to show it works", end to end on one machine with real
// parts: one etcd (etcdtest), two "hosts" (two gosup daemons built from
// this tree, publishing as 127.0.0.2 and 127.0.0.3: every address of
// 127/8 answers on Linux), a balancer gosup with no programs rendering
// HAProxy's backend and an nginx upstream from the registry, a real
// HAProxy 2.6 in master-worker mode that the balancer reloads (kill -USR2
// of the master, as Debian's unit does) and steers through its runtime
// API (the stats socket), and a real nginx. Load generators send GETs through HAProxy
// and nginx the whole time and count what failed, phase by phase. The
// configurations have the shape docs/fleet.md shows, and the figures
// there come from this test's log (go test -v -run TestFleetE2E).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/haproxy"
	"github.com/gosup/gosup/supervisor/haproxy/haproxytest"
	"github.com/gosup/gosup/supervisor/registry/etcd/etcdtest"
)

// fleetTTL is the app hosts' lease ttl (the shortest gosup allows): a dead
// host's members vanish within it.
const fleetTTL = 3 * time.Second

// fleetProcs is how many demo-app children each host runs.
const fleetProcs = 2

// fleetDaemon is one gosup daemon run from the built binary.
type fleetDaemon struct {
	name   string
	addr   string // [registry] host ("" for the balancer)
	dir    string
	cfg    string
	log    string
	cmd    *exec.Cmd
	cl     *api.Client
	exited chan struct{}
}

// startFleetDaemon writes body as dir/gosup.toml and runs `gosup start`
// on it, with the binary's directory first in PATH (the configurations
// say `gosup demo-app`, as the docs do). The daemon is killed with the
// test binary (Pdeathsig), shut down at cleanup otherwise.
func startFleetDaemon(t *testing.T, bin, path, name, addr, dir, body string) *fleetDaemon {
	t.Helper()
	d := &fleetDaemon{name: name, addr: addr, dir: dir, cfg: filepath.Join(dir, "gosup.toml"), log: filepath.Join(dir, "daemon.log"),
		cl: api.NewClient(filepath.Join(dir, "gosup.sock")), exited: make(chan struct{})}
	if err := os.WriteFile(d.cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(bin, "start", "-c", d.cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Env = append(os.Environ(), "PATH="+path)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if _, err := d.cl.Shutdown(ctx); err != nil {
				_ = d.cmd.Process.Kill()
			}
			cancel()
			<-d.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			if len(b) > 12000 {
				b = b[len(b)-12000:]
			}
			t.Logf("%s's daemon log (end):\n%s", d.name, b)
		}
	})
	return d
}

// kill ends the daemon with SIGKILL (its children die with it: they
// have Pdeathsig) and waits for it.
func (d *fleetDaemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
}

// running waits until the daemon has n processes RUNNING and gives their
// pids by process name.
func (d *fleetDaemon) running(t *testing.T, n int) map[string]int {
	t.Helper()
	var last []api.ProcStatus
	var lastErr error
	ok := eventually(time.Minute, func() bool {
		last, lastErr = d.cl.Status(context.Background())
		return lastErr == nil && len(last) == n && !slices.ContainsFunc(last, func(p api.ProcStatus) bool { return p.State != "RUNNING" })
	})
	if !ok {
		t.Fatalf("%s: want %d RUNNING, have %+v (%v)", d.name, n, last, lastErr)
	}
	pids := map[string]int{}
	for _, p := range last {
		pids[p.Name] = p.Pid
	}
	return pids
}

// gosup runs the built binary with args (a client command) and gives its
// combined output.
func (d *fleetDaemon) gosup(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: gosup %s: %v\n%s", d.name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// eventually polls cond every 50 ms until it holds (true) or d passes
// (false).
func eventually(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// fleetMember is a member's value in etcd.
type fleetMember struct {
	Host    string `json:"host"`
	Port    int    `json:"port"`
	State   string `json:"state"`
	Process string `json:"process"`
	Pid     int    `json:"pid"`
}

// fleetMembers reads PREFIX/upstreams/web/ from etcd, by HOST:PORT.
func fleetMembers(t *testing.T, e *etcdtest.Server) map[string]fleetMember {
	t.Helper()
	m, err := readFleetMembers(e.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readFleetMembers is fleetMembers for a goroutine: it gives the error.
func readFleetMembers(endpoint string) (map[string]fleetMember, error) {
	const prefix = "/gosup/upstreams/web/"
	end := []byte(prefix)
	end[len(end)-1]++
	req, _ := json.Marshal(map[string][]byte{"key": []byte(prefix), "range_end": end})
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(endpoint+"/v3/kv/range", "application/json", strings.NewReader(string(req)))
	if err != nil {
		return nil, fmt.Errorf("etcd range: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("etcd range: %s %v: %s", resp.Status, err, body)
	}
	var r struct {
		KVs []struct{ Key, Value []byte } `json:"kvs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("etcd range: %w: %s", err, body)
	}
	out := map[string]fleetMember{}
	for _, kv := range r.KVs {
		var m fleetMember
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return nil, fmt.Errorf("etcd %s: %w: %s", kv.Key, err, kv.Value)
		}
		out[strings.TrimPrefix(string(kv.Key), prefix)] = m
	}
	return out, nil
}

// onHost gives the members of m published as host addr.
func onHost(m map[string]fleetMember, addr string) map[string]fleetMember {
	out := map[string]fleetMember{}
	for k, v := range m {
		if v.Host == addr {
			out[k] = v
		}
	}
	return out
}

// haproxyMain is the main configuration the test gives HAProxy besides
// the fragment gosup renders: global (the runtime API's socket, at admin
// level) and defaults, as docs/fleet.md's haproxy.cfg has them.
const haproxyMain = `global
    stats socket %s mode 600 level admin expose-fd listeners
    stats timeout 30s

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
`

// writeHAProxyMain writes haproxy.cfg in dir and gives its path and its
// admin socket's.
func writeHAProxyMain(t *testing.T, dir string) (string, string) {
	t.Helper()
	main, admin := filepath.Join(dir, "haproxy.cfg"), filepath.Join(dir, "admin.sock")
	if err := os.WriteFile(main, []byte(fmt.Sprintf(haproxyMain, admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return main, admin
}

// haproxyCMaint is srv_admin_state's bit for `disabled` in the
// configuration: `set server ... state ready` clears the forced
// maintenance `disabled` also sets (0x01) and leaves it, and the server
// serves.
const haproxyCMaint = 0x04

// serving says the server is up and not drained or in maintenance.
func serving(s haproxy.ServerState) bool { return s.OpState == 2 && s.Admin&^haproxyCMaint == 0 }

// haproxyServers reads `show servers state web` from h: the servers of
// backend web the running worker has, by name.
func haproxyServers(h *haproxytest.Server) (map[string]haproxy.ServerState, error) {
	sts, err := h.Runtime().ServerStates(context.Background(), "web")
	if err != nil {
		return nil, err
	}
	m := map[string]haproxy.ServerState{}
	for _, st := range sts {
		m[st.Server] = st
	}
	return m, nil
}

// loadWindow counts the requests started while it was the load
// generator's current window.
type loadWindow struct {
	name       string
	start, end time.Time
	ok, failed int
	// late counts the failures of requests that ended after the window
	// did (cut by what the next window does).
	late  int
	byPid map[int]int
	errs  []string // the first few failures
}

// loadGen sends GETs through HAProxy from a few workers, each paced, on
// a new connection each (as many clients do), and counts what happened
// by window.
type loadGen struct {
	url  string
	mu   sync.Mutex
	cur  *loadWindow
	all  []*loadWindow
	stop chan struct{}
	wg   sync.WaitGroup
}

var demoAnswerRE = regexp.MustCompile(`^port (\d+) pid (\d+)\n$`)

func startLoad(t *testing.T, url string, workers int, every time.Duration) *loadGen {
	t.Helper()
	g := &loadGen{url: url, stop: make(chan struct{})}
	g.next("start")
	for range workers {
		g.wg.Add(1)
		go g.work(every)
	}
	t.Cleanup(g.halt)
	return g
}

// halt stops the load, waits for every request to end and ends the
// current window.
func (g *loadGen) halt() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cur.end.IsZero() {
		g.cur.end = time.Now()
	}
}

func (g *loadGen) work(every time.Duration) {
	defer g.wg.Done()
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-tick.C:
		}
		g.mu.Lock()
		w := g.cur
		g.mu.Unlock()
		pid, err := get(hc, g.url)
		g.mu.Lock()
		if err != nil {
			w.failed++
			if !w.end.IsZero() {
				w.late++
			}
			if len(w.errs) < 8 {
				w.errs = append(w.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
		} else {
			w.ok++
			w.byPid[pid]++
		}
		g.mu.Unlock()
	}
}

// get does one GET and gives the pid that answered.
func get(hc *http.Client, url string) (int, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %q", resp.Status, body)
	}
	m := demoAnswerRE.FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("not demo-app's answer: %q", body)
	}
	return strconv.Atoi(string(m[2]))
}

// next ends the current window and starts a new one, which it gives:
// read it only once the load has halted (requests started in it may end
// later).
func (g *loadGen) next(name string) *loadWindow {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if g.cur != nil {
		g.cur.end = now
	}
	g.cur = &loadWindow{name: name, start: now, byPid: map[int]int{}}
	g.all = append(g.all, g.cur)
	return g.cur
}

// snapshot gives a copy of the current window's counts.
func (g *loadGen) snapshot() loadWindow {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := *g.cur
	w.byPid = maps.Clone(g.cur.byPid)
	return w
}

// waitOK waits until the current window has n more successes than it had
// when asked (traffic flows), failing the test after a minute.
func (g *loadGen) waitOK(t *testing.T, n int) {
	t.Helper()
	from := g.snapshot().ok
	if !eventually(time.Minute, func() bool { return g.snapshot().ok >= from+n }) {
		s := g.snapshot()
		t.Fatalf("load: %d successes in window %q, want %d more than %d (%d failed: %v)", s.ok, s.name, n, from, s.failed, s.errs)
	}
}

// waitPids waits until every pid of want answered in the current window.
func (g *loadGen) waitPids(t *testing.T, want []int) {
	t.Helper()
	if !eventually(time.Minute, func() bool {
		s := g.snapshot()
		return !slices.ContainsFunc(want, func(p int) bool { return s.byPid[p] == 0 })
	}) {
		s := g.snapshot()
		t.Fatalf("load: window %q reached pids %v, want all of %v", s.name, s.byPid, want)
	}
}

func (w *loadWindow) String() string {
	return fmt.Sprintf("%q: %d requests in %.1fs, %d failed (%d of them ended after the window)", w.name, w.ok+w.failed, w.end.Sub(w.start).Seconds(), w.failed, w.late)
}

func pidsOf(m map[string]int) []int {
	var out []int
	for _, p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// freeFleetPorts finds n consecutive ports free on every one of addrs.
func freeFleetPorts(t *testing.T, n int, addrs ...string) int {
	t.Helper()
	for range 1000 {
		base, err := freePortBlock(n)
		if err != nil {
			t.Fatal(err)
		}
		free := true
		for _, a := range addrs {
			for p := base; p < base+n && free; p++ {
				ln, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(p)))
				if err != nil {
					free = false
					break
				}
				ln.Close()
			}
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d consecutive ports free on %v", n, addrs)
	return 0
}

// appHostConfig is an app host's configuration (docs/fleet.md's, with
// the test's paths and ports).
func appHostConfig(dir, endpoint, addr string, port int) string {
	return fmt.Sprintf(`[supervisor]
socket = %q
logdir = %q

[registry]
etcd = [%q]
host = %q
ttl = "3s"

[program.web]
command = "gosup demo-app --host %s"
numprocs = %d
port_start = %d
process_name = "web_%%(process_num)02d"
upstream = "web"
drain = "2s"
startsecs = 1
`, filepath.Join(dir, "gosup.sock"), filepath.Join(dir, "log"), endpoint, addr, addr, fleetProcs, port)
}

// balancerConfig is the balancer host's configuration: no programs, the
// registry read (no host: it publishes nothing), [haproxy] rendering
// backend web with a frontend on bind, and [nginx] rendering upstream web
// from the registry with a server listening on nginxListen. reload is the
// command that reloads HAProxy (kill -USR2 of the test's master, where
// docs/fleet.md has systemctl reload haproxy, which runs the same).
func balancerConfig(dir, endpoint, main, admin, reload, bind, nginxListen string) string {
	return fmt.Sprintf(`[supervisor]
socket = %q
logdir = %q

[registry]
etcd = [%q]

[haproxy]
output = %q
test_command = "haproxy -c -f %s -f %%(output)s"
reload_command = %q
socket = %q

[haproxy.backend.web]
bind = %q
check_interval = "1s"
rise = 2
fall = 2

[nginx]
output = %q
test_command = "nginx -p %s/ -c nginx.conf -t -q"
reload_command = "nginx -p %s/ -c nginx.conf -s reload"

[nginx.upstream.web]
source = "registry"
protocol = "http"
listen = %q
`, filepath.Join(dir, "gosup.sock"), filepath.Join(dir, "log"), endpoint, filepath.Join(dir, "gosup-haproxy.cfg"), main, reload, admin, bind,
		filepath.Join(dir, "nginx-upstream.conf"), dir, dir, nginxListen)
}

// nginxMain is the nginx.conf the test runs nginx with (nginx -p DIR/):
// the http block includes the upstream file the balancer renders.
const nginxMain = `worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path tmp_body;
    proxy_temp_path tmp_proxy;
    fastcgi_temp_path tmp_fastcgi;
    uwsgi_temp_path tmp_uwsgi;
    scgi_temp_path tmp_scgi;
    include nginx-upstream.conf;
}
`

// startNginx runs nginx in the foreground with dir as its prefix and
// waits until listen answers; it is stopped (by pid) when the test ends.
func startNginx(t *testing.T, dir, listen string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("nginx not found; CI must install it (apt-get install nginx)")
		}
		t.Skipf("nginx not installed; run `apt-get install nginx` to run this test")
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(nginxMain), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir+"/", "-c", "nginx.conf", "-g", "daemon off;")
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx's error.log:\n%s", b)
		}
	})
	if !eventually(30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		t.Fatalf("nginx does not listen on %s:\n%s", listen, b)
	}
}

func TestFleetE2E(t *testing.T) {
	hbin := haproxytest.Bin(t)
	e := etcdtest.Start(t)
	bin := buildGosup(t, t.TempDir(), "v0.0.0-fleet")
	path := strings.Join([]string{filepath.Dir(bin), filepath.Dir(hbin), os.Getenv("PATH")}, string(os.PathListSeparator))
	root := t.TempDir()
	mkdir := func(name string) string {
		d := filepath.Join(root, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}

	// Two app hosts, each publishing its children as its own address.
	hostA, hostB := "127.0.0.2", "127.0.0.3"
	// Ports of their own: gosup checks before a spawn that no process
	// listens on the port, on any address (one machine's two hosts share
	// the port space).
	port := freeFleetPorts(t, 2*fleetProcs, hostA, hostB)
	dirA, dirB := mkdir("host-a"), mkdir("host-b")
	a := startFleetDaemon(t, bin, path, "host A", hostA, dirA, appHostConfig(dirA, e.Endpoint, hostA, port))
	b := startFleetDaemon(t, bin, path, "host B", hostB, dirB, appHostConfig(dirB, e.Endpoint, hostB, port+fleetProcs))
	pidsA, pidsB := a.running(t, fleetProcs), b.running(t, fleetProcs)
	var m map[string]fleetMember
	if !eventually(time.Minute, func() bool {
		m = fleetMembers(t, e)
		return len(onHost(m, hostA)) == fleetProcs && len(onHost(m, hostB)) == fleetProcs
	}) {
		t.Fatalf("etcd: want %d members of each host, have %v", fleetProcs, m)
	}

	// The balancer: `gosup render` reads the registry once and writes the
	// fragment HAProxy starts with (HAProxy refuses a missing -f file);
	// then HAProxy starts, and then the balancer daemon, whose reload
	// command names HAProxy's master pid.
	dirL := mkdir("balancer")
	main, admin := writeHAProxyMain(t, dirL)
	free := freeFleetPorts(t, 2, "127.0.0.1")
	bind := net.JoinHostPort("127.0.0.1", strconv.Itoa(free))
	nginxListen := net.JoinHostPort("127.0.0.1", strconv.Itoa(free+1))
	nginxOutput := filepath.Join(dirL, "nginx-upstream.conf")
	cfgL := filepath.Join(dirL, "gosup.toml")
	output := filepath.Join(dirL, "gosup-haproxy.cfg")
	// The configuration the daemon runs differs from this one only in
	// its reload command (HAProxy's pid is not known yet).
	if err := os.WriteFile(cfgL, []byte(balancerConfig(dirL, e.Endpoint, main, admin, "true", bind, nginxListen)), 0o644); err != nil {
		t.Fatal(err)
	}
	rendered, err := exec.Command(bin, "render", "--haproxy", "-c", cfgL).Output()
	if err != nil {
		t.Fatalf("gosup render --haproxy: %v\n%s", err, exitStderr(err))
	}
	renderedNginx, err := exec.Command(bin, "render", "-c", cfgL).Output()
	if err != nil {
		t.Fatalf("gosup render: %v\n%s", err, exitStderr(err))
	}
	for k := range m {
		if !strings.Contains(string(renderedNginx), "server "+k+";") {
			t.Fatalf("gosup render: no server %s:\n%s", k, renderedNginx)
		}
	}
	if err := os.WriteFile(nginxOutput, renderedNginx, 0o644); err != nil {
		t.Fatal(err)
	}
	startNginx(t, dirL, nginxListen)
	for k := range m {
		if !strings.Contains(string(rendered), "server "+k+" "+k+" ") {
			t.Fatalf("gosup render: no server %s:\n%s", k, rendered)
		}
	}
	if err := os.WriteFile(output, rendered, 0o644); err != nil {
		t.Fatal(err)
	}
	h := haproxytest.StartWith(t, main, admin, output)
	l := startFleetDaemon(t, bin, path, "balancer", "", dirL, balancerConfig(dirL, e.Endpoint, main, admin, fmt.Sprintf("kill -USR2 %d", h.Pid()), bind, nginxListen))
	if !eventually(time.Minute, func() bool { _, err := l.cl.Info(context.Background()); return err == nil }) {
		t.Fatal("the balancer daemon does not answer")
	}
	serversUp := func(want map[string]fleetMember) bool {
		s, err := haproxyServers(h)
		if err != nil || len(s) != len(want) {
			return false
		}
		for k := range want {
			if !serving(s[k]) {
				return false
			}
		}
		return true
	}
	if !eventually(time.Minute, func() bool { return serversUp(m) }) {
		s, err := haproxyServers(h)
		t.Fatalf("haproxy: want every member up, have %v (%v)", s, err)
	}

	// (a) Traffic through HAProxy reaches every child on both hosts.
	// The same through nginx, which the balancer renders from the
	// registry too.
	g := startLoad(t, "http://"+bind+"/", 3, 10*time.Millisecond)
	n := startLoad(t, "http://"+nginxListen+"/", 1, 10*time.Millisecond)
	wa, na := g.next("a: both hosts up"), n.next("a: both hosts up")
	g.waitPids(t, append(pidsOf(pidsA), pidsOf(pidsB)...))
	n.waitPids(t, append(pidsOf(pidsA), pidsOf(pidsB)...))
	g.waitOK(t, 200)

	// (b) kill -9 of host A's daemon: its children die with it, its
	// lease is no longer renewed, its members vanish from etcd within
	// the ttl, the balancer renders without them and reloads HAProxy;
	// HAProxy's health checks see the dead servers first.
	g.next("b: host A killed, until HAProxy's checks see it")
	n.next("b: host A killed")
	a.kill(t)
	killed := time.Now()
	var checksAt, etcdAt, fileAt, reloadAt, nginxAt time.Time
	var wb *loadWindow
	if !eventually(time.Minute, func() bool {
		now := time.Now()
		s, err := haproxyServers(h)
		if err == nil && checksAt.IsZero() && !slices.ContainsFunc(keysOf(onHost(m, hostA)), func(k string) bool { sv, ok := s[k]; return ok && sv.OpState != 0 }) {
			checksAt = now
			wb = g.next("b: after HAProxy's checks saw host A down")
		}
		if err == nil && reloadAt.IsZero() && !slices.ContainsFunc(keysOf(s), func(k string) bool { return strings.HasPrefix(k, hostA+":") }) {
			reloadAt = now
		}
		if etcdAt.IsZero() && len(onHost(fleetMembers(t, e), hostA)) == 0 {
			etcdAt = now
		}
		if b, err := os.ReadFile(output); err == nil && fileAt.IsZero() && !strings.Contains(string(b), hostA) {
			fileAt = now
		}
		if b, err := os.ReadFile(nginxOutput); err == nil && nginxAt.IsZero() && !strings.Contains(string(b), hostA) {
			nginxAt = now
		}
		return !checksAt.IsZero() && !reloadAt.IsZero() && !etcdAt.IsZero() && !fileAt.IsZero() && !nginxAt.IsZero()
	}) {
		t.Fatalf("after host A's kill -9: checks %v, etcd %v, file %v, haproxy reloaded %v, nginx's file %v", checksAt, etcdAt, fileAt, reloadAt, nginxAt)
	}
	t.Logf("kill -9 of host A: HAProxy's checks marked its servers down after %v, etcd dropped its members after %v (ttl %v), the balancer wrote HAProxy's file without them after %v and nginx's after %v, HAProxy ran without them after %v",
		checksAt.Sub(killed).Round(time.Millisecond), etcdAt.Sub(killed).Round(time.Millisecond), fleetTTL, fileAt.Sub(killed).Round(time.Millisecond), nginxAt.Sub(killed).Round(time.Millisecond), reloadAt.Sub(killed).Round(time.Millisecond))
	if !serversUp(onHost(m, hostB)) {
		s, err := haproxyServers(h)
		t.Errorf("haproxy after host A's removal: want host B's servers up, have %v (%v)", s, err)
	}
	g.waitPids(t, pidsOf(pidsB))
	n.waitPids(t, pidsOf(pidsB))
	g.waitOK(t, 200)
	wc, nc := g.next("c: rolling restart on host B"), n.next("c: rolling restart on host B")

	// (c) A rolling restart on host B drains each process through the
	// registry (down in etcd, drained in HAProxy) before it stops: no
	// request fails.
	seenDown, seenDrain := map[string]bool{}, map[string]bool{}
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(25 * time.Millisecond):
			}
			now, err := readFleetMembers(e.Endpoint)
			if err != nil {
				continue
			}
			for k, v := range onHost(now, hostB) {
				if v.State == "down" {
					seenDown[k] = true
				}
			}
			if s, err := haproxyServers(h); err == nil {
				for k, v := range s {
					if v.Admin&^haproxyCMaint != 0 {
						seenDrain[k] = true
					}
				}
			}
		}
	}()
	reloads := func() int {
		i, err := l.cl.Info(context.Background())
		if err != nil || i.HAProxy == nil {
			t.Fatalf("the balancer's info: %+v %v", i, err)
		}
		return i.HAProxy.Reloads
	}
	reloadsBefore := reloads()
	out := b.gosup(t, bin, "ctl", "restart", "--rolling", "-c", b.cfg, "web")
	close(stopWatch)
	<-watchDone
	t.Logf("gosup ctl restart --rolling web on host B:\n%s", out)
	newB := b.running(t, fleetProcs)
	for name, pid := range newB {
		if pidsB[name] == pid {
			t.Errorf("%s was not restarted (pid %d)", name, pid)
		}
	}
	mb := onHost(m, hostB)
	for k := range mb {
		if !seenDown[k] || !seenDrain[k] {
			t.Errorf("rolling restart: %s seen down in etcd %v, drained in HAProxy %v; want both", k, seenDown[k], seenDrain[k])
		}
	}
	if !eventually(time.Minute, func() bool {
		now := onHost(fleetMembers(t, e), hostB)
		for _, v := range now {
			if v.State != "up" || v.Pid != newB[v.Process] {
				return false
			}
		}
		return len(now) == fleetProcs && serversUp(mb)
	}) {
		s, err := haproxyServers(h)
		t.Fatalf("after the rolling restart: etcd %v, haproxy %v (%v); want new pids up in both", onHost(fleetMembers(t, e), hostB), s, err)
	}
	g.waitPids(t, pidsOf(newB))
	n.waitPids(t, pidsOf(newB))
	g.waitOK(t, 200)
	t.Logf("the rolling restart reloaded HAProxy %d times (each member leaves the server list when its process stops and comes back when the new one is published)", reloads()-reloadsBefore)
	wd, nd := g.next("d: etcd stopped and restarted"), n.next("d: etcd stopped and restarted")

	// (d) etcd stops and starts again on the same data and port: host B
	// keeps (or re-publishes) every member, the balancer keeps rendering
	// them throughout, and no request fails.
	infoB, err := b.cl.Info(context.Background())
	if err != nil || infoB.Registry == nil {
		t.Fatalf("host B's info: %+v %v", infoB, err)
	}
	lease, grants := infoB.Registry.Lease, infoB.Registry.LeaseGrants
	fileHas := func(when string, want map[string]fleetMember) {
		t.Helper()
		file, err := os.ReadFile(output)
		if err != nil {
			t.Fatal(err)
		}
		for k := range want {
			if !strings.Contains(string(file), "server "+k+" "+k+" ") {
				t.Errorf("%s the balancer's file has no server %s:\n%s", when, k, file)
			}
		}
	}
	// registryStates gives host B's registry state and the balancer's
	// watch's.
	registryStates := func() (string, string) {
		var pub, watch string
		if i, err := b.cl.Info(context.Background()); err == nil && i.Registry != nil {
			pub = i.Registry.State
		}
		if i, err := l.cl.Info(context.Background()); err == nil && i.Watch != nil {
			watch = i.Watch.State
		}
		return pub, watch
	}
	e.Stop(t)
	stopped := time.Now()
	var pub, watch string
	if !eventually(time.Minute, func() bool { pub, watch = registryStates(); return pub == "unreachable" && watch == "unreachable" }) {
		t.Fatalf("etcd stopped: host B's registry is %q, the balancer's watch %q; want both unreachable", pub, watch)
	}
	unreachable := time.Now()
	fileHas("while etcd is down", mb)
	if !serversUp(mb) {
		s, err := haproxyServers(h)
		t.Errorf("haproxy while etcd is down: want host B's servers up, have %v (%v)", s, err)
	}
	status, _ := exec.Command(bin, "ctl", "status", "-c", l.cfg).CombinedOutput()
	t.Logf("the balancer's gosup ctl status while etcd is down:\n%s", status)
	e.Restart(t)
	restarted := time.Now()
	if !eventually(time.Minute, func() bool {
		pub, watch = registryStates()
		return pub == "ok" && watch == "ok" && len(onHost(fleetMembers(t, e), hostB)) == fleetProcs
	}) {
		t.Fatalf("after etcd's restart: host B's registry %q, the balancer's watch %q, etcd holds %v; want ok, ok and host B's %d members", pub, watch, fleetMembers(t, e), fleetProcs)
	}
	back := time.Now()
	now := fleetMembers(t, e)
	for k := range mb {
		if v, ok := now[k]; !ok || v.State != "up" {
			t.Errorf("after etcd's restart: member %s: %+v (present %v)", k, v, ok)
		}
	}
	fileHas("after etcd's restart", mb)
	nginxFile, err := os.ReadFile(nginxOutput)
	if err != nil {
		t.Fatal(err)
	}
	for k := range mb {
		if !strings.Contains(string(nginxFile), "server "+k+";") {
			t.Errorf("after etcd's restart the balancer's nginx file has no server %s:\n%s", k, nginxFile)
		}
	}
	if !serversUp(mb) {
		s, err := haproxyServers(h)
		t.Errorf("haproxy after etcd's restart: want host B's servers up, have %v (%v)", s, err)
	}
	infoB, _ = b.cl.Info(context.Background())
	g.waitOK(t, 200)
	n.waitOK(t, 50)
	g.next("end")
	n.next("end")
	t.Logf("etcd restart: host B and the balancer saw it unreachable %v after it stopped, it was down %v, and %v after it was back both were ok with host B's members in etcd; host B's lease %s then %s, %d then %d leases granted",
		unreachable.Sub(stopped).Round(time.Millisecond), restarted.Sub(stopped).Round(time.Millisecond), back.Sub(restarted).Round(time.Millisecond), lease, infoB.Registry.Lease, grants, infoB.Registry.LeaseGrants)

	// The load's figures, once every request has ended (a request counts
	// in the window it started in).
	g.halt()
	n.halt()
	for _, x := range []struct {
		g    *loadGen
		name string
	}{{g, "HAProxy"}, {n, "nginx"}} {
		var total, failed int
		for _, w := range x.g.all {
			total += w.ok + w.failed
			failed += w.failed
			t.Logf("load through %s %v %v", x.name, w, w.errs)
		}
		t.Logf("load through %s in all: %d requests, %d failed", x.name, total, failed)
	}
	t.Logf("the balancer's gosup ctl info:\n%s", l.gosup(t, bin, "ctl", "info", "-c", l.cfg))
	// A request in flight when host A was killed started in window a
	// and may fail: only a's that ended before count against it. The
	// later windows' phases must fail none either, so theirs count whole.
	if n := wa.failed - wa.late; n != 0 {
		t.Errorf("%d requests failed through HAProxy with both hosts up: %v", n, wa.errs)
	}
	if n := na.failed - na.late; n != 0 {
		t.Errorf("%d requests failed through nginx with both hosts up: %v", n, na.errs)
	}
	for _, c := range []struct {
		w    *loadWindow
		what string
	}{
		{wb, "through HAProxy after its checks saw host A down"},
		{wc, "through HAProxy during host B's rolling restart"},
		{wd, "through HAProxy while etcd stopped and started again"},
		{nc, "through nginx during host B's rolling restart"},
		{nd, "through nginx while etcd stopped and started again"},
	} {
		if c.w.failed != 0 {
			t.Errorf("%d requests failed %s: %v", c.w.failed, c.what, c.w.errs)
		}
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
