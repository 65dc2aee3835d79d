// Package procgroup runs one program: its N processes on sequential ports,
// each with supervisord's state machine, spawned through the reaper, with
// its output captured.
package procgroup

import (
	"context"
	"log/slog"
	"path"
	"strings"
	"sync"

	"github.com/gosup/gosup/procgroup/reaper"
)

// Group is one program's processes.
type Group struct {
	Name  string
	Spec  *Spec
	Procs []*Process

	wg sync.WaitGroup
}

// NewGroup makes the processes of a program (all STOPPED).
func NewGroup(name string, spec *Spec, procs []ProcSpec, rp *reaper.Reaper, log *slog.Logger) *Group {
	g := &Group{Name: name, Spec: spec}
	for i := range procs {
		g.Procs = append(g.Procs, NewProcess(&procs[i], rp, log))
	}
	return g
}

// Run starts the owner goroutine of every process; they end with ctx.
func (g *Group) Run(ctx context.Context) {
	for _, p := range g.Procs {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			p.Run(ctx)
		}()
	}
}

// Wait waits for every owner goroutine to end.
func (g *Group) Wait() { g.wg.Wait() }

// Match selects processes by a supervisorctl pattern: "all", "group",
// "group:*", "group:name" or a shell glob on either side ("web:web_0*").
// A bare name that is not a group matches a process of that name.
func (g *Group) Match(pattern string) []*Process {
	if pattern == "all" || pattern == g.Name {
		return g.Procs
	}
	grp, name, hasColon := strings.Cut(pattern, ":")
	if !hasColon {
		grp, name = "*", pattern
		if ok, _ := path.Match(pattern, g.Name); ok {
			return g.Procs
		}
	}
	if ok, _ := path.Match(grp, g.Name); !ok {
		return nil
	}
	var out []*Process
	for _, p := range g.Procs {
		if ok, _ := path.Match(name, p.spec.Name); ok || name == "" {
			out = append(out, p)
		}
	}
	return out
}
