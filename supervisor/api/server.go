package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Daemon is what the control API serves; the supervisor implements it.
// The server decodes and bounds requests and encodes responses; the
// daemon decides. An error the daemon marks with NotFound, Invalid,
// Refused or Unavailable is served with that status, any other as 500.
type Daemon interface {
	Info() Info
	// Status reports the processes matching patterns (all when none), and
	// one-line warnings for the status table.
	Status(patterns []string) ([]ProcStatus, []string, error)
	// Act runs start, stop, restart or signal on the processes req names;
	// ctx ends when the client goes away.
	Act(ctx context.Context, verb string, req ActionRequest) ([]Result, error)
	// Reload re-reads the configuration and applies it (dryRun: only
	// reports the difference); it runs to its end whoever waits for it.
	Reload(dryRun bool) (*ReloadPlan, error)
	Nginx() (NginxStatus, error)
	// Tail returns the log file of one process's stream (stdout or
	// stderr) and its last n lines.
	Tail(name, stream string, n int) (path string, last []byte, err error)
	// ReopenLogs closes the log files of the processes matching patterns
	// (all when none) and opens them again at their paths, one result per
	// process.
	ReopenLogs(patterns []string) ([]Result, error)
	// Shutdown makes the daemon stop everything and exit; it does not wait.
	Shutdown()
}

// statusError is a daemon's error and the HTTP status it is served with.
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// NotFound marks err as naming what does not exist (404).
func NotFound(err error) error { return &statusError{http.StatusNotFound, err} }

// Invalid marks err as a request that cannot be carried out as asked (400).
func Invalid(err error) error { return &statusError{http.StatusBadRequest, err} }

// Refused marks err as a configuration that does not load (422).
func Refused(err error) error { return &statusError{http.StatusUnprocessableEntity, err} }

// Unavailable marks err as the daemon unable to take the request now:
// shutting down, or the client gave up waiting (503).
func Unavailable(err error) error { return &statusError{http.StatusServiceUnavailable, err} }

// maxRequestBytes bounds a request body.
const maxRequestBytes = 64 << 10

// NewHandler serves the control API of d.
func NewHandler(d Daemon) http.Handler {
	s := server{d}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", s.info)
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("POST /v1/start", s.action)
	mux.HandleFunc("POST /v1/stop", s.action)
	mux.HandleFunc("POST /v1/restart", s.action)
	mux.HandleFunc("POST /v1/signal", s.action)
	mux.HandleFunc("GET /v1/tail", s.tail)
	mux.HandleFunc("POST /v1/shutdown", s.shutdown)
	mux.HandleFunc("GET /v1/nginx", s.nginx)
	mux.HandleFunc("POST /v1/reload", s.reload)
	mux.HandleFunc("POST /v1/reopen-logs", s.reopenLogs)
	return mux
}

type server struct{ d Daemon }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var se *statusError
	if errors.As(err, &se) {
		code = se.code
	}
	writeJSON(w, code, ErrorResponse{Error: err.Error()})
}

func (s server) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.d.Info())
}

func (s server) status(w http.ResponseWriter, r *http.Request) {
	procs, warnings, err := s.d.Status(r.URL.Query()["p"])
	if err != nil {
		writeErr(w, err)
		return
	}
	for _, warning := range warnings {
		w.Header().Add(WarningHeader, warning)
	}
	writeJSON(w, http.StatusOK, procs)
}

func (s server) action(w http.ResponseWriter, r *http.Request) {
	var req ActionRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil {
		writeErr(w, Invalid(fmt.Errorf("bad request body: %w", err)))
		return
	}
	if len(req.Patterns) == 0 {
		writeErr(w, Invalid(errors.New("no process named: give a pattern such as web:web_00, web:*, web or all")))
		return
	}
	verb := r.URL.Path[len("/v1/"):]
	results, err := s.d.Act(r.Context(), verb, req)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Results: results})
}

// reload re-reads the configuration and applies it (or, dry, only reports
// the difference). An invalid configuration is 422 with the error.
func (s server) reload(w http.ResponseWriter, r *http.Request) {
	var req ReloadRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, Invalid(fmt.Errorf("bad request body: %w", err)))
		return
	}
	plan, err := s.d.Reload(req.DryRun)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, plan)
}

// reopenLogs reopens log files at their paths (after an external
// rotation); an empty body means every process.
func (s server) reopenLogs(w http.ResponseWriter, r *http.Request) {
	var req ReopenRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, Invalid(fmt.Errorf("bad request body: %w", err)))
		return
	}
	results, err := s.d.ReopenLogs(req.Patterns)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ActionResponse{Results: results})
}

func (s server) nginx(w http.ResponseWriter, r *http.Request) {
	st, err := s.d.Nginx()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s server) shutdown(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusAccepted, Info{Pid: os.Getpid()})
	s.d.Shutdown()
}

// tail serves the last n lines of a process's log, then with follow=1
// streams what is appended until the client goes away.
func (s server) tail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		n = 10
	}
	path, data, err := s.d.Tail(q.Get("name"), q.Get("stream"), n)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(data)
	if q.Get("follow") != "1" {
		return
	}
	follow(r, w, path)
}

// follow streams bytes appended to path, reopening it after rotation, until
// the client disconnects. It checks four times a second, like tail -F.
func follow(r *http.Request, w http.ResponseWriter, path string) {
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	var f *os.File
	var off int64
	open := func() {
		if f != nil {
			f.Close()
		}
		f, off = nil, 0
		if nf, err := os.Open(path); err == nil {
			f = nf
		}
	}
	open()
	if f != nil {
		off, _ = f.Seek(0, io.SeekEnd)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		if fi, err := os.Stat(path); err == nil && f != nil {
			if cur, err := f.Stat(); err == nil && (!os.SameFile(fi, cur) || fi.Size() < off) {
				open()
			}
		} else if f == nil {
			open()
		}
		if f == nil {
			continue
		}
		for {
			n, err := f.ReadAt(buf, off)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				off += int64(n)
			}
			if err != nil || n == 0 {
				break
			}
		}
		if fl != nil {
			fl.Flush()
		}
	}
}
