package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"golang.org/x/sys/unix"
)

// The control API's handlers: the wire format is package api.

// Version is the daemon's version, set by main.
var Version = "dev"

const maxRequestBytes = 64 << 10

func (s *Supervisor) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/info", s.handleInfo)
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("POST /v1/start", s.handleAction)
	mux.HandleFunc("POST /v1/stop", s.handleAction)
	mux.HandleFunc("POST /v1/restart", s.handleAction)
	mux.HandleFunc("POST /v1/signal", s.handleAction)
	mux.HandleFunc("GET /v1/tail", s.handleTail)
	mux.HandleFunc("POST /v1/shutdown", s.handleShutdown)
	mux.HandleFunc("GET /v1/nginx", s.handleNginx)
	mux.HandleFunc("POST /v1/reload", s.handleReload)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.ErrorResponse{Error: err.Error()})
}

func (s *Supervisor) handleInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	cfg, watchdog, alerter, last := s.cfg, s.watchdog, s.alerter, s.lastReload
	s.mu.RUnlock()
	info := api.Info{
		Pid: os.Getpid(), Config: cfg.File, Socket: cfg.Supervisor.Socket,
		UptimeS: time.Since(s.startedAt).Seconds(), Version: Version, LastReload: last,
	}
	if watchdog != nil {
		info.MemmonRestarts = watchdog.Restarts.Load()
	}
	if alerter != nil {
		info.AlertsSent = alerter.Sent.Load()
		info.AlertFailures = alerter.Failed.Load()
		info.AlertsDropped = alerter.Dropped.Load()
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Supervisor) handleStatus(w http.ResponseWriter, r *http.Request) {
	patterns := r.URL.Query()["p"]
	procs := s.all()
	if len(patterns) > 0 {
		var err error
		if procs, err = s.match(patterns); err != nil {
			writeErr(w, http.StatusNotFound, err)
			return
		}
	}
	s.mu.RLock()
	m, watchdog, last := s.nginx, s.watchdog, s.lastReload
	s.mu.RUnlock()
	if m != nil {
		if ns := m.Status(); !ns.OK && ns.Error != "" {
			w.Header().Add(api.WarningHeader, "nginx: "+oneLine(ns.Error))
		}
	}
	if last.Error != "" {
		w.Header().Add(api.WarningHeader, "reload at "+last.At.Format(time.DateTime)+" failed: "+oneLine(last.Error))
	}
	now := time.Now()
	out := make([]api.ProcStatus, 0, len(procs))
	for _, p := range procs {
		ps := toProcStatus(p.Status(), now)
		if ps.Description == "not started" && s.admin.isStopped(ps.Name) {
			ps.Description = "stopped with gosup ctl stop (kept across daemon restarts until gosup ctl start)"
		}
		if watchdog != nil {
			if m, ok := watchdog.Sample(ps.Name); ok {
				ps.RSSBytes, ps.MemmonRestartAt, ps.MemmonReason = m.RSS, m.LastRestartAt, m.LastReason
			}
		}
		out = append(out, ps)
	}
	writeJSON(w, http.StatusOK, out)
}

func toProcStatus(st procgroup.Status, now time.Time) api.ProcStatus {
	ps := api.ProcStatus{
		Name: st.FullName(), Group: st.Group, Process: st.Name, State: st.State.String(),
		Pid: st.Pid, Port: st.Port, Restarts: st.Restarts, ExitStatus: st.ExitStatus,
		SpawnError: st.SpawnError, Stdout: st.Stdout, Stderr: st.Stderr,
	}
	switch st.State {
	case procgroup.Starting, procgroup.Running, procgroup.Stopping:
		if st.Pid == 0 {
			ps.Description = "spawning"
			break
		}
		ps.UptimeS = now.Sub(st.StartedAt).Seconds()
		ps.Description = fmt.Sprintf("pid %d, uptime %s", st.Pid, api.FormatUptime(now.Sub(st.StartedAt)))
	case procgroup.Backoff, procgroup.Fatal:
		ps.Description = st.Reason
		if st.SpawnError != "" {
			ps.Description = st.SpawnError
		} else if st.ExitDesc != "" {
			ps.Description += " (" + st.ExitDesc + ")"
		}
	case procgroup.Exited, procgroup.Stopped:
		if !st.StoppedAt.IsZero() {
			ps.Description = st.StoppedAt.Format(time.DateTime)
			if st.ExitDesc != "" {
				ps.Description += ", " + st.ExitDesc
			}
		} else {
			ps.Description = "not started"
		}
	}
	return ps
}

func (s *Supervisor) handleAction(w http.ResponseWriter, r *http.Request) {
	var req api.ActionRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return
	}
	if len(req.Patterns) == 0 {
		writeErr(w, http.StatusBadRequest, errors.New("no process named: give a pattern such as web:web_00, web:*, web or all"))
		return
	}
	if r.URL.Path == "/v1/signal" {
		s.handleSignal(w, req)
		return
	}
	// Operations on a program run one at a time, in the order they came
	// (its lane); operations on other programs go on meanwhile. A client
	// that goes away stops waiting for a lane, but a program's part of
	// the operation, once begun, runs to its end (a half-done restart
	// would leave processes stopped or out of nginx); only shutdown
	// interrupts it.
	procs, l, err := s.claim(r.Context(), req.Patterns)
	switch {
	case errors.Is(err, ErrNoMatch):
		writeErr(w, http.StatusNotFound, err)
		return
	case err != nil:
		writeErr(w, http.StatusServiceUnavailable, err)
		return
	}
	defer l.release()
	ctx := s.opsCtx
	var results []api.Result
	switch {
	case r.URL.Path == "/v1/start":
		results = s.startAndPutBack(ctx, l, procs)
		s.remember(false, results)
	case r.URL.Path == "/v1/stop":
		results = s.plannedStop(ctx, l, procs)
		s.remember(true, results)
	case r.URL.Path == "/v1/restart" && req.Rolling:
		results = s.rollingRestart(ctx, l, procs, true)
		s.remember(false, results)
	case r.URL.Path == "/v1/restart":
		// Like supervisorctl: stop them all, then start those that
		// stopped; both outcomes are reported.
		byName := map[string]*procgroup.Process{}
		for _, p := range procs {
			byName[p.Spec().FullName()] = p
		}
		var again []*procgroup.Process
		for _, res := range s.plannedStop(ctx, l, procs) {
			results = append(results, res)
			if res.OK {
				again = append(again, byName[res.Name])
			}
		}
		started := s.startAndPutBack(ctx, l, again)
		s.remember(false, started)
		results = append(results, started...)
	}
	writeJSON(w, http.StatusOK, api.ActionResponse{Results: results})
}

// handleSignal sends a signal at once, without waiting for any lane: it
// is how an operator ends a stop stuck in its stopwaitsecs (ctl signal
// KILL), and it changes nothing gosup decides.
func (s *Supervisor) handleSignal(w http.ResponseWriter, req api.ActionRequest) {
	sig, err := procgroup.ParseSignal(req.Signal)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	procs, err := s.match(req.Patterns)
	if err != nil {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	results := s.parallel(nil, procs, func(p *procgroup.Process) (string, bool) {
		if err := p.Signal(unix.Signal(sig)); err != nil {
			return err.Error(), false
		}
		return "signalled " + sig.String(), true
	})
	writeJSON(w, http.StatusOK, api.ActionResponse{Results: results})
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " | ")
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}

func (s *Supervisor) handleNginx(w http.ResponseWriter, r *http.Request) {
	m := s.currentNginx()
	if m == nil {
		writeErr(w, http.StatusNotFound, fmt.Errorf("%s has no [nginx] table", s.config().File))
		return
	}
	writeJSON(w, http.StatusOK, m.Status())
}

// handleReload re-reads the configuration and applies it (or, dry, only
// reports the difference). An invalid configuration is 422 with the error.
func (s *Supervisor) handleReload(w http.ResponseWriter, r *http.Request) {
	var req api.ReloadRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return
	}
	// A reload is not undone by a client going away: it runs to its end
	// (or to shutdown).
	plan, err := s.Reload(s.opsCtx, req.DryRun)
	var invalid *ConfigInvalidError
	switch {
	case errors.As(err, &invalid):
		s.log.Error("reload refused", "err", err)
		writeErr(w, http.StatusUnprocessableEntity, err)
	case err != nil:
		writeErr(w, http.StatusServiceUnavailable, err)
	default:
		writeJSON(w, http.StatusOK, plan)
	}
}

// remember records what an operator stopped or started, for the next daemon.
func (s *Supervisor) remember(stopped bool, results []api.Result) {
	var names []string
	for _, r := range results {
		if r.OK {
			names = append(names, r.Name)
		}
	}
	if err := s.admin.set(stopped, names...); err != nil {
		s.log.Warn("could not save which processes are stopped", "path", s.admin.path, "err", err)
	}
}

func (s *Supervisor) handleShutdown(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusAccepted, api.Info{Pid: os.Getpid()})
	s.requestShutdown()
}

// handleTail serves the last n lines of a process's log, then with follow=1
// streams what is appended until the client goes away.
func (s *Supervisor) handleTail(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	procs, err := s.match([]string{q.Get("name")})
	if err != nil {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	if len(procs) != 1 {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%q names %d processes; tail needs exactly one", q.Get("name"), len(procs)))
		return
	}
	p := procs[0]
	spec := p.Spec()
	stream := q.Get("stream")
	ls := spec.Stdout
	switch stream {
	case "", "stdout":
		stream = "stdout"
	case "stderr":
		ls = spec.Stderr
		if spec.Program.RedirectStderr {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("%s has redirect_stderr = true: its stderr is in its stdout log", spec.FullName()))
			return
		}
	default:
		writeErr(w, http.StatusBadRequest, fmt.Errorf("unknown stream %q: want stdout or stderr", stream))
		return
	}
	if ls.Kind != procgroup.LogFile {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("%s sends %s to %s, not to a file; nothing to tail", spec.FullName(), stream, ls))
		return
	}
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		n = 10
	}
	data, err := procgroup.TailLines(ls.Path, n)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(data)
	if q.Get("follow") != "1" {
		return
	}
	follow(r, w, ls.Path)
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
