package procgroup

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
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/procgroup/reaper/reapertest"
	"golang.org/x/sys/unix"
)

// testReaper is the one reaper of the test process (a process may have one).
var testReaper *reaper.Reaper

// testSpawns is the live spawns of every test pool, as a daemon's.
var testSpawns = NewSpawns()

func TestMain(m *testing.M) {
	reapertest.Main(m, helperMain, func(rp *reaper.Reaper) { testReaper = rp })
}

// helperMain is what a child runs: the test binary re-executed with
// GO_WANT_HELPER_PROCESS=1 and a mode.
func helperMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "helper: no mode")
		return 2
	}
	mode, args := args[0], args[1:]
	if code, ok := sweepHelper(mode, args); ok {
		return code
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch mode {
	case "sleep": // until killed
		reapertest.Forever()
	case "exit": // exit CODE
		n, _ := strconv.Atoi(arg(0))
		return n
	case "exitafter": // exitafter DURATION CODE
		d, _ := time.ParseDuration(arg(0))
		time.Sleep(d)
		n, _ := strconv.Atoi(arg(1))
		return n
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP)
		fmt.Println("ignoring TERM")
		reapertest.Forever()
	case "grandchild": // grandchild PIDFILE: start a sleeping grandchild in our group, then sleep
		cmd := exec.Command(os.Args[0], "sleep")
		cmd.Env = os.Environ()
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := os.WriteFile(arg(0), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			return 1
		}
		reapertest.Forever()
	case "orphans": // orphans N: leave N exited grandchildren for the subreaper, then sleep
		n, _ := strconv.Atoi(arg(0))
		for range n {
			cmd := exec.Command(os.Args[0], "exit", "0")
			cmd.Env = os.Environ()
			_ = cmd.Start()
		}
		fmt.Println("orphans started")
		os.Stdout.Close()
		// Exit without waiting: the grandchildren are re-parented to the subreaper.
		return 0
	case "forkmany": // forkmany N PREFIX CODE: start N sleeping grandchildren in our group (holding our stdout), list their pids in PREFIX.OURPID, then exit CODE (or sleep if CODE is "-")
		n, _ := strconv.Atoi(arg(0))
		var pids strings.Builder
		for range n {
			cmd := exec.Command("/bin/sleep", "3600")
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Fprintln(&pids, cmd.Process.Pid)
		}
		if err := writeFileAtomic(arg(1)+"."+strconv.Itoa(os.Getpid()), pids.String()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if arg(2) == "-" {
			reapertest.Forever()
		}
		code, _ := strconv.Atoi(arg(2))
		return code
	case "daemonize": // daemonize PIDFILE: start a daemon by double fork and setsid, append "OURPID DAEMONPID" to PIDFILE, exit 1
		cmd := exec.Command(os.Args[0], "setsid-fork", arg(0), strconv.Itoa(os.Getpid()))
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "daemonize:", err)
			return 2
		}
		return 1
	case "setsid-fork": // setsid-fork PIDFILE PARENT: start a sleeping daemon with no stdio, append "PARENT DAEMONPID" to PIDFILE, exit
		cmd := exec.Command("/bin/sleep", "3600")
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		f, err := os.OpenFile(arg(0), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return 1
		}
		_, err = fmt.Fprintln(f, arg(1), cmd.Process.Pid)
		if f.Close() != nil || err != nil {
			return 1
		}
		return 0
	case "echo": // echo OUT ERR: one line to each stream
		fmt.Fprintln(os.Stdout, arg(0))
		fmt.Fprintln(os.Stderr, arg(1))
		reapertest.Forever()
	case "serve": // serve DELAY STATUS: after DELAY listen on $PORT and answer every GET with STATUS
		d, _ := time.ParseDuration(arg(0))
		code, _ := strconv.Atoi(arg(1))
		time.Sleep(d)
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
		return 1
	case "probe": // probe PORT PATH TIMEOUT: run an HTTP readiness probe, print its outcome
		port, _ := strconv.Atoi(arg(0))
		timeout, _ := time.ParseDuration(arg(2))
		out := make(chan error, 1)
		probe(context.Background(), out, ReadyHTTP, arg(1), "", port, timeout)
		if err := <-out; err != nil {
			fmt.Println("not ready:", err)
		} else {
			fmt.Println("ready")
		}
		return 0
	case "spamdone": // spamdone BYTES: write that many bytes to stdout, then "done" to stderr
		n, _ := strconv.Atoi(arg(0))
		_, _ = os.Stdout.Write(bytes.Repeat([]byte("0123456789abcdef\n"), n/17+1)[:n])
		fmt.Fprintln(os.Stderr, "done")
		reapertest.Forever()
	case "blast": // blast BYTES GOFILE: once GOFILE exists, write BYTES of 100-byte lines to stdout in 128 KiB writes, then "done" to stderr
		n, _ := strconv.Atoi(arg(0))
		for {
			if _, err := os.Stat(arg(1)); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		block := bytes.Repeat([]byte(strings.Repeat("x", 99)+"\n"), 1311) // 131,100 bytes
		for n > 0 {
			k, err := os.Stdout.Write(block[:min(n, len(block))])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			n -= k
		}
		fmt.Fprintln(os.Stderr, "done")
		reapertest.Forever()
	case "pipesize": // pipesize: print stdout's pipe size to stderr, fill that pipe with one write, print the size again once it is 1 MiB (or after 60 s)
		size := func() int { n, _ := unix.FcntlInt(1, unix.F_GETPIPE_SZ, 0); return n }
		first := size()
		fmt.Fprintln(os.Stderr, "start", first)
		_, _ = os.Stdout.Write(bytes.Repeat([]byte("x"), first))
		for deadline := time.Now().Add(60 * time.Second); size() < 1<<20 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		fmt.Fprintln(os.Stderr, "now", size())
		reapertest.Forever()
	case "tick": // tick: a numbered line every 20 ms, for ever
		for i := 0; ; i++ {
			fmt.Printf("tick %d\n", i)
			time.Sleep(20 * time.Millisecond)
		}
	case "count": // count: numbered lines ("n 0", "n 1", …) as fast as a few thousand a second, for ever
		for i := 0; ; i++ {
			fmt.Printf("n %d\n", i) // one write per line: a line is never split
			if i%20 == 19 {
				time.Sleep(time.Millisecond)
			}
		}
	case "partial": // partial A B: write A (no newline), and on SIGUSR1 "B\n"
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		fmt.Print(arg(0))
		<-usr1
		fmt.Println(arg(1))
		reapertest.Forever()
	case "spamboth": // spamboth BYTES DONEFILE: write that many bytes of numbered lines to stdout and to stderr at once, 64 KiB a write, then create DONEFILE
		n, _ := strconv.Atoi(arg(0))
		text := spamText(n)
		var wg sync.WaitGroup
		for i, f := range []*os.File{os.Stdout, os.Stderr} {
			wg.Go(func() {
				b := text
				if i == 1 {
					b = strings.ToUpper(text) // tells the streams apart
				}
				for len(b) > 0 {
					k := min(len(b), 64<<10)
					_, _ = io.WriteString(f, b[:k])
					b = b[k:]
				}
			})
		}
		wg.Wait()
		_ = os.WriteFile(arg(1), nil, 0o644)
		reapertest.Forever()
	case "spam": // spam BYTES: write that many bytes of numbered lines to stdout
		n, _ := strconv.Atoi(arg(0))
		var b strings.Builder
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "line %08d %s\n", i, strings.Repeat("x", 80))
		}
		_, _ = io.WriteString(os.Stdout, b.String()[:n])
		reapertest.Forever()
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
	return 2
}

// helperSpec is a program running the helper in mode, with fast defaults.
func helperSpec(mode ...string) *Spec {
	s := DefaultSpec()
	s.Command = strings.Join(append([]string{os.Args[0]}, mode...), " ")
	s.Environment = map[string]string{"GO_WANT_HELPER_PROCESS": "1"}
	s.StartSecs = 0
	s.StopWaitSecs = 2
	return &s
}

// newTestPool expands spec into a pool, runs it, and stops and ends it
// (killing whatever is left) when the test ends.
func newTestPool(t *testing.T, spec *Spec) *Pool {
	t.Helper()
	dir := t.TempDir()
	procs, err := spec.Expand("t", ExpandContext{Here: dir, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	g := NewPool(ctx, "t", testReaper, log)
	g.Setup = func(p *Process) { p.Spawns = testSpawns }
	for i := range procs {
		g.Add(&procs[i])
	}
	t.Cleanup(func() {
		cancel()
		g.Wait()
	})
	return g
}

// testWriter writes a test's log lines to t until the test's cleanups
// registered before it have run: a log copier outlives the pool that
// started it (it drains the child's pipe once the child is gone, and may
// log that the log, in a removed TempDir, fails), and t.Log after the
// test has completed is a data race. Lines after that are dropped.
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

// newTestWriter makes a testWriter of t; make it before the cleanups of
// what logs to it are registered, so that they run first.
func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: new(sync.Mutex), done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// waitState waits up to timeout for p to reach want.
func waitState(t *testing.T, p *Process, want State, timeout time.Duration) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := p.Wait(ctx, func(s Status) bool { return s.State == want })
	if err != nil {
		t.Fatalf("%s: want state %s within %s, have %s (%+v)", p.Spec().FullName(), want, timeout, st.State, st)
	}
	return st
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// recordSpawns notes when p spawns (set before p starts); the func returns
// the times so far.
func recordSpawns(p *Process) func() []time.Time {
	var mu sync.Mutex
	var spawns []time.Time
	p.OnSpawn = func(_ *Process, _ int, _ uint64, at time.Time) {
		mu.Lock()
		spawns = append(spawns, at)
		mu.Unlock()
	}
	return func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(spawns)
	}
}

// writeFileAtomic writes a whole file that a reader never sees half-written.
func writeFileAtomic(path, content string) error {
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
