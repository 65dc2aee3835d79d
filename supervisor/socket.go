package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listen creates the control socket. The caller holds the instance lock, so
// a socket file already there is a stale one from a dead daemon.
func listen(path string, mode uint32, group string, log *slog.Logger) (*credListener, error) {
	pol, err := newPeerPolicy(group)
	if err != nil {
		return nil, err
	}
	gid := pol.gid
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	// Nobody may connect before the mode is set: the socket is made 0600
	// (see listenUnixPrivate; not by the umask, which children spawned
	// meanwhile would inherit: the socket watcher makes it again while
	// they run).
	ln, err := listenUnixPrivate(path)
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("set group %s on %s: %w", group, path, err)
		}
		// The group must also get through the socket's directory (0750),
		// when that directory is the daemon's own.
		dir := filepath.Dir(path)
		if fi, err := os.Stat(dir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == uint32(os.Getuid()) && fi.Mode().Perm()&0o002 == 0 {
				if err := os.Chown(dir, -1, gid); err != nil {
					log.Warn("could not give the socket's directory to socket_group; its members cannot reach the socket", "dir", dir, "group", group, "err", err)
				}
			}
		}
	}
	if err := os.Chmod(path, os.FileMode(mode)); err != nil {
		ln.Close()
		return nil, fmt.Errorf("unable to set permissions (%04o) on %s: %w", mode, path, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		ln.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	return &credListener{Listener: ln, pol: pol, log: log, dev: st.Dev, ino: st.Ino}, nil
}

// newPeerPolicy allows root, the daemon's user and group's members.
func newPeerPolicy(group string) (*peerPolicy, error) {
	pol := &peerPolicy{uid: uint32(os.Getuid()), gid: -1}
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("socket_group %q: %w", group, err)
		}
		pol.gid, _ = strconv.Atoi(g.Gid)
	}
	return pol, nil
}

// adoptListener serves the control socket an earlier image listened on,
// inherited as descriptor fd across an exec; dev and ino identify its
// socket file, gid is socket_group's (-1: none), as the earlier image
// looked it up.
func adoptListener(fd int, dev, ino uint64, gid int, log *slog.Logger) (*credListener, error) {
	pol := &peerPolicy{uid: uint32(os.Getuid()), gid: gid}
	f := os.NewFile(uintptr(fd), "control socket")
	ln, err := net.FileListener(f) // a duplicate, close-on-exec
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("control socket descriptor %d: %w", fd, err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("control socket descriptor %d: not a unix socket", fd)
	}
	ul.SetUnlinkOnClose(true)
	return &credListener{Listener: ul, pol: pol, log: log, dev: dev, ino: ino}, nil
}

// gone reports whether the socket file this listener created is no
// longer at path (removed, maybe with its directory, or replaced).
func (l *credListener) gone(path string) bool {
	var st unix.Stat_t
	return unix.Lstat(path, &st) != nil || st.Dev != l.dev || st.Ino != l.ino
}

// retire closes a listener whose socket file is gone, leaving alone the
// path, where a new socket may be.
func (l *credListener) retire() {
	l.retired.Store(true)
	l.Listener.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Listener.Close()
}

// peerPolicy says who may use the control socket: root, the daemon's own
// user, and members of socket_group.
type peerPolicy struct {
	uid uint32
	gid int
}

func (p *peerPolicy) allows(c *unix.Ucred) bool {
	if c.Uid == 0 || c.Uid == p.uid {
		return true
	}
	if p.gid < 0 {
		return false
	}
	if int(c.Gid) == p.gid {
		return true
	}
	u, err := user.LookupId(strconv.Itoa(int(c.Uid)))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	return err == nil && slices.Contains(gids, strconv.Itoa(p.gid))
}

// credListener drops connections from peers the policy does not allow,
// checked with SO_PEERCRED before any byte is read.
type credListener struct {
	net.Listener
	pol      *peerPolicy
	log      *slog.Logger
	dev, ino uint64      // of the socket file
	retired  atomic.Bool // replaced: its Serve ending is no failure

	// gate, while set, holds Accept: new connections wait in the
	// kernel's backlog (during an upgrade, for the next image).
	gateMu sync.Mutex
	gate   *acceptGate
}

// acceptGate is one pause of Accept.
type acceptGate struct {
	parked, resume chan struct{}
	parkOnce       sync.Once
}

// pause stops accepting connections, without closing the socket: they
// wait in the backlog. It returns once Accept is held, and the func that
// lets it go on.
func (l *credListener) pause(ctx context.Context) (resume func(), err error) {
	ul, ok := l.Listener.(*net.UnixListener)
	if !ok {
		return nil, errors.New("pause: not a unix socket")
	}
	g := &acceptGate{parked: make(chan struct{}), resume: make(chan struct{})}
	l.gateMu.Lock()
	l.gate = g
	l.gateMu.Unlock()
	resume = sync.OnceFunc(func() {
		l.gateMu.Lock()
		l.gate = nil
		l.gateMu.Unlock()
		_ = ul.SetDeadline(time.Time{})
		close(g.resume)
	})
	// A deadline in the past wakes an Accept blocked in the poller.
	if err := ul.SetDeadline(time.Unix(1, 0)); err != nil {
		resume()
		return nil, fmt.Errorf("pause the control socket: %w", err)
	}
	select {
	case <-g.parked:
		return resume, nil
	case <-ctx.Done():
		resume()
		return nil, fmt.Errorf("pause the control socket: %w", ctx.Err())
	}
}

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.gateMu.Lock()
			g := l.gate
			l.gateMu.Unlock()
			if g != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				g.parkOnce.Do(func() { close(g.parked) })
				<-g.resume
				continue
			}
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil && l.pol.allows(cred) {
			return c, nil
		}
		if err == nil {
			l.log.Warn("refused control connection", "uid", cred.Uid, "pid", cred.Pid)
		}
		c.Close()
	}
}

func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, cerr
}

// peerKey keys a control connection's peer credentials in its requests'
// contexts.
type peerKey struct{}

// withPeer puts the connection's peer credentials (SO_PEERCRED, as the
// listener checked them) in its requests' contexts.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	if cred, err := peerCred(c); err == nil {
		return context.WithValue(ctx, peerKey{}, cred)
	}
	return ctx
}

// peerOf is the peer of the connection a request came on (nil: unknown).
func peerOf(ctx context.Context) *unix.Ucred {
	cred, _ := ctx.Value(peerKey{}).(*unix.Ucred)
	return cred
}
