package supervisor

import (
	"log/slog"
	"time"
)

// runGroup is the daemon's parts in one list: each actor is brought up in
// list order and brought down in the reverse order, each stop returning
// only once its part is down, so what something depends on is started
// before it and stopped after it (like defers, but in one place).
//
// It is oklog/run's Group with an order: oklog/run starts its actors
// together and interrupts them all at once, while the daemon must, for
// instance, stop memmon before it stops the processes (or memmon would
// restart them), keep the control socket answering until they are gone,
// and keep the reaper until the last one is reaped.
type runGroup struct {
	log    *slog.Logger
	actors []actor
}

// actor is one part of the running daemon.
type actor struct {
	name string
	// start brings the part up, or fails: then the parts already up are
	// brought down and the group does not run. nil: nothing to start.
	start func() error
	// stop brings the part down and waits until it is; nil: nothing to
	// stop. It is called once, after start succeeded.
	stop func()
}

// add appends an actor to the list.
func (g *runGroup) add(name string, start func() error, stop func()) {
	g.actors = append(g.actors, actor{name: name, start: start, stop: stop})
}

// run starts every actor in list order, waits until done is closed, then
// stops them in the reverse order. It returns the error of a start that
// failed (having stopped the actors started before it), else nil.
func (g *runGroup) run(done <-chan struct{}) error {
	for i, a := range g.actors {
		if a.start == nil {
			continue
		}
		t0 := time.Now()
		err := a.start()
		g.log.Debug("started", "part", a.name, "took", time.Since(t0))
		if err != nil {
			g.stop(i)
			return err
		}
	}
	<-done
	g.stop(len(g.actors))
	return nil
}

// stop stops the first n actors, last first.
func (g *runGroup) stop(n int) {
	for i := n - 1; i >= 0; i-- {
		if a := g.actors[i]; a.stop != nil {
			g.log.Debug("stopping", "part", a.name)
			a.stop()
		}
	}
}
