package supervisor

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup/proctree"
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

	mu       sync.Mutex
	children map[string]childRecord // by group:name
	dirty    chan struct{}
	stop     chan struct{}
	stopped  chan struct{}
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
	dir := filepath.Dir(socket)
	if err := secureSocketDir(dir, dirMode); err != nil {
		return nil, err
	}
	in := &instance{
		id:        fmt.Sprintf("%d-%s", os.Getpid(), rand.Text()[:10]),
		lockPath:  socket + ".lock",
		statePath: socket + ".state",
		log:       log,
		children:  map[string]childRecord{},
		dirty:     make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
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
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	in.lock = f
	return in, nil
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
	os.Remove(in.statePath)
	os.Remove(in.lockPath)
	in.lock.Close()
}

func (in *instance) recordSpawn(name string, pid int) {
	in.mu.Lock()
	in.children[name] = childRecord{Name: name, Pid: pid}
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
	f, err := createOwn(in.statePath, 0o600)
	if err != nil {
		in.log.Warn("could not open state file; a crash will leave children behind", "path", in.statePath, "err", err)
	} else {
		defer f.Close()
	}
	gap := time.NewTimer(0)
	for {
		select {
		case <-in.stop:
			return
		case <-in.dirty:
		}
		if f != nil {
			in.mu.Lock()
			sf := stateFile{DaemonPid: os.Getpid(), Instance: in.id, Children: make([]childRecord, 0, len(in.children))}
			for name, c := range in.children {
				if c.StartTime == 0 {
					// Read here, off the spawn path. A child that already
					// exited is recorded without one and matches nothing.
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
	if err != nil {
		in.log.Warn("ignoring a state file that is not gosup's own; killing no leftovers", "path", in.statePath, "err", err)
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
	var victims []int
	for _, pid := range marked(sf.Instance) {
		if want, ok := recorded[pid]; ok && want != 0 {
			if st, err := proctree.StartTime(pid); err != nil || st != want {
				continue // pid recycled since it was recorded
			}
		}
		victims = append(victims, pid)
	}
	for _, pid := range victims {
		in.log.Warn("killing leftover child of a previous gosup daemon", "pid", pid, "daemon_pid", sf.DaemonPid)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	deadline := time.Now().Add(timeout)
	for _, pid := range victims {
		for time.Now().Before(deadline) && !proctree.Exited(pid) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return len(victims)
}

// sweep kills whatever still carries this daemon's marker: descendants
// that left their process group (setsid, double fork) and outlived their
// parent. Called once every process has been stopped.
func (in *instance) sweep() int {
	victims := marked(in.id)
	for _, pid := range victims {
		in.log.Warn("killing a leftover descendant of a stopped child", "pid", pid)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	return len(victims)
}

// marked lists the processes whose environment carries GOSUP_INSTANCE=id.
func marked(id string) []int {
	if id == "" {
		return nil
	}
	return proctree.Marked("GOSUP_INSTANCE=" + id)
}
