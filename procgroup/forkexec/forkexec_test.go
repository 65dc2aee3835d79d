package forkexec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a child that reports on itself
// (reportSelf), or a Spawner of its own (spawnReport).
const helperEnv = "FORKEXEC_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "report":
		os.Exit(reportSelf())
	case "spawn":
		os.Exit(spawnReport())
	}
	os.Exit(m.Run())
}

// reportSelf writes, on stdout, one line per fact about the process: its
// open descriptors, whether it leads its process group, its umask, its
// directory, its soft and hard RLIMIT_NOFILE and what it read on stdin.
// It makes system calls only, to open nothing the runtime would not.
func reportSelf() int {
	dir, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 2
	}
	var fds []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(dir, buf)
		if err != nil {
			return 2
		}
		if n == 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			// The runtime keeps its cgroup's CPU limit files open.
			l, _ := os.Readlink("/proc/self/fd/" + name)
			if name != strconv.Itoa(dir) && !strings.HasPrefix(l, "/sys/fs/cgroup/") {
				fds = append(fds, name)
			}
		}
	}
	unix.Close(dir)
	slices.Sort(fds)
	mask := unix.Umask(0)
	wd, _ := os.Getwd()
	var rl unix.Rlimit
	unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &rl)
	in, _ := io.ReadAll(os.Stdin)
	groups, _ := unix.Getgroups()
	var sig int32
	unix.Syscall(unix.SYS_PRCTL, unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0)
	fmt.Printf("fds %s\nleader %t\numask %03o\ndir %s\nnofile %d %d\nstdin %q\nids %d %d %v\npdeathsig %d\n",
		strings.Join(fds, ","), unix.Getpgrp() == os.Getpid(), mask, wd, rl.Cur, rl.Max, in,
		os.Getuid(), os.Getgid(), groups, sig)
	return 0
}

// readReport reads a report from r until EOF: every copy of the pipe's
// write end closed. One left in the daemon fails the read at its deadline.
func readReport(t *testing.T, r *os.File) report {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rep := report{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		rep[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the child's report: %v (is a copy of its stdout held?)", err)
	}
	return rep
}

// helperEnviron is this process's environment making a child the helper
// mode names (an inherited mode replaced: the first of two wins).
func helperEnviron(mode string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, helperEnv+"=") })
	return append(env, helperEnv+"="+mode)
}

// report is what reportSelf said.
type report map[string]string

// run starts the test binary as reportSelf with a, stdin from a file
// holding "hello", and returns its report once it has exited.
func run(t *testing.T, s *Spawner, a Attr) report {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return runExe(t, s, exe, a)
}

// runExe is run with the test binary at exe. A nil a.Env is the test
// process's environment, which must then make the child reportSelf.
func runExe(t *testing.T, s *Spawner, exe string, a Attr) report {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdin, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if a.Files == ([3]*os.File{}) {
		a.Files = [3]*os.File{stdin, w, os.Stderr}
	} else {
		a.Files[1] = w
	}
	if a.Env == nil && os.Getenv(helperEnv) != "report" {
		a.Env = helperEnviron("report")
	}
	p, err := s.Start(exe, []string{exe}, &a)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	rep := readReport(t, r)
	st, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Success() {
		t.Fatalf("child: %v, report %v", st, rep)
	}
	return rep
}

func newSpawner(t *testing.T, fast bool) *Spawner {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.slow != "" {
		t.Fatalf("no fast path on this machine: %s", s.slow)
	}
	if !fast {
		s.slow = "os.StartProcess asked for by the test"
	}
	return s
}

// TestChildGetsOnlyItsFiles: the child's table is its stdin, stdout and
// stderr, whatever the daemon holds, below the slots or above them; on the
// fast path even what is not close-on-exec (os.StartProcess passes that
// on). The daemon's own 0-2 are untouched.
func TestChildGetsOnlyItsFiles(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%t", fast), func(t *testing.T) {
			var before [3]unix.Stat_t
			for fd := range before {
				if err := unix.Fstat(fd, &before[fd]); err != nil {
					t.Fatal(err)
				}
			}
			// Descriptors with close-on-exec and, on the fast path,
			// without: below the slots (the child's table starts as a
			// copy of those) and above them.
			flags := unix.O_RDONLY | unix.O_CLOEXEC
			if fast {
				flags = unix.O_RDONLY
			}
			held := make([]int, 0, 40)
			hold := func() {
				for range 20 {
					fd, err := unix.Open(os.DevNull, flags, 0)
					if err != nil {
						t.Fatal(err)
					}
					held = append(held, fd)
				}
			}
			hold()
			s := newSpawner(t, fast)
			if held[0] >= s.keep {
				t.Fatalf("descriptor %d is not below the slots (%v)", held[0], s.slots)
			}
			hold()
			defer func() {
				for _, fd := range held {
					unix.Close(fd)
				}
			}()
			rep := run(t, s, Attr{Umask: -1})
			switch {
			case fast && rep["fds"] != "0,1,2":
				t.Errorf("the child holds descriptors %s, want 0,1,2", rep["fds"])
			case !fast:
				// os.StartProcess passes on what the test process
				// inherited without close-on-exec, not what it holds.
				for _, fd := range held {
					if slices.Contains(strings.Split(rep["fds"], ","), strconv.Itoa(fd)) {
						t.Errorf("the child holds descriptor %d, close-on-exec in the parent", fd)
					}
				}
			}
			if rep["stdin"] != `"hello"` {
				t.Errorf("the child read %s on stdin, want \"hello\"", rep["stdin"])
			}
			if rep["leader"] != "true" {
				t.Error("the child does not lead a process group of its own")
			}
			for fd := range before {
				var now unix.Stat_t
				if err := unix.Fstat(fd, &now); err != nil || now.Dev != before[fd].Dev || now.Ino != before[fd].Ino {
					t.Errorf("the parent's descriptor %d changed with the spawn", fd)
				}
			}
			forks, fallbacks := s.Counts()
			if fast && (forks != 1 || fallbacks != 0) || !fast && (forks != 0 || fallbacks != 1) {
				t.Errorf("forks %d, fallbacks %d: the spawn did not take the path under test", forks, fallbacks)
			}
		})
	}
}

// TestSlotsReleased: once Start returns, the parent holds no copy of the
// child's files: the slots hold /dev/null again (and run's read of the
// child's stdout ends, at EOF, within its deadline).
func TestSlotsReleased(t *testing.T) {
	s := newSpawner(t, true)
	var null unix.Stat_t
	if err := unix.Fstat(s.null, &null); err != nil {
		t.Fatal(err)
	}
	run(t, s, Attr{Umask: -1})
	for i, fd := range s.slots {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Rdev != null.Rdev || st.Ino != null.Ino {
			t.Errorf("slot %d (descriptor %d) is not /dev/null after a spawn", i, fd)
		}
	}
}

// TestAttributes: umask, directory and environment reach the child on
// both paths, and the daemon's umask stays its own on the fast one.
func TestAttributes(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%t", fast), func(t *testing.T) {
			s := newSpawner(t, fast)
			dir := t.TempDir()
			mine := unix.Umask(0o022)
			unix.Umask(mine)
			rep := run(t, s, Attr{Umask: 0o077, Dir: dir})
			if rep["umask"] != "077" {
				t.Errorf("the child's umask is %s, want 077", rep["umask"])
			}
			if rep["dir"] != dir {
				t.Errorf("the child runs in %s, want %s", rep["dir"], dir)
			}
			if now := unix.Umask(mine); now != mine {
				t.Errorf("the daemon's umask is %03o after the spawn, was %03o", now, mine)
			}
			rep = run(t, s, Attr{Umask: -1})
			if want := fmt.Sprintf("%03o", mine); rep["umask"] != want {
				t.Errorf("the child's umask is %s, want the daemon's %s", rep["umask"], want)
			}
		})
	}
}

// TestFailures: what the child fails at is said, as os.StartProcess says
// it, and the failed child is reaped.
func TestFailures(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name, path string
		attr       Attr
		want       string
		is         error
	}{
		{"no program", missing, Attr{Umask: -1}, "fork/exec " + missing + ": no such file or directory", fs.ErrNotExist},
		{"no directory", exe, Attr{Umask: -1, Dir: missing}, "chdir: no such file or directory", fs.ErrNotExist},
		{"not executable", "/etc/passwd", Attr{Umask: -1}, "fork/exec /etc/passwd: permission denied", fs.ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSpawner(t, true)
			p, err := s.Start(tc.path, []string{tc.path}, &tc.attr)
			if err == nil {
				p.Kill()
				p.Wait()
				t.Fatal("started")
			}
			var pe *os.PathError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Errorf("error %q (%T), want a *os.PathError saying %q", err, err, tc.want)
			}
			var ws unix.WaitStatus
			if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil); err != unix.ECHILD {
				t.Errorf("wait4 after the failed spawn: pid %d, %v; want ECHILD (the child reaped)", pid, err)
			}
		})
	}
}

// spawnReport is a daemon of its own: it starts a shell that reports its
// RLIMIT_NOFILE (a Go child would report the limit its runtime raised)
// and adds a line saying which path the spawn took.
func spawnReport() int {
	s, err := New()
	if err != nil {
		return 2
	}
	argv := []string{"/bin/sh", "-c", "echo nofile $(ulimit -Sn) $(ulimit -Hn)"}
	p, err := s.Start(argv[0], argv, &Attr{Umask: -1, Files: [3]*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := p.Wait(); err != nil {
		return 2
	}
	forks, fallbacks := s.Counts()
	fmt.Printf("forks %d\nfallbacks %d\nslow %s\n", forks, fallbacks, s.Slow())
	return 0
}

// TestNofileLimit: the child's RLIMIT_NOFILE is what os.StartProcess
// gives it. A daemon started with a soft limit below its hard limit has
// had it raised by the Go runtime: it falls back to os.StartProcess,
// which gives the child the limit back. A daemon started with the two
// alike (systemd's LimitNOFILE=) forks, and the child inherits them.
func TestNofileLimit(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Max < 1024 {
		t.Fatalf("RLIMIT_NOFILE's hard limit is %d: the test needs 1024", rl.Max)
	}
	for _, tc := range []struct {
		soft      uint64
		wantForks string
	}{{512, "0"}, {rl.Max, "1"}} {
		t.Run(fmt.Sprintf("soft=%d", tc.soft), func(t *testing.T) {
			rep := spawnWithSoftLimit(t, tc.soft)
			if want := fmt.Sprintf("%d %d", tc.soft, rl.Max); rep["nofile"] != want {
				t.Errorf("the child's RLIMIT_NOFILE is %s, want %s", rep["nofile"], want)
			}
			if rep["forks"] != tc.wantForks {
				t.Errorf("forks %s (fallbacks %s), want %s", rep["forks"], rep["fallbacks"], tc.wantForks)
			}
			// Slow says why, for the daemon's log.
			if raised := tc.wantForks == "0"; raised != strings.Contains(rep["slow"], "RLIMIT_NOFILE") || !raised && rep["slow"] != "" {
				t.Errorf("Slow() = %q", rep["slow"])
			}
		})
	}
}

// spawnWithSoftLimit runs spawnReport in a process started with soft as
// its soft RLIMIT_NOFILE. The test process's own limit is lowered only
// while it forks that process (with prlimit, which the Go runtime does
// not track).
func spawnWithSoftLimit(t *testing.T, soft uint64) report {
	t.Helper()
	var rl unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &rl); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	low := unix.Rlimit{Cur: soft, Max: rl.Max}
	if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Fatal(err)
	}
	p, err := os.StartProcess(exe, []string{exe}, &os.ProcAttr{
		Env:   helperEnviron("spawn"),
		Files: []*os.File{nil, w, os.Stderr},
	})
	if lerr := unix.Prlimit(0, unix.RLIMIT_NOFILE, &rl, nil); lerr != nil {
		t.Fatal(lerr)
	}
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	rep := readReport(t, r)
	if st, err := p.Wait(); err != nil || !st.Success() {
		t.Fatalf("spawning process: %v %v", st, err)
	}
	return rep
}

// TestNilFilesAndEnv: a nil file is closed in the child; a nil
// environment is the daemon's. A shell reports (a Go child would find
// /dev/null on its stdin: the runtime opens it on a closed 0-2).
func TestNilFilesAndEnv(t *testing.T) {
	t.Setenv("FORKEXEC_PROBE", "from the daemon")
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%t", fast), func(t *testing.T) {
			s := newSpawner(t, fast)
			got := shell(t, s, `[ -e /proc/self/fd/0 ] && echo stdin; echo "$FORKEXEC_PROBE"`)
			if got != "from the daemon\n" {
				t.Errorf("the shell said %q, want no stdin and the daemon's environment", got)
			}
		})
	}
}

// TestUnshareRefused: a child whose close_range with CLOSE_RANGE_UNSHARE
// fails (a filter refusing the flag, which New's probe does not pass)
// makes the spawn fall back to os.StartProcess, this one and the next,
// and Slow says why.
func TestUnshareRefused(t *testing.T) {
	s := newSpawner(t, true)
	s.unshare = 1 << 30 // no such flag: EINVAL, the table still shared
	for range 2 {
		if rep := run(t, s, Attr{Umask: -1}); rep["stdin"] != `"hello"` {
			t.Errorf("the child read %s on stdin, want \"hello\"", rep["stdin"])
		}
	}
	if forks, fallbacks := s.Counts(); forks != 0 || fallbacks != 2 {
		t.Errorf("forks %d, fallbacks %d; want 0 and 2", forks, fallbacks)
	}
	if why := s.Slow(); !strings.Contains(why, "CLOSE_RANGE_UNSHARE") {
		t.Errorf("Slow() = %q", why)
	}
}

// TestSignalsAsStartProcess: the child's blocked and ignored signals are
// what os.StartProcess gives, read by a shell from /proc.
func TestSignalsAsStartProcess(t *testing.T) {
	got := map[bool]string{}
	for _, fast := range []bool{true, false} {
		s := newSpawner(t, fast)
		got[fast] = shell(t, s, "exec grep -E '^Sig(Blk|Ign)' /proc/self/status")
	}
	if got[true] != got[false] || !strings.Contains(got[true], "SigBlk") {
		t.Errorf("forked:\n%s\nos.StartProcess:\n%s", got[true], got[false])
	}
}

// shell runs script with /bin/sh through s and returns its stdout.
func shell(t *testing.T, s *Spawner, script string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	argv := []string{"/bin/sh", "-c", script}
	p, err := s.Start(argv[0], argv, &Attr{Umask: -1, Files: [3]*os.File{nil, w, os.Stderr}})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(); err != nil || !st.Success() {
		t.Fatalf("%s: %v %v", script, st, err)
	}
	return string(out)
}

// TestCredentials: as root, the child runs as the user and groups asked
// for, with the parent-death signal set after them (setuid clears it),
// and without setgroups when NoSetGroups says so; as os.StartProcess
// does it.
func TestCredentials(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test runs as root (CI does): it switches the child to nobody")
	}
	exe := exeForAnyone(t)
	for _, tc := range []struct {
		name string
		cred syscall.Credential
	}{
		{"groups", syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534, 4}}},
		{"no setgroups", syscall.Credential{Uid: 65534, Gid: 65534, NoSetGroups: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[bool]report{}
			for _, fast := range []bool{true, false} {
				s := newSpawner(t, fast)
				cred := tc.cred
				got[fast] = runExe(t, s, exe, Attr{Umask: -1, Cred: &cred, Pdeathsig: syscall.SIGKILL})
			}
			if got[true]["ids"] != got[false]["ids"] || got[true]["pdeathsig"] != got[false]["pdeathsig"] {
				t.Errorf("forked: %v %v; os.StartProcess: %v %v", got[true]["ids"], got[true]["pdeathsig"], got[false]["ids"], got[false]["pdeathsig"])
			}
			if want := "65534 65534"; !strings.HasPrefix(got[true]["ids"], want) {
				t.Errorf("ids %q, want %s ...", got[true]["ids"], want)
			}
			if got[true]["pdeathsig"] != "9" {
				t.Errorf("pdeathsig %s, want 9 (SIGKILL)", got[true]["pdeathsig"])
			}
		})
	}
}

// exeForAnyone is a copy of the test binary that any user may run (go
// test's build directory is root's alone).
func exeForAnyone(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "forkexec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(dir, "forkexec.test")
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return to
}

// TestSpawnsUnderChurn: spawns while other goroutines open and close
// descriptors and the collector runs; each child's stdout reaches EOF (no
// copy of its write end left anywhere) and the daemon's descriptors are
// what they were.
func TestSpawnsUnderChurn(t *testing.T) {
	s := newSpawner(t, true)
	before := openFDs(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
					unix.Close(fd)
				}
				runtime.GC()
			}
		}()
	}
	for range 200 {
		if out := shell(t, s, "echo ok"); out != "ok\n" {
			t.Fatalf("the child wrote %q", out)
		}
	}
	close(stop)
	for range 4 {
		<-done
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open before the spawns, %d after", before, after)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}
