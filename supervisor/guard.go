package supervisor

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/web"
)

// testHooks inject panics into the side goroutines, and shorten the
// watchdog's lease bound, for tests; set them before Run.
type testHooks struct {
	memmonTargets func()              // in every memmon tick, as it lists the processes
	sendmail      func()              // in the alerter, before the sendmail command runs
	watch         func()              // as the file watcher starts
	request       func(*http.Request) // in every control socket request
	leaseSlack    time.Duration       // replaces leaseSlack when not 0
	reloadPrepare func()              // in a reload's prepare, under s.mu, after its lanes are reserved
	reloadApply   func()              // in a reload, once its plan is reported, before apply
	touchLoop     func()              // in the touch_reload loop, each time it wakes
	socketCheck   func()              // in the socket watch, before each check
	tailFiles     int                 // replaces the bound of the files open for tails when not 0
	// socketTimeouts replace the control socket's timeouts when set.
	socketTimeouts *api.Timeouts
	// httpRetry replaces httpRetryMin when not 0.
	httpRetry time.Duration
	// httpDrain replaces upgradeDrain for the HTTP listener's handover
	// when not 0.
	httpDrain time.Duration
	// httpLimits replace the HTTP listener's bounds when set.
	httpLimits *web.Limits
}

// recovering serves h so that a handler that panics is caught by the
// guard (logged with its stack, counted as "control socket"), its client
// gets a 500 saying so, and the socket goes on serving. net/http would
// recover it too, but only log it.
func (s *Supervisor) recovering(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &trackingWriter{ResponseWriter: w}
		if !s.guard.With("request", r.Method+" "+r.URL.Path).Do("control socket", "that request failed with a 500; the socket goes on serving", func() {
			if s.hooks.request != nil {
				s.hooks.request(r)
			}
			h.ServeHTTP(rw, r)
		}) {
			return
		}
		if rw.wrote {
			return // the client sees the response cut short
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: api.PanicMessage})
	})
}

// trackingWriter notes whether the response has begun.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

// Flush lets tail -f stream through it.
func (t *trackingWriter) Flush() {
	t.wrote = true
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// FlushError is Flush that reports a failed write (a tail's client that
// stopped reading, past its write deadline).
func (t *trackingWriter) FlushError() error {
	t.wrote = true
	return http.NewResponseController(t.ResponseWriter).Flush()
}

func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
