package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/rogpeppe/go-internal/testscript"
)

// upgradeCmds are the scripts' commands for in-place upgrades, with what
// they keep between the commands of a script (keyed by the script).
type upgradeCmds struct {
	pkgDir string // this package's source directory, where go build runs
	binDir string // the built binaries, one per version, for the whole run

	mu     sync.Mutex
	builds map[string]*build
	pids   map[*testscript.TestScript]pidSnapshot
	loops  map[*testscript.TestScript]*statusLoop
	stats  map[*testscript.TestScript]map[string]procStats
}

type build struct {
	once sync.Once
	path string
	err  error
	took time.Duration
}

func newUpgradeCmds(binDir string) (*upgradeCmds, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	return &upgradeCmds{
		pkgDir: dir, binDir: binDir,
		builds: map[string]*build{},
		pids:   map[*testscript.TestScript]pidSnapshot{},
		loops:  map[*testscript.TestScript]*statusLoop{},
		stats:  map[*testscript.TestScript]map[string]procStats{},
	}, nil
}

func (u *upgradeCmds) cmds() map[string]func(*testscript.TestScript, bool, []string) {
	return map[string]func(*testscript.TestScript, bool, []string){
		"buildgosup":   u.cmdBuildgosup,
		"pids":         u.cmdPids,
		"exe":          cmdExe,
		"statusloop":   u.cmdStatusloop,
		"upgrades":     cmdUpgrades,
		"waitupgrades": cmdWaitupgrades,
		"procstat":     u.cmdProcstat,
		"procflat":     u.cmdProcflat,
	}
}

// cmdBuildgosup installs a real gosup binary stamped with VERSION at PATH
// (mode 0755), as a package manager does: written under a temporary name
// beside it, then renamed over PATH, so a daemon running PATH keeps its
// (now deleted) old file. Each version is built once per test run (go
// build with the go in $PATH; the build cache makes it a link step).
//
//	buildgosup VERSION PATH
//
// VERSION vcs builds with -buildvcs=true and no version of its own: the
// README's build command, versioned by the checkout.
func (u *upgradeCmds) cmdBuildgosup(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: buildgosup VERSION PATH")
	}
	version, dst := args[0], ts.MkAbs(args[1])
	u.mu.Lock()
	b := u.builds[version]
	if b == nil {
		b = &build{}
		u.builds[version] = b
	}
	u.mu.Unlock()
	b.once.Do(func() {
		start := time.Now()
		b.path = filepath.Join(u.binDir, "gosup-"+version)
		args := []string{"-ldflags", "-X main.version=" + version, "-o", b.path, "."}
		if version == "vcs" {
			// Versioned by the checkout, as the README's build command.
			args = []string{"-buildvcs=true", "-o", b.path, "."}
		}
		b.err = buildStatic(u.pkgDir, b.path, args...)
		b.took = time.Since(start)
	})
	ts.Check(b.err)
	ts.Logf("buildgosup %s: built once per run, in %s", version, b.took.Round(time.Millisecond))
	// cp writes the copy, not this process: a file open for writing here
	// would be inherited by whatever another script forks meanwhile, and
	// executing it would fail with ETXTBSY until that child execs.
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".new")
	ts.Check(os.MkdirAll(filepath.Dir(dst), 0o755))
	if out, err := exec.Command("cp", b.path, tmp).CombinedOutput(); err != nil {
		ts.Fatalf("buildgosup: cp: %v: %s", err, out)
	}
	ts.Check(os.Chmod(tmp, 0o755))
	ts.Check(os.Rename(tmp, dst))
}

// pidSnapshot is the daemon's pid and each process's.
type pidSnapshot struct {
	daemon int
	procs  map[string]int // group:name → pid
}

// cmdPids takes (save) or compares (same) the daemon's pid and the pids of
// the processes matching PATTERNs (all when none), which must all be
// RUNNING. save also sets $DAEMON_PID and $PID_name for each process
// (its name, with each byte but letters, digits and _ as _).
//
//	pids save|same SOCKET [PATTERN...]
func (u *upgradeCmds) cmdPids(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || (args[0] != "save" && args[0] != "same") {
		ts.Fatalf("usage: pids save|same SOCKET [PATTERN...]")
	}
	cl := api.NewClient(ts.MkAbs(args[1]))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := cl.Info(ctx)
	ts.Check(err)
	st, err := cl.Status(ctx, args[2:]...)
	ts.Check(err)
	now := pidSnapshot{daemon: info.Pid, procs: map[string]int{}}
	for _, p := range st {
		if p.State != "RUNNING" || p.Pid <= 0 {
			ts.Fatalf("pids: %s is %s (pid %d), not RUNNING", p.Name, p.State, p.Pid)
		}
		now.procs[p.Name] = p.Pid
	}
	if len(now.procs) == 0 {
		ts.Fatalf("pids: no process matches %v", args[2:])
	}
	if args[0] == "save" {
		u.mu.Lock()
		u.pids[ts] = now
		u.mu.Unlock()
		ts.Setenv("DAEMON_PID", strconv.Itoa(now.daemon))
		for name, pid := range now.procs {
			_, proc, _ := strings.Cut(name, ":")
			ts.Setenv("PID_"+envName(proc), strconv.Itoa(pid))
		}
		ts.Logf("pids: daemon %d, %d processes", now.daemon, len(now.procs))
		return
	}
	u.mu.Lock()
	was, ok := u.pids[ts]
	u.mu.Unlock()
	if !ok {
		ts.Fatalf("pids same: no pids save before")
	}
	if now.daemon != was.daemon {
		ts.Fatalf("pids: the daemon is pid %d, was %d", now.daemon, was.daemon)
	}
	for _, name := range slices.Sorted(maps.Keys(was.procs)) {
		if _, ok := now.procs[name]; !ok {
			ts.Fatalf("pids: %s is gone", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(now.procs)) {
		if old, ok := was.procs[name]; !ok || now.procs[name] != old {
			ts.Fatalf("pids: %s is pid %d, was %d", name, now.procs[name], old)
		}
	}
}

func envName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// cmdExe checks that process PID runs the file PATH: /proc/PID/exe names
// it (and not as deleted).
//
//	exe PID PATH
func cmdExe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: exe PID PATH")
	}
	got, err := os.Readlink("/proc/" + args[0] + "/exe")
	ts.Check(err)
	if want := ts.MkAbs(args[1]); got != want {
		ts.Fatalf("exe: /proc/%s/exe is %q, want %q", args[0], got, want)
	}
}

// statusLoop asks a daemon for its status without a pause, through the
// API (one client, its connections kept alive) and by running `gosup ctl
// status` processes, each in its own goroutine.
type statusLoop struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	calls   [2]atomic.Int64 // api, cli
	slowest [2]atomic.Int64 // ns
	mu      sync.Mutex
	errs    []string
	failed  atomic.Int64
}

func (l *statusLoop) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errs) < 5 {
		l.errs = append(l.errs, msg)
	}
	l.mu.Unlock()
}

func (l *statusLoop) took(i int, d time.Duration) {
	l.calls[i].Add(1)
	for {
		old := l.slowest[i].Load()
		if int64(d) <= old || l.slowest[i].CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// waitCalls waits (up to a minute) until each loop has made at least
// want calls, or one failed.
func (l *statusLoop) waitCalls(ts *testscript.TestScript, want [2]int64) {
	deadline := time.Now().Add(time.Minute)
	for l.failed.Load() == 0 && (l.calls[0].Load() < want[0] || l.calls[1].Load() < want[1]) {
		if time.Now().After(deadline) {
			ts.Fatalf("statusloop: after a minute, %d api calls and %d ctl status runs answered, want %v", l.calls[0].Load(), l.calls[1].Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cmdStatusloop starts the loops (start: it returns once each has been
// answered), or stops them and checks that every status answered (check:
// each loop is answered once more first): none failed, not even with "not
// running", nor cut by the exec. Each loop's calls follow one another
// without a pause, so together they cover every moment between start and
// check.
//
//	statusloop start SOCKET
//	statusloop check
func (u *upgradeCmds) cmdStatusloop(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: statusloop start SOCKET | statusloop check")
	}
	switch {
	case args[0] == "start" && len(args) == 2:
		socket := ts.MkAbs(args[1])
		gosup, err := lookPath("gosup", ts.Getenv("PATH"))
		ts.Check(err)
		env := []string{"PATH=" + ts.Getenv("PATH"), "HOME=" + ts.Getenv("HOME"), "GORACE=" + ts.Getenv("GORACE")}
		ctx, cancel := context.WithCancel(context.Background())
		l := &statusLoop{cancel: cancel}
		l.wg.Go(func() {
			cl := api.NewClient(socket)
			defer cl.Close()
			for ctx.Err() == nil {
				start := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, time.Minute)
				_, err := cl.Status(cctx)
				ccancel()
				switch {
				case ctx.Err() != nil:
				case err != nil:
					l.fail("api: " + err.Error())
				default:
					l.took(0, time.Since(start))
				}
			}
		})
		l.wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				cmd := exec.CommandContext(ctx, gosup, "ctl", "--socket", socket, "status")
				cmd.Env = env
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				switch {
				case ctx.Err() != nil:
				case err != nil:
					l.fail(fmt.Sprintf("gosup ctl status: %v: %s", err, strings.TrimSpace(out.String())))
				default:
					l.took(1, time.Since(start))
				}
			}
		})
		u.mu.Lock()
		u.loops[ts] = l
		u.mu.Unlock()
		ts.Defer(func() {
			cancel()
			l.wg.Wait()
		})
		// Each loop has answered before the script goes on (to the
		// upgrade), so that the loops cover all of it.
		l.waitCalls(ts, [2]int64{1, 1})
	case args[0] == "check" && len(args) == 1:
		u.mu.Lock()
		l := u.loops[ts]
		delete(u.loops, ts)
		u.mu.Unlock()
		if l == nil {
			ts.Fatalf("statusloop check: not started")
		}
		// And each answers once more after what the script did since: the
		// calls, back to back, covered every moment of it.
		l.waitCalls(ts, [2]int64{l.calls[0].Load() + 1, l.calls[1].Load() + 1})
		l.cancel()
		l.wg.Wait()
		ts.Logf("statusloop: %d api calls (slowest %s), %d ctl status runs (slowest %s), %d failed",
			l.calls[0].Load(), time.Duration(l.slowest[0].Load()).Round(time.Millisecond),
			l.calls[1].Load(), time.Duration(l.slowest[1].Load()).Round(time.Millisecond), l.failed.Load())
		if n := l.failed.Load(); n > 0 {
			ts.Fatalf("statusloop: %d status calls failed: %s", n, strings.Join(l.errs, "; "))
		}
	default:
		ts.Fatalf("usage: statusloop start SOCKET | statusloop check")
	}
}

// lookPath finds an executable file in the colon-separated path.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", name, path)
}

// cmdUpgrades upgrades the daemon on SOCKET N times in a row to the binary
// it runs, each through the API as `gosup ctl upgrade` does, and logs
// how long they took.
//
//	upgrades SOCKET N
func cmdUpgrades(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: upgrades SOCKET N")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	cl := api.NewClient(ts.MkAbs(args[0]))
	defer cl.Close()
	var took []time.Duration
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		start := time.Now()
		reply, err := cl.Upgrade(ctx, "")
		if err == nil {
			_, err = cl.WaitUpgrade(ctx, reply)
		}
		cancel()
		if err != nil {
			ts.Fatalf("upgrades: upgrade %d of %d: %v", i+1, n, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	ts.Logf("upgrades: %d, each took min %s, median %s, max %s", n, took[0].Round(time.Millisecond),
		took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

// cmdWaitupgrades waits (up to a minute) until the daemon on SOCKET says it
// has upgraded N times.
//
//	waitupgrades SOCKET N
func cmdWaitupgrades(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitupgrades SOCKET N")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	cl := api.NewClient(ts.MkAbs(args[0]))
	defer cl.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, err := cl.Info(ctx)
		cancel()
		if err == nil && info.Upgrades >= n {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitupgrades: not %d upgrades after a minute: %+v, %v", n, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procStats is what a process holds: open fds, threads, resident memory.
type procStats struct {
	fds, threads int
	rssKB        int
	fdNames      []string // what the fds are, for a failure to show
}

// procStatSamples is how many samples procstat takes, 100 ms apart: it
// keeps the median of each, so that what comes and goes (a control
// connection being closed, a log or state file being reopened, a thread
// the runtime starts for a moment, a garbage collection not yet run) does
// not count, while what leaks is in every sample.
const procStatSamples = 11

// cmdProcstat records (under LABEL) process PID's open fds, threads and
// RSS: the median of 11 samples 100 ms apart.
//
//	procstat PID LABEL
func (u *upgradeCmds) cmdProcstat(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: procstat PID LABEL")
	}
	var samples []procStats
	for i := range procStatSamples {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		s, err := readProcStats(args[0])
		ts.Check(err)
		samples = append(samples, s)
	}
	median := func(f func(procStats) int) procStats {
		slices.SortStableFunc(samples, func(a, b procStats) int { return f(a) - f(b) })
		return samples[len(samples)/2]
	}
	m := median(func(s procStats) int { return s.fds }) // with its fds' names
	m.threads = median(func(s procStats) int { return s.threads }).threads
	m.rssKB = median(func(s procStats) int { return s.rssKB }).rssKB
	ts.Logf("procstat %s: pid %s has %d fds, %d threads, RSS %d kB", args[1], args[0], m.fds, m.threads, m.rssKB)
	u.mu.Lock()
	if u.stats[ts] == nil {
		u.stats[ts] = map[string]procStats{}
	}
	u.stats[ts][args[1]] = m
	u.mu.Unlock()
}

func readProcStats(pid string) (procStats, error) {
	var s procStats
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	for _, fd := range fds {
		// Pipes, sockets, pidfds: the kind, not the inode.
		target, _ := os.Readlink("/proc/" + pid + "/fd/" + fd.Name())
		kind, _, _ := strings.Cut(target, "[")
		s.fdNames = append(s.fdNames, kind)
	}
	slices.Sort(s.fdNames)
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return s, err
	}
	found := 0
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Threads":
			s.threads, err = strconv.Atoi(f[0])
			found++
		case "VmRSS":
			s.rssKB, err = strconv.Atoi(f[0])
			found++
		}
		if err != nil {
			return s, fmt.Errorf("/proc/%s/status: %s: %w", pid, k, err)
		}
	}
	if found != 2 {
		return s, errors.New("/proc/" + pid + "/status has no Threads or VmRSS")
	}
	return s, nil
}

// cmdProcflat checks that what procstat recorded under AFTER is no more
// than under BEFORE: the same fds, at most half as many threads more, or
// 4 (execve ends every thread but the caller, so threads cannot pile up
// across upgrades; but each image's Go runtime starts one for each system
// call that blocks while others run, so an image started on a busy
// machine has a few more: 8 then 11 was seen), and
// an RSS at most 20% larger, or 4 MiB for a small one (the heap of a new
// image varies with when its collector last ran; a leak across 40
// upgrades, each of which starts from a fresh image, grows past that).
//
//	procflat BEFORE AFTER
func (u *upgradeCmds) cmdProcflat(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: procflat BEFORE AFTER")
	}
	u.mu.Lock()
	a, okA := u.stats[ts][args[0]]
	b, okB := u.stats[ts][args[1]]
	u.mu.Unlock()
	if !okA || !okB {
		ts.Fatalf("procflat: no procstat %s or %s", args[0], args[1])
	}
	if b.fds != a.fds {
		ts.Fatalf("procflat: %d fds at %s, %d at %s:\n%s: %q\n%s: %q", b.fds, args[1], a.fds, args[0], args[0], a.fdNames, args[1], b.fdNames)
	}
	if b.threads > a.threads+max(a.threads/2, 4) {
		ts.Fatalf("procflat: %d threads at %s, %d at %s", b.threads, args[1], a.threads, args[0])
	}
	if limit := a.rssKB + max(a.rssKB/5, 4096); b.rssKB > limit {
		ts.Fatalf("procflat: RSS %d kB at %s, %d kB at %s (limit %d kB)", b.rssKB, args[1], a.rssKB, args[0], limit)
	}
}
