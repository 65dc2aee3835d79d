// Package procgroup runs one program: its N processes on sequential ports,
// each with supervisord's state machine, spawned through the reaper, with
// its output captured.
package procgroup

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/gosup/gosup/procgroup/reaper"
)

// Pool is one program's processes (one [program.NAME] table): not a POSIX
// process group, and not an address group (the `group` key, which several
// programs may share). Processes can be added and removed while it runs (a
// reload that changes numprocs).
type Pool struct {
	Program ProgramName
	// Setup, when set before the first Add, prepares each new process
	// before its owner goroutine starts (hooks, DaemonEnv).
	Setup func(*Process)

	rp  *reaper.Reaper
	log *slog.Logger
	ctx context.Context
	wg  sync.WaitGroup

	mu    sync.Mutex
	procs []*Process // in process_num order
}

// NewPool makes an empty pool for program whose processes run until ctx ends.
func NewPool(ctx context.Context, program ProgramName, rp *reaper.Reaper, log *slog.Logger) *Pool {
	return &Pool{Program: program, rp: rp, log: log, ctx: ctx}
}

// Add makes a STOPPED process for spec and starts its owner goroutine.
func (pl *Pool) Add(spec *ProcSpec) *Process {
	p := NewProcess(spec, pl.rp, pl.log)
	if pl.Setup != nil {
		pl.Setup(p)
	}
	pl.mu.Lock()
	// In process_num order; processes mostly come in that order (a start,
	// a reload adding to the end), so the slice is sorted only when not.
	pl.procs = append(pl.procs, p)
	if n := len(pl.procs); n > 1 && pl.procs[n-2].Spec().Index > spec.Index {
		slices.SortStableFunc(pl.procs, func(a, b *Process) int { return a.Spec().Index - b.Spec().Index })
	}
	pl.mu.Unlock()
	pl.wg.Add(1)
	// The pool's context, not one of each process's own (which would
	// cost each some 300 bytes): Remove ends one through a request.
	p.start(pl.ctx, pl.wg.Done)
	return p
}

// Remove ends p's owner goroutine (killing its child if one is still
// running: stop it first) and forgets it.
func (pl *Pool) Remove(p *Process) {
	pl.mu.Lock()
	n := len(pl.procs)
	pl.procs = slices.DeleteFunc(pl.procs, func(q *Process) bool { return q == p })
	ours := len(pl.procs) < n
	pl.mu.Unlock()
	if ours {
		p.endOwner()
	}
}

// Procs returns the processes, in process_num order.
func (pl *Pool) Procs() []*Process {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return slices.Clone(pl.procs)
}

// Wait waits for every owner goroutine to end (after ctx has ended).
func (pl *Pool) Wait() { pl.wg.Wait() }
