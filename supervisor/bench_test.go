package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/hostlimits"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"golang.org/x/sys/unix"
)

// The benchmarks run the same scenarios as ../shared/bench (spawn, crash,
// ctl) with the same kind of child: a C program that only pause()s. Run:
//
//	go test -run '^$' -bench . -benchtime 10x ./supervisor/

const sleeperC = "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n"

// sleeper builds the C sleeper (static, like the harness's) or, without a C
// compiler, falls back to coreutils sleep.
func sleeper(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	src := filepath.Join(dir, "sleeper.c")
	bin := filepath.Join(dir, "sleeper")
	if err := os.WriteFile(src, []byte(sleeperC), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cc", "-O2", "-static", "-o", bin, src).CombinedOutput(); err != nil {
		b.Logf("no C sleeper (%v: %s); using sleep infinity", err, out)
		return "sleep infinity"
	}
	return bin
}

// benchDaemon runs a daemon with n sleepers and returns it once its socket
// answers; the sleepers may still be starting. Their output goes to AUTO
// log files (rotated, through pipes): the default, and the harness's setting.
func benchDaemon(b *testing.B, n int, autostart bool) (*Supervisor, *api.Client, func()) {
	b.Helper()
	dir, err := os.MkdirTemp("", "gsb")
	if err != nil {
		b.Fatal(err)
	}
	body := fmt.Sprintf(`[supervisor]
socket = "gosup.sock"
logdir = "log"
[program.sl]
command = %q
numprocs = %d
process_name = "sl_%%(process_num)d"
startsecs = 0
autostart = %v
# BenchmarkCrashRespawn kills a child that has been up over a second each
# time: each crash is then the first of its streak, respawned at once.
backoff_reset = "1s"
`, sleeper(b), n, autostart)
	s, cl, stop := runBenchDaemon(b, dir, body)
	return s, cl, func() {
		stop()
		os.RemoveAll(dir)
	}
}

// runBenchDaemon writes body as dir/gosup.toml, runs a daemon on it and
// returns it once its socket answers, with what stops it.
func runBenchDaemon(b *testing.B, dir, body string) (*Supervisor, *api.Client, func()) {
	b.Helper()
	file := filepath.Join(dir, "gosup.toml")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		b.Fatal(err)
	}
	s := New(cfg, Options{Reaper: testReaper, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cl := api.NewClient(cfg.Supervisor.Socket)
	for {
		if _, err := cl.Info(context.Background()); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return s, cl, func() {
		cancel()
		<-done
	}
}

func allRunning(s *Supervisor) bool {
	for _, p := range s.all() {
		if p.Status().State != procgroup.Running {
			return false
		}
	}
	return true
}

// BenchmarkSpawn500 is `ctl start all` on 500 stopped processes until all
// are RUNNING (startsecs = 0). Target: under 700 ms (supervisord 4.2.5: 11.7 s).
func BenchmarkSpawn500(b *testing.B) {
	s, cl, stop := benchDaemon(b, 500, false)
	defer stop()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		res, err := cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{"all"}})
		if err != nil || len(res) != 500 || !allRunning(s) {
			b.Fatalf("start all: %d results, %v", len(res), err)
		}
		b.StopTimer()
		if _, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"all"}}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkStopAll500 is `ctl stop all` on 500 RUNNING processes (each
// dies on its SIGTERM) until the answer, with the daemon's CPU for it:
// every exit looks for what its child left behind.
func BenchmarkStopAll500(b *testing.B) {
	s, cl, stop := benchDaemon(b, 500, false)
	defer stop()
	ctx := context.Background()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		if res, err := cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{"all"}}); err != nil || len(res) != 500 || !allRunning(s) {
			b.Fatalf("start all: %d results, %v", len(res), err)
		}
		cpu0 := cpuTime(b)
		b.StartTimer()
		if res, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"all"}}); err != nil || len(res) != 500 {
			b.Fatalf("stop all: %d results, %v", len(res), err)
		}
		b.StopTimer()
		cpu += cpuTime(b) - cpu0
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "daemon-cpu-ms")
}

// BenchmarkDaemonStart500 is daemon start → 500 autostarted processes RUNNING.
func BenchmarkDaemonStart500(b *testing.B) {
	for b.Loop() {
		start := time.Now()
		s, _, stop := benchDaemon(b, 500, true)
		for !allRunning(s) {
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-running")
		b.StopTimer()
		stop()
		b.StartTimer()
	}
}

// BenchmarkCrashRespawn is SIGKILL of a child that has been up for more than
// a second → its replacement is RUNNING. Target: median under 5 ms
// (supervisord: 1,036 ms).
func BenchmarkCrashRespawn(b *testing.B) {
	s, _, stop := benchDaemon(b, 1, true)
	defer stop()
	p := s.all()[0]
	ctx := context.Background()
	var samples []time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		st, err := p.Wait(ctx, func(st procgroup.Status) bool { return st.State == procgroup.Running })
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(procgroup.DefaultFloor + 50*time.Millisecond - time.Since(st.StartedAt))
		b.StartTimer()
		t0 := time.Now()
		if err := unix.Kill(st.Pid, unix.SIGKILL); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(ctx, func(n procgroup.Status) bool { return n.State == procgroup.Running && n.Pid != st.Pid }); err != nil {
			b.Fatal(err)
		}
		samples = append(samples, time.Since(t0))
	}
	slices.Sort(samples)
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(samples[len(samples)*95/100].Microseconds())/1000, "p95-ms")
}

// BenchmarkStatus100 is one status round trip over the control socket with
// 100 children, what `gosup ctl status` does after it has started: with
// each child's CPU and RSS read from /proc. Target: sampling adds at most
// a few hundred microseconds at 100 processes.
func BenchmarkStatus100(b *testing.B) { benchStatus(b, 100) }

// BenchmarkStatus500 is BenchmarkStatus100 with 500 children.
func BenchmarkStatus500(b *testing.B) { benchStatus(b, 500) }

func benchStatus(b *testing.B, n int) {
	s, cl, stop := benchDaemon(b, n, true)
	defer stop()
	for !allRunning(s) {
		time.Sleep(time.Millisecond)
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		st, err := cl.Status(ctx)
		if err != nil || len(st) != n {
			b.Fatalf("status: %d, %v", len(st), err)
		}
	}
}

// BenchmarkReloadNoop500 is `ctl reload` of an unchanged file with 500
// running processes: read, validate, compare each process and apply
// nothing. It is the cost of a SIGHUP or a touched config.
func BenchmarkReloadNoop500(b *testing.B) {
	s, cl, stop := benchDaemon(b, 500, true)
	defer stop()
	for !allRunning(s) {
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		plan, err := cl.Reload(ctx, false)
		if err != nil {
			b.Fatal(err)
		}
		if c := plan.Changes[0]; c.Action != "unchanged" {
			b.Fatalf("a no-op reload changed %+v", c)
		}
	}
}

// BenchmarkReloadScale500 scales 500 running processes to 510 and back by
// reload: 10 spawned and waited for, then 10 stopped; the 500 stay.
func BenchmarkReloadScale500(b *testing.B) {
	s, cl, stop := benchDaemon(b, 500, true)
	defer stop()
	for !allRunning(s) {
		time.Sleep(10 * time.Millisecond)
	}
	file := s.config().File
	orig, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	more := bytes.Replace(orig, []byte("numprocs = 500"), []byte("numprocs = 510"), 1)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		for _, body := range [][]byte{more, orig} {
			if err := os.WriteFile(file, body, 0o644); err != nil {
				b.Fatal(err)
			}
			if _, err := cl.Reload(ctx, false); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkStopWhileOtherStops is `ctl stop other` while another program
// is stopping: its child ignores SIGTERM and it has stopwaitsecs = 2. It
// measures what an operation waits for an unrelated one (before lanes:
// the rest of the other's stopwaitsecs).
func BenchmarkStopWhileOtherStops(b *testing.B) {
	dir, err := os.MkdirTemp("", "gsb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pidfile := filepath.Join(dir, "stuck.pid")
	body := fmt.Sprintf(`[supervisor]
socket = "gosup.sock"
logdir = "log"
[program.stuck]
command = "%s ignore-term %s"
startsecs = 0
stopwaitsecs = 2
autostart = false
environment = { GO_WANT_HELPER_PROCESS = "1" }
[program.other]
command = %q
startsecs = 0
`, os.Args[0], pidfile, sleeper(b))
	s, cl, stop := runBenchDaemon(b, dir, body)
	defer stop()
	ctx := context.Background()
	act := func(verb, pattern string) {
		res, err := cl.Action(ctx, verb, api.ActionRequest{Patterns: []string{pattern}})
		if err != nil || len(res) != 1 || !res[0].OK {
			b.Fatalf("%s %s: %+v %v", verb, pattern, res, err)
		}
	}
	stuck := s.process("stuck:stuck")
	for b.Loop() {
		b.StopTimer()
		os.Remove(pidfile)
		act("start", "stuck")
		readPidfile(b, pidfile) // SIGTERM ignored from here on
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			_, _ = cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"stuck"}})
		}()
		if _, err := stuck.Wait(ctx, func(st procgroup.Status) bool { return st.State == procgroup.Stopping }); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		act("stop", "other")
		b.StopTimer()
		act("start", "other")
		<-stopped
		b.StartTimer()
	}
}

// BenchmarkStatusPage500 is one status.json and one status page with 500
// children, each from a fresh read of the daemon (a handler of its own:
// the page shares one read a second between its clients), gzipped as a
// browser asks. It includes parsing the page's template, once a handler.
func BenchmarkStatusPage500(b *testing.B) {
	s, _, stop := benchDaemon(b, 500, true)
	defer stop()
	for !allRunning(s) {
		time.Sleep(time.Millisecond)
	}
	for _, path := range []string{"/status.json", "/"} {
		b.Run(map[string]string{"/": "page", "/status.json": "json"}[path], func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			for b.Loop() {
				w := httptest.NewRecorder()
				s.statusPageHandler().ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("%s: %d", path, w.Code)
				}
			}
		})
	}
}

// BenchmarkScrape500 is one whole GET /metrics (read to its end) through
// the [http] listener's unix socket, with 500 children running: the
// status and figures of every one (a pass of the status sampler, open
// files counted) and the daemon's own metrics. identity: the text as is;
// gzip: compressed, as Prometheus asks for it.
func BenchmarkScrape500(b *testing.B) {
	dir, err := os.MkdirTemp("", "gsb")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "http.sock")
	body := fmt.Sprintf(`[supervisor]
socket = "gosup.sock"
logdir = "log"
[program.sl]
command = %q
numprocs = 500
process_name = "sl_%%(process_num)d"
startsecs = 0
[http]
listen = %q
`, sleeper(b), sock)
	s, _, stop := runBenchDaemon(b, dir, body)
	defer stop()
	for !allRunning(s) {
		time.Sleep(time.Millisecond)
	}
	for _, gzip := range []bool{false, true} {
		name := "identity"
		if gzip {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			cl := socketHTTPClient(sock)
			cl.Transport.(*http.Transport).DisableCompression = true
			req, err := http.NewRequest("GET", "http://localhost/metrics", nil)
			if err != nil {
				b.Fatal(err)
			}
			if gzip {
				req.Header.Set("Accept-Encoding", "gzip")
			}
			var n int64
			for b.Loop() {
				resp, err := cl.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("GET /metrics: %v %v", resp.Status, err)
				}
			}
			b.ReportMetric(float64(n), "bytes/scrape")
		})
	}
}

// BenchmarkScale2000 is a daemon with 2,000 C sleepers (default AUTO logs,
// through the daemon): the host must fit them (scaleRoom fails the
// benchmark with what to raise if it does not). In that order:
//
//   - idle: the daemon's memory with the 2,000 started and idle, less the
//     same before their first spawn, after a GC each (runtime/metrics:
//     heap-bytes is the heap's spans in use, objects and their free room,
//     HeapInuse; stack-bytes the goroutine stacks, StackInuse;
//     bytes/child is the two over 2,000, goroutines/child likewise), and
//     VmRSS from /proc/self/status: this whole test process (the daemon
//     in it, the test binary's pages, the race detector's shadow memory
//     when built with -race), and its growth over the spawn per child.
//   - status: one `ctl status` round trip through the API client, with all
//     2,000 RUNNING: the table the daemon formats, as the CLI asks for it;
//     status-json: the same decoded from JSON (ctl status --json, ctl top).
//   - stop: `ctl stop all` until it returns; then, clock stopped, every
//     child must be gone from /proc by pid (no process of those pids is a
//     child of this one, not even a zombie).
//   - spawn: `ctl start all` until all 2,000 are RUNNING (then stop all,
//     not timed).
//
// Run:
//
//	go test -run '^$' -bench Scale2000 -benchtime 2x -count 5 -timeout 30m ./supervisor/
func BenchmarkScale2000(b *testing.B) {
	const n = 2000
	scaleRoom(b, n)
	s, cl, stop := benchDaemon(b, n, false)
	defer stop()
	ctx := context.Background()
	startAll := func(b *testing.B) {
		res, err := cl.Action(ctx, "start", api.ActionRequest{Patterns: []string{"all"}})
		if err != nil || len(res) != n || !allRunning(s) {
			b.Fatalf("start all: %d results, %v", len(res), err)
		}
	}
	// stopAll stops every process and returns the pids they had.
	stopAll := func(b *testing.B) []int {
		var pids []int
		for _, p := range s.all() {
			if st := p.Status(); st.Pid > 0 {
				pids = append(pids, st.Pid)
			}
		}
		res, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"all"}})
		if err != nil || len(res) != n {
			b.Fatalf("stop all: %d results, %v", len(res), err)
		}
		return pids
	}
	// Before any spawn: the figures of idle are what 2,000 running
	// children add to the daemon with their slots only.
	mem0 := daemonMemory()
	startAll(b)
	b.Run("idle", func(b *testing.B) {
		var d memFigures
		for b.Loop() {
			d = daemonMemory().minus(mem0)
		}
		b.ReportMetric(float64(d.heap), "heap-bytes")
		b.ReportMetric(float64(d.stack), "stack-bytes")
		b.ReportMetric(float64(d.heap+d.stack)/n, "bytes/child")
		b.ReportMetric(float64(d.goroutines)/n, "goroutines/child")
		b.ReportMetric(float64(mem0.vmRSS+d.vmRSS), "VmRSS-bytes")
		b.ReportMetric(float64(d.vmRSS)/n, "VmRSS-bytes/child")
	})
	b.Run("status", func(b *testing.B) {
		var table bytes.Buffer
		for b.Loop() {
			table.Reset()
			if _, err := cl.StatusTable(ctx, &table); err != nil || bytes.Count(table.Bytes(), []byte(" RUNNING ")) != n {
				b.Fatalf("status: %v\n%.300s", err, table.Bytes())
			}
		}
	})
	b.Run("status-json", func(b *testing.B) {
		for b.Loop() {
			st, err := cl.Status(ctx)
			if err != nil || len(st) != n {
				b.Fatalf("status: %d, %v", len(st), err)
			}
		}
	})
	b.Run("stop", func(b *testing.B) {
		for b.Loop() {
			if !allRunning(s) {
				b.StopTimer()
				startAll(b)
				b.StartTimer()
			}
			pids := stopAll(b)
			b.StopTimer()
			if len(pids) != n {
				b.Fatalf("%d pids before stop all, want %d", len(pids), n)
			}
			for _, pid := range pids {
				if ppid, ok := parentOf(pid); ok && ppid == os.Getpid() {
					b.Fatalf("stop all returned with child %d still in /proc", pid)
				}
			}
			b.StartTimer()
		}
	})
	b.Run("spawn", func(b *testing.B) {
		for b.Loop() {
			startAll(b)
			b.StopTimer()
			stopAll(b)
			b.StartTimer()
		}
	})
}

// memFigures is the daemon's memory: see BenchmarkScale2000's idle.
type memFigures struct {
	heap, stack, goroutines, vmRSS int64
}

func (m memFigures) minus(o memFigures) memFigures {
	return memFigures{m.heap - o.heap, m.stack - o.stack, m.goroutines - o.goroutines, m.vmRSS - o.vmRSS}
}

// daemonMemory reads the heap and stacks in use (after a GC), the
// goroutines and this process's VmRSS.
func daemonMemory() memFigures {
	runtime.GC()
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(samples)
	m := memFigures{
		heap:       int64(samples[0].Value.Uint64() + samples[1].Value.Uint64()),
		stack:      int64(samples[2].Value.Uint64()),
		goroutines: int64(samples[3].Value.Uint64()),
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				m.vmRSS = kb << 10
			}
		}
	}
	return m
}

// parentOf is the parent pid of pid from /proc/PID/stat; ok is false when
// there is no such process.
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// scaleRoom fails b unless this host can run n children of benchDaemon:
// RLIMIT_NOFILE (the Go runtime raised the soft limit to the hard one at
// start; raised here if it did not), pid_max, the pids.max of this
// process's cgroup and RLIMIT_NPROC (for non-root).
func scaleRoom(b *testing.B, n int) {
	b.Helper()
	spec := procgroup.ProcSpec{Stdout: procgroup.LogSpec{Kind: procgroup.LogFile, Path: "x.log"}, Stderr: procgroup.LogSpec{Kind: procgroup.LogFile, Path: "y.log"}}
	// What this process holds already (the benchmarks' daemons before
	// this one have stopped), the daemon's own, and its children's.
	held, _ := os.ReadDir("/proc/self/fd")
	need := uint64(len(held) + config.DaemonFDs + n*procgroup.FDsPerProcess(&spec, false))
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	if rl.Cur < need {
		if rl.Max < need {
			b.Fatalf("%d children need about %d file descriptors; RLIMIT_NOFILE's hard limit is %d: raise it (ulimit -Hn %d as root, or LimitNOFILE= for a service)", n, need, rl.Max, need)
		}
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			b.Fatalf("raise RLIMIT_NOFILE's soft limit to %d: %v", rl.Max, err)
		}
	}
	// Each child is a pid; the daemon's threads and the host's other
	// processes take more: ask for twice.
	h := hostlimits.Read()
	if h.PidMax > 0 && h.PidMax < 2*n {
		b.Fatalf("%d children need %d pids or more; kernel.pid_max is %d: raise it (sysctl -w kernel.pid_max=%d)", n, 2*n, h.PidMax, 4*n)
	}
	if h.Pids > 0 && h.Pids < 2*n {
		b.Fatalf("%d children need %d tasks or more; this process's cgroup %s allows %d (pids.max): run it where TasksMax= is higher", n, 2*n, h.PidsCgroup, h.Pids)
	}
	if !h.Root && h.NProc != unix.RLIM_INFINITY && h.NProc < uint64(2*n) {
		b.Fatalf("%d children need %d processes or more for this user; RLIMIT_NPROC is %d: raise it (ulimit -u)", n, 2*n, h.NProc)
	}
}
