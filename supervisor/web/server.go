package web

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The listener's bounds: a client that sends its headers slowly, sends
// too many, or reads its answer slowly is cut off; at most MaxConns
// connections are served at once.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 16 << 10
	// RefuseTimeout bounds the 503 written to a connection refused.
	RefuseTimeout = time.Second
)

// Limits are a server's time and size bounds.
type Limits struct {
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout, RefuseTimeout time.Duration
	MaxHeaderBytes                                                           int
}

// DefaultLimits are the listener's bounds (the constants above).
func DefaultLimits() Limits {
	return Limits{ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout,
		IdleTimeout: IdleTimeout, RefuseTimeout: RefuseTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// Counters are the listener's connection counts. The daemon keeps one
// across the servers a reload or an upgrade replaces.
type Counters struct {
	Accepted atomic.Int64 // connections served
	Refused  atomic.Int64 // connections refused: MaxConns were being served
	Active   atomic.Int64 // connections being served now
}

// Server serves a handler on one listener with the bounds above.
type Server struct {
	srv      *http.Server
	counters *Counters
	maxConns atomic.Int64
	active   atomic.Int64 // this server's connections open now
	closing  atomic.Bool  // Shutdown began: Accept returns
	log      *slog.Logger
	wg       sync.WaitGroup // refusals under way
	refusing chan struct{}  // a slot per refusal under way
	refuseIn time.Duration  // Limits.RefuseTimeout

	// gate, while set, holds Accept: new connections wait in the
	// listener's backlog (Pause).
	gateMu sync.Mutex
	gate   *acceptGate
	ln     *limitListener // set by Serve
	served chan struct{}  // closed once Serve set ln
}

// acceptGate is one pause of Accept.
type acceptGate struct {
	parked, resume       chan struct{}
	parkOnce, resumeOnce sync.Once
}

// release lets the parked Accept go on.
func (g *acceptGate) release() { g.resumeOnce.Do(func() { close(g.resume) }) }

// deadliner is a listener whose Accept a deadline wakes (TCP, unix).
type deadliner interface {
	SetDeadline(time.Time) error
}

// NewServer makes a server of h that serves at most maxConns connections
// at once, counting in c, with DefaultLimits.
func NewServer(h http.Handler, maxConns int, c *Counters, logger *slog.Logger) *Server {
	return NewServerLimits(h, maxConns, c, logger, DefaultLimits())
}

// NewServerLimits is NewServer with other bounds (tests).
func NewServerLimits(h http.Handler, maxConns int, c *Counters, logger *slog.Logger, lim Limits) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{counters: c, log: logger, served: make(chan struct{}), refusing: make(chan struct{}, maxRefusing), refuseIn: lim.RefuseTimeout}
	s.maxConns.Store(int64(maxConns))
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          log.New(&logWriter{logger}, "", 0),
	}
	return s
}

// SetMaxConns changes the bound on connections served at once.
func (s *Server) SetMaxConns(n int) { s.maxConns.Store(int64(n)) }

// Serve serves ln until Shutdown, which closes ln. ln must be a
// *net.TCPListener or a *net.UnixListener (Pause sets its deadline).
func (s *Server) Serve(ln net.Listener) error {
	s.ln = &limitListener{Listener: ln, s: s}
	close(s.served)
	if _, ok := ln.(deadliner); !ok {
		return errors.New("web: a listener without SetDeadline")
	}
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) || s.closing.Load() {
		return nil
	}
	return err
}

// Pause stops accepting without closing the listener (new connections
// wait in its backlog: for the next image of an upgrade, which takes the
// listener over), answers the requests read so far, and waits until
// every connection is closed: keep-alives are off, so each closes after
// its answer. When ctx ends first, it returns ctx's error, paused all
// the same (the connections left are the caller's to cut). resume
// accepts again. Unlike http.Server.Shutdown, a request read after Pause
// began is answered, not dropped.
func (s *Server) Pause(ctx context.Context) (resume func(), err error) {
	<-s.served
	dl, ok := s.ln.Listener.(deadliner)
	if !ok {
		return nil, errors.New("pause the HTTP listener: a listener without SetDeadline")
	}
	g := &acceptGate{parked: make(chan struct{}), resume: make(chan struct{})}
	s.gateMu.Lock()
	if s.gate != nil {
		s.gateMu.Unlock()
		return nil, errors.New("pause the HTTP listener: paused already")
	}
	s.gate = g
	s.gateMu.Unlock()
	resume = sync.OnceFunc(func() {
		s.gateMu.Lock()
		s.gate = nil
		s.gateMu.Unlock()
		_ = dl.SetDeadline(time.Time{})
		s.srv.SetKeepAlivesEnabled(true)
		g.release()
	})
	s.srv.SetKeepAlivesEnabled(false) // and closes the idle ones
	// A deadline in the past wakes an Accept blocked in the poller.
	if err := dl.SetDeadline(time.Unix(1, 0)); err != nil {
		resume()
		return nil, fmt.Errorf("pause the HTTP listener: %w", err)
	}
	select {
	case <-g.parked:
	case <-ctx.Done():
		return resume, fmt.Errorf("pause the HTTP listener: %w", ctx.Err())
	}
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for s.active.Load() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return resume, fmt.Errorf("%d HTTP connections still open: %w", s.active.Load(), ctx.Err())
		}
	}
	return resume, nil
}

// Shutdown stops accepting and answers the requests read so far (Pause),
// until ctx ends, then closes the listener and every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	resume, err := s.Pause(ctx)
	s.closing.Store(true)
	if resume != nil {
		resume() // the parked Accept returns, closed
	}
	// Paused by someone else (an upgrade's handover): released too.
	s.gateMu.Lock()
	g := s.gate
	s.gate = nil
	s.gateMu.Unlock()
	if g != nil {
		g.release()
	}
	cerr := s.srv.Close()
	s.wg.Wait()
	return cmp.Or(err, cerr)
}

// limitListener accepts at most s.maxConns connections at once: one more
// gets a 503 and is closed, counted in Refused.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.s.gateMu.Lock()
			g := l.s.gate
			l.s.gateMu.Unlock()
			if g != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				g.parkOnce.Do(func() { close(g.parked) })
				<-g.resume
				if l.s.closing.Load() {
					return nil, net.ErrClosed
				}
				continue
			}
			return nil, err
		}
		s := l.s
		if s.counters.Active.Add(1) > s.maxConns.Load() {
			s.counters.Active.Add(-1)
			n := s.counters.Refused.Add(1)
			if n == 1 || n%100 == 0 {
				s.log.Warn("HTTP listener: connection refused: too many connections at once", "max_connections", s.maxConns.Load(), "refused", n)
			}
			select {
			case s.refusing <- struct{}{}:
				s.wg.Go(func() {
					defer func() { <-s.refusing }()
					refuse(c, s.refuseIn)
				})
			default:
				c.Close()
			}
			continue
		}
		s.counters.Accepted.Add(1)
		s.active.Add(1)
		return &countedConn{Conn: c, active: []*atomic.Int64{&s.counters.Active, &s.active}}, nil
	}
}

// refused is the answer to a connection over the bound.
const refused = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 48\r\n\r\n503 too many connections at once: retry shortly\n"

// maxRefusing bounds the refusals answered at once; past it a
// connection is closed without an answer (still counted).
const maxRefusing = 64

// refuse reads c's request headers (within timeout, at most 4 KiB: a
// client that gets its answer before it sent its request may take it for
// a broken connection), answers 503 and closes it.
func refuse(c net.Conn, timeout time.Duration) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	n := 0
	for n < len(buf) && !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	_, _ = c.Write([]byte(refused))
}

// countedConn counts itself out of active once closed.
type countedConn struct {
	net.Conn
	active []*atomic.Int64
	once   sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		for _, a := range c.active {
			a.Add(-1)
		}
	})
	return err
}

// logWriter is net/http's error log (a TLS handshake error, a panic in a
// handler) as the daemon's warnings.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	msg := string(p)
	for len(msg) > 0 && msg[len(msg)-1] == '\n' {
		msg = msg[:len(msg)-1]
	}
	w.log.Warn("HTTP listener: " + oneLine(msg, 2048))
	return len(p), nil
}
