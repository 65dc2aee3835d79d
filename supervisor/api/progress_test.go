package api

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A progress holds at most its bound of events not yet read: the rest are
// dropped and counted, and Emit never blocks.
func TestProgressBoundDropsAndCounts(t *testing.T) {
	p := NewProgress(4)
	for i := range 10 {
		p.Emit(Event{Process: "web:web_0", Step: StepStarted, Pid: i + 1})
	}
	if got := p.Dropped(); got != 6 {
		t.Errorf("dropped %d, want 6", got)
	}
	for i := range 4 {
		ev := <-p.Events()
		if ev.Pid != i+1 || ev.Time.IsZero() || ev.ElapsedS < 0 {
			t.Errorf("event %d: %+v, want pid %d, stamped", i, ev, i+1)
		}
	}
	// Read ones make room again.
	p.Emit(Event{Step: StepReady})
	if got := p.Dropped(); got != 6 {
		t.Errorf("dropped %d after room was made, want 6", got)
	}
	if ev := <-p.Events(); ev.Step != StepReady {
		t.Errorf("got %+v, want the ready step", ev)
	}
	// Nobody watching: nothing happens.
	var none *Progress
	none.Emit(Event{Step: StepReady})
	if none.Dropped() != 0 {
		t.Error("a nil progress counts drops")
	}
}

// serveStream serves streamOutcome(bound, op) on a unix socket for every
// request, and returns a client for it.
func serveStream(t *testing.T, bound int, op func(*Progress) (Event, error)) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streamOutcome(w, r, bound, op)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	cl := NewClient(sock)
	t.Cleanup(cl.Close)
	return cl
}

// A client that reads nothing while the operation runs never holds it
// up: the events past the bound are dropped, the stream says how many,
// every event is either delivered or counted, and the outcome comes last.
func TestStreamSlowClientDropsCountedOutcomeKept(t *testing.T) {
	const n = 40
	// Each event is big enough that a few fill the socket's buffers: the
	// server's writes block while the client does not read.
	big := strings.Repeat("x", 1<<20)
	emitted := make(chan struct{})
	cl := serveStream(t, 4, func(p *Progress) (Event, error) {
		for i := range n {
			p.Emit(Event{Process: "web:web_0", Step: StepStarted, Pid: i + 1, Message: big})
		}
		close(emitted)
		return Event{Step: StepResult, Results: []Result{{Name: "web:web_0", OK: true, Message: "started"}}}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got, dropped int64
	var steps []string
	results, err := cl.ActionStream(ctx, "start", ActionRequest{Patterns: []string{"all"}}, func(ev Event) {
		<-emitted // the client reads nothing until the operation has emitted all
		steps = append(steps, ev.Step)
		switch ev.Step {
		case StepStarted:
			got++
		case StepDropped:
			dropped += ev.Dropped
			if !strings.Contains(ev.Message, "dropped") {
				t.Errorf("dropped line says %q", ev.Message)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || !results[0].OK {
		t.Errorf("outcome %+v, want web:web_0 started", results)
	}
	if dropped == 0 || got+dropped != n {
		t.Errorf("%d events delivered and %d dropped, want some dropped and %d in all", got, dropped, n)
	}
	if steps[len(steps)-1] != StepResult {
		t.Errorf("last step %q, want %q (steps %v)", steps[len(steps)-1], StepResult, steps)
	}
	t.Logf("%d delivered, %d dropped", got, dropped)
}

// An error before any event is the plain error response (its status
// kept, so the CLI's exit codes hold); an error after events is the
// stream's last line, with the status it would have had.
func TestStreamErrors(t *testing.T) {
	ctx := context.Background()
	cl := serveStream(t, 8, func(p *Progress) (Event, error) {
		return Event{}, NotFound(errors.New("no process matches nosuch"))
	})
	_, err := cl.ActionStream(ctx, "stop", ActionRequest{Patterns: []string{"nosuch"}}, func(Event) { t.Error("an event for a plain error") })
	var ae *Error
	if !errors.As(err, &ae) || ae.Code != http.StatusNotFound || ae.Msg != "no process matches nosuch" {
		t.Errorf("got %v, want the 404", err)
	}

	cl = serveStream(t, 8, func(p *Progress) (Event, error) {
		// Sent before the error line even if the pump has not taken it
		// yet: streamOutcome drains the events before the outcome.
		p.Emit(Event{Step: StepPlan, Plan: &ReloadPlan{Config: "gosup.toml"}})
		return Event{}, Unavailable(errors.New("gosup is shutting down"))
	})
	var steps []string
	_, err = cl.ReloadStream(ctx, false, func(ev Event) { steps = append(steps, ev.Step) })
	if !errors.As(err, &ae) || ae.Code != http.StatusServiceUnavailable || ae.Msg != "gosup is shutting down" {
		t.Errorf("got %v, want the 503", err)
	}
	if strings.Join(steps, ",") != "plan,error" {
		t.Errorf("steps %v, want plan then error", steps)
	}
}

// Only an Accept that takes the stream with a quality above 0 asks for
// it.
func TestWantsStream(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                     false,
		"application/json":     false,
		"application/x-ndjson": true,
		"Application/X-NDJSON": true,
		"application/json, application/x-ndjson;q=0.5": true,
		"application/x-ndjson;q=0":                     false,
		"application/x-ndjson; q=0.0":                  false,
		"application/x-ndjson;q=1":                     true,
		"application/x-ndjson;q=nonsense":              false,
		"application/x-ndjsonx":                        false,
	} {
		r, _ := http.NewRequest(http.MethodPost, "/v1/start", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		if got := wantsStream(r); got != want {
			t.Errorf("Accept %q: wantsStream %v, want %v", accept, got, want)
		}
	}
}

// A stream that ends without its outcome (the daemon cut it) tells the
// user the operation goes on in the daemon and where to look.
func TestStreamEndedWithoutOutcome(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", StreamType)
		_, _ = w.Write([]byte(`{"time":"2026-11-30T08:00:00Z","elapsed_s":0.1,"process":"web:web_0","step":"stopping"}` + "\n"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	cl := NewClient(sock)
	t.Cleanup(cl.Close)
	var steps []string
	_, err = cl.ActionStream(context.Background(), "restart", ActionRequest{Patterns: []string{"web"}}, func(ev Event) { steps = append(steps, ev.Step) })
	if err == nil || !strings.Contains(err.Error(), "the stream ended without the outcome; the operation carries on in the daemon (gosup ctl status shows where it is)") {
		t.Errorf("got %v, want the stream ended, the operation carries on, see gosup ctl status", err)
	}
	if strings.Join(steps, ",") != StepStopping {
		t.Errorf("steps %v, want the stopping step", steps)
	}
}

// syncBuffer is a log's output, read while it is written; seen is
// closed once it contains want.
type syncBuffer struct {
	mu   sync.Mutex
	b    strings.Builder
	want string
	seen chan struct{}
}

func (sb *syncBuffer) Write(p []byte) (int, error) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	sb.b.Write(p)
	if sb.seen != nil && strings.Contains(sb.b.String(), sb.want) {
		close(sb.seen)
		sb.seen = nil
	}
	return len(p), nil
}

func (sb *syncBuffer) String() string {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.b.String()
}

// A client that asks for the stream and then reads nothing at all is
// written to no more once a write has waited the write timeout: the
// operation runs to its end without waiting for it (every Emit returns),
// the handler returns, and the daemon's log says why.
func TestStreamStalledClientDropped(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	logged := make(chan struct{})
	logs := &syncBuffer{want: "the client took no bytes for 200ms; its progress is no longer sent", seen: logged}
	opDone, handlerDone := make(chan struct{}), make(chan struct{})
	// Events big enough that the first fills the socket's buffers.
	big := strings.Repeat("x", 4<<20)
	const n = 50
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(handlerDone)
		streamOutcome(w, r, 4, func(p *Progress) (Event, error) {
			defer close(opDone)
			for i := range n {
				p.Emit(Event{Process: "web:web_0", Step: StepStarted, Pid: i + 1, Message: big})
			}
			return Event{Step: StepResult}, nil
		})
	})
	srv := NewServer(h, Timeouts{ReadHeader: time.Minute, Read: time.Minute, Idle: time.Minute, Write: 200 * time.Millisecond}, log.New(logs, "", 0))
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "POST /v1/start HTTP/1.1\r\nHost: gosup\r\nAccept: " + StreamType + "\r\nContent-Length: 2\r\n\r\n{}"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	// The connection is never read from.
	for what, ch := range map[string]chan struct{}{"the operation's end": opDone, "the handler's return": handlerDone, "the log line": logged} {
		select {
		case <-ch:
		case <-time.After(time.Minute):
			t.Fatalf("a client that reads nothing: no sign of %s in a minute; log: %s", what, logs.String())
		}
	}
}
