package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gosup/gosup/procgroup"
)

// Operations that change which processes run (ctl start, stop, restart,
// a reload's work, a touch_reload restart, a memmon restart) go through
// lanes: one per program, first come first served. An operation decides
// what it touches under the short decide lock (Supervisor.decide) and
// reserves a place in the lane of every program it touches, all at once;
// it then waits for each lane, outside any lock, only when it gets to
// that program. Operations on different programs never wait for each
// other; two on the same program run one after the other, in the order
// they reserved. Because every operation reserves all its lanes in one
// step, the reservation order is one total order and two operations
// never wait for each other in a circle.
type lanes struct {
	// quit is closed when shutdown begins: no new reservation, nobody
	// waits for a lane any more.
	quit <-chan struct{}

	mu sync.Mutex
	// tails holds, per program, the channel closed when the last
	// reservation in its lane ends (absent: the lane is free).
	tails map[procgroup.ProgramName]chan struct{}
	held  sync.WaitGroup // one per reservation not yet released
	// waiting counts the operations waiting for a lane right now.
	waiting atomic.Int64
}

// errShuttingDown is what an operation gets once shutdown has begun.
var errShuttingDown = errors.New("gosup is shutting down")

func newLanes(quit <-chan struct{}) *lanes {
	return &lanes{quit: quit, tails: map[procgroup.ProgramName]chan struct{}{}}
}

func (ls *lanes) quitting() bool {
	select {
	case <-ls.quit:
		return true
	default:
		return false
	}
}

// ticket is one operation's place in one lane.
type ticket struct {
	prev <-chan struct{} // closed when the operation before ends; nil: none
	mine chan struct{}   // closed when this operation is done with the lane
}

// lease is an operation's places in the lanes of the programs it touches.
// A nil lease waits for nothing (shutdown, which runs alone).
type lease struct {
	ls      *lanes
	ctx     context.Context // waiting for a lane ends with it
	tickets map[procgroup.ProgramName]*ticket
	once    sync.Once // release
}

// reserve queues an operation in the lanes of progs (program names). It
// never waits; ctx bounds the waits for the lanes (acquire).
func (ls *lanes) reserve(ctx context.Context, progs []procgroup.ProgramName) (*lease, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.quitting() {
		return nil, errShuttingDown
	}
	l := &lease{ls: ls, ctx: ctx, tickets: map[procgroup.ProgramName]*ticket{}}
	for _, prog := range progs {
		if l.tickets[prog] != nil {
			continue
		}
		t := &ticket{prev: ls.tails[prog], mine: make(chan struct{})}
		ls.tails[prog] = t.mine
		l.tickets[prog] = t
	}
	ls.held.Add(1)
	return l, nil
}

// acquire waits until the operations on prog reserved before this one
// are done. It is idempotent and safe from several goroutines.
func (l *lease) acquire(prog procgroup.ProgramName) error {
	if l == nil {
		return nil
	}
	t := l.tickets[prog]
	if t == nil {
		return fmt.Errorf("bug: program %s was not reserved for this operation", prog)
	}
	if t.prev == nil {
		return nil
	}
	select {
	case <-t.prev:
	default:
		l.ls.waiting.Add(1)
		defer l.ls.waiting.Add(-1)
		select {
		case <-t.prev:
		case <-l.ls.quit:
		case <-l.ctx.Done():
			return fmt.Errorf("gave up waiting for the operation in progress on %s: %w", prog, l.ctx.Err())
		}
	}
	// The operation before may have ended because shutdown began: this
	// one does not start then.
	if l.ls.quitting() {
		return fmt.Errorf("gave up waiting for the operation in progress on %s: %w", prog, errShuttingDown)
	}
	return nil
}

// release ends the operation in every lane. A place never waited for is
// handed on once the operation before it ends. Safe to call more than
// once (a deferred release after an early one).
func (l *lease) release() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		for prog, t := range l.tickets {
			l.ls.pass(prog, t)
		}
		l.ls.held.Done()
	})
}

// pass ends t's turn in prog's lane: now if the turn has come, else as
// soon as it does.
func (ls *lanes) pass(prog procgroup.ProgramName, t *ticket) {
	end := func() {
		close(t.mine)
		ls.mu.Lock()
		if ls.tails[prog] == t.mine {
			delete(ls.tails, prog)
		}
		ls.mu.Unlock()
	}
	if t.prev == nil {
		end()
		return
	}
	select {
	case <-t.prev:
		end()
	default:
		go func() {
			<-t.prev
			end()
		}()
	}
}

// wait waits, once quit is closed, until every operation has released
// its lanes.
func (ls *lanes) wait() {
	<-ls.quit
	ls.held.Wait()
}
