package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain makes the test binary double as the gosup command: testscript
// copies it into $PATH as "gosup", so scripts (and the daemon, whose
// children are looked up in its PATH) run `gosup ...` as a real process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"gosup":    func() { os.Exit(run(os.Args[1:])) },
		"figchild": func() { os.Exit(figChild(os.Args[1:])) },
	})
}

// maxWorkLen leaves room under $WORK for a socket name such as "s.sock"
// within the 107 bytes a unix socket path may have.
const maxWorkLen = 90

func TestScripts(t *testing.T) {
	up, err := newUpgradeCmds(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *testscript.Env) error {
			if n := len(env.WorkDir); n > maxWorkLen {
				return fmt.Errorf("$WORK %s is %d bytes; sockets under it would exceed the unix path limit", env.WorkDir, n)
			}
			// Under -race every gosup process would sleep 1s at exit.
			if g := env.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
				env.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
			}
			// $PORT0 … $PORT9: ten consecutive ports free now, for
			// scripts that must not collide with other tests (or other
			// runs of this one) listening on fixed ports.
			base, err := freePortBlock(portBlock)
			if err != nil {
				return err
			}
			for i := range portBlock {
				env.Setenv("PORT"+strconv.Itoa(i), strconv.Itoa(base+i))
			}
			return nil
		},
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"waitfor":    cmdWaitfor,
			"exitcode":   cmdExitcode,
			"waitfile":   cmdWaitfile,
			"waitnginx":  cmdWaitNginx,
			"backends":   cmdBackends,
			"load":       cmdLoad,
			"hupstorm":   cmdHupstorm,
			"sighup":     cmdSighup,
			"envsubst":   cmdEnvsubst,
			"jobseq":     cmdJobseq,
			"steps":      cmdSteps,
			"figures":    cmdFigures,
			"quickstart": cmdQuickstart,
			"waitinfo":   cmdWaitinfo,
		},
		Condition: func(cond string) (bool, error) {
			// [nginx]: nginx can run here. Under CI=true it always holds,
			// so a missing nginx fails the script instead of skipping it.
			// [logrotate], [tmux] and [haproxy] likewise for Debian's
			// logrotate, tmux and haproxy.
			if cond == "nginx" || cond == "logrotate" || cond == "tmux" || cond == "haproxy" {
				_, err := exec.LookPath(cond)
				return err == nil || os.Getenv("CI") == "true", nil
			}
			// [prometheus]: Debian's prometheus package (the server and
			// promtool) is installed; under CI=true it always holds.
			if cond == "prometheus" {
				_, err := exec.LookPath("prometheus")
				_, err2 := exec.LookPath("promtool")
				return err == nil && err2 == nil || os.Getenv("CI") == "true", nil
			}
			// [root]: the script runs as root (CI does: there it always
			// holds, so a non-root CI fails instead of skipping).
			if cond == "root" {
				return os.Geteuid() == 0 || os.Getenv("CI") == "true", nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	}
	maps.Copy(p.Cmds, up.cmds())
	maps.Copy(p.Cmds, tmuxCmds())
	maps.Copy(p.Cmds, docCmds())
	maps.Copy(p.Cmds, prometheusCmds())
	maps.Copy(p.Cmds, scaleCmds())
	// Work directories live under $GOTMPDIR or the temp dir; if that is
	// long (a deep $TMPDIR), use a short root under /tmp so socket paths
	// stay short.
	base := os.Getenv("GOTMPDIR")
	if base == "" {
		base = os.TempDir()
	}
	if len(base) > 40 {
		root, err := os.MkdirTemp("/tmp", "gs")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(root) })
		p.WorkdirRoot = root
	}
	testscript.Run(t, p)
}

// cmdWaitfor polls the daemon on SOCKET until every process matching the
// patterns (all processes when none) is in STATE, and, with -restarts N, has
// been restarted at least N times. It fails after -t (default 15s).
//
//	waitfor [-t 15s] [-restarts N] SOCKET STATE [PATTERN...]
func cmdWaitfor(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! waitfor")
	}
	timeout := 15 * time.Second
	restarts := 0
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		if len(args) < 2 {
			ts.Fatalf("usage: waitfor [-t D] [-restarts N] SOCKET STATE [PATTERN...]")
		}
		var err error
		switch args[0] {
		case "-t":
			timeout, err = time.ParseDuration(args[1])
		case "-restarts":
			restarts, err = strconv.Atoi(args[1])
		default:
			err = fmt.Errorf("unknown flag %s", args[0])
		}
		ts.Check(err)
		args = args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: waitfor [-t D] [-restarts N] SOCKET STATE [PATTERN...]")
	}
	cl := api.NewClient(ts.MkAbs(args[0]))
	defer cl.Close() // an idle connection would count as the daemon's fd
	want, patterns := args[1], args[2:]
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last []api.ProcStatus
	var lastErr error
	for {
		st, err := cl.Status(ctx, patterns...)
		if err == nil && len(st) > 0 && !slices.ContainsFunc(st, func(p api.ProcStatus) bool {
			return p.State != want || p.Restarts < restarts
		}) {
			return
		}
		// Not running yet, or no such process yet (a reload adds it): wait.
		var ae *api.Error
		if err != nil && !errors.Is(err, api.ErrNotRunning) && !(errors.As(err, &ae) && ae.Code == http.StatusNotFound) && ctx.Err() == nil {
			ts.Fatalf("waitfor: %v", err)
		}
		if err == nil {
			last = st
		}
		lastErr = err
		select {
		case <-ctx.Done():
			var b strings.Builder
			for _, p := range last {
				fmt.Fprintf(&b, "\n  %s %s restarts=%d %s", p.Name, p.State, p.Restarts, p.Description)
			}
			ts.Fatalf("waitfor: processes %v not all %s (restarts >= %d) after %s (last error: %v); last status:%s",
				patterns, want, restarts, timeout, lastErr, b.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cmdExitcode runs a command like exec and checks its exact exit code, so
// scripts can tell "failed" (1) from "usage or configuration error" (2).
// stdout and stderr are kept for the stdout and stderr commands.
//
//	exitcode N PROGRAM [ARGS...]
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! exitcode")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exitcode N PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exitcode: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// cmdWaitfile polls FILE until its content matches REGEXP (multi-line mode),
// for logs that children write at their own pace. It fails after -t
// (default 15s).
//
//	waitfile [-t 15s] FILE REGEXP
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! waitfile")
	}
	timeout := 15 * time.Second
	if len(args) == 4 && args[0] == "-t" {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		timeout, args = d, args[2:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: waitfile [-t D] FILE REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		if err == nil && re.Match(b) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitfile: %s does not match %q after %s (read error: %v)", args[0], args[1], timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cmdWaitNginx polls the daemon on SOCKET until its last nginx update has
// the outcome ok or failed, or says nginx is not running (notrunning). It
// fails after 30s.
//
//	waitnginx SOCKET ok|failed|notrunning
func cmdWaitNginx(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 || (args[1] != "ok" && args[1] != "failed" && args[1] != "notrunning") {
		ts.Fatalf("usage: waitnginx SOCKET ok|failed|notrunning")
	}
	cl := api.NewClient(ts.MkAbs(args[0]))
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := cl.Nginx(context.Background())
		if err == nil && !st.LastAttempt.IsZero() {
			switch args[1] {
			case "ok", "failed":
				if st.OK == (args[1] == "ok") {
					return
				}
			case "notrunning":
				if st.NotRunning {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("nginx never %s: %+v %v", args[1], st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cmdWaitinfo polls `ctl info --json` of the daemon on SOCKET until the
// value at KEY (dotted: last_reload.ok) matches REGEXP, and fails after -t
// (30s): a counter the daemon bumps after what a script can see (the mail
// in the mbox, then alerts_sent) is waited for, not raced.
//
//	waitinfo [-t 30s] SOCKET KEY REGEXP
func cmdWaitinfo(ts *testscript.TestScript, neg bool, args []string) {
	wait := 30 * time.Second
	if len(args) > 1 && args[0] == "-t" {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		wait, args = d, args[2:]
	}
	if neg || len(args) != 3 {
		ts.Fatalf("usage: waitinfo [-t 30s] SOCKET KEY REGEXP")
	}
	re, err := regexp.Compile(args[2])
	ts.Check(err)
	cl := api.NewClient(ts.MkAbs(args[0]))
	var have any
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		info, err := cl.Info(context.Background())
		if err == nil {
			b, err := json.Marshal(info)
			ts.Check(err)
			var v any
			ts.Check(json.Unmarshal(b, &v))
			for _, k := range strings.Split(args[1], ".") {
				m, _ := v.(map[string]any)
				v = m[k]
			}
			if have = v; v != nil && re.MatchString(fmt.Sprint(v)) {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("ctl info's %s never matched %q: have %v (%v)", args[1], args[2], have, err)
		}
	}
}

// cmdQuickstart lays out the quick start in $WORK as a checkout has it:
// examples/quickstart.toml and examples/quickstart-nginx.conf from this
// repository, with the ports changed where the README says to change them
// (port_start to $PORT0, nginx's listen to $PORT9, [http]'s to $PORT8:
// the script's free ports), and bin/gosup, the gosup under test (the build is done).
//
//	quickstart
func cmdQuickstart(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: quickstart")
	}
	toml, err := os.ReadFile("../../examples/quickstart.toml")
	ts.Check(err)
	ngx, err := os.ReadFile("../../examples/quickstart-nginx.conf")
	ts.Check(err)
	for old, port := range map[string]string{"port_start = 9100 ": "PORT0", `listen = "127.0.0.1:9180"`: "PORT9", `listen = "127.0.0.1:9190"`: "PORT8"} {
		if !strings.Contains(string(toml), old) {
			ts.Fatalf("examples/quickstart.toml has no %q", old)
		}
		toml = []byte(strings.Replace(string(toml), old, strings.NewReplacer("9100", ts.Getenv(port), "9180", ts.Getenv(port), "9190", ts.Getenv(port)).Replace(old), 1))
	}
	gosup, err := exec.LookPath("gosup")
	ts.Check(err)
	ts.Check(os.MkdirAll(ts.MkAbs("examples"), 0o755))
	ts.Check(os.MkdirAll(ts.MkAbs("bin"), 0o755))
	ts.Check(os.WriteFile(ts.MkAbs("examples/quickstart.toml"), toml, 0o644))
	ts.Check(os.WriteFile(ts.MkAbs("examples/quickstart-nginx.conf"), ngx, 0o644))
	ts.Check(os.Symlink(gosup, ts.MkAbs("bin/gosup")))
}

// cmdBackends sends GET requests to URL until it has seen N distinct
// "port P" answers (demo-app's), and fails after 15s.
//
//	backends URL N
func cmdBackends(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: backends URL N")
	}
	want, err := strconv.Atoi(args[1])
	if err != nil {
		ts.Fatalf("backends: %v", err)
	}
	portRE := regexp.MustCompile(`^port (\d+) pid \d+`)
	seen := map[string]bool{}
	// No keep-alive: an idle connection would hold an nginx worker open.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for len(seen) < want && time.Now().Before(deadline) {
		resp, err := client.Get(args[0])
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := portRE.FindSubmatch(b); resp.StatusCode == 200 && m != nil {
				seen[string(m[1])] = true
				continue
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(seen) != want {
		ts.Fatalf("backends: want %d distinct, saw %v", want, slices.Sorted(maps.Keys(seen)))
	}
	ts.Logf("backends: %v", slices.Sorted(maps.Keys(seen)))
}

// portBlock is how many ports a script gets as $PORT0 … $PORT9.
const portBlock = 10

// freePortBlock finds n consecutive ports that 127.0.0.1 can listen on,
// below Linux's ephemeral range (32768-60999, where outgoing connections
// take their local ports), starting from a random place so that
// concurrent test processes do not pick the same block.
func freePortBlock(n int) (int, error) {
	for range 1000 {
		base := 20000 + rand.IntN((32000-20000)/n)*n
		free := true
		for p := base; p < base+n && free; p++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if err != nil {
				free = false
				continue
			}
			ln.Close()
		}
		if free {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports in 20000-32000", n)
}

var braced = regexp.MustCompile(`\$\{(\w+)\}`)

// cmdEnvsubst replaces ${NAME} in the files with the script's environment
// variable NAME (which must be set); a bare $NAME (nginx's variables) is
// left alone.
//
//	envsubst FILE...
func cmdEnvsubst(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: envsubst FILE...")
	}
	for _, f := range args {
		path := ts.MkAbs(f)
		b, err := os.ReadFile(path)
		ts.Check(err)
		out := braced.ReplaceAllFunc(b, func(m []byte) []byte {
			name := string(braced.FindSubmatch(m)[1])
			v := ts.Getenv(name)
			if v == "" {
				ts.Fatalf("envsubst %s: $%s is not set", f, name)
			}
			return []byte(v)
		})
		ts.Check(os.WriteFile(path, out, 0o644))
	}
}

// cmdJobseq checks that FILEs, read in order, hold NAME's demo-worker
// output whole: "job 1 done" to "job N done" with none missing, repeated
// or cut, each file holding some, then at most its "worker stopping" line.
//
//	jobseq NAME FILE...
func cmdJobseq(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: jobseq NAME FILE...")
	}
	job := regexp.MustCompile(`^` + regexp.QuoteMeta(args[0]) + ` worker pid [0-9]+: job ([0-9]+) done$`)
	next, stopped := 1, false
	for _, f := range args[1:] {
		b, err := os.ReadFile(ts.MkAbs(f))
		ts.Check(err)
		if len(b) == 0 || b[len(b)-1] != '\n' {
			ts.Fatalf("jobseq: %s is empty or ends in a cut line", f)
		}
		jobs := 0
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if stopped {
				ts.Fatalf("jobseq: %s: %q after the worker stopped", f, line)
			}
			if line == args[0]+" worker stopping" {
				stopped = true
				continue
			}
			m := job.FindStringSubmatch(line)
			if m == nil {
				ts.Fatalf("jobseq: %s: unexpected line %q", f, line)
			}
			if n, _ := strconv.Atoi(m[1]); n != next {
				ts.Fatalf("jobseq: %s: job %d where job %d was due", f, n, next)
			}
			next++
			jobs++
		}
		if jobs == 0 {
			ts.Fatalf("jobseq: %s holds no job line", f)
		}
		ts.Logf("%s: %d jobs, up to job %d", f, jobs, next-1)
	}
}
