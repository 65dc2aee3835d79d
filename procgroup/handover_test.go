package procgroup

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/reaper"
	"golang.org/x/sys/unix"
)

// freezeHeld freezes p the way an upgrade does, with reaping held; the
// returned func resumes it and releases the reaper (at the end of the test
// if not called before).
func freezeHeld(t *testing.T, p *Process, wait time.Duration) (*Frozen, func(), error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	release, err := testReaper.Hold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.Freeze(ctx, wait)
	if err != nil {
		release()
		return nil, nil, err
	}
	resume := sync.OnceFunc(func() {
		f.Resume()
		release()
	})
	t.Cleanup(resume) // a test that fails while frozen
	return f, resume, nil
}

// checkCount fails unless text is the lines "n 0", "n 1", … "n K", each
// once, in order (K >= min), and returns K+1.
func checkCount(t *testing.T, text string, min int) int {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, l := range lines {
		if l != "n "+strconv.Itoa(i) {
			t.Fatalf("line %d of the log is %q, want %q (lines %d in all)", i, l, "n "+strconv.Itoa(i), len(lines))
		}
	}
	if len(lines) < min {
		t.Fatalf("%d lines, want at least %d", len(lines), min)
	}
	return len(lines)
}

// rotatedLog is the whole of a rotated log: its backups, oldest first, then
// the file itself.
func rotatedLog(t *testing.T, path string, backups int) string {
	t.Helper()
	var all bytes.Buffer
	for i := backups; i >= 0; i-- {
		name := path
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		b, err := os.ReadFile(name)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		all.Write(b)
	}
	if _, err := os.Stat(path + "." + strconv.Itoa(backups)); err == nil {
		t.Fatalf("%s.%d exists: the log rotated out of the backups the test reads", path, backups)
	}
	return all.String()
}

// logSize is the bytes in path and its backups.
func logSize(path string) int64 {
	matches, _ := filepath.Glob(path + "*")
	var n int64
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// A running process writing fast through its pipe into a rotated log,
// frozen and resumed again and again (a failed upgrade, each time): the
// child keeps its pid, its output is read again after each Resume (the
// log grows), and the log has every line exactly once, in order.
func TestFreezeResumeLosesNoOutput(t *testing.T) {
	const backups = 200
	dir := t.TempDir()
	spec := helperSpec("count")
	spec.StdoutLogfile = filepath.Join(dir, "out.log")
	spec.StdoutLogfileMaxBytes = 8 << 10
	spec.StdoutLogfileBackups = backups
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitState(t, p, Running, 30*time.Second).Pid
	path := spec.StdoutLogfile
	for i := range 50 {
		f, resume, err := freezeHeld(t, p, 30*time.Second)
		if err != nil {
			t.Fatalf("freeze %d: %v", i, err)
		}
		h := f.Handover
		if h.State != Running || h.Pid != pid || len(h.Pipes) != 2 || len(f.Files) != 2 || h.Pipes[0].Stream == h.Pipes[1].Stream {
			t.Fatalf("freeze %d: handover %+v, %d files", i, h, len(f.Files))
		}
		// Frozen: requests wait (none is made here); the size now is
		// what the copier wrote before it stopped.
		size := logSize(path)
		resume()
		waitFor(t, "the log to grow after resume "+strconv.Itoa(i), func() bool { return logSize(path) > size })
	}
	if st := p.Status(); st.Pid != pid || st.State != Running || st.StdoutDropped != 0 {
		t.Fatalf("after 50 freezes: %+v", st)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 30*time.Second)
	n := checkCount(t, rotatedLog(t, path, backups), 50)
	if _, err := os.Stat(path + ".1"); err != nil {
		t.Errorf("the log never rotated: %v", err)
	}
	t.Logf("%d lines, %d bytes", n, logSize(path))
}

// A process in BACKOFF, waiting to respawn, frozen and resumed: it still
// respawns, not before the time it had.
func TestFreezeResumeKeepsARespawn(t *testing.T) {
	spec := helperSpec("exit", "1")
	spec.StartSecs = 1 // an exit at once is a failed start: BACKOFF
	spec.StartRetries = 100
	p := newTestPool(t, spec).Procs()[0]
	spawns := recordSpawns(p)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	// Catch it in BACKOFF (it may be spawning again when the freeze
	// comes: try the next backoff, which is longer).
	var h Handover
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := p.Wait(ctx, func(s Status) bool { return s.State == Backoff })
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		f, resume, err := freezeHeld(t, p, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		h = f.Handover
		before := len(spawns())
		if h.State == Backoff {
			// The exited spawn's pipes are handed over when its copiers
			// had not yet read to their end: the new image drains them.
			if h.RespawnAt.IsZero() || h.Pid != 0 || len(f.Files) != len(h.Pipes) {
				resume()
				t.Fatalf("handover in BACKOFF: %+v, %d files", h, len(f.Files))
			}
			resume()
			waitFor(t, "a respawn after the resume", func() bool { return len(spawns()) > before })
			if at := spawns()[before]; at.Before(h.RespawnAt) {
				t.Fatalf("respawned at %s, before its time %s", at, h.RespawnAt)
			}
			return
		}
		resume()
		if attempt == 5 {
			t.Fatalf("never frozen in BACKOFF: last %s", h.State)
		}
	}
}

// A process STARTING, its startsecs not yet passed, frozen and resumed:
// it still becomes RUNNING (the startsecs timer is taken up again).
func TestFreezeResumeKeepsStartSecs(t *testing.T) {
	spec := helperSpec("sleep")
	spec.StartSecs = 10 // long enough to be frozen in STARTING on a slow machine
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitState(t, p, Starting, 30*time.Second).Pid
	f, resume, err := freezeHeld(t, p, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h := f.Handover
	resume()
	if h.State != Starting || h.StartWaited || h.Pid != pid {
		t.Fatalf("handover: %+v", h)
	}
	if st := waitState(t, p, Running, time.Minute); st.Pid != pid {
		t.Fatalf("RUNNING with pid %d, spawned %d", st.Pid, pid)
	}
}

// hangSink is a log whose writes hang while gate is held (a disk that
// stopped answering), and otherwise keeps what it is given.
type hangSink struct {
	gate    sync.Mutex
	waiting atomic.Int32 // writes waiting at the gate
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (s *hangSink) Write(b []byte) (int, error) {
	s.waiting.Add(1)
	s.gate.Lock()
	defer s.gate.Unlock()
	s.waiting.Add(-1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(b)
}

func (s *hangSink) Close() error { return nil }

func (s *hangSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// A log copier stuck writing to a hung log fails the freeze, naming the
// stream, after the wait given; the process goes on: status answers, the
// output flows again when the log does, nothing is lost, and a later
// freeze succeeds.
func TestFreezeFailsOnAHungLog(t *testing.T) {
	dir := t.TempDir()
	spec := helperSpec("count")
	spec.StdoutLogfile = filepath.Join(dir, "out.log")
	sink := &hangSink{}
	g, _, _ := guardedPool(t, spec, func(p *Process) {
		p.out.mu.Lock()
		p.out.sinks.stdout = sink
		p.out.mu.Unlock()
	})
	p := g.Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitState(t, p, Running, 30*time.Second).Pid
	waitFor(t, "output in the log", func() bool { return strings.Contains(sink.String(), "n 1\n") })
	sink.gate.Lock()
	waitFor(t, "a write stuck in the log", func() bool { return sink.waiting.Load() > 0 })
	_, _, err := freezeHeld(t, p, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "stdout log copier is still writing after 500ms") {
		sink.gate.Unlock()
		t.Fatalf("freeze with a hung log: %v", err)
	}
	if !returnsWithin(10*time.Second, func() { p.Status() }) {
		t.Fatal("status waits after a failed freeze")
	}
	if st := p.Status(); st.State != Running || st.Pid != pid {
		t.Fatalf("after a failed freeze: %+v", st)
	}
	mark := len(sink.String())
	sink.gate.Unlock()
	waitFor(t, "output after the log is back", func() bool { return len(sink.String()) > mark+100 })
	f, resume, err := freezeHeld(t, p, 30*time.Second)
	if err != nil {
		t.Fatalf("freeze with the log back: %v", err)
	}
	if len(f.Files) != 2 {
		t.Fatalf("freeze with the log back: %d files (stdout and stderr)", len(f.Files))
	}
	resume()
	mark = len(sink.String())
	waitFor(t, "output after the resume", func() bool { return len(sink.String()) > mark+100 })
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 30*time.Second)
	if st := p.Status(); st.StdoutDropped != 0 {
		t.Fatalf("dropped %d bytes", st.StdoutDropped)
	}
	checkCount(t, sink.String(), 100)
}

// A freeze that gives up at once (a wait too short for the copiers to
// stop, as on a loaded machine) fails or succeeds, and either way the
// process goes on: every copier is reading again (output flows, on both
// streams), the child lives, and no line is lost or repeated.
func TestFreezeGivingUpLeavesEveryCopierReading(t *testing.T) {
	dir := t.TempDir()
	spec := helperSpec("count")
	spec.StdoutLogfile = filepath.Join(dir, "out.log")
	spec.StdoutLogfileMaxBytes = 0
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitState(t, p, Running, 30*time.Second).Pid
	failed := 0
	for i := range 500 {
		_, resume, err := freezeHeld(t, p, time.Nanosecond)
		if err != nil {
			failed++
		} else {
			resume()
		}
		size := logSize(spec.StdoutLogfile)
		waitFor(t, "output after freeze "+strconv.Itoa(i)+" (failed: "+strconv.FormatBool(err != nil)+")", func() bool {
			return logSize(spec.StdoutLogfile) > size
		})
		if st := p.Status(); st.Pid != pid {
			t.Fatalf("freeze %d (failed: %v): the child %d is gone (%s), pid now %d", i, err, pid, st.ExitDesc, st.Pid)
		}
	}
	if st := p.Status(); st.Pid != pid || st.State != Running || st.StdoutDropped != 0 {
		t.Fatalf("after the freezes: %+v", st)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 30*time.Second)
	b, err := os.ReadFile(spec.StdoutLogfile)
	if err != nil {
		t.Fatal(err)
	}
	checkCount(t, string(b), 500)
	t.Logf("%d of 500 freezes failed", failed)
}

// handedChild starts the helper in mode as the previous image would have
// (outside this image's spawns: a child whose exit nobody here is
// subscribed to), its stdout and stderr on a pipe, and subscribes to its
// exit with reaper.Adopt while reaping is held, as the next image does. It
// returns the handover describing it, the pipe's read end and the exit.
func handedChild(t *testing.T, spec *ProcSpec, mode ...string) (Handover, *os.File, <-chan reaper.Exit) {
	t.Helper()
	rfd, w, err := childPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(rfd), "|0")
	marker := newSpawnMarker(spec.FullName())
	release, err := testReaper.Hold(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	proc, err := os.StartProcess(os.Args[0], append([]string{os.Args[0]}, mode...), &os.ProcAttr{
		Env:   append(os.Environ(), "GO_WANT_HELPER_PROCESS=1", marker),
		Files: []*os.File{nil, w, w},
	})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	exitC, err := testReaper.Adopt(proc.Pid)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h := Handover{
		Name: spec.FullName(), State: Running, Pid: proc.Pid, Marker: marker, SpawnedAt: now, StartedAt: now,
		Spawns: 1, Ready: true, StartWaited: true, Pipes: []Pipe{{Stream: "stdout", FD: rfd}},
	}
	// What crosses the exec is JSON.
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Handover
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return back, r, exitC
}

// adoptingProcess is a new process for spec (its spawns in testSpawns)
// that adopts h, running until the test ends.
func adoptingProcess(t *testing.T, spec *ProcSpec, h Handover, exitC <-chan reaper.Exit, files []*os.File) *Process {
	t.Helper()
	p := NewProcess(spec, testReaper, slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug})))
	p.Spawns = testSpawns
	if err := p.Adopt(h, exitC, files); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go p.Run(ctx)
	t.Cleanup(func() {
		_ = p.Stop()
		waitState(t, p, Stopped, 30*time.Second)
		cancel()
		<-p.Done()
	})
	return p
}

// A process adopted from a handover (a child this image did not spawn, its
// output pipe, its counters) runs on as RUNNING with that pid, its output
// goes on into its log from the pipe in order, and when the child dies the
// restart policy applies: it is respawned.
func TestAdoptTakesOverARunningChild(t *testing.T) {
	dir := t.TempDir()
	spec := helperSpec("count")
	spec.StdoutLogfile = filepath.Join(dir, "out.log")
	spec.AutoRestart = RestartAlways
	procs, err := spec.Expand("t", ExpandContext{Here: dir, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h, r, exitC := handedChild(t, &procs[0], "count")
	p := adoptingProcess(t, &procs[0], h, exitC, []*os.File{r})
	if st := waitState(t, p, Running, 30*time.Second); st.Pid != h.Pid || st.Spawns != 1 {
		t.Fatalf("adopted: %+v", st)
	}
	waitFor(t, "the adopted child's output in the log", func() bool { return logSize(spec.StdoutLogfile) > 1000 })
	if err := unix.Kill(h.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := p.Wait(ctx, func(s Status) bool { return s.State == Running && s.Pid != h.Pid && s.Pid != 0 })
	if err != nil {
		t.Fatalf("no respawn after the adopted child died: %+v", st)
	}
	if st.Spawns != 2 || st.ExitDesc != "terminated by SIGKILL" {
		t.Fatalf("after the respawn: %+v", st)
	}
	// The log has the adopted child's lines, whole and in order, then the
	// new child's from "n 0" again.
	waitFor(t, "the new child's output in the log", func() bool {
		b, _ := os.ReadFile(spec.StdoutLogfile)
		return strings.Contains(string(b), "\nn 0\n")
	})
	b, err := os.ReadFile(spec.StdoutLogfile)
	if err != nil {
		t.Fatal(err)
	}
	adopted, _, _ := strings.Cut(string(b), "\nn 0\n")
	checkCount(t, adopted+"\n", 50)
}

// A child that exited in the handover window (a zombie when adopted) has
// its exit handled by the new process: the status shows it and the
// restart policy respawns it.
func TestAdoptHandlesAnExitFromTheWindow(t *testing.T) {
	dir := t.TempDir()
	spec := helperSpec("sleep")
	spec.AutoRestart = RestartUnexpected
	procs, err := spec.Expand("t", ExpandContext{Here: dir, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	h, r, exitC := handedChild(t, &procs[0], "exit", "3")
	// Reaping is no longer held: the exit waits on exitC.
	p := adoptingProcess(t, &procs[0], h, exitC, []*os.File{r})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := p.Wait(ctx, func(s Status) bool { return s.Spawns == 2 && s.State == Running })
	if err != nil {
		t.Fatalf("no respawn after the exit in the window: %+v", st)
	}
	if st.ExitStatus == nil || *st.ExitStatus != 3 || st.Pid == h.Pid {
		t.Fatalf("after the exit in the window: %+v", st)
	}
}

// A process STOPPING (its child ignores SIGTERM), frozen and resumed: the
// SIGKILL still comes at the stop's deadline, and it reaches STOPPED.
func TestFreezeResumeKeepsAStopDeadline(t *testing.T) {
	spec := helperSpec("ignore-term")
	spec.StopWaitSecs = 3
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitState(t, p, Running, 30*time.Second).Pid
	// The child says it ignores TERM (in its log) before the stop.
	waitFor(t, "the child to ignore TERM", func() bool {
		b, _ := os.ReadFile(p.Spec().Stdout.Path)
		return strings.Contains(string(b), "ignoring TERM")
	})
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Stopping, 30*time.Second)
	f, resume, err := freezeHeld(t, p, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	h := f.Handover
	resume()
	if h.State != Stopping || h.Pid != pid || h.StopDeadline.IsZero() {
		t.Fatalf("handover: %+v", h)
	}
	st := waitState(t, p, Stopped, time.Minute)
	if st.ExitDesc != "terminated by SIGKILL" {
		t.Fatalf("stopped: %+v", st)
	}
}

// A syslog log holds the start of a line until the line ends. Handed over
// in the middle of one (the child wrote "abc", not yet "def\n"), the next
// image's log goes on from it: syslog gets "abcdef", nothing is lost.
func TestHandoverKeepsAPartialSyslogLine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	sd := listenSyslog(t, sock)
	spec := helperSpec("partial", "abc", "def")
	spec.StdoutLogfile = "syslog"
	g, _, _ := guardedPool(t, spec, func(p *Process) { p.out.syslogAddr = sock })
	p := g.Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	pid := waitState(t, p, Running, 30*time.Second).Pid
	waitFor(t, `"abc" held by the syslog log`, func() bool {
		p.out.mu.Lock()
		s, _ := p.out.sinks.stdout.(*streamSink)
		p.out.mu.Unlock()
		if s == nil {
			return false
		}
		lw := s.w.(*lineWriter)
		lw.mu.Lock()
		defer lw.mu.Unlock()
		return string(lw.buf) == "abc"
	})
	f, _, err := freezeHeld(t, p, 30*time.Second) // frozen until the test ends
	if err != nil {
		t.Fatal(err)
	}
	// The next image: a process that takes the handover (as JSON) and the
	// pipe. The child stays the frozen process's; this one only has the
	// pipe, as for an earlier spawn's pipe that a grandchild holds.
	adoptPipesOnly(t, p, f, sock)
	if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-sd.got:
			if !strings.Contains(m, "def") {
				continue
			}
			if !strings.HasSuffix(strings.TrimSpace(m), "abcdef") {
				t.Fatalf("syslog got %q, want the line abcdef", m)
			}
			return
		case <-deadline:
			t.Fatal("the line never reached syslog")
		}
	}
}

// log_timestamps across a handover, undone (a failed upgrade) or taken by
// the next image: a line the child began before it ("abc") and ends after
// ("def\n") has one stamp, at its start; the copier that goes on knows the
// line is begun.
func TestHandoverKeepsAStampedLineWhole(t *testing.T) {
	for _, adopt := range []bool{false, true} {
		t.Run(map[bool]string{false: "undone", true: "adopted"}[adopt], func(t *testing.T) {
			dir := t.TempDir()
			spec := helperSpec("partial", "abc", "def")
			spec.StdoutLogfile = filepath.Join(dir, "out.log")
			spec.LogTimestamps = true
			p := newTestPool(t, spec).Procs()[0]
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			pid := waitState(t, p, Running, 30*time.Second).Pid
			path := p.Spec().Stdout.Path
			waitFor(t, `"abc" in the log`, func() bool {
				b, _ := os.ReadFile(path)
				return strings.HasSuffix(string(b), " abc")
			})
			f, resume, err := freezeHeld(t, p, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if adopt {
				adoptPipesOnly(t, p, f, "")
			} else {
				resume()
			}
			if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			waitFor(t, `"def" in the log`, func() bool {
				b, _ := os.ReadFile(path)
				return strings.HasSuffix(string(b), "def\n")
			})
			b, _ := os.ReadFile(path)
			if !regexp.MustCompile(`\A[0-9T:.+Z-]+ abcdef\n\z`).Match(b) {
				t.Fatalf("log %q: want one line abcdef, one stamp", b)
			}
		})
	}
}

// adoptPipesOnly is the next image taking frozen p's handover (through
// JSON, as the document carries it) and its pipes, run until the test
// ends. The child stays the frozen process's: the new one only has the
// pipes, as for an earlier spawn's pipe that a grandchild holds. Its
// syslog goes to syslogAddr ("": the default).
func adoptPipesOnly(t *testing.T, p *Process, f *Frozen, syslogAddr string) {
	t.Helper()
	b, err := json.Marshal(f.Handover)
	if err != nil {
		t.Fatal(err)
	}
	var h Handover
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	h.Pid, h.State = 0, Exited
	next := NewProcess(p.Spec(), testReaper, slog.New(slog.NewTextHandler(newTestWriter(t), nil)))
	next.Spawns = testSpawns
	next.out.syslogAddr = syslogAddr
	if err := next.Adopt(h, nil, f.Files); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go next.Run(ctx)
	t.Cleanup(func() {
		cancel()
		<-next.Done()
	})
}
