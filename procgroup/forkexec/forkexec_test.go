package forkexec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

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
	fmt.Printf("fds %s\nleader %t\numask %03o\ndir %s\nnofile %d %d\nstdin %q\n",
		strings.Join(fds, ","), unix.Getpgrp() == os.Getpid(), mask, wd, rl.Cur, rl.Max, in)
	return 0
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
	a.Files = [3]*os.File{stdin, w, os.Stderr}
	a.Env = helperEnviron("report")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Start(exe, []string{exe}, &a)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	rep := report{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		rep[k] = v
	}
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
	if !s.fast {
		t.Fatal("no fast path on this machine: close_range missing or refused")
	}
	s.fast = fast
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
// child's files: the write end of a pipe given to the child is closed
// everywhere once the child and the caller have closed theirs.
func TestSlotsReleased(t *testing.T) {
	s := newSpawner(t, true)
	for i, fd := range s.slots {
		var st, null unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fstat(s.null, &null); err != nil {
			t.Fatal(err)
		}
		run(t, s, Attr{Umask: -1})
		if err := unix.Fstat(fd, &st); err != nil || st.Rdev != null.Rdev || st.Ino != null.Ino {
			t.Errorf("slot %d (descriptor %d) is not /dev/null after a spawn", i, fd)
		}
	}
	// run reads stdout to EOF: it would hang, not fail, if a slot kept the
	// pipe's write end. The test's timeout says so.
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
	rep := report{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		rep[k] = v
	}
	if st, err := p.Wait(); err != nil || !st.Success() {
		t.Fatalf("spawning process: %v %v", st, err)
	}
	return rep
}
