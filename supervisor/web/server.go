package web

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
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
	// refuseTimeout bounds the 503 written to a connection refused.
	refuseTimeout = time.Second
)

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
	log      *slog.Logger
	wg       sync.WaitGroup // refusals under way
}

// NewServer makes a server of h that serves at most maxConns connections
// at once, counting in c.
func NewServer(h http.Handler, maxConns int, c *Counters, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{counters: c, log: logger}
	s.maxConns.Store(int64(maxConns))
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          log.New(&logWriter{logger}, "", 0),
	}
	return s
}

// SetMaxConns changes the bound on connections served at once.
func (s *Server) SetMaxConns(n int) { s.maxConns.Store(int64(n)) }

// Serve serves ln until Shutdown, which closes ln.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(&limitListener{Listener: ln, s: s})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, closes the listener and waits for the
// connections being served until ctx ends, then closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	s.wg.Wait()
	return err
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
			return nil, err
		}
		s := l.s
		if s.counters.Active.Add(1) > s.maxConns.Load() {
			s.counters.Active.Add(-1)
			n := s.counters.Refused.Add(1)
			if n == 1 || n%100 == 0 {
				s.log.Warn("HTTP listener: connection refused: too many connections at once", "max_connections", s.maxConns.Load(), "refused", n)
			}
			s.wg.Go(func() { refuse(c) })
			continue
		}
		s.counters.Accepted.Add(1)
		return &countedConn{Conn: c, active: &s.counters.Active}, nil
	}
}

// refused is the answer to a connection over the bound.
const refused = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 48\r\n\r\n503 too many connections at once: retry shortly\n"

// refuse answers c 503 without reading its request, and closes it.
func refuse(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(refuseTimeout))
	_, _ = c.Write([]byte(refused))
	_ = c.Close()
}

// countedConn counts itself out of active once closed.
type countedConn struct {
	net.Conn
	active *atomic.Int64
	once   sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.active.Add(-1) })
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
