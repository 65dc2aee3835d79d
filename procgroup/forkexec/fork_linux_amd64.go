//go:build linux && amd64

package forkexec

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const forkSupported = true

// The runtime's hooks around a fork, as package syscall calls them: block
// signals and forbid stack growth on this thread (BeforeFork), undo that
// (AfterFork); in the child, reset the signal handlers to their defaults
// and restore the signal mask (AfterForkInChild).

//go:linkname runtimeBeforeFork syscall.runtime_BeforeFork
func runtimeBeforeFork()

//go:linkname runtimeAfterFork syscall.runtime_AfterFork
func runtimeAfterFork()

//go:linkname runtimeAfterForkInChild syscall.runtime_AfterForkInChild
func runtimeAfterForkInChild()

// rawVfork is clone(flags, 0, 0, 0, 0) with the return address kept out
// of the stack, which the child shares with its parent (fork_linux_amd64.s).
func rawVfork(flags uintptr) (pid uintptr, errno uintptr)

// child is what the forked child reads: every argument of its system
// calls, made in the parent. The child writes errno and step when it
// fails before execve; the parent reads them once the fork returns.
type child struct {
	path, argv, envv, dir uintptr
	// files are the descriptors the child moves to 0, 1 and 2 (-1:
	// close it).
	files [3]int
	// keep is the lowest descriptor the child does not take into its
	// own table, with unshare the flags of that close_range.
	keep      uintptr
	unshare   uintptr
	ppid      uintptr
	umask     uintptr
	setUmask  bool
	setCred   bool
	setGroups bool
	uid, gid  uintptr
	ngroups   uintptr
	groups    uintptr
	pdeathsig uintptr

	errno uintptr
	step  step

	// refs keeps what the uintptrs above point to alive until the fork
	// has returned.
	refs [5]any
}

func (s *Spawner) fork(path string, argv []string, a *Attr) (*os.Process, error) {
	c, err := s.child(path, argv, a)
	if err != nil {
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	for i, f := range a.Files {
		if f == nil {
			continue
		}
		if err := dup3(int(f.Fd()), s.slots[i]); err != nil {
			s.release()
			return nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
		}
	}
	pid, errno := forkExec(c)
	s.release()
	runtime.KeepAlive(c)
	runtime.KeepAlive(&a.Files)
	if errno != 0 {
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: errno}
	}
	if errno = syscall.Errno(c.errno); errno != 0 {
		// The child has exited (SYS_EXIT): reap it, as os.StartProcess
		// does. Where a reaper got to it first, ECHILD.
		reap(int(pid))
	}
	if c.step == stepUnshare && errno != 0 {
		// The probe in New passed, the call with the flag did not (a
		// filter refusing the flag): fork no more.
		s.slow = fmt.Sprintf("close_range with CLOSE_RANGE_UNSHARE: %v", errno)
		s.fallbacks.Add(1)
		return startProcess(path, argv, a)
	}
	s.forks.Add(1)
	if errno != 0 {
		var err error = errno
		if c.step != stepExec {
			err = &stepError{step: c.step, errno: errno}
		}
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	// os.FindProcess opens the child's pidfd, and when it cannot (out of
	// descriptors) quietly makes a Process that signals by pid: the
	// spawn fails instead, as os.StartProcess fails when clone cannot make
	// the pidfd. ESRCH: the child has exited and a reaper took it already;
	// FindProcess then makes a Process that is done.
	if fd, err := unix.PidfdOpen(int(pid), 0); err == nil {
		unix.Close(fd)
	} else if err != unix.ESRCH {
		unix.Kill(int(pid), unix.SIGKILL)
		reap(int(pid))
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: fmt.Errorf("pidfd_open: %w", err)}
	}
	return os.FindProcess(int(pid))
}

// reap waits for the exited child pid, unless a reaper took it already.
func reap(pid int) {
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != unix.EINTR {
			return
		}
	}
}

// release puts /dev/null back into the slots, so that the daemon holds
// no copy of the child's files. A slot that cannot be set is given up,
// and so is forking.
func (s *Spawner) release() {
	for i, fd := range s.slots {
		if err := dup3(s.null, fd); err != nil {
			unix.Close(fd)
			s.slots[i], s.slow = -1, "a reserved descriptor was lost"
		}
	}
}

// dup3 makes descriptor "to" a close-on-exec copy of "from".
func dup3(from, to int) error {
	for {
		err := unix.Dup3(from, to, unix.O_CLOEXEC)
		if err != unix.EINTR && err != unix.EBUSY {
			return err
		}
	}
}

// child prepares the arguments of the child's system calls.
func (s *Spawner) child(path string, argv []string, a *Attr) (*child, error) {
	pathp, err := syscall.BytePtrFromString(path)
	if err != nil {
		return nil, err
	}
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return nil, err
	}
	env := a.Env
	if env == nil {
		env = os.Environ()
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return nil, err
	}
	c := &child{
		path:      uintptr(unsafe.Pointer(pathp)),
		argv:      uintptr(unsafe.Pointer(&argvp[0])),
		envv:      uintptr(unsafe.Pointer(&envp[0])),
		keep:      uintptr(s.keep),
		unshare:   s.unshare,
		ppid:      uintptr(unix.Getpid()),
		pdeathsig: uintptr(a.Pdeathsig),
	}
	c.refs[0], c.refs[1], c.refs[2] = pathp, argvp, envp
	if a.Dir != "" {
		dirp, err := syscall.BytePtrFromString(a.Dir)
		if err != nil {
			return nil, err
		}
		c.dir, c.refs[3] = uintptr(unsafe.Pointer(dirp)), dirp
	}
	if a.Umask >= 0 {
		c.setUmask, c.umask = true, uintptr(a.Umask)
	}
	if cr := a.Cred; cr != nil {
		c.setCred, c.uid, c.gid = true, uintptr(cr.Uid), uintptr(cr.Gid)
		c.setGroups = !cr.NoSetGroups // as package syscall: no setgroups at all
		if len(cr.Groups) > 0 {
			c.ngroups, c.groups = uintptr(len(cr.Groups)), uintptr(unsafe.Pointer(&cr.Groups[0]))
			c.refs[4] = cr.Groups
		}
	}
	for i, f := range a.Files {
		c.files[i] = -1
		if f != nil {
			c.files[i] = s.slots[i]
		}
	}
	return c, nil
}

// forkExec forks the child and, in the parent, returns once the child has
// exec'd or exited. The child runs the rest of this function after the
// fork, as package syscall's forkAndExecInChild1 does: it shares the
// parent's memory, and until its first system call its descriptor table,
// so it makes only system calls, with arguments prepared by the parent,
// and writes nothing but c.errno and c.step. The parent reads nothing it
// wrote before the fork once it returns from it; the child's variables are
// declared here with its own.
//
//go:noinline
//go:norace
//go:nocheckptr
func forkExec(c *child) (pid uintptr, errno syscall.Errno) {
	var (
		r1, err1 uintptr
		e        syscall.Errno
		at       step
		i        int
		ppid     uintptr
	)
	runtimeBeforeFork()
	r1, err1 = rawVfork(unix.CLONE_VM | unix.CLONE_VFORK | unix.CLONE_FILES | uintptr(unix.SIGCHLD))
	if err1 != 0 || r1 != 0 {
		// The parent.
		runtimeAfterFork()
		return r1, syscall.Errno(err1)
	}

	// The child.
	runtimeAfterForkInChild()

	// A table of its own, holding only the descriptors below keep.
	at = stepUnshare
	if _, _, e = syscall.RawSyscall(unix.SYS_CLOSE_RANGE, c.keep, uintptr(maxFD), c.unshare); e != 0 {
		goto fail
	}
	at = stepSetpgid
	if _, _, e = syscall.RawSyscall(syscall.SYS_SETPGID, 0, 0, 0); e != 0 {
		goto fail
	}
	if c.setCred {
		if c.setGroups {
			at = stepSetgroups
			if _, _, e = syscall.RawSyscall(syscall.SYS_SETGROUPS, c.ngroups, c.groups, 0); e != 0 {
				goto fail
			}
		}
		at = stepSetgid
		if _, _, e = syscall.RawSyscall(syscall.SYS_SETGID, c.gid, 0, 0); e != 0 {
			goto fail
		}
		at = stepSetuid
		if _, _, e = syscall.RawSyscall(syscall.SYS_SETUID, c.uid, 0, 0); e != 0 {
			goto fail
		}
	}
	if c.setUmask {
		syscall.RawSyscall(syscall.SYS_UMASK, c.umask, 0, 0)
	}
	if c.dir != 0 {
		at = stepChdir
		if _, _, e = syscall.RawSyscall(syscall.SYS_CHDIR, c.dir, 0, 0); e != 0 {
			goto fail
		}
	}
	// After the credentials: changing them clears the parent-death signal.
	if c.pdeathsig != 0 {
		at = stepPdeathsig
		if _, _, e = syscall.RawSyscall6(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, c.pdeathsig, 0, 0, 0, 0); e != 0 {
			goto fail
		}
		// The parent may have ended before the signal was set.
		if ppid, _, _ = syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0); ppid != c.ppid {
			ppid, _, _ = syscall.RawSyscall(syscall.SYS_GETPID, 0, 0, 0)
			syscall.RawSyscall(syscall.SYS_KILL, ppid, c.pdeathsig, 0)
		}
	}
	at = stepFiles
	for i = 0; i < 3; i++ {
		if c.files[i] < 0 {
			syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(i), 0, 0)
			continue
		}
		if _, _, e = syscall.RawSyscall(syscall.SYS_DUP3, uintptr(c.files[i]), uintptr(i), 0); e != 0 {
			goto fail
		}
	}
	if _, _, e = syscall.RawSyscall(unix.SYS_CLOSE_RANGE, 3, uintptr(maxFD), 0); e != 0 {
		goto fail
	}
	at = stepExec
	_, _, e = syscall.RawSyscall(syscall.SYS_EXECVE, c.path, c.argv, c.envv)
fail:
	c.errno, c.step = uintptr(e), at
	for {
		syscall.RawSyscall(syscall.SYS_EXIT, 253, 0, 0)
	}
}
