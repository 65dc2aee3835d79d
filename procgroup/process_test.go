package procgroup

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosup/gosup/logtail"
)

func TestStartsecsThenRunning(t *testing.T) {
	spec := helperSpec("sleep")
	spec.StartSecs = 1
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.State != Starting || st.Pid == 0 {
		t.Fatalf("right after start: want STARTING with a pid, have %s pid %d", st.State, st.Pid)
	}
	st := waitState(t, p, Running, 30*time.Second)
	if up := time.Since(st.StartedAt); up < time.Second {
		t.Errorf("RUNNING after %s, before startsecs = 1", up)
	}
	if err := p.Start(); err != ErrAlreadyStarted {
		t.Errorf("second start: want ErrAlreadyStarted, have %v", err)
	}
}

func TestBackoffThenFatal(t *testing.T) {
	spec := helperSpec("exit", "3")
	spec.StartSecs = 1
	spec.StartRetries = 2
	p := newTestPool(t, spec).Procs()[0]
	var mu sync.Mutex
	var seen []State
	go func() {
		ch := p.Changed()
		for {
			select {
			case <-ch:
			case <-p.Done():
				return
			}
			ch = p.Changed()
			mu.Lock()
			seen = append(seen, p.Status().State)
			mu.Unlock()
		}
	}()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Fatal, 10*time.Second)
	if st.Spawns != 3 {
		t.Errorf("want 3 spawns (1 + startretries 2), have %d", st.Spawns)
	}
	if st.ExitStatus == nil || *st.ExitStatus != 3 {
		t.Errorf("want exit status 3, have %v", st.ExitStatus)
	}
	if !strings.Contains(st.Reason, "too many") {
		t.Errorf("reason %q does not say it gave up", st.Reason)
	}
	mu.Lock()
	defer mu.Unlock()
	if !containsState(seen, Backoff) {
		t.Errorf("never saw BACKOFF: %v", seen)
	}
}

func containsState(ss []State, s State) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestAutorestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    AutoRestart
		code    string
		restart bool
	}{
		{"unexpected/expected code", RestartUnexpected, "0", false},
		{"unexpected/unexpected code", RestartUnexpected, "3", true},
		{"true/expected code", RestartAlways, "0", true},
		{"false/unexpected code", RestartNever, "3", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := helperSpec("exitafter", "100ms", tc.code)
			spec.AutoRestart = tc.mode
			p := newTestPool(t, spec).Procs()[0]
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			st, err := p.Wait(ctx, func(s Status) bool { return s.Spawns >= 2 })
			if tc.restart && err != nil {
				t.Fatalf("not restarted: %+v", st)
			}
			if !tc.restart {
				if err == nil {
					t.Fatalf("restarted, want not: %+v", st)
				}
				if st.State != Exited {
					t.Errorf("want EXITED, have %s", st.State)
				}
			}
		})
	}
}

func TestCrashLoopFloor(t *testing.T) {
	spec := helperSpec("exit", "1")
	spec.AutoRestart = RestartAlways
	g := newTestPool(t, spec)
	p := g.Procs()[0]
	spawnTimes := recordSpawns(p)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.Wait(ctx, func(s Status) bool { return s.Spawns >= 3 }); err != nil {
		t.Fatal(err)
	}
	spawns := spawnTimes()
	for i := 1; i < len(spawns); i++ {
		if gap := spawns[i].Sub(spawns[i-1]); gap < DefaultFloor {
			t.Errorf("spawn %d came %s after the previous one; the floor is %s", i, gap, DefaultFloor)
		}
	}
}

// A process that ran longer than the floor and crashes once is respawned
// without a backoff wait: the decision says so (the plain reason, and a
// respawn due within the first-respawn spread of the exit being handled).
// How long the respawn then takes is the machine's business, not asserted.
func TestRespawnAfterCrashIsImmediate(t *testing.T) {
	spec := helperSpec("sleep")
	p := newTestPool(t, spec).Procs()[0]
	type exited struct {
		st  Status
		now time.Time
	}
	exits := make(chan exited, 4)
	p.OnState = func(p *Process, to State) {
		if to == Exited {
			select {
			case exits <- exited{p.Status(), time.Now()}:
			default: // only the first is looked at
			}
		}
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Running, 30*time.Second)
	// Older than the floor, so the floor adds nothing: wait for it on the
	// status's own clock rather than sleeping a fixed time.
	time.Sleep(time.Until(st.StartedAt.Add(DefaultFloor)))
	if err := syscallKill(st.Pid); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	after, err := p.Wait(ctx, func(s Status) bool { return s.State == Running && s.Pid != st.Pid })
	if err != nil {
		t.Fatalf("not respawned: %+v", after)
	}
	ex := <-exits
	if ex.st.Reason != ReasonUnexpected {
		t.Errorf("reason %q; want %q, no backoff", ex.st.Reason, ReasonUnexpected)
	}
	// RespawnAt was set from a clock read before ex.now, so this holds on
	// any machine, however slow, unless the decision added a wait.
	if wait := ex.st.RespawnAt.Sub(ex.now); !ex.st.RespawnAt.IsZero() && wait > 0 {
		t.Errorf("respawn due %s after the exit was handled; want no wait", wait)
	}
	if after.Restarts != 1 {
		t.Errorf("want restarts 1, have %d", after.Restarts)
	}
	if *after.ExitStatus != 128+9 {
		t.Errorf("want exit status 137 (SIGKILL), have %d", *after.ExitStatus)
	}
}

func TestStopAsGroupKillsGrandchild(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "gc.pid")
	spec := helperSpec("grandchild", pidfile)
	spec.StopAsGroup = true
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	var gc int
	deadline := time.Now().Add(30 * time.Second)
	for gc == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(pidfile)
		gc, _ = strconv.Atoi(string(b))
		time.Sleep(10 * time.Millisecond)
	}
	if !alive(gc) {
		t.Fatalf("grandchild %d not running", gc)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 30*time.Second)
	deadline = time.Now().Add(30 * time.Second)
	for alive(gc) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(gc) {
		t.Errorf("grandchild %d survived the group stop", gc)
	}
}

func TestStopWaitSecsThenKill(t *testing.T) {
	spec := helperSpec("ignore-term")
	spec.StopWaitSecs = 1
	spec.StdoutLogfile = filepath.Join(t.TempDir(), "out.log")
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	// The helper says so once it ignores TERM: no time assumed enough.
	waitFile(t, spec.StdoutLogfile, "ignoring TERM\n")
	start := time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.State != Stopping {
		t.Errorf("want STOPPING right after stop, have %s", st.State)
	}
	st := waitState(t, p, Stopped, 30*time.Second)
	took := time.Since(start)
	if took < time.Second {
		t.Errorf("stopped after %s, before stopwaitsecs = 1", took)
	}
	if st.ExitDesc != "terminated by SIGKILL" {
		t.Errorf("want terminated by SIGKILL, have %q", st.ExitDesc)
	}
}

func TestOrphansAreReaped(t *testing.T) {
	spec := helperSpec("orphans", "20")
	spec.AutoRestart = RestartNever
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Exited, 20*time.Second)
	if *st.ExitStatus != 0 {
		t.Fatalf("helper failed: %+v", st)
	}
	deadline := time.Now().Add(30 * time.Second)
	var z []int
	for time.Now().Before(deadline) {
		if z = zombiesOf(os.Getpid()); len(z) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("zombies left with ppid %d: %v", os.Getpid(), z)
}

func zombiesOf(ppid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if f[0] == "Z" && f[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

func TestSpawnErrorsEndFatalAndOthersRun(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := newTestPool(t, helperSpec("sleep")).Procs()[0]
	if err := good.Start(); err != nil {
		t.Fatal(err)
	}
	goodSt := waitState(t, good, Running, 30*time.Second)
	for _, tc := range []struct {
		name string
		edit func(*Spec)
		want string
	}{
		{"not found", func(s *Spec) { s.Command = "gosup-no-such-command" }, "executable file not found"},
		{"missing path", func(s *Spec) { s.Command = "/nonexistent/bin/app" }, "no such file"},
		{"not executable", func(s *Spec) { s.Command = notExec }, "not executable"},
		{"bad directory", func(s *Spec) { s.Directory = filepath.Join(dir, "nope") }, "no such file or directory"},
		{"bad user", func(s *Spec) { s.User = "gosup-no-such-user" }, "gosup-no-such-user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := helperSpec("sleep")
			spec.StartRetries = 0
			tc.edit(spec)
			p := newTestPool(t, spec).Procs()[0]
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			st := waitState(t, p, Fatal, 30*time.Second)
			if !strings.Contains(st.SpawnError, tc.want) {
				t.Errorf("spawn error %q does not contain %q", st.SpawnError, tc.want)
			}
		})
	}
	if st := good.Status(); st.State != Running || st.Pid != goodSt.Pid {
		t.Errorf("the healthy process was disturbed: %+v", st)
	}
}

func TestPortInUseIsASpawnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	spec := helperSpec("sleep")
	spec.PortStart = port
	spec.StartRetries = 0
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, p, Fatal, 30*time.Second)
	want := fmt.Sprintf("port %d in use by pid %d", port, os.Getpid())
	if !strings.Contains(st.SpawnError, want) {
		t.Errorf("spawn error %q does not contain %q", st.SpawnError, want)
	}
	if st.Spawns != 0 {
		t.Errorf("spawned %d times onto a busy port", st.Spawns)
	}
}

func TestPortAndEnvironmentReachTheChild(t *testing.T) {
	spec := helperSpec("sleep")
	spec.NumProcs = 2
	spec.ProcessName = "w%(process_num)d"
	spec.PortStart = freePortRange(t, 2)
	spec.Environment["APP_MODE"] = "%(process_num)d-of-%(numprocs)d"
	spec.Ready = ReadyStartSecs // the helper does not listen
	g := newTestPool(t, spec)
	for i, p := range g.Procs() {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		st := waitState(t, p, Running, 30*time.Second)
		vars := environ(t, st.Pid)
		for _, want := range []string{
			"PORT=" + strconv.Itoa(spec.PortStart+i),
			fmt.Sprintf("APP_MODE=%d-of-2", i),
			"SUPERVISOR_PROCESS_NAME=w" + strconv.Itoa(i),
			"GOSUP_PROCESS=t:w" + strconv.Itoa(i),
		} {
			if !containsString(vars, want) {
				t.Errorf("%s: environment lacks %s", st.FullName(), want)
			}
		}
		if pgid, _ := syscallGetpgid(st.Pid); pgid != st.Pid {
			t.Errorf("child %d is not its own process group leader (pgid %d)", st.Pid, pgid)
		}
	}
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// freePortRange finds n consecutive free ports.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for base := 20000 + os.Getpid()%20000; base < 60000; base += n {
		ok := true
		for i := range n {
			if checkPort(base+i) != nil {
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

func TestOutputCaptureAndRedirect(t *testing.T) {
	dir := t.TempDir()
	spec := helperSpec("echo", "to-stdout", "to-stderr")
	spec.StdoutLogfile = filepath.Join(dir, "out.log")
	spec.StderrLogfile = filepath.Join(dir, "err.log")
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	waitFile(t, spec.StdoutLogfile, "to-stdout\n")
	waitFile(t, spec.StderrLogfile, "to-stderr\n")

	spec2 := helperSpec("echo", "one", "two")
	spec2.StdoutLogfile = filepath.Join(dir, "both.log")
	spec2.RedirectStderr = true
	p2 := newTestPool(t, spec2).Procs()[0]
	if err := p2.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p2, Running, 30*time.Second)
	waitFile(t, spec2.StdoutLogfile, "one\ntwo\n")
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var have []byte
	for time.Now().Before(deadline) {
		have, _ = os.ReadFile(path)
		if string(have) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s: want %q, have %q", path, want, have)
}

func TestLogRotationKeepsEveryByte(t *testing.T) {
	dir := t.TempDir()
	const total = 300 << 10
	spec := helperSpec("spam", strconv.Itoa(total))
	spec.StdoutLogfile = filepath.Join(dir, "spam.log")
	spec.StdoutLogfileMaxBytes = 64 << 10
	spec.StdoutLogfileBackups = 10
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	var sum int64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		sum = 0
		files, _ := filepath.Glob(filepath.Join(dir, "spam.log*"))
		for _, f := range files {
			fi, err := os.Stat(f)
			if err == nil {
				sum += fi.Size()
			}
		}
		if sum == total {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sum != total {
		t.Fatalf("want %d bytes over the log and its backups, have %d", total, sum)
	}
	for _, f := range []string{"spam.log.1", "spam.log.4"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Errorf("backup %s missing: %v", f, err)
		} else if fi.Size() > 64<<10 || fi.Size() < 64<<10-100 {
			t.Errorf("backup %s has %d bytes; want maxbytes (65536) less at most one partial line", f, fi.Size())
		}
	}
	tail, err := logtail.Lines(spec.StdoutLogfile, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(tail), "\n"); n > 2 {
		t.Errorf("tail -n 2 gave %d lines", n)
	}
}

func TestRotatorBackupsLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.log")
	r, err := newRotator(path, 10, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 5 {
		if _, err := fmt.Fprintf(r, "chunk %d..\n", i); err != nil { // 10 bytes each: one rotation per write
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{"r.log.1": "chunk 4..\n", "r.log.2": "chunk 3..\n"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(path), name))
		if err != nil || string(b) != want {
			t.Errorf("%s: want %q, have %q (%v)", name, want, b, err)
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Errorf("kept a third backup with backups = 2")
	}
}

// A process that keeps exiting soon after reaching RUNNING is respawned at
// once the first time (after the 1 s floor, as it lived less), then after
// 1 s, 2 s, 4 s ... (-10 % at most): the waits between spawns grow, and
// status says why it waits. startsecs = 0 makes every spawn RUNNING before
// its exit can be handled, so a slow machine cannot turn an exit into a
// start failure; timing is only bounded from below, which a slow machine
// cannot break.
func TestCrashLoopBacksOff(t *testing.T) {
	t.Parallel()
	const up = 200 * time.Millisecond
	spec := helperSpec("exitafter", up.String(), "3")
	spec.StartSecs = 0
	p := newTestPool(t, spec).Procs()[0]
	spawnTimes := recordSpawns(p)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := p.Wait(ctx, func(s Status) bool { return s.State == Exited && strings.Contains(s.Reason, "3 times in a row") })
	if err != nil {
		t.Fatalf("no backoff after 3 exits in a row: %d spawns, %+v", len(spawnTimes()), st)
	}
	if !strings.Contains(st.Reason, "exited 3 times in a row, restarting in ") {
		t.Errorf("reason: %q", st.Reason)
	}
	if _, err := p.Wait(ctx, func(s Status) bool { return s.Spawns >= 4 }); err != nil {
		t.Fatal(err)
	}
	spawns := spawnTimes()
	// spawn 0 → 1: the first exit respawns after the floor (each run lives
	// at least up, less than the floor); 1 → 2: up + 1 s; 2 → 3: up + 2 s.
	// The jitter takes at most 10 % off a wait.
	for i, wait := range []time.Duration{0, time.Second, 2 * time.Second} {
		least := max(DefaultFloor, up+wait*9/10)
		if gap := spawns[i+1].Sub(spawns[i]); gap < least {
			t.Errorf("spawn %d came %s after spawn %d; want at least %s", i+1, gap, i, least)
		}
	}
}
