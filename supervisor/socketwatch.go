package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/handover"
)

// socketCheckEvery is how often the daemon checks that its socket
// directory, lock file and socket are still there (three stat calls).
const socketCheckEvery = time.Second

// socketWatch keeps the control socket reachable when its directory, its
// lock file or the socket file is removed from under the daemon (a /tmp
// cleaner, logout removing $XDG_RUNTIME_DIR, an operator clearing /run):
// it recreates them, as claim and listen first made them, and serves on
// the new socket. Another daemon is kept out meanwhile by the abstract
// socket (see bindAbstract). A periodic check rather than inotify: a
// watch on the directory dies with it, and one on every ancestor would
// cost more than a stat a second.
type socketWatch struct {
	s     *Supervisor
	st    config.Settings
	srv   *http.Server
	cur   *credListener
	fault string // the last failure logged, so it is logged once
	// stateIno is the inode of the last state file found removed, so
	// that it is said once while the writer replaces it.
	stateIno uint64
}

// close keeps the listener's socket file if it is no longer ours (the
// watch could not replace it: another daemon's socket may be there), so
// that shutting the server down unlinks only our own.
func (w *socketWatch) close() {
	if w.cur.gone(w.st.Socket) {
		w.cur.Listener.(*net.UnixListener).SetUnlinkOnClose(false)
	}
}

// serve serves the control API on ln until it is retired or the server
// shuts down; anything else ends the daemon.
func (w *socketWatch) serve(ln *credListener) {
	go func() {
		if err := w.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) && !ln.retired.Load() {
			w.s.log.Error("control socket failed", "err", err)
			w.s.requestShutdown()
		}
	}()
}

func (w *socketWatch) run(ctx context.Context) {
	t := time.NewTicker(socketCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if w.s.hooks.socketCheck != nil {
			w.s.hooks.socketCheck()
		}
		w.check()
	}
}

// check repairs what is missing, logging one warning per repair, and a
// failure to repair once until it changes or is over.
func (w *socketWatch) check() {
	path := w.st.Socket
	lockLost, socketGone := w.s.inst.lockLost(), w.cur.gone(path)
	if !lockLost && !socketGone {
		w.fault = ""
		// The state file alone (a /tmp cleaner removing the aged
		// file): the writer creates it again, the lock showing that
		// the directory is still the one checked. Said once per file.
		if lost, ino := w.s.inst.stateLost(); lost {
			w.s.inst.markDirty()
			if ino != w.stateIno {
				w.stateIno = ino
				w.s.log.Warn("the state file was removed or replaced from under the running daemon; recreated it", "path", w.s.inst.statePath)
			}
		}
		return
	}
	fail := func(err error) {
		if msg := err.Error(); msg != w.fault {
			w.fault = msg
			w.s.log.Error("the socket directory, lock file or socket was removed or replaced and cannot be recreated; gosup ctl cannot reach this daemon until it is", "socket", path, "err", err)
		}
	}
	if lockLost {
		if err := w.s.inst.relock(); errors.Is(err, errLockHeld) {
			// Another daemon got in: its lock and socket stay, and
			// this daemon, unreachable, says so once.
			if msg := err.Error(); msg != w.fault {
				w.fault = msg
				w.s.log.Error("another gosup daemon took this daemon's socket path after its lock file was removed; leaving that daemon's lock and socket alone: gosup ctl cannot reach this daemon (stop it by its pid)", "socket", path, "pid", os.Getpid(), "err", err)
			}
			return
		} else if err != nil {
			fail(err)
			return
		}
	}
	if socketGone {
		ln, err := listen(path, uint32(w.st.SocketPerm()), w.st.SocketGroup, w.s.log)
		if err != nil {
			fail(err)
			return
		}
		w.cur.retire()
		w.cur = ln
		w.serve(ln)
	}
	if err := w.s.admin.save(); err != nil {
		w.s.log.Warn("could not save the processes stopped with ctl stop", "err", err)
	}
	w.fault = ""
	w.s.log.Warn("the socket directory, lock file or socket was removed or replaced from under the running daemon; recreated them", "socket", path, "lock_file", lockLost, "socket_file", socketGone)
}

// controlSocket is the control socket's server and the watch that keeps
// it reachable; an upgrade stops the watch and pauses the listener.
type controlSocket struct {
	s     *Supervisor
	srv   *http.Server
	watch *socketWatch

	mu   sync.Mutex
	stop func() // ends the running watch and waits for it; nil when none runs
}

// startWatch runs the watch (if it is not running).
func (c *controlSocket) startWatch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.s.guard.Run(ctx, "socket watch", c.watch.run)
	}()
	c.stop = func() {
		cancel()
		<-done
	}
}

// stopWatch ends the watch and returns what starts it again.
func (c *controlSocket) stopWatch() (restart func()) {
	c.mu.Lock()
	stop := c.stop
	c.stop = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	return c.startWatch
}

// pause stops accepting connections (see credListener.pause); call it
// with the watch stopped, which could replace the listener.
func (c *controlSocket) pause(ctx context.Context) (func(), error) {
	return c.watch.cur.pause(ctx)
}

// handover describes the listener for the next image.
func (c *controlSocket) handover() (handover.Socket, error) {
	ul, ok := c.watch.cur.Listener.(*net.UnixListener)
	if !ok {
		return handover.Socket{}, errors.New("control socket: not a unix socket")
	}
	fd, err := procgroup.RawFD(ul)
	if err != nil {
		return handover.Socket{}, fmt.Errorf("control socket: %w", err)
	}
	return handover.Socket{FD: fd, Path: c.watch.st.Socket, Dev: c.watch.cur.dev, Ino: c.watch.cur.ino, Gid: c.watch.cur.pol.gid}, nil
}
