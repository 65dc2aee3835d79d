package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
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
		p.Emit(Event{Step: StepPlan, Plan: &ReloadPlan{Config: "gosup.toml"}})
		// The plan is sent before the error: wait for it to be taken.
		for len(p.Events()) > 0 {
			time.Sleep(time.Millisecond)
		}
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
