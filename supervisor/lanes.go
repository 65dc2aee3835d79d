package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
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
// never wait for each other in a circle. An operation gives back all its
// places at its end (release), or one program's place as soon as its part
// there is done (done: a reload's parts).
type lanes struct {
	// quit is closed when shutdown begins: no new reservation, nobody
	// waits for a lane any more.
	quit <-chan struct{}

	mu sync.Mutex
	// tails holds, per program, the channel closed when the last
	// reservation in its lane ends (absent: the lane is free).
	tails map[procgroup.ProgramName]chan struct{}
	// owners names, per program, the operation of the last reservation
	// in its lane (the one tails' channel belongs to).
	owners map[procgroup.ProgramName]opInfo
	held   sync.WaitGroup // one per reservation not yet released
	// waiting counts the operations waiting for a lane right now.
	waiting atomic.Int64
	// live holds the leases not yet released, for the watchdog: a lease
	// that works far longer than its programs can take is leaked or
	// stuck (see busy).
	live map[*lease]struct{}
}

// opKey is the context key of an operation's name (withOp).
type opKey struct{}

// withOp names the operation that reserves lanes with ctx ("ctl stop"),
// for the steps of the operations that then wait for it.
func withOp(ctx context.Context, what string) context.Context {
	return context.WithValue(ctx, opKey{}, what)
}

// opOf is the name withOp gave ctx's operation, "" if none.
func opOf(ctx context.Context) string {
	what, _ := ctx.Value(opKey{}).(string)
	return what
}

// errShuttingDown is what an operation gets once shutdown has begun.
var errShuttingDown = errors.New("gosup is shutting down")

func newLanes(quit <-chan struct{}) *lanes {
	return &lanes{quit: quit, tails: map[procgroup.ProgramName]chan struct{}{}, owners: map[procgroup.ProgramName]opInfo{}, live: map[*lease]struct{}{}}
}

func (ls *lanes) quitting() bool {
	select {
	case <-ls.quit:
		return true
	default:
		return false
	}
}

// opInfo names an operation and says since when it holds its place.
type opInfo struct {
	what  string
	since time.Time
}

// ticket is one operation's place in one lane.
type ticket struct {
	prev   <-chan struct{} // closed when the operation before ends; nil: none
	before opInfo          // the operation before (prev's), to name it
	mine   chan struct{}   // closed when this operation is done with the lane
}

// lease is an operation's places in the lanes of the programs it touches.
// A nil lease waits for nothing (shutdown, which runs alone).
type lease struct {
	ls      *lanes
	ctx     context.Context // waiting for a lane ends with it
	tickets map[procgroup.ProgramName]*ticket
	once    sync.Once // release

	// progs are the programs reserved, in order; since is when.
	progs []procgroup.ProgramName
	since time.Time
	// what names the operation ("ctl stop"), for the operations that
	// wait for it (see withOp).
	what string
	// mu guards the time spent waiting for the operations before this
	// one: waited in all, and since waitFrom while waiters > 0 (acquire
	// runs from several goroutines at once).
	mu       sync.Mutex
	waiters  int
	waitFrom time.Time
	waited   time.Duration
	bound    time.Duration // the watchdog's, never lowered (see raiseBound)
	// waitShown: the programs whose lane it was seen waiting for.
	waitShown map[procgroup.ProgramName]bool
	// doneMu guards passed: the places given back early, by done.
	doneMu sync.Mutex
	passed map[procgroup.ProgramName]bool
	// progress receives the operation's steps as they happen, for the
	// request that asked for it (nil: nobody watches). Set once, before
	// the operation's work begins.
	progress *api.Progress
}

// emit reports one step of the operation to whoever watches it; it never
// blocks (see api.Progress).
func (l *lease) emit(ev api.Event) {
	if l != nil {
		l.progress.Emit(ev)
	}
}

// watch makes p receive the operation's steps; call it before the work
// begins. Safe on a nil lease (nothing is reported).
func (l *lease) watch(p *api.Progress) {
	if l != nil {
		l.progress = p
	}
}

// reserve queues an operation in the lanes of progs (program names). It
// never waits; ctx bounds the waits for the lanes (acquire).
func (ls *lanes) reserve(ctx context.Context, progs []procgroup.ProgramName) (*lease, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.quitting() {
		return nil, errShuttingDown
	}
	l := &lease{ls: ls, ctx: ctx, tickets: map[procgroup.ProgramName]*ticket{}, passed: map[procgroup.ProgramName]bool{}, since: time.Now(), what: opOf(ctx)}
	for _, prog := range progs {
		if l.tickets[prog] != nil {
			continue
		}
		l.progs = append(l.progs, prog)
		t := &ticket{prev: ls.tails[prog], before: ls.owners[prog], mine: make(chan struct{})}
		ls.tails[prog] = t.mine
		ls.owners[prog] = opInfo{what: l.what, since: l.since}
		l.tickets[prog] = t
	}
	ls.held.Add(1)
	ls.live[l] = struct{}{}
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
		if l.ls.quitting() {
			return fmt.Errorf("not starting on %s: %w", prog, errShuttingDown)
		}
		return nil
	}
	select {
	case <-t.prev:
	default:
		// It has to wait: its watcher learns for what (once a program).
		if l.firstWait(prog) {
			l.emitWaiting(prog, t)
		}
		l.ls.waiting.Add(1)
		defer l.ls.waiting.Add(-1)
		l.waiting(+1)
		defer l.waiting(-1)
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

// firstWait reports whether this is the operation's first wait for
// prog's lane (the goroutines of its processes each wait for it).
func (l *lease) firstWait(prog procgroup.ProgramName) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waitShown[prog] {
		return false
	}
	if l.waitShown == nil {
		l.waitShown = map[procgroup.ProgramName]bool{}
	}
	l.waitShown[prog] = true
	return true
}

// emitWaiting tells the operation's watcher that it waits for the
// operation before it in prog's lane (t), naming it.
func (l *lease) emitWaiting(prog procgroup.ProgramName, t *ticket) {
	if l.progress == nil {
		return
	}
	what := cmp.Or(l.what, "this operation")
	msg := fmt.Sprintf("%s waits for the operation in progress on %s to end first", what, prog)
	if b := t.before; !b.since.IsZero() {
		msg = fmt.Sprintf("%s waits for %s on %s (begun %s ago) to end first", what, cmp.Or(b.what, "another operation"), prog, time.Since(b.since).Round(100*time.Millisecond))
	}
	l.emit(api.Event{Step: api.StepWaiting, Message: msg})
}

// release ends the operation in every lane. A place never waited for is
// handed on once the operation before it ends. Safe to call more than
// once (a deferred release after an early one).
func (l *lease) release() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		for prog := range l.tickets {
			l.done(prog)
		}
		l.ls.mu.Lock()
		delete(l.ls.live, l)
		l.ls.mu.Unlock()
		l.ls.held.Done()
	})
}

// done ends the operation in prog's lane only, as soon as its part there
// is over (a reload's part for one program): the next operation on prog
// need not wait for the rest. The operation must not use prog's lane any
// more. Safe to call more than once, and before release.
func (l *lease) done(prog procgroup.ProgramName) {
	if l == nil {
		return
	}
	l.doneMu.Lock()
	t := l.tickets[prog]
	if t == nil || l.passed[prog] {
		l.doneMu.Unlock()
		return
	}
	l.passed[prog] = true
	l.doneMu.Unlock()
	l.ls.pass(prog, t)
}

// pass ends t's turn in prog's lane: now if the turn has come, else as
// soon as it does.
func (ls *lanes) pass(prog procgroup.ProgramName, t *ticket) {
	end := func() {
		close(t.mine)
		ls.mu.Lock()
		if ls.tails[prog] == t.mine {
			delete(ls.tails, prog)
			delete(ls.owners, prog)
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
	// A reserve that saw quit still open has added to held under ls.mu:
	// once we have had ls.mu, every later reserve sees quit closed, so
	// held only goes down from here (sync.WaitGroup's rule for Wait).
	ls.mu.Lock()
	//lint:ignore SA2001 empty on purpose: it orders us after every reserve in progress
	ls.mu.Unlock()
	ls.held.Wait()
}

// waiting counts a goroutine of the operation starting (+1) or ending (-1)
// a wait for the operation before it.
func (l *lease) waiting(d int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waiters == 0 {
		l.waitFrom = time.Now()
	}
	if l.waiters += d; l.waiters == 0 {
		l.waited += time.Since(l.waitFrom)
	}
}

// busy is how long the operation has been working at now: since it
// reserved its lanes, less the time it waited for the operations before
// it (those answer for that time themselves). A lease leaked by its
// holder, or held by one that waits for ever, stays busy for ever.
func (l *lease) busy(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := now.Sub(l.since) - l.waited
	if l.waiters > 0 {
		b -= now.Sub(l.waitFrom)
	}
	return b
}

// raiseBound makes d the lease's bound if it is higher, and returns the
// bound: a bound derived from programs a reload then removes must not
// shrink under an operation already under way.
func (l *lease) raiseBound(d time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bound = max(l.bound, d)
	return l.bound
}

// leases lists the leases not yet released.
func (ls *lanes) leases() []*lease {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]*lease, 0, len(ls.live))
	for l := range ls.live {
		out = append(out, l)
	}
	return out
}
