// Package procgroup runs one program: its N processes on sequential ports,
// each with supervisord's state machine, spawned through the reaper, with
// its output captured.
package procgroup

import (
	"context"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/gosup/gosup/procgroup/reaper"
)

// Group is one program's processes. Processes can be added and removed
// while it runs (a reload that changes numprocs).
type Group struct {
	Name string
	// Setup, when set before the first Add, prepares each new process
	// before its owner goroutine starts (hooks, DaemonEnv).
	Setup func(*Process)

	rp  *reaper.Reaper
	log *slog.Logger
	ctx context.Context
	wg  sync.WaitGroup

	mu      sync.Mutex
	procs   []*Process // in process_num order
	cancels map[*Process]context.CancelFunc
}

// NewGroup makes an empty group whose processes run until ctx ends.
func NewGroup(ctx context.Context, name string, rp *reaper.Reaper, log *slog.Logger) *Group {
	return &Group{Name: name, rp: rp, log: log, ctx: ctx, cancels: map[*Process]context.CancelFunc{}}
}

// Add makes a STOPPED process for spec and starts its owner goroutine.
func (g *Group) Add(spec *ProcSpec) *Process {
	p := NewProcess(spec, g.rp, g.log)
	if g.Setup != nil {
		g.Setup(p)
	}
	ctx, cancel := context.WithCancel(g.ctx)
	g.mu.Lock()
	g.procs = append(g.procs, p)
	slices.SortStableFunc(g.procs, func(a, b *Process) int { return a.Spec().Index - b.Spec().Index })
	g.cancels[p] = cancel
	g.mu.Unlock()
	g.wg.Go(func() { p.Run(ctx) })
	return p
}

// Remove ends p's owner goroutine (killing its child if one is still
// running: stop it first) and forgets it.
func (g *Group) Remove(p *Process) {
	g.mu.Lock()
	cancel := g.cancels[p]
	delete(g.cancels, p)
	g.procs = slices.DeleteFunc(g.procs, func(q *Process) bool { return q == p })
	g.mu.Unlock()
	if cancel != nil {
		cancel()
		<-p.Done()
	}
}

// Procs returns the processes, in process_num order.
func (g *Group) Procs() []*Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.procs)
}

// Wait waits for every owner goroutine to end (after ctx has ended).
func (g *Group) Wait() { g.wg.Wait() }

// Match selects processes by a supervisorctl pattern: "all", "group",
// "group:*", "group:name" or a shell glob on either side ("web:web_0*").
// A bare name matches a group, the program, or a process of that name.
// The group is the processes' (the program's name unless it sets group).
func (g *Group) Match(pattern string) []*Process {
	procs := g.Procs()
	if pattern == "all" || pattern == g.Name {
		return procs
	}
	grp, name, hasColon := strings.Cut(pattern, ":")
	var out []*Process
	for _, p := range procs {
		spec := p.Spec()
		var ok bool
		if hasColon {
			ok, _ = path.Match(grp, spec.Group)
			if ok && name != "" {
				ok, _ = path.Match(name, spec.Name)
			}
		} else {
			ok, _ = path.Match(pattern, spec.Group)
			if !ok {
				ok, _ = path.Match(pattern, g.Name)
			}
			if !ok {
				ok, _ = path.Match(pattern, spec.Name)
			}
		}
		if ok {
			out = append(out, p)
		}
	}
	return out
}
