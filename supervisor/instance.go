package supervisor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/proctree"
	"github.com/gosup/gosup/supervisor/handover"
	"golang.org/x/sys/unix"
)

// ErrAlreadyRunning means another daemon owns the socket.
var ErrAlreadyRunning = errors.New("another gosup daemon is running")

// instance is the daemon's claim on its socket: an flock'd lock file that
// holds the daemon's pid, and a state file listing its live children so that
// a successor can clean up after a crash.
type instance struct {
	// id marks this daemon run: every child gets GOSUP_INSTANCE=id in its
	// environment, and so does whatever it forks, even out of its process
	// group. The marker finds descendants that escaped their group.
	id        string
	lockPath  string
	statePath string
	lock      *os.File
	log       *slog.Logger
	started   bool // the state writer runs
	dirMode   os.FileMode
	// abstract is bound for the daemon's life to a name in the abstract
	// unix socket namespace derived from the socket's path: unlike the
	// lock file, nobody can delete it (nil if another user holds it).
	abstract net.Listener

	mu       sync.Mutex
	children map[string]childRecord // by group:name
	// stateDev and stateIno identify the state file the writer has
	// open (0 when none).
	stateDev, stateIno uint64
	passes             atomic.Uint64 // the writer's passes, for tests
	dirty              chan struct{}
	stop               chan struct{}
	stopped            chan struct{}
}

type childRecord struct {
	Name      string `json:"name"`
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // /proc/PID/stat field 22, clock ticks since boot
}

type stateFile struct {
	DaemonPid int           `json:"daemon_pid"`
	Instance  string        `json:"instance"`
	Children  []childRecord `json:"children"`
}

// claim takes the lock next to socket. It fails with ErrAlreadyRunning, and
// touches nothing, if another daemon holds it. The socket's directory must
// be safe (see secureSocketDir), and the lock file, if it exists, a
// regular file of ours (see openOwn).
func claim(socket string, dirMode os.FileMode, log *slog.Logger) (*instance, error) {
	abstract, err := bindAbstract(socket, log)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok && abstract != nil {
			abstract.Close()
		}
	}()
	dir := filepath.Dir(socket)
	if err := secureSocketDir(dir, dirMode); err != nil {
		return nil, err
	}
	in := newInstance(socket, dirMode, fmt.Sprintf("%d-%s", os.Getpid(), rand.Text()[:10]), abstract, log)
	f, err := openOwn(in.lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b))
			return nil, fmt.Errorf("%w (pid %s) on %s; stop it with `gosup ctl shutdown --socket %s`", ErrAlreadyRunning, pid, socket, socket)
		}
		return nil, fmt.Errorf("lock %s: %w", in.lockPath, err)
	}
	if abstract == nil {
		// Without the abstract name, the lock file alone would let a
		// second daemon in once the directory was removed: look for a
		// daemon that still holds a lock on this path.
		if pid, found := lockHolder(in.lockPath, f); found {
			f.Close()
			return nil, fmt.Errorf("%w (%s) on %s, holding the lock of a removed socket directory; stop it with `gosup ctl shutdown --socket %s`", ErrAlreadyRunning, pidText(pid), socket, socket)
		}
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	in.lock = f
	ok = true
	return in, nil
}

func newInstance(socket string, dirMode os.FileMode, id string, abstract net.Listener, log *slog.Logger) *instance {
	return &instance{
		dirMode:   dirMode,
		abstract:  abstract,
		id:        id,
		lockPath:  socket + ".lock",
		statePath: socket + ".state",
		log:       log,
		children:  map[string]childRecord{},
		dirty:     make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
}

// handover describes the claim for the next image: the descriptors of the
// lock file and the abstract socket, which it inherits.
func (in *instance) handover() (handover.Instance, error) {
	h := handover.Instance{ID: in.id, AbstractFD: -1}
	fd, err := procgroup.RawFD(in.lock)
	if err != nil {
		return h, fmt.Errorf("lock file: %w", err)
	}
	h.LockFD = fd
	if in.abstract != nil {
		if h.AbstractFD, err = procgroup.RawFD(in.abstract.(syscall.Conn)); err != nil {
			return h, fmt.Errorf("abstract socket: %w", err)
		}
	}
	return h, nil
}

// adoptInstance takes over the claim an earlier image handed over: its
// lock (still held: an flock belongs to the open file, which the exec
// kept) and its abstract socket, and its id, which every child carries.
func adoptInstance(h handover.Instance, socket string, dirMode os.FileMode, log *slog.Logger) (*instance, error) {
	lock, err := procgroup.InheritedFile(h.LockFD, socket+".lock")
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	var abstract net.Listener
	if h.AbstractFD >= 0 {
		f, err := procgroup.InheritedFile(h.AbstractFD, "abstract socket")
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("abstract socket: %w", err)
		}
		abstract, err = net.FileListener(f)
		f.Close()
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("abstract socket: %w", err)
		}
		go answerAbstract(abstract)
	}
	in := newInstance(socket, dirMode, h.ID, abstract, log)
	in.lock = lock
	return in, nil
}

// pidText names a peer daemon by pid; SO_PEERCRED says pid 0 for a
// process in a pid namespace we cannot see.
func pidText(pid int32) string {
	if pid == 0 {
		return "in another pid namespace"
	}
	return fmt.Sprintf("pid %d", pid)
}

// abstractName is the abstract unix socket name of the daemon on socket
// (an absolute path). Abstract names are per network namespace, paths
// per mount namespace: the name includes the mount namespace (its
// device and inode), so that a daemon in another mount namespace, whose
// socket path names another file, is not taken for ours.
func abstractName(socket string) string {
	h := sha256.New()
	var st unix.Stat_t
	if unix.Stat("/proc/self/ns/mnt", &st) == nil {
		fmt.Fprintf(h, "mnt:%d:%d\x00", st.Dev, st.Ino)
	}
	h.Write([]byte(socket))
	return "@gosup/" + hex.EncodeToString(h.Sum(nil)[:16])
}

// bindAbstract binds the daemon's abstract name for socket. If a daemon
// of our user holds it, that is ErrAlreadyRunning with its pid (from
// SO_PEERCRED), whether or not the socket's directory still exists. A
// holder of another user is no daemon of ours (those refuse a directory
// that is not theirs) and cannot stop us, nor let a second daemon in:
// anyone can compute the name, so claim then looks for a live
// predecessor through /proc instead (see lockHolder).
// answerAbstract accepts and closes the probes of a second daemon (which
// learns the holder's pid from the connection) until ln is closed.
func answerAbstract(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func bindAbstract(socket string, log *slog.Logger) (net.Listener, error) {
	name := abstractName(socket)
	ln, err := net.Listen("unix", name)
	if err == nil {
		go answerAbstract(ln)
		return ln, nil
	}
	if !errors.Is(err, unix.EADDRINUSE) {
		log.Warn("could not bind the daemon's abstract socket; looking for a live predecessor in /proc instead", "name", name, "err", err)
		return nil, nil
	}
	c, derr := net.Dial("unix", name)
	if derr != nil {
		log.Warn("the daemon's abstract socket is taken but does not answer; looking for a live predecessor in /proc instead", "name", name, "err", derr)
		return nil, nil
	}
	defer c.Close()
	cred, cerr := peerCred(c)
	if cerr != nil {
		return nil, fmt.Errorf("check who holds %s: %w", name, cerr)
	}
	if int(cred.Uid) != os.Geteuid() {
		log.Warn("the daemon's abstract socket is held by another user; looking for a live predecessor in /proc instead", "name", name, "uid", cred.Uid, "pid", cred.Pid)
		return nil, nil
	}
	return nil, fmt.Errorf("%w (%s) on %s; stop it with `gosup ctl shutdown --socket %s`", ErrAlreadyRunning, pidText(cred.Pid), socket, socket)
}

// lockLost reports whether the lock file is no longer at its path:
// removed (with its directory, maybe) or replaced.
func (in *instance) lockLost() bool {
	in.mu.Lock() // relock replaces in.lock
	defer in.mu.Unlock()
	var fst, pst unix.Stat_t
	if err := unix.Fstat(int(in.lock.Fd()), &fst); err != nil || fst.Nlink == 0 {
		return true
	}
	if err := unix.Lstat(in.lockPath, &pst); err != nil {
		return true
	}
	return pst.Dev != fst.Dev || pst.Ino != fst.Ino
}

// errLockHeld means another process holds the lock file at our lock's
// path: a second daemon that got in while our directory was gone. Its
// lock and socket are left alone.
var errLockHeld = errors.New("another process holds the lock file")

// relock recreates the socket directory (checked as claim does) and the
// lock file after they were removed from under the running daemon, and
// has the state file written again. The abstract socket kept any other
// daemon out meanwhile. A lock file at the path that another process
// holds is never unlinked (errLockHeld): two daemons would take turns
// deleting each other's. Only the socket watch calls it, before release.
func (in *instance) relock() error {
	if err := secureSocketDir(filepath.Dir(in.lockPath), in.dirMode); err != nil {
		return err
	}
	f, err := openOwn(in.lockPath, unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		return fmt.Errorf("recreate lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w %s (pid %s): leaving it and the socket alone", errLockHeld, in.lockPath, strings.TrimSpace(string(b)))
		}
		return fmt.Errorf("lock %s: %w", in.lockPath, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	in.mu.Lock()
	in.lock.Close()
	in.lock = f
	in.mu.Unlock()
	in.markDirty()
	return nil
}

// stateLost reports whether the state file the writer has open is no
// longer at its path (a /tmp cleaner removed the aged file, say), and
// its inode; the socket watch then has the writer create it again.
func (in *instance) stateLost() (bool, uint64) {
	in.mu.Lock()
	dev, ino := in.stateDev, in.stateIno
	in.mu.Unlock()
	if ino == 0 {
		return false, 0 // none open: the writer said why
	}
	var st unix.Stat_t
	if err := unix.Lstat(in.statePath, &st); err != nil || st.Dev != dev || st.Ino != ino {
		return true, ino
	}
	return false, 0
}

// start begins recording children in a new state file, replacing the
// predecessor's (read by killLeftovers before).
func (in *instance) start() {
	in.started = true
	go in.writer()
}

// release removes the state and lock files and drops the lock.
func (in *instance) release() {
	if in.started {
		close(in.stop)
		<-in.stopped
	}
	// What is at the paths is ours only while our lock is: otherwise
	// they are another daemon's (see relock), or nobody's.
	if !in.lockLost() {
		os.Remove(in.statePath)
		os.Remove(in.lockPath)
	}
	in.lock.Close()
	if in.abstract != nil {
		in.abstract.Close()
	}
}

// recordSpawn records the child pid of process name, with its start time
// when the spawn knew it (0: the writer reads it from /proc).
func (in *instance) recordSpawn(name string, pid int, start uint64) {
	in.mu.Lock()
	in.children[name] = childRecord{Name: name, Pid: pid, StartTime: start}
	in.mu.Unlock()
	in.markDirty()
}

func (in *instance) recordExit(name string) {
	in.mu.Lock()
	delete(in.children, name)
	in.mu.Unlock()
	in.markDirty()
}

func (in *instance) markDirty() {
	select {
	case in.dirty <- struct{}{}:
	default:
	}
}

// stateWriteGap is the least time between two state file writes. A burst
// of 500 spawns costs a few writes; a daemon killed in the gap leaves the
// newest children out of the file, but the parent-death signal still takes
// them down with it.
const stateWriteGap = 20 * time.Millisecond

// writer rewrites the state file after changes, in place: one write and
// one truncate, no file creation per change. The write is a single
// syscall, so a daemon that dies mid-way leaves the old or the new record,
// possibly followed by stale bytes that the reader ignores.
func (in *instance) writer() {
	defer close(in.stopped)
	var f *os.File
	failed := false // a failure to create is logged once, until a create succeeds
	create := func() {
		var err error
		if f, err = createOwn(in.statePath, 0o600); err == nil {
			failed = false
			var st unix.Stat_t
			if unix.Fstat(int(f.Fd()), &st) == nil {
				in.mu.Lock()
				in.stateDev, in.stateIno = st.Dev, st.Ino
				in.mu.Unlock()
			}
		} else if !failed {
			failed = true
			in.log.Warn("could not create the state file; a crash will leave children behind", "path", in.statePath, "err", err)
		}
	}
	drop := func() {
		if f != nil {
			f.Close()
			f = nil
			in.mu.Lock()
			in.stateDev, in.stateIno = 0, 0
			in.mu.Unlock()
		}
	}
	create()
	defer drop()
	gap := time.NewTimer(0)
	for {
		select {
		case <-in.stop:
			return
		case <-in.dirty:
		}
		if lost, _ := in.stateLost(); lost {
			drop() // removed, alone or with the socket directory
		}
		// A new file only where our lock still is: then the directory
		// is the one claim or relock checked, not one another user
		// made in its place after it was removed (relock checks it and
		// has this run again).
		if f == nil && !in.lockLost() {
			create()
		}
		if f != nil {
			in.mu.Lock()
			sf := stateFile{DaemonPid: os.Getpid(), Instance: in.id, Children: make([]childRecord, 0, len(in.children))}
			for name, c := range in.children {
				if c.StartTime == 0 {
					// The spawn did not know it (an adopted child of an
					// older image): read here, off the spawn path. A child
					// that already exited is recorded without one and
					// matches nothing.
					c.StartTime, _ = proctree.StartTime(c.Pid)
					in.children[name] = c
				}
				sf.Children = append(sf.Children, c)
			}
			in.mu.Unlock()
			b, _ := json.Marshal(sf)
			if _, err := f.WriteAt(b, 0); err != nil {
				in.log.Warn("could not write state file", "path", in.statePath, "err", err)
			} else {
				_ = f.Truncate(int64(len(b)))
			}
		}
		in.passes.Add(1)
		gap.Reset(stateWriteGap)
		select {
		case <-in.stop:
			return
		case <-gap.C:
		}
	}
}

// killLeftovers kills what a crashed predecessor left behind: every
// process that still carries the predecessor's instance marker
// (GOSUP_INSTANCE) in its environment, its recorded children and whatever
// they forked. A recorded child whose start time differs from the record
// is spared (its pid was recycled). Nothing is killed unless the state
// file is ours (a regular file of our uid, writable by no one else, see
// openOwn): a file planted by another user, or a process without the
// marker, gets no one killed. It waits up to timeout for them to
// disappear, so their ports are free before anything spawns.
func (in *instance) killLeftovers(timeout time.Duration) int {
	b, err := readOwn(in.statePath, maxStateBytes)
	if errors.Is(err, errNotOwn) {
		in.log.Warn("ignoring a state file that is not gosup's own; killing no leftovers", "path", in.statePath, "err", err)
		return 0
	} else if err != nil {
		in.log.Warn("could not read the state file; killing no leftovers", "path", in.statePath, "err", err)
		return 0
	}
	if len(b) == 0 {
		return 0
	}
	var sf stateFile
	// Decode, not Unmarshal: bytes after the first value are stale.
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&sf); err != nil {
		in.log.Warn("ignoring unreadable state file", "path", in.statePath, "err", err)
		return 0
	}
	recorded := map[int]uint64{}
	for _, c := range sf.Children {
		recorded[c.Pid] = c.StartTime
	}
	// Each victim is signalled through a pidfd, after checking again,
	// on the process the pidfd names, that it carries the marker (and
	// still has its recorded start time): a pid recycled since the scan
	// is never hit.
	marker := "GOSUP_INSTANCE=" + sf.Instance
	var fds []int
	for _, pid := range marked(sf.Instance) {
		fd := proctree.Signal(pid, recorded[pid], marker, unix.SIGKILL)
		if fd < 0 {
			continue // gone, recycled, or its recorded start time differs
		}
		in.log.Warn("killed a leftover child of a previous gosup daemon", "pid", pid, "daemon_pid", sf.DaemonPid)
		fds = append(fds, fd)
	}
	proctree.WaitExit(context.Background(), fds, time.Now().Add(timeout))
	for _, fd := range fds {
		unix.Close(fd)
	}
	return len(fds)
}

// sweep kills whatever still carries this daemon's marker: descendants
// that left their process group (setsid, double fork) and outlived their
// parent. Called once every process has been stopped.
func (in *instance) sweep() int {
	n := 0
	for _, pid := range marked(in.id) {
		// Checked again through a pidfd, as killLeftovers does.
		if fd := proctree.Signal(pid, 0, "GOSUP_INSTANCE="+in.id, unix.SIGKILL); fd >= 0 {
			unix.Close(fd)
			in.log.Warn("killed a leftover descendant of a stopped child", "pid", pid)
			n++
		}
	}
	return n
}

// marked lists the processes whose environment carries GOSUP_INSTANCE=id.
func marked(id string) []int {
	if id == "" {
		return nil
	}
	return proctree.Marked("GOSUP_INSTANCE=" + id)
}
