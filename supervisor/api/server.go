package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosup/gosup/internal/reuse"
	"github.com/gosup/gosup/logtail"
)

// Daemon is what the control API serves; the supervisor implements it.
// The server decodes and bounds requests and encodes responses; the
// daemon decides. An error the daemon marks with NotFound, Invalid,
// Refused or Unavailable is served with that status, any other as 500.
type Daemon interface {
	Info() Info
	// Status appends the processes matching patterns (all when none) to
	// dst, and reports one-line warnings for the status table. The slice
	// it returns is the caller's, which clears it and appends the next
	// status to it: it must share no element with one the daemon keeps.
	Status(dst []ProcStatus, patterns []string) ([]ProcStatus, []string, error)
	// Act runs start, stop, restart or signal on the processes req names;
	// ctx ends when the client goes away. It emits its steps on p (nil:
	// nobody watches).
	Act(ctx context.Context, verb string, req ActionRequest, p *Progress) ([]Result, error)
	// Reload re-reads the configuration and applies it (dryRun: only
	// reports the difference); it runs to its end whoever waits for it.
	// It emits its plan and steps on p (nil: nobody watches).
	Reload(dryRun bool, p *Progress) (*ReloadPlan, error)
	Nginx() (NginxStatus, error)
	// LogPath returns the log file of one process's stream (stdout or
	// stderr), which the server tails.
	LogPath(name, stream string) (path string, err error)
	// TailLogs returns the log files of stream of the processes matching
	// patterns, in the order of Status, and one note for each matching
	// process whose stream goes to no file of its own (when none does:
	// the notes, and an error marked NoLogFile).
	TailLogs(patterns []string, stream string) (logs []TailLog, notes []string, err error)
	// DaemonLog is the daemon's own recent log, nil when it keeps none.
	DaemonLog() *logtail.Ring
	// ReopenLogs closes the log files of the processes matching patterns
	// (all when none) and opens them again at their paths, one result per
	// process.
	ReopenLogs(patterns []string) ([]Result, error)
	// Shutdown makes the daemon stop everything and exit; it does not wait.
	Shutdown()
	// Upgrade checks the binary and, if it passes, re-executes the daemon
	// from it in place after the reply; ctx ends when the client goes away.
	Upgrade(ctx context.Context, binary string) (UpgradeReply, error)
	// TestAlert mails a test message the way alerts go, now; an error
	// that it failed is marked Undelivered.
	TestAlert(ctx context.Context) (TestAlertReply, error)
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

// Forbidden marks err as a request this client may not make (403).
func Forbidden(err error) error { return &statusError{http.StatusForbidden, err} }

// Undelivered marks err as a mail that the SMTP server or the sendmail
// command did not take (502).
func Undelivered(err error) error { return &statusError{http.StatusBadGateway, err} }

// Unavailable marks err as the daemon unable to take the request now:
// shutting down, or the client gave up waiting (503).
func Unavailable(err error) error { return &statusError{http.StatusServiceUnavailable, err} }

// NoLogFile marks err as a tail none of whose processes sends the stream
// to a file of its own (400): with the daemon's log asked for too, that
// log is tailed alone, and the notes say why.
func NoLogFile(err error) error { return Invalid(noLogFile{err}) }

type noLogFile struct{ error }

func (e noLogFile) Unwrap() error { return e.error }

// maxRequestBytes bounds a request body.
const maxRequestBytes = 64 << 10

// NewHandler serves the control API of d; tails keep at most tailFiles log
// files open at once, all requests together (<= 0: DefaultTailFiles).
func NewHandler(d Daemon, tailFiles int) http.Handler {
	if tailFiles <= 0 {
		tailFiles = DefaultTailFiles()
	}
	s := server{d: d, tails: &tailBudget{max: tailFiles}, bufs: new(reuse.Pool[statusBufs, *statusBufs])}
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
	mux.HandleFunc("POST /v1/upgrade", s.upgrade)
	mux.HandleFunc("POST /v1/test-alert", s.testAlert)
	return mux
}

// NewServer is the control socket's server for h (what NewHandler
// returns, possibly wrapped), with timeouts t; errorLog gets net/http's
// own complaints, and says when a tail's client is dropped. It closes
// idle keep-alive connections and clients slow to send a request. It has
// no WriteTimeout, and Timeouts.Read does not reach into a response
// either: net/http lifts the read deadline once the request's body is
// read, so `ctl tail -f` and a stop waiting out stopwaitsecs are never
// cut. A tail bounds each of its writes by Timeouts.Write instead, so a
// client that stops reading is dropped.
func NewServer(h http.Handler, t Timeouts, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errorLog,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), writeTimeoutKey{}, t.Write)
		},
	}
}

// writeTimeoutKey is the request context's key of Timeouts.Write.
type writeTimeoutKey struct{}

// deadlineWriter gives each write (and flush) of a response its own
// deadline, d from when it begins: a client that takes no bytes for d
// fails the write, and the handler ends. Zero d: no deadline.
type deadlineWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

// newDeadlineWriter bounds the writes of w by the server's
// Timeouts.Write (DefaultTimeouts' without NewServer). done lifts the
// deadline, for the next request on the connection.
func newDeadlineWriter(w http.ResponseWriter, r *http.Request) (dw *deadlineWriter, done func()) {
	d, ok := r.Context().Value(writeTimeoutKey{}).(time.Duration)
	if !ok {
		d = DefaultTimeouts().Write
	}
	dw = &deadlineWriter{w: w, rc: http.NewResponseController(w), d: d}
	return dw, func() {
		if d > 0 {
			_ = dw.rc.SetWriteDeadline(time.Time{})
		}
	}
}

func (dw *deadlineWriter) arm() {
	if dw.d > 0 {
		// ErrNotSupported (a writer without a connection, in tests):
		// nothing to bound.
		_ = dw.rc.SetWriteDeadline(time.Now().Add(dw.d))
	}
}

func (dw *deadlineWriter) Write(b []byte) (int, error) {
	dw.arm()
	return dw.w.Write(b)
}

func (dw *deadlineWriter) Flush() error {
	dw.arm()
	return dw.rc.Flush()
}

// timedOut reports whether err is a write that ran past its deadline.
func timedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

type server struct {
	d     Daemon
	tails *tailBudget                          // the log files open for tails
	bufs  *reuse.Pool[statusBufs, *statusBufs] // the buffers of statuses
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	writeJSON(w, statusOf(err), ErrorResponse{Error: err.Error()})
}

// statusOf is the HTTP status err is served with: the one NotFound,
// Invalid, Refused, Forbidden or Unavailable marked it with, else 500.
func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	return http.StatusInternalServerError
}

// PanicMessage is what a client gets for a request whose handler
// panicked: the 500's error, or a stream's last line.
const PanicMessage = "gosup failed serving this request (a panic: a bug, see gosup ctl info and the daemon's log)"

func (s server) info(w http.ResponseWriter, r *http.Request) {
	info := s.d.Info()
	s.tails.count(&info)
	writeJSON(w, http.StatusOK, info)
}

func (s server) status(w http.ResponseWriter, r *http.Request) {
	b := s.bufs.Get()
	defer s.bufs.Put(b)
	procs, warnings, err := s.d.Status(b.procs, r.URL.Query()["p"])
	b.procs = procs
	if err != nil {
		writeErr(w, err)
		return
	}
	for _, warning := range warnings {
		w.Header().Add(WarningHeader, warning)
	}
	// Encoded by hand (see AppendStatusJSON), or formatted as the table
	// for a client that asks for it: it then copies the table out, with
	// no JSON to decode. With a length: the client reads no chunks.
	if acceptsTable(r) {
		b.body, b.rows = appendStatusTable(slices.Grow(b.body, 128*(len(procs)+1)), procs, b.rows)
		w.Header().Set("Content-Type", StatusTableType+"; charset=utf-8")
	} else {
		b.body = AppendStatusJSON(slices.Grow(b.body, 768*len(procs)+8), procs, r.URL.Query().Get("indent") != "")
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b.body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.body)
}

// statusBufs are a status's processes and its encoding, kept for the
// next status (see server.bufs): at 1,000 processes they are 650 kB, garbage
// that would make the daemon's collector run every few statuses.
type statusBufs struct {
	procs []ProcStatus
	rows  statusRows // the table's cells
	body  []byte
}

// maxPooledProcs bounds the buffers kept: those of a status of more
// processes are dropped rather than kept.
const maxPooledProcs = 4096

// Reset empties b for the next status, unless it is over maxPooledProcs.
func (b *statusBufs) Reset() bool {
	if cap(b.procs) > maxPooledProcs || cap(b.body) > maxPooledProcs*1024 {
		return false
	}
	clear(b.procs) // their strings are not kept alive by the pool
	clear(b.rows)
	b.procs, b.rows, b.body = b.procs[:0], b.rows[:0], b.body[:0]
	return true
}

// acceptsTable says the client asked for the status table (see
// StatusTableType).
func acceptsTable(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			if mt, _, _ := strings.Cut(part, ";"); strings.TrimSpace(mt) == StatusTableType {
				return true
			}
		}
	}
	return false
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
	if verb != "signal" && wantsStream(r) {
		streamOutcome(w, r, DefaultProgressBound, func(p *Progress) (Event, error) {
			results, err := s.d.Act(r.Context(), verb, req, p)
			return Event{Step: StepResult, Results: results}, err
		})
		return
	}
	results, err := s.d.Act(r.Context(), verb, req, nil)
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
	if wantsStream(r) {
		streamOutcome(w, r, DefaultProgressBound, func(p *Progress) (Event, error) {
			plan, err := s.d.Reload(req.DryRun, p)
			return Event{Step: StepResult, Plan: plan}, err
		})
		return
	}
	plan, err := s.d.Reload(req.DryRun, nil)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, plan)
}

// wantsStream reports whether the client asked for the steps as they
// happen (Accept: application/x-ndjson), with a quality above 0
// (RFC 9110: q=0 means "not acceptable").
func wantsStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, t := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(t))
			if err != nil || mt != StreamType {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// streamOutcome runs op with a Progress of its own (holding bound events
// not yet sent) and streams its events, one JSON object a line, as they
// come, then its outcome as the last line: final (step "result") or, for
// an error, step "error" with the error and the status it would have had.
// An error before any event is the plain error response, as without a
// stream. The operation never waits for the client: events it emits while
// the client is slow are dropped and counted (a "dropped" line says how
// many), and a client that takes no bytes for the write timeout, or goes
// away, is written to no more; the request still lasts until op ends, as
// without a stream. op runs on the handler's goroutine: a panic in it
// ends a stream already begun with an "error" line (500, PanicMessage),
// then goes on to the handler's callers, which log and count it (before
// the stream began, they answer the 500 themselves).
func streamOutcome(w http.ResponseWriter, r *http.Request, bound int, op func(*Progress) (Event, error)) {
	p := NewProgress(bound)
	dw, lift := newDeadlineWriter(w, r)
	defer lift()
	st := &streamer{w: w, r: r, dw: dw, enc: json.NewEncoder(dw), p: p}
	quit, pumped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pumped)
		st.pump(quit)
	}()
	// However op ends (a panic too), the pump is done with w before the
	// handler returns.
	stop := sync.OnceFunc(func() {
		close(quit)
		<-pumped
	})
	defer stop()
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		stop()
		if st.started {
			st.flush()
			st.write(p.Stamp(Event{Step: StepError, Error: PanicMessage, Code: http.StatusInternalServerError}))
			st.flush()
		}
		panic(r)
	}()
	final, err := op(p)
	stop()
	if err != nil && !st.started {
		writeErr(w, err)
		return
	}
	st.flush()
	if err != nil {
		final = Event{Step: StepError, Error: err.Error(), Code: statusOf(err)}
	}
	st.write(p.Stamp(final))
	st.flush()
}

// streamer writes a progress stream: the pump's goroutine while the
// operation runs, then the handler's (never both at once).
type streamer struct {
	w   http.ResponseWriter
	r   *http.Request
	dw  *deadlineWriter
	enc *json.Encoder
	p   *Progress
	// started: the header is sent; broken: a write failed (the client is
	// gone or too slow), nothing more is written.
	started, broken bool
	reported        int64 // the drops already reported
}

// pump writes the events as they come until quit is closed, then those
// still waiting.
func (st *streamer) pump(quit <-chan struct{}) {
	for {
		select {
		case ev := <-st.p.Events():
			st.write(ev)
			st.drain()
			st.flush()
		case <-quit:
			st.drain()
			return
		}
	}
}

// drain writes the events waiting now.
func (st *streamer) drain() {
	for {
		select {
		case ev := <-st.p.Events():
			st.write(ev)
		default:
			return
		}
	}
}

func (st *streamer) write(ev Event) {
	if st.broken {
		return
	}
	if !st.started {
		st.started = true
		st.w.Header().Set("Content-Type", StreamType)
		st.w.WriteHeader(http.StatusOK)
	}
	if err := st.enc.Encode(ev); err != nil {
		st.broken = true
		if timedOut(err) {
			logf(st.r, "control socket: %s: the client took no bytes for %s; its progress is no longer sent", st.r.URL.Path, st.dw.d)
		}
	}
}

// flush says how many events were dropped since it last did, if any, and
// sends what is written.
func (st *streamer) flush() {
	if n := st.p.Dropped(); n > st.reported {
		st.write(st.p.Stamp(Event{Step: StepDropped, Dropped: n - st.reported,
			Message: fmt.Sprintf("%d progress events dropped: the client read too slowly", n-st.reported)}))
		st.reported = n
	}
	if st.started && !st.broken {
		if err := st.dw.Flush(); err != nil {
			st.broken = true
		}
	}
}

// upgrade starts an in-place upgrade; the reply says it passed its checks.
func (s server) upgrade(w http.ResponseWriter, r *http.Request) {
	var req UpgradeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, Invalid(fmt.Errorf("bad request body: %w", err)))
		return
	}
	reply, err := s.d.Upgrade(r.Context(), req.Binary)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, reply)
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

// testAlert mails a test message the way alerts go.
func (s server) testAlert(w http.ResponseWriter, r *http.Request) {
	reply, err := s.d.TestAlert(r.Context())
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, reply)
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

// tail serves the last n lines of a process's log (name=, exactly one
// process), at most bytes (64 KiB by default) of them, then with follow=1
// streams what is appended, at most bytes per read, until the client goes
// away. A marker line stands where bytes were left out. With p= (patterns,
// any number of processes) or daemon=1, see tailMany.
func (s server) tail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		n = 10
	}
	limit := logtail.DefaultBytes
	if v := q.Get("bytes"); v != "" {
		if limit, err = logtail.ParseLimit(v); err != nil {
			writeErr(w, Invalid(fmt.Errorf("bytes %w", err)))
			return
		}
	}
	if len(q["p"]) > 0 || q.Get("daemon") == "1" {
		s.tailMany(w, r, n, limit)
		return
	}
	path, err := s.d.LogPath(q.Get("name"), q.Get("stream"))
	if err != nil {
		writeErr(w, err)
		return
	}
	s.tailFile(w, r, q.Get("name"), q.Get("stream"), path, n, limit)
}

// tailFile serves the tail of one log file, as it is: the last n lines,
// at most limit bytes of them, then with follow=1 what is appended.
func (s server) tailFile(w http.ResponseWriter, r *http.Request, name, stream, path string, n, limit int) {
	release, err := s.tails.take(1)
	if err != nil {
		writeErr(w, err)
		return
	}
	defer release()
	// A log not written yet is an empty one.
	f, err := logtail.Open(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		writeErr(w, err)
		return
	}
	var t logtail.Tail
	if f != nil {
		if t, err = logtail.Last(f, n, limit); err != nil {
			f.Close()
			writeErr(w, fmt.Errorf("tail %s: %w", path, err))
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	dw, done := newDeadlineWriter(w, r)
	defer done()
	dropped := func(err error) {
		switch {
		case timedOut(err):
			logf(r, "control socket: tail of %s %s: the client took no bytes for %s; dropped", name, stream, dw.d)
		case err != nil && r.Context().Err() == nil:
			logf(r, "control socket: tail of %s %s ended: %v", name, stream, err)
		}
	}
	if f != nil {
		if _, err := t.Copy(dw, f); err != nil {
			dropped(err)
			f.Close()
			return
		}
	}
	if !Follows(r) {
		if f != nil {
			// A last line without its newline gets one.
			var last [1]byte
			if t.End > t.Start {
				if _, err := f.ReadAt(last[:], t.End-1); err == nil && last[0] != '\n' {
					_, err = dw.Write([]byte{'\n'})
					dropped(err)
				}
			}
			f.Close()
		}
		return
	}
	dropped(follow(r, dw, path, f, t.End, limit))
}

// logf logs to the server's ErrorLog, if it has one.
func logf(r *http.Request, format string, args ...any) {
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.ErrorLog != nil {
		srv.ErrorLog.Printf(format, args...)
	}
}

// Follows reports whether r is a tail that streams what is appended for as
// long as the client likes (follow=1).
func Follows(r *http.Request) bool {
	return r.URL.Path == "/v1/tail" && r.URL.Query().Get("follow") == "1"
}

// follow streams bytes appended to path from off in f (nil: not there
// yet), at most limit of them per read (a marker line stands for the
// rest), reopening it after rotation, until the client disconnects or a
// write fails (a client that stops reading: w's deadline), which it
// returns. It checks four times a second, like tail -F.
func follow(r *http.Request, w *deadlineWriter, path string, f *os.File, off int64, limit int) error {
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	// send writes what f holds past off, at most limit of it.
	send := func() error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		off, err = sendAppended(w, f, fi.Size(), off, limit)
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-tick.C:
		}
		if fi, err := os.Stat(path); err == nil && !isFile(f, fi) {
			// Rotated: what was appended before the rename, then the
			// new file from its beginning.
			if f != nil {
				if err := send(); err != nil {
					return err
				}
				f.Close()
			}
			f, off = nil, 0
			if nf, err := logtail.Open(path); err == nil {
				f = nf
			}
		}
		if f != nil {
			if err := send(); err != nil {
				return err
			}
		}
	}
}

// sendAppended writes what f holds from off to size (its size by an
// fstat), at most limit of it, and returns the offset to go on from.
func sendAppended(w *deadlineWriter, f *os.File, size, off int64, limit int) (int64, error) {
	if size < off {
		off = 0 // truncated (copytruncate): start again at its beginning
	}
	if size == off {
		return off, nil
	}
	t, err := logtail.Find(f, off, size, -1, limit)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// Truncated since the fstat: the next poll starts again.
		return 0, nil
	}
	if err != nil {
		return off, err
	}
	if _, err := t.Copy(w, f); err != nil {
		return off, err
	}
	return t.End, w.Flush()
}

// isFile tells whether f (nil: none) is the file fi describes.
func isFile(f *os.File, fi os.FileInfo) bool {
	if f == nil {
		return false
	}
	cur, err := f.Stat()
	return err == nil && os.SameFile(fi, cur)
}

// Timeouts bound how long the control socket waits for a client: for a
// request's header, for its whole request (header and body), for the
// next request on an idle keep-alive connection, and for each write of a
// tail (Write: a `ctl tail -f` whose client takes no bytes for that long
// is dropped). Nothing bounds a whole response: `ctl tail -f` streams and
// a stop waits out stopwaitsecs. Zero: no bound.
type Timeouts struct {
	ReadHeader, Read, Idle, Write time.Duration
}

// DefaultTimeouts are the control socket's timeouts.
func DefaultTimeouts() Timeouts {
	return Timeouts{ReadHeader: 5 * time.Second, Read: 30 * time.Second, Idle: 30 * time.Second, Write: 30 * time.Second}
}
