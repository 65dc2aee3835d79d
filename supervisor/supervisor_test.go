package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/guard/guardtest"
	"github.com/gosup/gosup/procgroup/proctree"
	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/procgroup/reaper/reapertest"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// testReaper is the one reaper of the test process (a process may have one).
var testReaper *reaper.Reaper

func TestMain(m *testing.M) {
	reapertest.Main(m, helperMain, func(rp *reaper.Reaper) { testReaper = rp })
}

func helperMain(args []string) int {
	switch args[0] {
	case "sleep":
		reapertest.Forever()
	case "ignore-term": // ignore-term PIDFILE: ignore SIGTERM, then write our pid (and listen on $PORT if set)
		// Everything that says "ready" comes after the Ignore: the pid
		// file for the test, the port for the daemon (ready = "tcp"), so
		// a SIGTERM from anyone who waited for either finds it ignored.
		// A config where the daemon itself may stop the process as soon
		// as it is RUNNING (memmon) needs the port: with startsecs = 0
		// alone, RUNNING comes before the child's runtime is even up.
		signal.Ignore(syscall.SIGTERM)
		tmp := args[1] + ".tmp" // renamed: a reader never sees half a pid
		if os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())), 0o644) != nil || os.Rename(tmp, args[1]) != nil {
			return 1
		}
		if port := os.Getenv("PORT"); port != "" {
			ln, err := net.Listen("tcp", "127.0.0.1:"+port)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer ln.Close()
		}
		reapertest.Forever()
	case "listen", "listen-on": // listen on $PORT (at address args[1] with listen-on) until killed
		host := "127.0.0.1"
		if args[0] == "listen-on" {
			host = args[1]
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, os.Getenv("PORT")))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer ln.Close()
		reapertest.Forever()
	case "listen-ignore-term": // listen on $PORT, ignoring SIGTERM, until killed
		signal.Ignore(syscall.SIGTERM)
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer ln.Close()
		reapertest.Forever()
	case "listen-grandchild": // a grandchild in our process group holds $PORT
		cmd := exec.Command(os.Args[0], "listen")
		if err := cmd.Start(); err != nil {
			return 1
		}
		fmt.Println("grandchild", cmd.Process.Pid)
		reapertest.Forever()
	case "daemonize": // daemonize PIDFILE: a grandchild in its own session, then wait
		cmd := exec.Command(os.Args[0], "sleep")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return 1
		}
		if err := os.WriteFile(args[1], []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			return 1
		}
		reapertest.Forever()
	case "daemon": // daemon CONFIG: a whole gosup daemon
		cfg, err := config.Load(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		if err := New(cfg, Options{}).Run(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "http": // serve GET / with "port N pid M" on $PORT, like gosup demo-app
		port := os.Getenv("PORT")
		pid := os.Getpid()
		err := http.ListenAndServe("127.0.0.1:"+port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/headers" { // the request's headers, as Go's CGI names them
				fmt.Fprintf(w, "HTTP_HOST=%s\n", r.Host)
				for k, v := range r.Header {
					fmt.Fprintf(w, "HTTP_%s=%s\n", strings.ReplaceAll(strings.ToUpper(k), "-", "_"), strings.Join(v, ", "))
				}
				return
			}
			fmt.Fprintf(w, "port %s pid %d\n", port, pid)
		}))
		fmt.Fprintln(os.Stderr, err)
		return 1
	case "hog": // hog MB: hold MB of touched memory until killed
		mb, _ := strconv.Atoi(args[1])
		fmt.Fprintf(os.Stderr, "hog pid %d: holding %d MB\n", os.Getpid(), mb)
		hold(mb)
		reapertest.Forever()
	case "hog-once": // hog-once MB FLAG PIDFILE: the first to create FLAG holds MB, then writes its pid; the next ones only wait
		f, err := os.OpenFile(args[2], os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
			mb, _ := strconv.Atoi(args[1])
			hold(mb)
			if os.WriteFile(args[3]+".tmp", []byte(strconv.Itoa(os.Getpid())), 0o644) != nil || os.Rename(args[3]+".tmp", args[3]) != nil {
				return 1
			}
		}
		reapertest.Forever()
	case "banner-hog": // banner-hog MB FLAG: a start-up banner on stderr; the first to create FLAG then holds MB and says its last words on stderr; every one then listens on $PORT
		fmt.Fprintf(os.Stderr, "banner: pid %d starting\n", os.Getpid())
		if f, err := os.OpenFile(args[2], os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			f.Close()
			mb, _ := strconv.Atoi(args[1])
			hold(mb)
			fmt.Fprintf(os.Stderr, "pid %d: last words before the kill\n", os.Getpid())
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer ln.Close()
		reapertest.Forever()
	case "shout-hog": // shout-hog BYTES MB: one line of BYTES bytes on stderr, no newline, then hog MB
		n, _ := strconv.Atoi(args[1])
		mb, _ := strconv.Atoi(args[2])
		os.Stderr.WriteString("the start of a long line " + strings.Repeat("x", n) + " and its end")
		hold(mb)
		reapertest.Forever()
	case "spike": // spike MB D: after 300ms hold MB for D, free it, sleep
		mb, _ := strconv.Atoi(args[1])
		d, _ := time.ParseDuration(args[2])
		time.Sleep(300 * time.Millisecond)
		mem := hold(mb)
		time.Sleep(d)
		_ = unix.Munmap(mem)
		reapertest.Forever()
	case "fork-hog": // fork-hog MB PIDFILE: a grandchild in our group holds MB
		cmd := exec.Command(os.Args[0], "hog", args[1])
		if err := cmd.Start(); err != nil {
			return 1
		}
		_ = os.WriteFile(args[2], []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
		reapertest.Forever()
	case "chatty": // numbered 64-byte lines on stdout, one a millisecond, until killed
		for i := 0; ; i++ {
			fmt.Printf("line %08d %s\n", i, strings.Repeat("x", 49))
			time.Sleep(time.Millisecond)
		}
	case "claim": // claim the default socket, print the outcome
		return claimHelper()
	case "claim-ns": // claim-ns SOCKET: in a new mount namespace, a tmpfs over SOCKET's directory, claim SOCKET
		err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
		if err == nil {
			err = unix.Mount("tmpfs", filepath.Dir(args[1]), "tmpfs", 0, "size=1m,mode=0700")
		}
		if err == nil {
			var in *instance
			if in, err = claim(args[1], 0o700, discardLog()); err == nil {
				in.release()
			}
		}
		fmt.Println("result:", err)
		return 0
	case "bind": // bind NAME: listen on a unix socket NAME, say so, wait
		ln, err := net.Listen("unix", args[1])
		fmt.Println("bound:", err)
		if err != nil {
			return 1
		}
		defer ln.Close()
		reapertest.Forever()
	case "connect": // connect SOCKET: try the API, print the outcome
		_, err := api.NewClient(args[1]).Info(context.Background())
		fmt.Println("result:", err)
		return 0
	}
	return 2
}

// writeConfig writes a config running helper modes, in a short temp dir
// (unix socket paths are limited to 107 bytes).
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	file := filepath.Join(dir, "gosup.toml")
	rewriteConfig(t, file, body)
	return file
}

// rewriteConfig replaces the body of a config made by writeConfig.
func rewriteConfig(t *testing.T, file, body string) {
	t.Helper()
	body = strings.ReplaceAll(body, "@HELPER@", os.Args[0])
	cfg := fmt.Sprintf("[supervisor]\nsocket = \"s/gosup.sock\"\nlogdir = \"log\"\nshutdown_timeout = \"10s\"\n%s", body)
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

const helperEnv = `environment = { GO_WANT_HELPER_PROCESS = "1" }`

// startDaemon runs a daemon in-process on the shared reaper and returns a
// client once the socket answers. Cleanup shuts it down and waits.
func startDaemon(t *testing.T, file string) (*api.Client, *config.Config) {
	t.Helper()
	_, cl, cfg := startSupervisor(t, file)
	return cl, cfg
}

// startSupervisor is startDaemon that also returns the running Supervisor.
func startSupervisor(t *testing.T, file string) (*Supervisor, *api.Client, *config.Config) {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	sup, cl, _ := runDaemon(t, cfg, Options{})
	return sup, cl, cfg
}

// startSupervisorStop is startSupervisor that also returns the stop func.
func startSupervisorStop(t *testing.T, file string) (*Supervisor, *api.Client, func() error) {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return runDaemon(t, cfg, Options{})
}

// runDaemon runs a daemon for cfg in-process on the shared reaper and
// returns once its socket answers. stop cancels it and returns what Run
// returned; it may be called more than once, and runs at cleanup.
func runDaemon(t *testing.T, cfg *config.Config, opts Options) (*Supervisor, *api.Client, func() error) {
	t.Helper()
	return runDaemonWith(t, cfg, opts, nil)
}

// runDaemonWith is runDaemon with setup, if not nil, called before Run.
func runDaemonWith(t *testing.T, cfg *config.Config, opts Options, setup func(*Supervisor)) (*Supervisor, *api.Client, func() error) {
	t.Helper()
	opts.Reaper = testReaper
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	sup := New(cfg, opts)
	if setup != nil {
		setup(sup)
	}
	go func() { done <- sup.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				runErr = errors.New("daemon did not stop within 20s")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	cl := api.NewClient(cfg.Supervisor.Socket)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := cl.Info(context.Background()); err == nil {
			return sup, cl, stop
		}
		select {
		case err := <-done:
			done <- err // for stop
			t.Fatalf("daemon exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon socket never answered")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mustStatus is cl.Status; an error, or no process, fails the test.
func mustStatus(t *testing.T, cl *api.Client, patterns ...string) []api.ProcStatus {
	t.Helper()
	st, err := cl.Status(context.Background(), patterns...)
	if err != nil {
		t.Fatalf("status %v: %v", patterns, err)
	}
	if len(st) == 0 {
		t.Fatalf("status %v: no process", patterns)
	}
	return st
}

// mustInfo is cl.Info; an error fails the test.
func mustInfo(t *testing.T, cl *api.Client) api.Info {
	t.Helper()
	info, err := cl.Info(context.Background())
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	return info
}

// waitStatus polls the process name until cond holds, for up to 30 s.
func waitStatus(t *testing.T, cl *api.Client, name, what string, cond func(api.ProcStatus) bool) api.ProcStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := mustStatus(t, cl, name)
		if cond(st[0]) {
			return st[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s within 30s: %+v", name, what, st[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAll polls status until every process matching pattern is in state.
func waitAll(t *testing.T, cl *api.Client, state string, patterns ...string) []api.ProcStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := cl.Status(context.Background(), patterns...)
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for _, p := range st {
			ok = ok && p.State == state
		}
		if ok {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all %s: %+v", state, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDaemonControlVerbs(t *testing.T) {
	file := writeConfig(t, `
[program.web]
command = "@HELPER@ sleep"
numprocs = 3
process_name = "web_%(process_num)02d"
startsecs = 0
`+helperEnv+`

[program.idle]
command = "@HELPER@ sleep"
autostart = false
startsecs = 0
`+helperEnv)
	cl, cfg := startDaemon(t, file)
	st := waitAll(t, cl, "RUNNING", "web")
	if len(st) != 3 || st[0].Name != "web:web_00" || st[0].Pid == 0 {
		t.Fatalf("status: %+v", st)
	}
	if idle := mustStatus(t, cl, "idle"); idle[0].State != "STOPPED" {
		t.Errorf("autostart = false started: %+v", idle[0])
	}
	fi, err := os.Stat(cfg.Supervisor.Socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v %v", fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(cfg.Supervisor.Socket)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode: %v %v", di.Mode(), err)
	}

	ctx := context.Background()
	res, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"web:web_01"}})
	if err != nil || len(res) != 1 || !res[0].OK || res[0].State != "STOPPED" {
		t.Fatalf("stop: %+v %v", res, err)
	}
	if alive(st[1].Pid) {
		t.Errorf("web_01 pid %d still alive after stop", st[1].Pid)
	}
	res, err = cl.Action(ctx, "restart", api.ActionRequest{Patterns: []string{"web:*"}})
	if err != nil || len(res) != 6 {
		t.Fatalf("restart: want 3 stops and 3 starts, have %+v %v", res, err)
	}
	for i, r := range res {
		want := "stopped"
		if i >= 3 {
			want = "started"
		}
		if !r.OK || r.Message != want && r.Message != "not running" {
			t.Errorf("restart %s: want %s, have %+v", r.Name, want, r)
		}
	}
	after := mustStatus(t, cl, "web:web_00")
	if after[0].Pid == st[0].Pid || after[0].Restarts != 1 {
		t.Errorf("web_00 not restarted: before pid %d, after %+v", st[0].Pid, after[0])
	}
	res, err = cl.Action(ctx, "signal", api.ActionRequest{Signal: "KILL", Patterns: []string{"web:web_02"}})
	if err != nil || !res[0].OK {
		t.Fatalf("signal: %+v %v", res, err)
	}
	res, err = cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{"idle"}})
	if err != nil || !res[0].OK || res[0].Message != "started" {
		t.Fatalf("start idle: %+v %v", res, err)
	}
	var ae *api.Error
	if _, err := cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{"nope"}}); !errors.As(err, &ae) || ae.Code != 404 || !strings.Contains(err.Error(), "no such process: nope") {
		t.Errorf("unknown process: %v", err)
	}
}

// socketHTTPClient is a plain HTTP client over the unix socket at path,
// for raw requests the API's client would never send.
func socketHTTPClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

func TestControlAPIRejectsWhatItShould(t *testing.T) {
	file := writeConfig(t, "")
	cl, _ := startDaemon(t, file)
	ctx := context.Background()
	// Raw requests, which the client would never send.
	hc := socketHTTPClient(cl.Socket)
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/v1/exec", `{"patterns":["all"]}`, 404},
		{"GET", "/v1/start", ``, 405},
		{"POST", "/v1/stop", `{"patterns":[]}`, 400},
		{"POST", "/v1/stop", `not json`, 400},
		{"POST", "/v1/stop", `{"patterns":["` + strings.Repeat("a", 1<<20) + `"]}`, 400},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, "http://gosup"+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: want %d, have %d", tc.method, tc.path, tc.code, resp.StatusCode)
		}
	}
}

func TestSecondDaemonRefusesAndLeavesFirstAlone(t *testing.T) {
	file := writeConfig(t, `
[program.a]
command = "@HELPER@ sleep"
startsecs = 0
`+helperEnv)
	cl, cfg := startDaemon(t, file)
	before := waitAll(t, cl, "RUNNING")
	err := New(cfg, Options{Reaper: testReaper, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(context.Background())
	if !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", os.Getpid())) {
		t.Fatalf("second daemon: want ErrAlreadyRunning naming pid %d, have %v", os.Getpid(), err)
	}
	after := waitAll(t, cl, "RUNNING")
	if after[0].Pid != before[0].Pid {
		t.Errorf("first daemon's child changed: %d → %d", before[0].Pid, after[0].Pid)
	}
}

func TestCrashedDaemonLeftoversAreKilled(t *testing.T) {
	port := freePort(t)
	file := writeConfig(t, fmt.Sprintf(`
[program.web]
command = "@HELPER@ listen-grandchild"
port_start = %d
startsecs = 0
startretries = 0
%s
`, port, helperEnv))
	// A first daemon in its own process, killed with SIGKILL.
	proc, exitC := spawnHelper(t, nil, nil, "daemon", file)
	cfg, _ := config.Load(file)
	cl := api.NewClient(cfg.Supervisor.Socket)
	var first []api.ProcStatus
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		first, _ = cl.Status(context.Background())
		if len(first) == 1 && first[0].State == "RUNNING" && portBusy(port) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(first) != 1 || !portBusy(port) {
		t.Fatalf("first daemon did not come up: %+v", first)
	}
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exitC
	// The child dies with the daemon (parent-death signal); its grandchild
	// is left holding the port.
	for deadline := time.Now().Add(10 * time.Second); alive(first[0].Pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d outlived its daemon by 10s", first[0].Pid)
		}
	}
	if !portBusy(port) {
		t.Fatal("nothing left holding the port; the test cannot show the cleanup")
	}
	cl2, _ := startDaemon(t, file)
	st := waitAll(t, cl2, "RUNNING")
	if st[0].SpawnError != "" || st[0].Pid == first[0].Pid {
		t.Errorf("second daemon: %+v", st[0])
	}
}

// spawnHelper runs the test binary in a helper mode through the test
// reaper (the only waiter in this process).
func spawnHelper(t *testing.T, sys *syscall.SysProcAttr, stdout *os.File, args ...string) (*os.Process, <-chan reaper.Exit) {
	t.Helper()
	return spawnBinary(t, os.Args[0], sys, stdout, args...)
}

func spawnBinary(t *testing.T, bin string, sys *syscall.SysProcAttr, stdout *os.File, args ...string) (*os.Process, <-chan reaper.Exit) {
	t.Helper()
	attr := &os.ProcAttr{
		Env:   append(os.Environ(), "GO_WANT_HELPER_PROCESS=1"),
		Files: []*os.File{nil, stdout, os.Stderr},
		Sys:   sys,
	}
	proc, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess(bin, append([]string{bin}, args...), attr)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Kill() })
	return proc, exitC
}

// spawnAsNobody runs a copy of the test binary, put in dir (which uid
// 65534 must be able to reach), as uid and gid 65534 with args; out is
// its stdout, closed when the test ends.
func spawnAsNobody(t *testing.T, dir string, args ...string) (out *os.File, exitC <-chan reaper.Exit) {
	t.Helper()
	bin := filepath.Join(dir, "helper")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close() })
	_, exitC = spawnBinary(t, bin, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, pw, args...)
	pw.Close()
	return pr, exitC
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func portBusy(port int) bool {
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func alive(pid int) bool {
	p, err := proctree.Stat(pid)
	return err == nil && p.State != 'Z'
}

func TestPeerCredentialsAreChecked(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user") // CI runs as root
	}
	dir, err := os.MkdirTemp("", "gs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "open.sock")
	// World-writable socket: only SO_PEERCRED stands between nobody and the API.
	ln, err := listen(sock, 0o666, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"pid":1}`))
	})}
	go srv.Serve(ln)
	defer srv.Close()

	if _, err := api.NewClient(sock).Info(context.Background()); err != nil {
		t.Fatalf("root refused: %v", err)
	}
	// The helper runs as nobody, from a copy of the test binary nobody may execute.
	pr, exitC := spawnAsNobody(t, dir, "connect", sock)
	out, _ := io.ReadAll(pr)
	<-exitC
	if !strings.Contains(string(out), "result:") || strings.Contains(string(out), "result: <nil>") {
		t.Errorf("uid 65534 was served: %q", out)
	}
}

// A child that daemonizes (new session, out of its process group) leaves
// a grandchild that no group signal reaches; it still dies when the daemon
// shuts down. The child stays: one that exits has what it left stopped at
// its exit (procgroup's orphan tests), which raced this test's look at the
// grandchild (it failed 3 runs in 3 without -race).
func TestShutdownKillsEscapedDescendants(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "gc.pid")
	file := writeConfig(t, fmt.Sprintf(`
[program.d]
command = "@HELPER@ daemonize %s"
startsecs = 0
autorestart = false
%s
`, pidfile, helperEnv))
	_, _, stop := startSupervisorStop(t, file)
	gc := readPidfile(t, pidfile)
	if !alive(gc) {
		t.Fatalf("no daemonized grandchild (pid %d)", gc)
	}
	if sid, _ := unix.Getsid(gc); sid != gc {
		t.Fatalf("grandchild %d is not in its own session (sid %d)", gc, sid)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for alive(gc) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(gc) {
		t.Errorf("escaped grandchild %d outlived the daemon", gc)
	}
}

// A descriptor the daemon inherited without close-on-exec does not reach
// its children: they get exactly stdin, stdout and stderr.
func TestChildrenGetOnlyStdio(t *testing.T) {
	fd, err := unix.Open(os.Args[0], unix.O_RDONLY, 0) // no O_CLOEXEC, like a shell redirection
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	file := writeConfig(t, `
[program.a]
command = "@HELPER@ sleep"
startsecs = 0
`+helperEnv)
	cl, _ := startDaemon(t, file)
	st := waitAll(t, cl, "RUNNING")
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", st[0].Pid))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", st[0].Pid, e.Name()))
		names = append(names, e.Name()+"->"+link)
	}
	// The Go helper opens a few of its own (epoll, a pipe); fd must not be among them.
	for _, n := range names {
		if strings.HasPrefix(n, strconv.Itoa(fd)+"->") && strings.HasSuffix(n, filepath.Base(os.Args[0])) {
			t.Errorf("child inherited fd %d: %v", fd, names)
		}
	}
}

// hold maps mb MiB of anonymous memory populated by the kernel (no page
// touched from Go, which is slow under -race), so it counts in RSS at once
// and leaves RSS at once with munmap.
func hold(mb int) []byte {
	mem, err := unix.Mmap(-1, 0, mb<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		panic(err)
	}
	return mem
}

// readPidfile waits for a helper to write a pid into path.
func readPidfile(t testing.TB, path string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if pid, err := strconv.Atoi(string(b)); err == nil && pid > 0 {
			return pid
		}
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// A process stopped with ctl stop stays stopped when the daemon restarts,
// until ctl start (supervisord forgets: Supervisor#591).
func TestAdminStopSurvivesDaemonRestart(t *testing.T) {
	file := writeConfig(t, `
[program.web]
command = "@HELPER@ sleep"
numprocs = 2
process_name = "web_%(process_num)d"
startsecs = 0
`+helperEnv)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	var logs guardtest.LogBuffer
	run := func() (*api.Client, func()) {
		_, cl, stop := runDaemon(t, cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		return cl, func() {
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()
	cl, stop := run()
	waitAll(t, cl, "RUNNING")
	if _, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"web:web_1"}}); err != nil {
		t.Fatal(err)
	}
	stop()

	cl, stop = run()
	waitAll(t, cl, "RUNNING", "web:web_0")
	// autostart has passed web_1 over once it says so.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), `msg="not starting: stopped with gosup ctl stop; gosup ctl start starts it" process=web:web_1`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never said it leaves web_1 stopped:\n%s", logs.String())
		}
	}
	st := mustStatus(t, cl, "web:web_1")
	if st[0].State != "STOPPED" || !strings.Contains(st[0].Description, "stopped with gosup ctl stop") {
		t.Fatalf("web_1 after a daemon restart: %+v", st[0])
	}
	if res, err := cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{"web:web_1"}}); err != nil || !res[0].OK {
		t.Fatalf("start: %+v %v", res, err)
	}
	stop()

	cl, stop = run()
	defer stop()
	waitAll(t, cl, "RUNNING") // both again
}

// With socket_group the group owns the socket and can get through its
// directory (0750).
func TestSocketGroupReachesTheDirectory(t *testing.T) {
	g, err := user.LookupGroup("nogroup")
	if err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, "socket_group = \"nogroup\"\n")
	// writeConfig puts the body after [supervisor]'s keys: socket_group is one of them.
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	runDaemon(t, cfg, Options{})
	for _, p := range []string{cfg.Supervisor.Socket, filepath.Dir(cfg.Supervisor.Socket)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if gid := fi.Sys().(*syscall.Stat_t).Gid; strconv.Itoa(int(gid)) != g.Gid {
			t.Errorf("%s: group %d, want nogroup (%s)", p, gid, g.Gid)
		}
	}
	if fi, _ := os.Stat(filepath.Dir(cfg.Supervisor.Socket)); fi.Mode().Perm() != 0o750 {
		t.Errorf("socket directory mode %v, want 0750", fi.Mode().Perm())
	}
}

// A process waiting out the restart backoff says why in status.
func TestStatusShowsRespawnWait(t *testing.T) {
	now := time.Now()
	code := 3
	st := procgroup.Status{Group: "web", Name: "web_0", State: procgroup.Exited, StoppedAt: now, ExitStatus: &code,
		ExitDesc: "exit status 3", Reason: "exited 3 times in a row, restarting in 2s", RespawnAt: now.Add(2 * time.Second)}
	if d := toProcStatus(st, now).Description; d != "exited 3 times in a row, restarting in 2s (exit status 3)" {
		t.Errorf("pending respawn: %q", d)
	}
	st.RespawnAt = time.Time{}
	if d := toProcStatus(st, now).Description; d != now.Format(time.DateTime)+", exit status 3" {
		t.Errorf("no respawn pending: %q", d)
	}
}
