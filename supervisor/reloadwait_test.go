package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// A reload that finds the reload lock held (a reload's removals, an
// upgrade) says so in a waiting step, then goes on once it is free.
func TestReloadWaitingForReloadLockSaysSo(t *testing.T) {
	file := writeConfig(t, program("web", "sleep", 1, ""))
	s, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	s.reloading <- struct{}{} // as a reload in progress holds it
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events := make(chan api.Event, 16)
	done := make(chan error, 1)
	go func() {
		_, err := cl.ReloadStream(ctx, false, func(ev api.Event) { events <- ev })
		done <- err
	}()
	select {
	case ev := <-events:
		if ev.Step != api.StepWaiting || ev.Message != "a reload waits for the reload (or upgrade) in progress to end first: reloads apply one at a time" {
			t.Errorf("first step %+v, want the waiting step", ev)
		}
	case <-ctx.Done():
		t.Fatal("no step from a reload waiting for the reload lock")
	}
	<-s.reloading
	if err := <-done; err != nil {
		t.Fatalf("the reload, once the lock was free: %v", err)
	}
}
