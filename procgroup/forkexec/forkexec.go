// Package forkexec starts a child process without copying the daemon's
// descriptor table into it.
//
// A fork copies the parent's descriptor table, and the child's execve then
// closes every descriptor in it marked close-on-exec. Both are work in
// proportion to the descriptors the daemon holds, and those grow with the
// processes it runs (six for a process with two logs: see
// procgroup.FDsPerProcess), so with os.StartProcess the 500th spawn of a
// start copies and closes some 3,000 descriptors, and a start of n
// processes costs O(n²).
//
// Spawner.Start forks with CLONE_VM|CLONE_VFORK|CLONE_FILES instead: the
// child shares the table, nothing is copied. Its first act is
// close_range(keep, ~0, CLOSE_RANGE_UNSHARE), which gives it a table of
// its own holding only the descriptors below keep: the daemon's 0-2 and
// three slots the Spawner reserved at its creation, low in the table, into
// which the parent put the child's stdin, stdout and stderr just before the
// fork. The child moves those to 0-2, closes everything else and execs. The
// work no longer depends on how many descriptors the daemon holds.
//
// The child also sets its umask itself (os.StartProcess cannot, so the
// daemon used to change the umask of the whole process around a spawn),
// and reports a failure before execve through memory it shares with the
// parent, not a pipe.
//
// Start falls back to os.StartProcess, with the same attributes, when:
//   - the platform is not linux/amd64 (the fork is in assembly);
//   - the kernel has no close_range (before Linux 5.9), or a seccomp filter
//     refuses it;
//   - the soft RLIMIT_NOFILE is its hard limit minus one. That is what the
//     Go runtime raises a lower soft limit to at start, and only
//     os.StartProcess knows the limit to give the child back (the one the
//     daemon was started with). Under the unit gosup systemd-unit writes
//     (LimitNOFILE=, soft and hard alike) the runtime raises nothing, and
//     children inherit the limit as they would from os.StartProcess.
//
// A child forked here gets nothing but its three files. One started by
// os.StartProcess also gets every descriptor of the daemon's that is not
// close-on-exec (what the daemon inherited so, if anything; gosup's own
// are all close-on-exec).
package forkexec

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Attr is what the child starts with. It always leads a process group of
// its own (setpgid(0, 0)).
type Attr struct {
	Dir string
	// Env is the child's environment; nil is the daemon's.
	Env []string
	// Files are the child's stdin, stdout and stderr; nil closes one.
	Files [3]*os.File
	// Cred, when set, is the user and groups the child runs as.
	Cred *syscall.Credential
	// Umask is the child's umask; -1 keeps the daemon's.
	Umask int
	// Pdeathsig is sent to the child when the thread that forked it ends.
	Pdeathsig syscall.Signal
}

// Spawner starts children. Its slots are used by one spawn at a time.
type Spawner struct {
	mu sync.Mutex
	// null is /dev/null: what the slots hold between spawns.
	null int
	// slots are the reserved descriptors the child's files are put in.
	slots [3]int
	// keep is one past the highest slot: the child keeps what is below.
	keep int
	// slow says why spawns copy the table (os.StartProcess); "": they
	// fork without.
	slow string
	// unshare is the flags of the child's first close_range (a test
	// makes the call fail with others).
	unshare uintptr
	// forks counts the children forked without a copy of the table,
	// fallbacks those started by os.StartProcess.
	forks, fallbacks atomic.Uint64
}

// New reserves the Spawner's slots: the three lowest free descriptors
// above 2. Make it early in the daemon's life, while those are low.
func New() (*Spawner, error) {
	s := &Spawner{null: -1, slots: [3]int{-1, -1, -1}, unshare: unix.CLOSE_RANGE_UNSHARE}
	null, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	s.null, s.keep = null, null+1
	for i := range s.slots {
		fd, err := unix.FcntlInt(uintptr(null), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("reserve a descriptor for spawns: %w", err)
		}
		s.slots[i] = fd
		s.keep = max(s.keep, fd+1)
	}
	// close_range of a range past any open descriptor closes nothing; it
	// fails where the kernel lacks it or a filter forbids it.
	switch err := unix.CloseRange(maxFD, maxFD, 0); {
	case !forkSupported:
		s.slow = "not built for this platform (linux/amd64 only)"
	case err != nil:
		s.slow = fmt.Sprintf("close_range: %v (Linux 5.9 or later, not refused by a seccomp filter)", err)
	}
	return s, nil
}

// Slow says why spawns copy the daemon's descriptor table
// (os.StartProcess), "" when they do not.
func (s *Spawner) Slow() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.slow != "":
		return s.slow
	case nofileRaised():
		return "the soft RLIMIT_NOFILE is its hard limit minus one, as the Go runtime raises it: set both alike (LimitNOFILE= in the unit, ulimit -n in a shell)"
	case s.keep > highSlots:
		return fmt.Sprintf("the descriptors reserved for spawns are high (below %d): every spawn copies the ones below them; they were reserved after the daemon had opened that many", s.keep)
	}
	return ""
}

// highSlots is where reserved slots make a spawn copy enough of the table
// to say so.
const highSlots = 64

// Close releases the slots.
func (s *Spawner) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for i, fd := range s.slots {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
			s.slots[i] = -1
		}
	}
	if s.null >= 0 {
		errs = append(errs, unix.Close(s.null))
		s.null = -1
	}
	s.slow = "the spawner is closed"
	return errors.Join(errs...)
}

// Counts says how many children were forked without a copy of the
// descriptor table and how many were started by os.StartProcess.
func (s *Spawner) Counts() (forks, fallbacks uint64) {
	return s.forks.Load(), s.fallbacks.Load()
}

// Start starts the program at path with argv. An error is an
// *os.PathError, as os.StartProcess returns.
func (s *Spawner) Start(path string, argv []string, a *Attr) (*os.Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slow != "" || nofileRaised() {
		s.fallbacks.Add(1)
		return startProcess(path, argv, a)
	}
	return s.fork(path, argv, a)
}

// nofileRaised says the soft RLIMIT_NOFILE may be one the Go runtime
// raised at start (see the package comment).
func nofileRaised() bool {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return true
	}
	return rl.Max > 0 && rl.Cur == rl.Max-1
}

// startProcess is Start by os.StartProcess. The umask is the process's
// while it forks.
func startProcess(path string, argv []string, a *Attr) (*os.Process, error) {
	if a.Umask >= 0 {
		old := unix.Umask(a.Umask)
		defer unix.Umask(old)
	}
	return os.StartProcess(path, argv, &os.ProcAttr{
		Dir:   a.Dir,
		Env:   a.Env,
		Files: a.Files[:],
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Pdeathsig:  a.Pdeathsig,
			Credential: a.Cred,
		},
	})
}

// maxFD is the highest descriptor close_range takes.
const maxFD = ^uint(0) >> 32

// step names what a child failed at before it could exec.
type step uintptr

const (
	stepExec step = iota
	stepUnshare
	stepSetpgid
	stepSetgroups
	stepSetgid
	stepSetuid
	stepChdir
	stepPdeathsig
	stepFiles
)

func (s step) String() string {
	return [...]string{"exec", "unshare the descriptor table", "setpgid", "setgroups", "setgid", "setuid", "chdir", "set the parent-death signal", "set up stdin, stdout and stderr"}[s]
}

// stepError is a failure of the child before execve.
type stepError struct {
	step  step
	errno syscall.Errno
}

func (e *stepError) Error() string { return e.step.String() + ": " + e.errno.Error() }
func (e *stepError) Unwrap() error { return e.errno }
