package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/handover"
	"github.com/gosup/gosup/supervisor/web"
	"golang.org/x/sys/unix"
)

// httpListener is the daemon's read-only HTTP listener ([http]): it
// serves package web's handler on the address the configuration in force
// names. It never stops the daemon: an address it cannot listen on (a
// port taken) is logged, shown in ctl info and ctl status, and tried
// again (httpRetryMin, doubling up to httpRetryMax) until it works or a
// reload changes [http].
type httpListener struct {
	s   *Supervisor
	log *slog.Logger
	// counters go on across the servers a reload or an upgrade replaces.
	counters web.Counters
	handler  func() http.Handler // built once per daemon start, when first served
	// live shares /healthz's liveness checks between requests.
	live liveMemo
	// draining: an upgrade's handover waits for the requests in flight.
	draining atomic.Bool
	// shown is what ctl info and ctl status show of the listener, set
	// under mu at each change and read without it: mu is held while the
	// requests in flight finish (a move, an upgrade's drain), and a
	// /healthz in flight asks ctl info.
	shown atomic.Pointer[httpShown]

	// creds are the credentials in force (nil: none asked), read by each
	// request without l.mu (held while the requests in flight finish).
	creds atomic.Pointer[web.Credentials]
	// hostCheck: the handler answers only requests for an IP address or
	// localhost (config.HTTP.HostCheck).
	hostCheck atomic.Bool

	mu  sync.Mutex
	cfg *config.HTTP // in force; nil: off
	// bound is the listener in service (nil: none); srv serves it until
	// served is closed.
	bound  *boundListener
	srv    *web.Server
	served chan struct{}
	// err is why the listener is not listening (nil: it is, or it is
	// off), since errAt; failures counts the attempts that failed since
	// the last success.
	err      error
	errAt    time.Time
	failures int
	// retry ends the retries under way (nil: none), and retried is closed
	// once they ended.
	retry   context.CancelFunc
	retried chan struct{}
	// started: start ran (an apply before it has nothing to do: start
	// takes the configuration in force); stopped: stop ran.
	started, stopped bool
}

// httpShown is the listener's state as ctl info shows it.
type httpShown struct {
	cfg      *config.HTTP // nil: off
	state    string
	err      error
	errAt    time.Time
	failures int
}

// publish makes the state under l.mu the one shown. l.mu is held.
func (l *httpListener) publish() {
	sh := &httpShown{cfg: l.cfg}
	switch {
	case l.bound != nil:
		sh.state = "listening"
	case l.err != nil:
		sh.state, sh.err, sh.errAt, sh.failures = "failed", l.err, l.errAt, l.failures
	case l.stopped:
		sh.state = "stopped"
	default:
		sh.state = "starting"
	}
	l.shown.Store(sh)
}

// Retries of a listen that failed: the first after httpRetryMin, each
// next twice as late, up to httpRetryMax.
const (
	httpRetryMin = time.Second
	httpRetryMax = 30 * time.Second
	// httpShutdownWait bounds the wait for the requests being served when
	// the listener stops (shutdown, a reload that moves it).
	httpShutdownWait = 2 * time.Second
)

// boundListener is a listening socket and what identifies it.
type boundListener struct {
	ln       net.Listener
	listen   string // as [http] listen says
	unix     bool
	dev, ino uint64 // of the unix socket file
	gid      int    // socket_group's, -1: none
	mode     os.FileMode
}

// newHTTPListener makes the listener of s; nothing listens until start.
func newHTTPListener(s *Supervisor) *httpListener {
	return &httpListener{s: s, log: s.log.With("component", "http")}
}

// start begins serving the [http] of the configuration in force (nil:
// off), adopting h, the listening socket an earlier image handed over,
// when not nil.
func (l *httpListener) start(h *handover.HTTP) {
	// Built when first served: a daemon without [http] pays nothing for
	// it (the metrics' Go collector alone takes milliseconds).
	l.handler = sync.OnceValue(func() http.Handler {
		return web.NewHandler(web.Options{
			Metrics:   l.s.metricsHandler(),
			Page:      l.s.statusPageHandler(),
			Health:    l.s.health,
			Auth:      l.credentials,
			LocalOnly: l.hostCheck.Load,
			Logger:    l.log,
		})
	})
	var adopted *boundListener
	if h != nil {
		b, err := adoptHTTP(h)
		if err != nil {
			l.log.Error("could not take up the HTTP listener handed over; listening afresh", "listen", h.Listen, "err", err)
		} else {
			adopted = b
		}
		l.counters.Accepted.Store(h.Accepted)
		l.counters.Refused.Store(h.Refused)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.publish()
	// Under l.mu: a reload that swapped the configuration before applies
	// it after (apply waits for started).
	cfg := l.s.config().HTTP
	l.started = true
	l.cfg = cfg
	l.setCreds(cfg)
	if cfg == nil {
		if adopted != nil {
			adopted.close()
		}
		return
	}
	if adopted != nil && adopted.matches(cfg) {
		l.serve(adopted)
		return
	}
	if adopted != nil {
		adopted.close()
	}
	l.bind()
}

// credentials are the credentials in force (nil: none asked).
func (l *httpListener) credentials() *web.Credentials { return l.creds.Load() }

// setCreds makes cfg's credentials those in force.
func (l *httpListener) setCreds(cfg *config.HTTP) {
	var c *web.Credentials
	if cfg != nil && cfg.Auth() {
		c = web.NewCredentials(cfg.Users, cfg.Tokens)
	}
	l.creds.Store(c)
	l.hostCheck.Store(cfg != nil && cfg.HostCheck())
}

// apply makes cfg (nil: off), a reload's [http], the one in force: the
// credentials are replaced at once; a changed address, socket mode or
// group moves the listener (the requests being served finish first); a
// listener that failed is tried again at once.
func (l *httpListener) apply(cfg *config.HTTP) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started || l.stopped {
		return
	}
	defer l.publish()
	l.cfg = cfg
	l.setCreds(cfg)
	if l.bound != nil && cfg != nil && l.bound.matches(cfg) {
		l.srv.SetMaxConns(cfg.MaxConnections)
		return
	}
	l.endRetry()
	l.unserve()
	l.err, l.failures = nil, 0
	if cfg != nil && !l.stopped {
		l.bind()
	}
}

// stop stops listening and waits for the requests being served (at most
// httpShutdownWait); nothing listens afterwards.
func (l *httpListener) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.publish()
	l.stopped = true
	l.endRetry()
	l.unserve()
}

// bind listens on l.cfg and serves it, or logs why not and retries.
// l.mu is held.
func (l *httpListener) bind() {
	b, err := listenHTTP(l.cfg, l.log)
	if err == nil {
		if l.failures > 0 {
			l.log.Info("HTTP listener listening, after failing", "listen", l.cfg.Listen, "attempts", l.failures+1)
		} else {
			l.log.Info("HTTP listener listening", "listen", l.cfg.Listen, "auth", l.cfg.AuthText())
		}
		l.err, l.failures = nil, 0
		l.serve(b)
		return
	}
	if l.failures == 0 || l.err == nil || l.err.Error() != err.Error() {
		l.log.Error("HTTP listener cannot listen; the daemon and its processes go on without it, and it is tried again", "listen", l.cfg.Listen, "err", err)
		l.errAt = time.Now()
	}
	l.err = err
	l.failures++
	l.publish()
	if l.retry == nil {
		l.startRetry()
	}
}

// startRetry tries bind again, later and later, until it works or
// endRetry. l.mu is held.
func (l *httpListener) startRetry() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	l.retry, l.retried = cancel, done
	delay := l.s.hooks.httpRetry
	if delay == 0 {
		delay = httpRetryMin
	}
	go func() {
		defer close(done)
		l.s.guard.Run(ctx, "HTTP listener retry", func(ctx context.Context) {
			t := time.NewTimer(delay)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				l.mu.Lock()
				if ctx.Err() != nil {
					l.mu.Unlock()
					return
				}
				l.bind()
				ok := l.bound != nil
				if ok {
					l.retry, l.retried = nil, nil // done: endRetry has nothing to end
				}
				l.mu.Unlock()
				if ok {
					return
				}
				delay = min(2*delay, httpRetryMax)
				t.Reset(delay)
			}
		})
	}()
}

// endRetry ends the retries under way and waits for them. l.mu is held
// (the retry loop takes it only after checking its context, so it ends).
func (l *httpListener) endRetry() {
	if l.retry == nil {
		return
	}
	cancel, done := l.retry, l.retried
	l.retry, l.retried = nil, nil
	cancel()
	l.mu.Unlock()
	<-done
	l.mu.Lock()
}

// serve serves b. l.mu is held.
func (l *httpListener) serve(b *boundListener) {
	l.bound = b
	lim := web.DefaultLimits()
	if l.s.hooks.httpLimits != nil {
		lim = *l.s.hooks.httpLimits
	}
	l.srv = web.NewServerLimits(l.handler(), l.cfg.MaxConnections, &l.counters, l.log, lim)
	served := make(chan struct{})
	l.served = served
	srv := l.srv
	// Shown as listening before the first request can be answered: a
	// client that got an answer (a /healthz) and then asks ctl info saw
	// no listener at all (22 times in 600 under -race).
	l.publish()
	go func() {
		defer close(served)
		if err := srv.Serve(b.ln); err != nil {
			l.log.Error("HTTP listener stopped serving", "listen", b.listen, "err", err)
		}
	}()
}

// unserve stops serving and closes the listening socket (removing its
// unix socket file, if still its own). l.mu is held.
func (l *httpListener) unserve() {
	if l.bound == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdownWait)
	_ = l.srv.Shutdown(ctx)
	cancel()
	<-l.served
	l.bound.close()
	l.bound, l.srv, l.served = nil, nil, nil
}

// handover stops accepting, keeping the listening socket open:
// connections wait in its backlog for the next image, to which its
// descriptor is handed. The requests being served are answered first (at
// most upgradeDrain; then the exec cuts them). resume accepts again (the
// exec failed). Nil without a listener.
func (l *httpListener) handover() (h *handover.HTTP, resume func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.endRetry()
	if l.bound == nil {
		// Not listening (off, or failing): the next image tries afresh;
		// if the exec fails, this one tries again.
		return nil, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.cfg != nil && !l.stopped && l.bound == nil && l.retry == nil {
				l.bind()
			}
		}, nil
	}
	b, srv := l.bound, l.srv
	fd, err := b.rawFD()
	if err != nil {
		return nil, nil, fmt.Errorf("HTTP listener: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(l.s.hooks.httpDrain, upgradeDrain))
	l.draining.Store(true)
	resumeSrv, err := srv.Pause(ctx)
	l.draining.Store(false)
	cancel()
	if resumeSrv == nil {
		return nil, nil, err
	}
	if err != nil {
		l.log.Warn("HTTP requests still in flight are cut by the upgrade", "err", err)
	}
	h = &handover.HTTP{FD: fd, Listen: b.listen, Unix: b.unix, Dev: b.dev, Ino: b.ino, Gid: b.gid, Mode: uint32(b.mode),
		Accepted: l.counters.Accepted.Load(), Refused: l.counters.Refused.Load()}
	// The exec failed: accept again. (l.bound is still b, l.srv srv:
	// the listener never stopped serving, only accepting.)
	return h, resumeSrv, nil
}

// info is the listener as ctl info shows it (nil: off).
func (l *httpListener) info() *api.HTTPInfo {
	if l == nil {
		return nil
	}
	sh := l.shown.Load()
	if sh == nil || sh.cfg == nil {
		return nil
	}
	in := &api.HTTPInfo{Listen: sh.cfg.Listen, Auth: sh.cfg.AuthText(), MaxConnections: sh.cfg.MaxConnections,
		Accepted: l.counters.Accepted.Load(), Refused: l.counters.Refused.Load(), Active: l.counters.Active.Load(), State: sh.state}
	if sh.err != nil {
		in.Error, in.ErrorAt, in.Attempts = sh.err.Error(), sh.errAt, sh.failures
	}
	return in
}

// warning is what ctl status warns of the listener ("": nothing).
func (l *httpListener) warning() string {
	in := l.info()
	if in == nil || in.State != "failed" {
		return ""
	}
	return fmt.Sprintf("HTTP listener: cannot listen on %s (%d attempts since %s): %s", in.Listen, in.Attempts, in.ErrorAt.Format(time.DateTime), in.Error)
}

// matches reports whether b listens as cfg asks.
func (b *boundListener) matches(cfg *config.HTTP) bool {
	if b.listen != cfg.Listen || b.unix != cfg.Unix {
		return false
	}
	if !b.unix {
		return true
	}
	gid, err := groupID(cfg.SocketGroup)
	return err == nil && gid == b.gid && b.mode == cfg.SocketPerm()
}

// rawFD is b's descriptor, which an exec hands over.
func (b *boundListener) rawFD() (int, error) {
	switch ln := b.ln.(type) {
	case *net.TCPListener:
		return procgroup.RawFD(ln)
	case *net.UnixListener:
		return procgroup.RawFD(ln)
	}
	return -1, fmt.Errorf("listener of type %T", b.ln)
}

// close closes b; a unix socket file is removed only if it is still the
// one b made (a new daemon's socket may be there).
func (b *boundListener) close() {
	ul, ok := b.ln.(*net.UnixListener)
	if ok {
		var st unix.Stat_t
		if unix.Lstat(b.listen, &st) != nil || st.Dev != b.dev || st.Ino != b.ino {
			ul.SetUnlinkOnClose(false)
		} else {
			ul.SetUnlinkOnClose(true)
		}
	}
	_ = b.ln.Close()
}

// groupID is a group's gid (-1 for "").
func groupID(group string) (int, error) {
	if group == "" {
		return -1, nil
	}
	pol, err := newPeerPolicy(group)
	if err != nil {
		return -1, err
	}
	return pol.gid, nil
}

// listenHTTP listens as cfg says. A unix socket is made as the control
// socket is: in a directory of the daemon's own (made if missing), never
// reachable before its mode is set; a stale socket file is replaced, one
// that a process listens on is not, nor anything but a socket.
func listenHTTP(cfg *config.HTTP, log *slog.Logger) (*boundListener, error) {
	if !cfg.Unix {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, err
		}
		return &boundListener{ln: ln, listen: cfg.Listen, gid: -1}, nil
	}
	path := cfg.Listen
	gid, err := groupID(cfg.SocketGroup)
	if err != nil {
		return nil, err
	}
	dirMode := os.FileMode(0o700)
	if gid >= 0 {
		dirMode = 0o750
	}
	if err := secureSocketDir(filepath.Dir(path), dirMode); err != nil {
		return nil, err
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ul, err := listenUnixPrivate(path)
	if err != nil {
		return nil, err
	}
	ul.SetUnlinkOnClose(true)
	fail := func(err error) (*boundListener, error) {
		ul.Close()
		return nil, err
	}
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			return fail(fmt.Errorf("set group %s on %s: %w", cfg.SocketGroup, path, err))
		}
		// The group must also get through the socket's directory (0750
		// when gosup made it), as for the control socket.
		dir := filepath.Dir(path)
		if err := os.Chown(dir, -1, gid); err != nil {
			log.Warn("could not give the HTTP socket's directory to socket_group; its members cannot reach the socket", "dir", dir, "group", cfg.SocketGroup, "err", err)
		}
	}
	if err := os.Chmod(path, cfg.SocketPerm()); err != nil {
		return fail(fmt.Errorf("set permissions (%04o) on %s: %w", cfg.SocketPerm(), path, err))
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fail(fmt.Errorf("stat %s: %w", path, err))
	}
	return &boundListener{ln: ul, listen: path, unix: true, dev: st.Dev, ino: st.Ino, gid: gid, mode: cfg.SocketPerm()}, nil
}

// listenUnixPrivate listens on a unix socket at path made with mode 0600
// (0600 less the umask): nobody else may connect before the caller sets
// its mode. The mode is set on the socket before bind (Linux makes the
// file with the socket's mode), not by the umask, which is the process's:
// a child spawned meanwhile would inherit it.
func listenUnixPrivate(path string) (*net.UnixListener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: socket: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // net.FileListener serves a duplicate
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return nil, fmt.Errorf("listen on %s: fchmod: %w", path, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("listen on %s: bind: %w", path, err)
	}
	ln, err := func() (net.Listener, error) {
		if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", path, err)
		}
		return net.FileListener(f)
	}()
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return ln.(*net.UnixListener), nil
}

// removeStaleSocket removes the socket file at path if no process listens
// on it; it refuses to remove anything else.
func removeStaleSocket(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("%s exists and is %s, not a socket: gosup replaces only a stale socket; remove it, or choose another listen path", path, fileType(st.Mode))
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process listens on it", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether a process listens on it: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// adoptHTTP serves the listening socket an earlier image handed over.
func adoptHTTP(h *handover.HTTP) (*boundListener, error) {
	f, err := procgroup.InheritedFile(h.FD, "HTTP listener")
	if err != nil {
		return nil, err
	}
	ln, err := net.FileListener(f) // a duplicate, close-on-exec
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("HTTP listener descriptor %d: %w", h.FD, err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	return &boundListener{ln: ln, listen: h.Listen, unix: h.Unix, dev: h.Dev, ino: h.Ino, gid: h.Gid, mode: os.FileMode(h.Mode)}, nil
}
