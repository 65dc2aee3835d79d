package procgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/proctree"
	"github.com/gosup/gosup/procgroup/reaper"
	"golang.org/x/sys/unix"
)

// The tests below check "no orphans": whatever a process started is gone
// when the process is reported STOPPED, and before it is spawned again.

// readPids waits for path to list at least n pids, one a line.
func readPids(t *testing.T, path string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		var pids []int
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lists %d pids, want %d", path, len(pids), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func aliveOf(pids []int) []int {
	var out []int
	for _, pid := range pids {
		if alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// killAtEnd SIGKILLs whatever a test's processes left (listed in the
// files matching pattern), so a failing test does not leave 200 sleeps
// behind.
func killAtEnd(t *testing.T, pattern string) {
	t.Cleanup(func() {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			b, _ := os.ReadFile(file)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && alive(pid) {
					_ = syscallKill(pid)
				}
			}
		}
	})
}

// A shell wrapper without exec: stopping it must stop the app it runs, so
// the port is free when the process is STOPPED and the next start works.
func TestShellWrapperChildStopsWithIt(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "wrapper.sh")
	// The line after the app keeps the shell from exec'ing it.
	body := "#!/bin/sh\n\"$HELPER_BIN\" serve 0s 200\necho \"app exited: $?\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := helperSpec()
	spec.Command = script
	spec.Environment["HELPER_BIN"] = os.Args[0]
	spec.PortStart = freePortRange(t, 1)
	p := newTestPool(t, spec).Procs()[0]
	for round := range 2 {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		st := waitState(t, p, Running, 30*time.Second)
		if st.Spawns != round+1 {
			t.Fatalf("round %d: %d spawns", round, st.Spawns)
		}
		// RUNNING: the app listens (the tcp check passed).
		app, _ := portOwner(spec.PortStart)
		if app == 0 || app == st.Pid {
			t.Fatalf("round %d: the port is held by pid %d, want the wrapper's child (wrapper %d)", round, app, st.Pid)
		}
		t.Cleanup(func() {
			if alive(app) {
				_ = syscallKill(app)
			}
		})
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		waitState(t, p, Stopped, 30*time.Second)
		// STOPPED means everything is gone: no waiting here.
		if err := checkPort(spec.PortStart); err != nil {
			t.Fatalf("round %d: STOPPED, but the wrapper's app still holds the port: %v", round, err)
		}
		if alive(app) {
			t.Fatalf("round %d: STOPPED, but the wrapper's app (pid %d) lives", round, app)
		}
	}
}

// A child that started 200 grandchildren in its group and keeps running:
// a plain stop (no stopasgroup) signals the child only, and STOPPED must
// still mean that all 200 are gone.
func TestStopStopsEveryDescendant(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "gc.pids")
	killAtEnd(t, prefix+".*")
	spec := helperSpec("forkmany", "200", prefix, "-")
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Running, 30*time.Second)
	gcs := readPids(t, prefix+"."+strconv.Itoa(st.Pid), 200)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 60*time.Second)
	if left := aliveOf(gcs); len(left) > 0 {
		t.Fatalf("STOPPED, but %d of 200 grandchildren live, e.g. pid %d", len(left), left[0])
	}
}

// A child that starts 200 grandchildren and exits: they are stopped when
// it exits (killasgroup or not), and the process is not spawned again
// before they are gone.
func TestExitStopsEveryDescendantBeforeRespawn(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "gc.pids")
	killAtEnd(t, prefix+".*")
	spec := helperSpec("forkmany", "200", prefix, "3")
	spec.KillAsGroup = true
	spec.AutoRestart = RestartAlways
	spec.BackoffMax = 0
	p := newTestPool(t, spec).Procs()[0]
	var firstPid, leftAtRespawn atomic.Int64
	leftAtRespawn.Store(-1)
	p.OnSpawn = func(_ *Process, pid int, _ uint64, _ time.Time) {
		if !firstPid.CompareAndSwap(0, int64(pid)) && leftAtRespawn.Load() < 0 {
			// The second spawn: count the first one's survivors (the
			// first spawn listed them before it exited).
			b, _ := os.ReadFile(prefix + "." + strconv.FormatInt(firstPid.Load(), 10))
			var pids []int
			for _, f := range strings.Fields(string(b)) {
				pid, _ := strconv.Atoi(f)
				pids = append(pids, pid)
			}
			if len(pids) != 200 {
				leftAtRespawn.Store(-2) // the first spawn did not list them
				return
			}
			leftAtRespawn.Store(int64(len(aliveOf(pids))))
		}
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx0, cancel0 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel0()
	if _, err := p.Wait(ctx0, func(s Status) bool { return s.Spawns >= 1 }); err != nil {
		t.Fatal(err)
	}
	first := readPids(t, prefix+"."+strconv.FormatInt(firstPid.Load(), 10), 200)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := p.Wait(ctx, func(s Status) bool { return s.Spawns >= 2 }); err != nil {
		t.Fatalf("not respawned: %v (%d of the first spawn's 200 grandchildren alive)", err, len(aliveOf(first)))
	}
	switch n := leftAtRespawn.Load(); {
	case n < 0:
		t.Fatalf("the second spawn found no list of the first one's grandchildren (%d)", n)
	case n > 0:
		t.Fatalf("respawned while %d of the first spawn's 200 grandchildren lived", n)
	}
	if err := p.Stop(); err != nil && err != ErrNotRunning {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 60*time.Second)
}

// Daemons that double-fork and setsid out of the child's process group are
// stopped with it: they do not pile up across respawns.
func TestDaemonizedDescendantsDoNotPileUp(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "daemons.pids")
	// daemons lists the daemons started so far, by the child that started them.
	daemons := func() map[int]int {
		b, _ := os.ReadFile(pidfile)
		out := map[int]int{}
		for line := range strings.Lines(string(b)) {
			var child, daemon int
			if _, err := fmt.Sscan(line, &child, &daemon); err == nil {
				out[daemon] = child
			}
		}
		return out
	}
	t.Cleanup(func() {
		for daemon := range daemons() {
			if alive(daemon) {
				_ = syscallKill(daemon)
			}
		}
	})
	spec := helperSpec("daemonize", pidfile)
	spec.AutoRestart = RestartAlways
	spec.BackoffMax = 0 // respawn after the 1 s floor
	p := newTestPool(t, spec).Procs()[0]
	var maxAlive atomic.Int64
	p.OnSpawn = func(_ *Process, pid int, _ uint64, _ time.Time) {
		n := int64(0)
		for daemon, child := range daemons() {
			if child != pid && alive(daemon) {
				n++ // a daemon of an earlier spawn
			}
		}
		if n > maxAlive.Load() {
			maxAlive.Store(n)
		}
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := p.Wait(ctx, func(s Status) bool { return s.Spawns >= 3 }); err != nil {
		t.Fatal(err)
	}
	if n := maxAlive.Load(); n > 0 {
		t.Errorf("a respawn found %d daemons of earlier spawns alive", n)
	}
	if err := p.Stop(); err != nil && err != ErrNotRunning {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 60*time.Second)
	all := daemons()
	if len(all) < 2 {
		t.Fatalf("%d daemons started, want at least 2", len(all))
	}
	for daemon := range all {
		if alive(daemon) {
			t.Errorf("STOPPED, but daemon %d (of %d) lives", daemon, len(all))
		}
	}
}

// A port held by one of this daemon's own orphans (a process carrying its
// instance marker) is reclaimed: the orphan is stopped, the process runs.
func TestOwnOrphanHoldingThePortIsReclaimed(t *testing.T) {
	port := freePortRange(t, 1)
	marker := "GOSUP_INSTANCE=test-" + t.Name()
	// A shell starts the server in the background and exits: the server
	// is re-parented to this process, the subreaper, as an orphan.
	_, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess("/bin/sh", []string{"sh", "-c", `"$HELPER_BIN" serve 0s 200 &`}, &os.ProcAttr{
			Env:   append(os.Environ(), "GO_WANT_HELPER_PROCESS=1", "HELPER_BIN="+os.Args[0], "PORT="+strconv.Itoa(port), marker),
			Files: []*os.File{nil, os.Stdout, os.Stderr},
			Sys:   &syscall.SysProcAttr{Setpgid: true},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	<-exitC
	orphan := portOrphan(t, port, "the orphan")
	spec := helperSpec("serve", "0s", "200")
	spec.PortStart = port
	spec.StartRetries = 0
	p := newTestPool(t, spec).Procs()[0]
	p.DaemonEnv = []string{marker}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := p.Wait(ctx, func(s Status) bool { return s.State == Running || s.State == Fatal })
	if err != nil || st.State != Running {
		t.Fatalf("want RUNNING, have %s: %s (%v)", st.State, st.SpawnError, err)
	}
	if alive(orphan) {
		t.Fatalf("RUNNING, but the orphan %d that held the port lives", orphan)
	}
	if owner, _ := portOwner(port); owner != st.Pid {
		t.Errorf("port held by %d, want the new child %d", owner, st.Pid)
	}
}

// BenchmarkFindLeftovers measures the look for leftovers that follows every
// exit, with 1,000 children: spawned ones (the usual case: nothing to
// find), orphans of another process (each is looked at and passed over),
// and the exited child's own 1,000 leftovers.
func BenchmarkFindLeftovers(b *testing.B) {
	const n = 1000
	b.Run("managed1000", func(b *testing.B) {
		var exits []<-chan reaper.Exit
		var procs []*os.Process
		for range n {
			proc, exitC, err := testReaper.Start(func() (*os.Process, error) {
				return os.StartProcess("/bin/sleep", []string{"sleep", "3600"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{Setpgid: true}})
			})
			if err != nil {
				b.Fatal(err)
			}
			procs, exits = append(procs, proc), append(exits, exitC)
		}
		b.Cleanup(func() {
			for i, p := range procs {
				_ = p.Kill()
				<-exits[i]
			}
		})
		for b.Loop() {
			if found := findLeftovers(proctree.Children(os.Getpid()), 1<<30, "GOSUP_SPAWN=bench/none", testReaper.Subscribed); len(found) != 0 {
				b.Fatalf("found %d", len(found))
			}
		}
	})
	// The orphans: a helper starts n sleeps in its group and exits.
	pidfile := filepath.Join(b.TempDir(), "pids")
	_, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess(os.Args[0], []string{os.Args[0], "forkmany", strconv.Itoa(n), pidfile, "0"}, &os.ProcAttr{
			Env:   append(os.Environ(), "GO_WANT_HELPER_PROCESS=1", "GOSUP_SPAWN=bench/orphans"),
			Files: []*os.File{nil, nil, os.Stderr},
			Sys:   &syscall.SysProcAttr{Setpgid: true},
		})
	})
	if err != nil {
		b.Fatal(err)
	}
	leader := (<-exitC).Pid
	b.Cleanup(func() { _ = unix.Kill(-leader, unix.SIGKILL) })
	b.Run("others1000", func(b *testing.B) {
		for b.Loop() {
			if found := findLeftovers(proctree.Children(os.Getpid()), 1<<30, "GOSUP_SPAWN=bench/none", testReaper.Subscribed); len(found) != 0 {
				b.Fatalf("found %d", len(found))
			}
		}
	})
	b.Run("own1000", func(b *testing.B) {
		for b.Loop() {
			if found := findLeftovers(proctree.Children(os.Getpid()), leader, "GOSUP_SPAWN=bench/orphans", testReaper.Subscribed); len(found) != n {
				b.Fatalf("found %d, want %d", len(found), n)
			}
		}
	})
}

// A port clash between two running processes of this daemon is reported,
// not settled by killing the other one: only orphans are reclaimed.
func TestPortOfARunningProcessIsNotReclaimed(t *testing.T) {
	marker := "GOSUP_INSTANCE=test-" + t.Name()
	spec := helperSpec("serve", "0s", "200")
	spec.PortStart = freePortRange(t, 1)
	spec.StartRetries = 0
	a := newTestPool(t, spec).Procs()[0]
	b := newTestPool(t, spec).Procs()[0]
	a.DaemonEnv, b.DaemonEnv = []string{marker}, []string{marker}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	running := waitState(t, a, Running, 30*time.Second)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, b, Fatal, 30*time.Second)
	if want := fmt.Sprintf("port %d in use by pid %d", spec.PortStart, running.Pid); !strings.Contains(st.SpawnError, want) {
		t.Errorf("spawn error %q, want %q", st.SpawnError, want)
	}
	if now := a.Status(); now.State != Running || now.Pid != running.Pid {
		t.Errorf("the running process was disturbed: %s pid %d (was %d)", now.State, now.Pid, running.Pid)
	}
}

// A server that a running process started by double fork is an orphan of
// the daemon (re-parented to it, carrying its marker), but it belongs to a
// live spawn: another process clashing on its port is refused, not settled
// by killing it.
func TestDoubleForkedServerOfARunningProcessIsNotReclaimed(t *testing.T) {
	marker := "GOSUP_INSTANCE=test-" + t.Name()
	port := freePortRange(t, 1)
	bspec := helperSpec()
	bspec.Command = "/bin/sh -c '( \"$HELPER_BIN\" serve 0s 200 & ); exec sleep 3600'"
	bspec.Environment["HELPER_BIN"] = os.Args[0]
	bspec.Environment["PORT"] = strconv.Itoa(port)
	b := newTestPool(t, bspec).Procs()[0]
	b.DaemonEnv = []string{marker}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	brun := waitState(t, b, Running, 30*time.Second)
	server := portOrphan(t, port, "B's double-forked server")
	if server == brun.Pid {
		t.Fatalf("port held by B's child %d, not B's double-forked server", server)
	}
	aspec := helperSpec("serve", "0s", "200")
	aspec.PortStart = port
	aspec.StartRetries = 0
	a := newTestPool(t, aspec).Procs()[0]
	a.DaemonEnv = []string{marker}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, a, Fatal, 30*time.Second)
	if want := fmt.Sprintf("port %d in use by pid %d", port, server); !strings.Contains(st.SpawnError, want) {
		t.Errorf("spawn error %q, want %q", st.SpawnError, want)
	}
	if !alive(server) {
		t.Errorf("B's server %d was killed", server)
	}
	if now := b.Status(); now.State != Running || now.Pid != brun.Pid {
		t.Errorf("B was disturbed: %s pid %d (was %d)", now.State, now.Pid, brun.Pid)
	}
}

// portOrphan waits until something listens on port and returns its pid,
// which must be an orphan (no spawned child of the test reaper's), what
// the test calls it; it is killed when the test ends, if still alive.
func portOrphan(t *testing.T, port int, what string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for checkPort(port) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid, _ := portOwner(port)
	if pid <= 0 || testReaper.Subscribed(pid) {
		t.Fatalf("port held by %d, not %s", pid, what)
	}
	t.Cleanup(func() {
		if alive(pid) {
			_ = syscallKill(pid)
		}
	})
	return pid
}

// scriptSpec is the spec of a process that runs the #!/bin/sh script
// body, in which PIDFILE names a file for the pids of what it leaves
// running: those are killed when the test ends.
func scriptSpec(t *testing.T, body string) (spec *Spec, pidfile string) {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "script.sh")
	pidfile = filepath.Join(dir, "left.pids")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+strings.ReplaceAll(body, "PIDFILE", pidfile)), 0o755); err != nil {
		t.Fatal(err)
	}
	killAtEnd(t, pidfile)
	spec = helperSpec()
	spec.Command = script
	return spec, pidfile
}

// appIgnoringTerm starts a process whose #!/bin/sh wrapper runs, in the
// background, an app that ignores SIGTERM: stopping the process ends the
// wrapper, and the app is left for the sweep. It returns the process
// (RUNNING) and the app's pid.
func appIgnoringTerm(t *testing.T, stopWait int) (*Process, int) {
	t.Helper()
	spec, pidfile := scriptSpec(t, "\"$HELPER_BIN\" ignore-term &\necho $! > PIDFILE\nwait\n")
	spec.Environment["HELPER_BIN"] = os.Args[0]
	spec.StopWaitSecs = stopWait
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	app := readPids(t, pidfile, 1)[0]
	// The app says it ignores TERM once it does.
	logf := p.Status().Stdout
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(logf); strings.Contains(string(b), "ignoring TERM") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the app never said it ignores TERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p, app
}

// A signal request while the leftovers of a stopped child are being
// stopped finds no child: it is refused with ErrNotRunning, not taken for
// a bug in the state machine.
func TestSignalWhileLeftoversAreStopped(t *testing.T) {
	p, app := appIgnoringTerm(t, 3600)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := p.Wait(ctx, func(s Status) bool { return s.State == Stopping && s.Pid == 0 })
	if err != nil {
		t.Fatalf("the wrapper did not exit: %s pid %d (%v)", st.State, st.Pid, err)
	}
	if st.Reason != ReasonSweeping {
		t.Errorf("reason %q, want %q", st.Reason, ReasonSweeping)
	}
	if err := p.Signal(unix.SIGHUP); err != ErrNotRunning {
		t.Errorf("signal while the leftovers are stopped: %v, want %v", err, ErrNotRunning)
	}
	if n := p.Status().IllegalMoves; n != 0 {
		t.Errorf("IllegalMoves = %d", n)
	}
	// The test ends the wait for the app itself.
	_ = syscallKill(app)
	waitState(t, p, Stopped, 30*time.Second)
}

// A leftover that ignores the stop signal is SIGKILLed, and the process
// is STOPPED only once it is gone.
func TestLeftoverIgnoringTheStopSignalIsKilled(t *testing.T) {
	p, app := appIgnoringTerm(t, 1)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Stopped, 60*time.Second)
	if alive(app) {
		t.Fatalf("STOPPED, but the app %d that ignores TERM lives", app)
	}
	if st.ExitDesc != "terminated by SIGTERM" {
		t.Errorf("the wrapper: %s, want terminated by SIGTERM", st.ExitDesc)
	}
}

// A respawn waits in STARTING for the leftovers of the last run; a stop
// then drops the spawn, and the process is STOPPED once they are gone.
func TestStopWhileTheRespawnWaitsForLeftovers(t *testing.T) {
	// Three sleeps that ignore TERM (an ignored signal stays ignored
	// across fork and exec), then exit 3.
	spec, pidfile := scriptSpec(t, "trap '' TERM\nfor i in 1 2 3; do sleep 3600 & echo $! >> PIDFILE; done\nexit 3\n")
	spec.AutoRestart = RestartAlways
	spec.BackoffMax = 0
	// The leftovers are never SIGKILLed during the test: the respawn comes
	// due while they are there, and the stop finds them there however
	// slow the machine; the test ends them itself.
	spec.StopWaitSecs = 3600
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := p.Wait(ctx, func(s Status) bool { return s.State == Starting && s.Reason == ReasonSweepFirst })
	if err != nil {
		t.Fatalf("no respawn waiting for the leftovers: %s %q (%v)", st.State, st.Reason, err)
	}
	left := readPids(t, pidfile, 3)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.State != Stopping || st.Reason != ReasonSweeping {
		t.Fatalf("want STOPPING while the leftovers are stopped, have %s %q", st.State, st.Reason)
	}
	for _, pid := range left {
		_ = syscallKill(pid)
	}
	st = waitState(t, p, Stopped, 60*time.Second)
	if n := aliveOf(left); len(n) > 0 {
		t.Fatalf("STOPPED, but leftovers %v live", n)
	}
	if st.Spawns != 1 {
		t.Errorf("spawned %d times; the stop should have dropped the waiting spawn", st.Spawns)
	}
}

// startTracked starts a helper in mode args through the test reaper (in
// its own group) and returns it as a leftover, with its exit channel.
func startTracked(t *testing.T, args ...string) (leftover, <-chan reaper.Exit) {
	t.Helper()
	proc, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess(os.Args[0], append([]string{os.Args[0]}, args...), &os.ProcAttr{
			Env:   append(os.Environ(), "GO_WANT_HELPER_PROCESS=1"),
			Files: []*os.File{nil, os.Stdout, os.Stderr},
			Sys:   &syscall.SysProcAttr{Setpgid: true},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	// The exit channel holds the exit (buffered): the test may take it.
	t.Cleanup(func() { _ = proc.Kill() })
	st, err := proctreeStat(proc.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return leftover{pid: st.Pid, start: st.Start, pgrp: st.Pgrp}, exitC
}

// waitFileHolds waits for path to hold want.
func waitFileHolds(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never held %q", path, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A process that a sweep finds after its first round gets the stop signal
// too (and SIGKILL only if it does not stop in time), and a sweep looks
// again after finding nothing once, since a look can miss a child.
func TestSweepStopsLateFinds(t *testing.T) {
	dir := t.TempDir()
	first, _ := startTracked(t, "sleep")
	late, lateExit := startTracked(t, "term-log", filepath.Join(dir, "late"))
	waitFileHolds(t, filepath.Join(dir, "late"), "ready")
	missed, missedExit := startTracked(t, "term-log", filepath.Join(dir, "missed"))
	waitFileHolds(t, filepath.Join(dir, "missed"), "ready")
	var looks atomic.Int32
	find := func() []leftover {
		switch looks.Add(1) {
		case 1: // after the first round: a process it had not seen
			return []leftover{late}
		case 2: // an empty look, as when a sibling's exit hid a child
			return nil
		case 3:
			return []leftover{missed}
		}
		return nil
	}
	res := sweep(context.Background(), []leftover{first}, find, unix.SIGTERM, 0, 0, 60*time.Second)
	for name, exitC := range map[string]<-chan reaper.Exit{"late": lateExit, "missed": missedExit} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		select {
		case ex := <-exitC:
			if !strings.Contains(string(b), "got TERM") {
				t.Errorf("the %s find never got the stop signal (%s): %q", name, ex.String(), b)
			}
		case <-time.After(30 * time.Second): // the sweep saw it exit: the reaper tells soon
			t.Errorf("the sweep returned, but the %s find lives: %q", name, b)
		}
	}
	if res.found != 3 || res.killed != 0 || res.left != 0 {
		t.Errorf("sweep: %+v, want 3 found, none killed or left", res)
	}
}

// A pidfd that cannot be opened (EMFILE) does not mean the process is
// gone: the sweep reports it as left, with the error.
func TestSweepCountsWhatItCannotOpen(t *testing.T) {
	cmd := exec.Command(os.Args[0], "sweep-emfile")
	cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "left=1 ") || !strings.Contains(string(out), "too many open files") {
		t.Errorf("sweep under EMFILE: %s; want the process counted as left, with the error", out)
	}
}

// A requested stop keeps its deadline: a wrapper that ignores the stop
// signal is SIGKILLed stopwaitsecs after the stop began, and what it left
// is SIGKILLed then too, not given stopwaitsecs more from the wrapper's
// exit.
func TestStopDeadlineHoldsForTheLeftovers(t *testing.T) {
	const stopWait = 10
	// An ignored signal stays ignored in the children: neither the
	// wrapper nor its sleep stops on TERM.
	spec, pidfile := scriptSpec(t, "trap '' TERM\nsleep 3600 &\necho $! > PIDFILE\nwait\n")
	spec.StopWaitSecs = stopWait
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	app := readPids(t, pidfile, 1)[0]
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Stopped, 60*time.Second)
	if st.ExitDesc != "terminated by SIGKILL" {
		t.Errorf("the wrapper: %s, want terminated by SIGKILL", st.ExitDesc)
	}
	if alive(app) {
		t.Fatalf("STOPPED, but the wrapper's sleep %d lives", app)
	}
	// The wrapper was SIGKILLed at the deadline: STOPPED follows its exit
	// at once (a SIGKILL and a reap), not stopwaitsecs later.
	if d := time.Since(st.StoppedAt); d >= stopWait*time.Second {
		t.Errorf("STOPPED %s after the wrapper's exit: its leftovers had a fresh stopwaitsecs (%d s)", d.Round(time.Millisecond), stopWait)
	}
}

// A thread group leader that has exited while its other threads run is a
// zombie that is not gone: it is a leftover, and so is what it started.
func TestZombieLeaderWithLiveThreadsIsALeftover(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pids")
	proc, exitC, err := testReaper.Start(func() (*os.Process, error) {
		return os.StartProcess("/bin/sh", []string{"sh", "-c", `"$HELPER_BIN" zombie-leader "$PIDFILE" &`}, &os.ProcAttr{
			Env:   append(os.Environ(), "GO_WANT_HELPER_PROCESS=1", "HELPER_BIN="+os.Args[0], "PIDFILE="+pidfile),
			Files: []*os.File{nil, os.Stdout, os.Stderr},
			Sys:   &syscall.SysProcAttr{Setpgid: true},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	leader := proc.Pid
	<-exitC
	t.Cleanup(func() { _ = unix.Kill(-leader, unix.SIGKILL) })
	pids := readPids(t, pidfile, 2)
	zombie, sleep := pids[0], pids[1]
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := proctreeStat(zombie)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the helper's main thread never exited: state %c", st.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(readTasks(zombie), " "); n < 2 {
		t.Fatalf("the helper %d has %d threads, want its leader and more", zombie, n)
	}
	found := findLeftovers(proctree.Children(os.Getpid()), leader, "", testReaper.Subscribed)
	var got []int
	for _, l := range found {
		got = append(got, l.pid)
	}
	if !slices.Contains(got, zombie) || !slices.Contains(got, sleep) {
		t.Errorf("leftovers %v, want the zombie leader %d and its sleep %d", got, zombie, sleep)
	}
}

// readTasks lists pid's threads, space-separated.
func readTasks(pid int) string {
	es, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Name() + " ")
	}
	return b.String()
}

// killasgroup: once the leader of a stopped process is gone, what it left
// in its group is SIGKILLed at once (through pidfds, never by a group id
// that may have been freed and reused), not given stopwaitsecs.
func TestKillAsGroupKillsTheGroupWhenTheLeaderIsGone(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "wrapper.sh")
	pidfile := filepath.Join(dir, "app.pid")
	// The app ignores TERM; the wrapper exits on it.
	body := "#!/bin/sh\n(trap '' TERM; exec sleep 3600) &\necho $! > " + pidfile + "\nwait\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	killAtEnd(t, pidfile)
	spec := helperSpec()
	spec.Command = script
	spec.KillAsGroup = true
	spec.StopWaitSecs = 3600 // never reached: the test would time out
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	app := readPids(t, pidfile, 1)[0]
	// The subshell has exec'd sleep once its command line says so.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(app) + "/cmdline"); strings.HasPrefix(string(b), "sleep\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the app never ran sleep")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Stopped, 60*time.Second)
	if st.ExitDesc != "terminated by SIGTERM" {
		t.Errorf("the wrapper: %s, want terminated by SIGTERM", st.ExitDesc)
	}
	if alive(app) {
		t.Fatalf("STOPPED, but the app %d lives", app)
	}
}
