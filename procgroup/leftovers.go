package procgroup

import (
	"context"
	"crypto/rand"
	"errors"
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
// (the spawn marked with marker) left behind. managed tells the daemon's
// children that it spawned itself. When the daemon has no orphans, which
// is the usual case, it costs one read per daemon thread.
func findLeftovers(leader int, marker string, managed func(int) bool) []leftover {
	var out []leftover
	seen := map[int]bool{}
	for _, pid := range proctree.Children(os.Getpid()) {
		if managed(pid) {
			continue
		}
		st, err := proctree.Stat(pid)
		if err != nil || st.State == 'Z' {
			continue
		}
		if st.Pgrp == leader || marker != "" && proctree.HasEnv(pid, marker) {
			out = appendTree(out, seen, st)
		}
	}
	return out
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
			if st, err := proctree.Stat(c); err == nil && st.State != 'Z' && st.PPid == p.Pid {
				todo = append(todo, st)
			}
		}
	}
	return out
}

// sweepResult is what a sweep did.
type sweepResult struct {
	found  int // processes found, in every round
	killed int // of which were SIGKILLed
	left   int // still alive when the sweep gave up
}

// sweepKillWait bounds how long a sweep waits for SIGKILLed processes to
// go (one stuck in the kernel, in state D, can take long) before it gives
// up on them.
const sweepKillWait = 5 * time.Second

// sweep stops the processes found (and whatever find finds later): the
// stop signal sig, except to members of the group skipGroup (already sent
// it), then SIGKILL for those still alive after wait, or at once when ctx
// ends. It returns when find finds nothing alive, or when SIGKILLed
// processes are still there sweepKillWait later.
func sweep(ctx context.Context, found []leftover, find func() []leftover, sig unix.Signal, skipGroup int, wait time.Duration) sweepResult {
	var res sweepResult
	fds := map[int]int{} // pid → pidfd, of the processes found so far
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	// track opens pidfds for the processes not tracked yet and returns
	// them: the pidfd names the process for good once its start time
	// matches what was found.
	track := func(ls []leftover) []int {
		var fresh []int
		for _, l := range ls {
			if _, ok := fds[l.pid]; ok {
				continue
			}
			fd, err := unix.PidfdOpen(l.pid, 0)
			if err != nil {
				continue // gone
			}
			if st, err := proctree.StartTime(l.pid); err != nil || st != l.start {
				unix.Close(fd)
				continue // gone, its pid reused
			}
			fds[l.pid] = fd
			fresh = append(fresh, l.pid)
			res.found++
		}
		return fresh
	}
	signal := func(pids []int, sig unix.Signal) {
		for _, pid := range pids {
			if fd, ok := fds[pid]; ok {
				_ = unix.PidfdSendSignal(fd, sig, nil, 0)
			}
		}
	}
	track(found)
	var first []int
	for _, l := range found {
		if skipGroup <= 0 || l.pgrp != skipGroup {
			first = append(first, l.pid)
		}
	}
	signal(first, sig)
	waitPidfds(ctx, fds, wait)
	killDeadline := time.Now().Add(sweepKillWait)
	for {
		track(find())
		alive := livePidfds(fds)
		if len(alive) == 0 {
			return res
		}
		if time.Now().After(killDeadline) {
			res.left = len(alive)
			return res
		}
		signal(alive, unix.SIGKILL)
		res.killed += len(alive)
		waitPidfds(context.Background(), fds, time.Until(killDeadline))
	}
}

// livePidfds lists the pids whose process has not exited.
func livePidfds(fds map[int]int) []int {
	var out []int
	for pid, fd := range fds {
		if !pidfdExited(fd) {
			out = append(out, pid)
		}
	}
	return out
}

// pidfdExited reports whether the process behind fd has exited (its whole
// thread group: a zombie holds no files, ports included).
func pidfdExited(fd int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	return err == nil && n > 0
}

// waitPidfds waits until every process in fds has exited, d has passed or
// ctx ends.
func waitPidfds(ctx context.Context, fds map[int]int, d time.Duration) {
	deadline := time.Now().Add(d)
	pfds := make([]unix.PollFd, 0, len(fds))
	for _, fd := range fds {
		pfds = append(pfds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	for len(pfds) > 0 {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return
		}
		// Wake at least every 100 ms to notice ctx.
		ms := int(min(left, 100*time.Millisecond)/time.Millisecond) + 1
		n, err := unix.Poll(pfds, ms)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if n <= 0 {
			continue
		}
		pfds = slices.DeleteFunc(pfds, func(p unix.PollFd) bool { return p.Revents != 0 })
		for i := range pfds {
			pfds[i].Revents = 0
		}
	}
}
