package procgroup

import (
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup/proctree"
	"golang.org/x/sys/unix"
)

// Leftovers: when a child ends (stopped, or on its own), whatever it
// started and left running is stopped too, before the process is reported
// STOPPED and before it is spawned again. The daemon is a child subreaper,
// so once the child is gone its living descendants are all below the
// daemon's own children that it did not spawn (orphans). Of those, the
// child's are the ones in its process group (whose id cannot be reused
// while the group has members) or carrying the spawn's marker
// (GOSUP_SPAWN=group:name/token) in their environment, with everything
// below them.

// SpawnEnv is the environment variable that names one spawn.
const SpawnEnv = "GOSUP_SPAWN"

// newSpawnMarker is a fresh GOSUP_SPAWN entry for a spawn of the process
// named name: the name, for an operator reading /proc, and a random token.
func newSpawnMarker(name string) string {
	return SpawnEnv + "=" + name + "/" + rand.Text()[:10]
}

// Spawns is the set of a daemon's live spawns, by their GOSUP_SPAWN
// entry: a spawn is live from just before its child starts until the
// daemon has seen the child exit. What carries the marker of a live spawn
// belongs to a running process. It is safe for concurrent use; a nil
// *Spawns is empty and ignores additions.
type Spawns struct {
	mu sync.Mutex
	m  map[string]struct{}
}

// NewSpawns makes an empty set.
func NewSpawns() *Spawns { return &Spawns{m: map[string]struct{}{}} }

func (s *Spawns) add(marker string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.m[marker] = struct{}{}
	s.mu.Unlock()
}

func (s *Spawns) remove(marker string) {
	if s == nil || marker == "" {
		return
	}
	s.mu.Lock()
	delete(s.m, marker)
	s.mu.Unlock()
}

// markers lists the live spawns' entries.
func (s *Spawns) markers() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.m))
	for m := range s.m {
		out = append(out, m)
	}
	return out
}

// leftover is one process to stop, named for good by pid and start time.
type leftover struct {
	pid   int
	start uint64
	pgrp  int
}

// findLeftovers lists the living processes that the exited child leader
// (the spawn marked with marker) left behind, among children (the
// daemon's, read after the leader was reaped). managed tells the daemon's
// children that it spawned itself. When the daemon has no orphans, which
// is the usual case, it reads no more than children.
func findLeftovers(children []int, leader int, marker string, managed func(int) bool) []leftover {
	return findOrphans(children, managed, func(st proctree.Proc) bool {
		return st.Pgrp == leader || marker != "" && proctree.HasEnv(st.Pid, marker)
	})
}

// findOrphans lists the daemon's living children (among children) that it
// did not spawn (managed tells those it did) and for which keep is true,
// with their living descendants.
func findOrphans(children []int, managed func(int) bool, keep func(proctree.Proc) bool) []leftover {
	var out []leftover
	seen := map[int]bool{}
	for _, pid := range children {
		if managed(pid) {
			continue
		}
		st, err := proctree.Stat(pid)
		if err != nil || proctree.Gone(st) {
			continue
		}
		if keep(st) {
			out = appendTree(out, seen, st)
		}
	}
	return out
}

// OrphanSweep is what StopOrphans did.
type OrphanSweep struct {
	Found, Killed, Left int
	Err                 error // why a process could not be tracked
}

// StopOrphans stops every living child of the daemon that it did not
// spawn itself (managed tells those it did), and everything below them:
// sig, then SIGKILL after wait (at once when ctx ends), through pidfds.
// The daemon is a child subreaper, so every process that its children
// left behind is re-parented to it, whatever its environment and process
// group: once every process has stopped, all its unmanaged children are
// such leftovers.
func StopOrphans(ctx context.Context, managed func(int) bool, sig unix.Signal, wait time.Duration) OrphanSweep {
	find := func() []leftover {
		return findOrphans(proctree.Children(os.Getpid()), managed, func(proctree.Proc) bool { return true })
	}
	res := sweep(ctx, find(), find, sig, 0, 0, wait)
	return OrphanSweep{Found: res.found, Killed: res.killed, Left: res.left, Err: res.err}
}

// appendTree appends p and its living descendants to out, unless seen.
func appendTree(out []leftover, seen map[int]bool, p proctree.Proc) []leftover {
	todo := []proctree.Proc{p}
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if seen[p.Pid] {
			continue
		}
		seen[p.Pid] = true
		out = append(out, leftover{pid: p.Pid, start: p.Start, pgrp: p.Pgrp})
		for _, c := range proctree.Children(p.Pid) {
			if st, err := proctree.Stat(c); err == nil && !proctree.Gone(st) && st.PPid == p.Pid {
				todo = append(todo, st)
			}
		}
	}
	return out
}

// sweepResult is what a sweep did.
type sweepResult struct {
	found  int   // processes found, in every round
	killed int   // of which were SIGKILLed
	left   int   // still alive (or not known gone) when the sweep gave up
	err    error // why a process could not be tracked (a pidfd not opened)
}

// sweepKillWait bounds how long a sweep waits for SIGKILLed processes to
// go (one stuck in the kernel, in state D, can take long) before it gives
// up on them.
const sweepKillWait = 5 * time.Second

// sweepRound bounds one wait of a sweep: what the processes found start
// meanwhile is found, and gets the stop signal, at the next look.
const sweepRound = 250 * time.Millisecond

// procKey names one process for good: its pid and start time.
type procKey struct {
	pid   int
	start uint64
}

// sweep stops the processes found and whatever find finds later: each
// gets the stop signal sig when found (except members of the group
// skipGroup, which had it), and SIGKILL once wait has passed since the
// sweep began, or at once when ctx ends; members of the group killGroup
// get SIGKILL when found (killasgroup). It returns when find has twice
// in a row found nothing alive (a look can miss a child while a sibling
// exits), or when SIGKILLed processes are still there sweepKillWait
// later. A process is tracked through a pidfd, so no signal can reach a
// process that reused its pid; one whose pidfd cannot be opened (EMFILE,
// ENFILE, ...) is not taken for gone: it is tried again at each look, and
// counted as left if it never could be.
func sweep(ctx context.Context, found []leftover, find func() []leftover, sig unix.Signal, skipGroup, killGroup int, wait time.Duration) sweepResult {
	var res sweepResult
	fds := map[procKey]int{}        // the processes tracked, by pidfd
	unopened := map[procKey]error{} // the processes not tracked, and why
	killed := map[procKey]bool{}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	deadline := time.Now().Add(wait)
	var killDeadline time.Time // set when the SIGKILLs begin
	killing := func() bool { return !killDeadline.IsZero() }
	kill := func(k procKey, fd int) {
		if !killed[k] {
			killed[k] = true
			res.killed++
		}
		_ = proctree.Send(fd, unix.SIGKILL)
	}
	// track opens a pidfd for each process not tracked yet (the pidfd
	// names it for good once its start time matches what was found), and
	// sends it the stop signal, or SIGKILL once they are due. It returns
	// how many it began to track.
	track := func(ls []leftover) int {
		fresh := 0
		for _, l := range ls {
			k := procKey{l.pid, l.start}
			if _, ok := fds[k]; ok {
				continue
			}
			fd, err := proctree.Open(l.pid, l.start, "")
			if errors.Is(err, proctree.ErrGone) {
				delete(unopened, k) // gone, its pid maybe reused
				continue
			} else if err != nil {
				unopened[k] = err
				continue
			}
			delete(unopened, k)
			fds[k] = fd
			res.found++
			fresh++
			if skipGroup <= 0 || l.pgrp != skipGroup {
				_ = proctree.Send(fd, sig)
			}
			if killing() || killGroup > 0 && l.pgrp == killGroup {
				kill(k, fd)
			}
		}
		return fresh
	}
	track(found)
	empty := 0
	for {
		if !killing() && (!time.Now().Before(deadline) || ctx.Err() != nil) {
			killDeadline = time.Now().Add(sweepKillWait)
		}
		alive := livePidfds(fds)
		if killing() {
			for k, fd := range alive {
				kill(k, fd)
			}
		}
		until := deadline
		if killing() {
			until = killDeadline
		}
		d := min(time.Until(until), sweepRound)
		switch {
		case len(alive) > 0:
			wctx := ctx
			if killing() {
				wctx = context.Background()
			}
			waitPidfds(wctx, alive, d)
		case len(unopened) > 0:
			sleepCtx(ctx, min(d, 100*time.Millisecond))
		}
		if killing() && !time.Now().Before(killDeadline) {
			res.left = len(livePidfds(fds)) + len(unopened)
			for _, err := range unopened {
				res.err = err
				break
			}
			return res
		}
		fresh := track(find())
		if fresh == 0 && len(unopened) == 0 && len(livePidfds(fds)) == 0 {
			if empty++; empty >= 2 {
				return res
			}
		} else {
			empty = 0
		}
	}
}

// sleepCtx sleeps for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// livePidfds lists the tracked processes that have not exited.
func livePidfds(fds map[procKey]int) map[procKey]int {
	out := map[procKey]int{}
	for k, fd := range fds {
		if !proctree.FdExited(fd) {
			out[k] = fd
		}
	}
	return out
}

// waitPidfds waits until every process in fds has exited, d has passed or
// ctx ends.
func waitPidfds(ctx context.Context, fds map[procKey]int, d time.Duration) {
	proctree.WaitExit(ctx, slices.Collect(maps.Values(fds)), time.Now().Add(d))
}
