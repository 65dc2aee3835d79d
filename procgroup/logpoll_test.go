package procgroup

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/pathtrust/pathtrusttest"
	"golang.org/x/sys/unix"
)

// readingGoroutines counts the goroutines reading a log pipe (a copier's,
// on the poller's wake-up, or a copier blocked in a read as before).
func readingGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "procgroup.(*copier).drain") || strings.Contains(g, "procgroup.copyOut(") || strings.Contains(g, "procgroup.discard(") {
			count++
		}
	}
	return count
}

// devNulls counts this process's descriptors open on /dev/null.
func devNulls(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == os.DevNull {
			n++
		}
	}
	return n
}

// 1,000 idle children whose output goes through the daemon (a rotated log
// per stream, as AUTO logs) cost no goroutine and no buffer per stream:
// once each child's line on each stream is in its log, no goroutine reads
// a pipe, while the daemon's poller watches all 2,000 of them. The
// processes share the daemon's one /dev/null. When they stop, every pipe
// hangs up and is closed.
func TestIdleStreamsHoldNoGoroutine(t *testing.T) {
	const n = 1000
	stdio, err := NewStdio()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdio.Close() })
	nulls := devNulls(t)
	dir := t.TempDir()
	spec := DefaultSpec()
	spec.Command = `/bin/sh -c "echo out %(process_num)d; echo err %(process_num)d >&2; exec sleep 3600"`
	spec.NumProcs = n
	spec.ProcessName = "%(program_name)s_%(process_num)d"
	spec.StartSecs = 0
	spec.StopWaitSecs = 5
	procs, err := spec.Expand("t", ExpandContext{Here: dir, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := NewPool(ctx, "t", testReaper, slog.New(slog.NewTextHandler(newTestWriter(t), nil)))
	g.Setup = func(p *Process) { p.Spawns, p.Stdio = testSpawns, stdio }
	for i := range procs {
		g.Add(&procs[i])
	}
	t.Cleanup(func() {
		cancel()
		g.Wait()
	})
	for _, p := range g.Procs() {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range g.Procs() {
		waitState(t, p, Running, time.Minute)
		for _, f := range []struct{ path, line string }{
			{procs[i].Stdout.Path, fmt.Sprintf("out %d\n", procs[i].Num)},
			{procs[i].Stderr.Path, fmt.Sprintf("err %d\n", procs[i].Num)},
		} {
			waitFor(t, "the line in "+f.path, func() bool {
				b, _ := os.ReadFile(f.path)
				return string(b) == f.line
			})
		}
	}
	if have := stdio.Pipes(); have != 2*n {
		t.Fatalf("the poller watches %d pipes; want %d", have, 2*n)
	}
	waitFor(t, "no goroutine reading a pipe of an idle stream", func() bool { return readingGoroutines() == 0 })
	if have := devNulls(t); have > nulls {
		t.Errorf("%d descriptors on /dev/null, %d before %d processes started; want the daemon's one", have, nulls, n)
	}
	for _, p := range g.Procs() {
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range g.Procs() {
		waitState(t, p, Stopped, time.Minute)
	}
	waitFor(t, "every pipe hung up and closed", func() bool { return stdio.Pipes() == 0 })
	for _, p := range g.Procs() {
		if st := p.Status(); st.LogDropped != 0 {
			t.Fatalf("%s dropped %d bytes", st.FullName(), st.LogDropped)
		}
	}
}

// logFiles is what a rotated log holds, its oldest backup first.
func logFiles(t *testing.T, path string, backups int) (content string, sizes []int64) {
	t.Helper()
	var b strings.Builder
	for i := backups; i >= 0; i-- {
		name := path
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		data, err := os.ReadFile(name)
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		sizes = append(sizes, int64(len(data)))
	}
	return b.String(), sizes
}

// spamText is what the helper's spam mode writes.
func spamText(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %08d %s\n", i, strings.Repeat("x", 80))
	}
	return b.String()[:n]
}

// A child's output into a rotated log is spliced into the file (moved by
// the kernel, not read into the daemon), and every byte lands in order in
// exactly one file: a file is cut after its last whole line before
// maxbytes, as when the bytes are written, and never exceeds it.
func TestSplicedLogKeepsEveryByte(t *testing.T) {
	const total = 16 << 20
	const maxBytes = 1 << 20
	const backups = 40
	dir := t.TempDir()
	spec := helperSpec("spam", strconv.Itoa(total))
	spec.StdoutLogfile = filepath.Join(dir, "out.log")
	spec.StdoutLogfileMaxBytes = maxBytes
	spec.StdoutLogfileBackups = backups
	p := newTestPool(t, spec).Procs()[0]
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Running, 30*time.Second)
	waitFor(t, "every byte in the log files", func() bool {
		b, _ := logFiles(t, spec.StdoutLogfile, backups)
		return len(b) >= total
	})
	got, sizes := logFiles(t, spec.StdoutLogfile, backups)
	if got != spamText(total) {
		t.Fatalf("the log files hold %d bytes, not the %d the child wrote in order", len(got), total)
	}
	for i, size := range sizes[:len(sizes)-1] {
		if size > maxBytes || size < maxBytes-95 {
			t.Errorf("file %d of %d has %d bytes; want maxbytes (%d) less at most one partial line", i, len(sizes), size, maxBytes)
		}
	}
	if st := p.Status(); st.LogDropped != 0 {
		t.Errorf("%d bytes counted as dropped", st.LogDropped)
	}
	p.out.mu.Lock()
	ss := p.out.sinks.stdout.(*streamSink)
	p.out.mu.Unlock()
	if ss.spliced.Load() == 0 {
		t.Error("no byte was spliced")
	}
	t.Logf("%d of %d bytes spliced", ss.spliced.Load(), total)
}

// A full disk under a log that takes splices: every byte the child writes
// is either in the log or counted as dropped, the log shows as failing
// (ENOSPC) in status; once there is room again, the next spawn's output
// is spliced in whole and the log is no longer failing.
func TestSplicedLogOnAFullDiskCountsEveryByte(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	const total = 4 << 20
	dir := t.TempDir()
	logdir := filepath.Join(dir, "log")
	if err := os.MkdirAll(logdir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", logdir, "tmpfs", 0, "size=8m,mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", logdir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(logdir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", logdir, err)
		}
	})
	filler := filepath.Join(logdir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 64<<10); ; {
		if _, err := f.Write(buf); err != nil {
			if err.(*os.PathError).Err != unix.ENOSPC {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()
	goFile := filepath.Join(dir, "go")
	if err := os.WriteFile(goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := helperSpec("blast", strconv.Itoa(total), goFile)
	spec.StdoutLogfile = filepath.Join(logdir, "out.log")
	spec.StdoutLogfileMaxBytes = 1 << 20
	spec.StdoutLogfileBackups = 10
	spec.StderrLogfile = filepath.Join(dir, "err.log")
	spec.AutoRestart = RestartNever
	p := newTestPool(t, spec).Procs()[0]
	logged := func() int64 {
		b, _ := logFiles(t, spec.StdoutLogfile, 10)
		return int64(len(b))
	}
	runs := 0
	run := func() {
		t.Helper()
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		runs++
		waitFor(t, "the child's line after its output", func() bool {
			b, _ := os.ReadFile(spec.StderrLogfile)
			return string(b) == strings.Repeat("done\n", runs)
		})
	}
	run()
	waitFor(t, "every byte in the log or counted as dropped", func() bool { return logged()+p.Status().LogDropped == total })
	failing := p.Status()
	if failing.LogDropped == 0 || len(failing.LogFailing) != 1 || !strings.Contains(failing.LogFailing[0].Err, "no space left on device") {
		t.Fatalf("on a full disk: %d bytes dropped, failing %+v", failing.LogDropped, failing.LogFailing)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p, Stopped, 30*time.Second)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	before := logged()
	run()
	waitFor(t, "the second spawn's output in the log", func() bool { return logged() == before+total })
	st := p.Status()
	if st.LogDropped != failing.LogDropped || len(st.LogFailing) != 0 {
		t.Errorf("after the disk has room: %d bytes dropped (%d before), failing %+v", st.LogDropped, failing.LogDropped, st.LogFailing)
	}
	p.out.mu.Lock()
	ss := p.out.sinks.stdout.(*streamSink)
	p.out.mu.Unlock()
	if ss.spliced.Load() == 0 {
		t.Error("no byte was spliced")
	}
}

// stdout and stderr may name the same log file (the configuration refuses
// only two processes sharing one): while both write at once through the
// daemon, each stream's bytes land in it, none written over by the other,
// and the file rotates as one log (never past its maxbytes, every byte in
// one of the files).
func TestStdoutAndStderrInOneFileKeepEveryByte(t *testing.T) {
	const total = 8 << 20
	for _, tc := range []struct {
		name     string
		maxBytes int
	}{{"unrotated", 1 << 30}, {"rotated", 1 << 20}} {
		t.Run(tc.name, func(t *testing.T) {
			const backups = 40
			dir := t.TempDir()
			done := filepath.Join(dir, "done")
			spec := helperSpec("spamboth", strconv.Itoa(total), done)
			spec.StdoutLogfile = filepath.Join(dir, "both.log")
			spec.StderrLogfile = spec.StdoutLogfile
			spec.StdoutLogfileMaxBytes, spec.StderrLogfileMaxBytes = Size(tc.maxBytes), Size(tc.maxBytes)
			spec.StdoutLogfileBackups, spec.StderrLogfileBackups = backups, backups
			p := newTestPool(t, spec).Procs()[0]
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the child to have written everything", func() bool {
				_, err := os.Stat(done)
				return err == nil
			})
			var got string
			var sizes []int64
			waitFor(t, "both streams' bytes in the logs or counted as dropped", func() bool {
				got, sizes = logFiles(t, spec.StdoutLogfile, backups)
				return int64(len(got))+p.Status().LogDropped >= 2*total
			})
			// The streams' bytes interleave anywhere (a line may be cut
			// by the other stream's), but each stream's are all there:
			// stdout writes "x", stderr "X".
			want := strings.Count(spamText(total), "x")
			if dropped := p.Status().LogDropped; dropped != 0 || len(got) != 2*total || strings.Count(got, "x") != want || strings.Count(got, "X") != want {
				t.Fatalf("the logs hold %d bytes (%d x from stdout, %d X from stderr; %d each written), %d counted as dropped; the child wrote %d to each stream", len(got), strings.Count(got, "x"), strings.Count(got, "X"), want, dropped, total)
			}
			for i, size := range sizes {
				if size > int64(tc.maxBytes) {
					t.Errorf("file %d of %d has %d bytes, over maxbytes (%d)", i, len(sizes), size, tc.maxBytes)
				}
			}
		})
	}
}

// A log pipe starts at the kernel's default size and grows to 1 MiB once
// its child fills it. A pipe made at 1 MiB for every stream holds 256
// slots of kernel memory each while idle (about 10 KiB a pipe, 20 MB for
// 1,000 children's stdout and stderr) and, for a daemon without
// CAP_SYS_RESOURCE, used up the user's pipe-user-pages-soft after 64
// pipes: from then on every new pipe of that user (its children's shell
// pipelines too) held 2 pages.
func TestLogPipeStartsSmallAndGrowsWhenFull(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	def, err := unix.FcntlInt(w.Fd(), unix.F_GETPIPE_SZ, 0)
	r.Close()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Spliced into the file, and copied (log_timestamps stamps the lines).
	for _, stamps := range []bool{false, true} {
		t.Run(fmt.Sprintf("timestamps=%v", stamps), func(t *testing.T) {
			dir := t.TempDir()
			spec := helperSpec("pipesize")
			spec.StdoutLogfile = filepath.Join(dir, "out.log")
			spec.StderrLogfile = filepath.Join(dir, "err.log")
			spec.StdoutLogfileMaxBytes = 64 << 20
			spec.LogTimestamps = stamps
			p := newTestPool(t, spec).Procs()[0]
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			want := []string{fmt.Sprintf("start %d", def), fmt.Sprintf("now %d", 1<<20)}
			waitFor(t, "the child to report its pipe's sizes", func() bool {
				b, _ := os.ReadFile(spec.StderrLogfile)
				return strings.Count(string(b), "\n") >= 2
			})
			b, _ := os.ReadFile(spec.StderrLogfile)
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			for i, line := range lines {
				if stamps { // "2026-11-30T18:51:51.349Z start 65536"
					_, line, _ = strings.Cut(line, " ")
				}
				if i >= len(want) || line != want[i] {
					t.Fatalf("the child's stdout pipe: want %q, have %q", want, b)
				}
			}
			waitFor(t, "the filled pipe's bytes in the log", func() bool {
				fi, err := os.Stat(spec.StdoutLogfile)
				return err == nil && fi.Size() >= int64(def)
			})
		})
	}
}

// A daemon without CAP_SYS_RESOURCE grows at most maxGrownUnprivileged
// pipes at a time, and a place given back can be taken again.
func TestUnprivilegedDaemonGrowsFewPipes(t *testing.T) {
	s, err := NewStdio()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.privileged = false
	size := func(f *os.File) int {
		n, err := unix.FcntlInt(f.Fd(), unix.F_GETPIPE_SZ, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var counted []bool
	var pipes []*os.File
	for range maxGrownUnprivileged + 4 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		pipes = append(pipes, r)
		counted = append(counted, s.grow(int(r.Fd())))
	}
	for i, r := range pipes {
		if grown := size(r) == grownPipe; grown != (i < maxGrownUnprivileged) || counted[i] != grown {
			t.Fatalf("pipe %d of %d: %d bytes, counted %v; want the first %d grown to %d and counted", i, len(pipes), size(r), counted[i], maxGrownUnprivileged, grownPipe)
		}
	}
	s.shrunk()
	last := pipes[len(pipes)-1]
	if !s.grow(int(last.Fd())) || size(last) != grownPipe {
		t.Fatalf("a place given back was not taken again: %d bytes", size(last))
	}
	if s.grow(int(pipes[len(pipes)-2].Fd())) {
		t.Fatal("grew past the limit")
	}
}
