package procgroup

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gosup/gosup/logtail"
	"golang.org/x/sys/unix"
)

// BenchmarkChildLogFile measures a child writing 64 MiB to its stdout log
// without rotation (maxbytes 0), in one write: one op is a spawn until
// the file holds all of it (through the pipe and copier since
// reopen-logs; handed to the child directly before).
func BenchmarkChildLogFile(b *testing.B) { benchChildLog(b, false) }

// BenchmarkChildLogFileTimestamps is BenchmarkChildLogFile with
// log_timestamps = true: the copier stamps each of its 17-byte lines (the
// bytes per second are the child's, not the file's, which grows by a stamp
// a line).
func BenchmarkChildLogFileTimestamps(b *testing.B) { benchChildLog(b, true) }

func benchChildLog(b *testing.B, stamps bool) {
	const total = 64 << 20
	want := int64(total)
	if stamps {
		// spamdone writes 17-byte lines: every one begun gets a stamp.
		lines := int64((total + 16) / 17)
		want += lines * int64(len(time.Now().Format(logtail.TimeFormat))+1)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.SetBytes(total)
	for b.Loop() {
		dir := b.TempDir()
		spec := helperSpec("spamdone", strconv.Itoa(total))
		spec.StdoutLogfile = filepath.Join(dir, "out.log")
		spec.StdoutLogfileMaxBytes = 0
		spec.StderrLogfile = "none"
		spec.LogTimestamps = stamps
		procs, err := spec.Expand("t", ExpandContext{Here: dir, LogDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		p := NewProcess(&procs[0], testReaper, log)
		ctx, cancel := context.WithCancel(context.Background())
		go p.Run(ctx)
		if err := p.Start(); err != nil {
			b.Fatal(err)
		}
		for {
			if fi, err := os.Stat(spec.StdoutLogfile); err == nil && fi.Size() >= want {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		_ = p.Stop()
		_, _ = p.Wait(context.Background(), func(s Status) bool { return s.State == Stopped })
		cancel()
		<-p.Done()
		b.StartTimer()
	}
}

// BenchmarkChildLogRotated measures output through the daemon into a
// rotated log (maxbytes 64 MiB, so a 256 MiB op crosses 4 rotations): a
// child writes 256 MiB of 100-byte lines in 128 KiB writes once told to
// go, and the op ends when the log and its backups hold every byte. It
// reports MiB/s and the test process's (the daemon's) CPU per MiB, from
// getrusage, and fails on a byte lost or counted as dropped.
func BenchmarkChildLogRotated(b *testing.B) {
	const total = 256 << 20
	const maxBytes = 64 << 20
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var elapsed time.Duration
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		goFile := filepath.Join(dir, "go")
		spec := helperSpec("blast", strconv.Itoa(total), goFile)
		spec.StdoutLogfile = filepath.Join(dir, "out.log")
		spec.StdoutLogfileMaxBytes = maxBytes
		spec.StdoutLogfileBackups = 10
		spec.StderrLogfile = filepath.Join(dir, "err.log")
		procs, err := spec.Expand("t", ExpandContext{Here: dir, LogDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		p := NewProcess(&procs[0], testReaper, log)
		ctx, cancel := context.WithCancel(context.Background())
		go p.Run(ctx)
		if err := p.Start(); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(context.Background(), func(s Status) bool { return s.State == Running }); err != nil {
			b.Fatal(err)
		}
		size := func() int64 {
			var sum int64
			for i := 0; i <= spec.StdoutLogfileBackups; i++ {
				name := spec.StdoutLogfile
				if i > 0 {
					name += "." + strconv.Itoa(i)
				}
				if fi, err := os.Stat(name); err == nil {
					sum += fi.Size()
				}
			}
			return sum
		}
		ru0 := rusage(b)
		t0 := time.Now()
		b.StartTimer()
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		for size() < total {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		elapsed += time.Since(t0)
		cpu += rusage(b) - ru0
		for {
			if b, _ := os.ReadFile(spec.StderrLogfile); string(b) == "done\n" {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if n, st := size(), p.Status(); n != total || st.LogDropped != 0 {
			b.Fatalf("the logs hold %d bytes of %d, %d counted as dropped", n, total, st.LogDropped)
		}
		_ = p.Stop()
		_, _ = p.Wait(context.Background(), func(s Status) bool { return s.State == Stopped })
		cancel()
		<-p.Done()
		b.StartTimer()
	}
	mib := float64(total) / (1 << 20) * float64(b.N)
	b.ReportMetric(mib/elapsed.Seconds(), "MiB/s")
	b.ReportMetric(cpu.Seconds()*1000/mib, "cpu-ms/MiB")
}

// rusage is the CPU time (user and system) the test process has used.
func rusage(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkChildLogDirect is BenchmarkChildLogRotated's floor: the same
// child writing the same bytes into a file handed to it, not through the
// daemon (and not rotated).
func BenchmarkChildLogDirect(b *testing.B) {
	const total = 256 << 20
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		out, err := os.Create(filepath.Join(dir, "out.log"))
		if err != nil {
			b.Fatal(err)
		}
		cmd, goFile := startBlast(b, dir, total, out)
		t0 := time.Now()
		b.StartTimer()
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		for {
			if fi, err := out.Stat(); err == nil && fi.Size() >= total {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		elapsed += time.Since(t0)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/(1<<20)*float64(b.N)/elapsed.Seconds(), "MiB/s")
}

// BenchmarkChildLogPipeFloor is the floor of any supervisor that takes a
// child's output through a pipe: the same child as BenchmarkChildLogRotated
// writing into a pipe, and this process moving the bytes into a file in a
// plain blocking loop, with no poller, no rotation and no accounting. The
// bytes are copied twice (the child's write into the pipe, then the pipe
// into the page cache), where BenchmarkChildLogDirect copies them once:
//   - splice: splice(2) from the pipe to the file, the default 64 KiB pipe;
//   - splice-1MiB: the same with the pipe grown to 1 MiB (F_SETPIPE_SZ);
//   - read-write: read(2) into a 128 KiB buffer and write(2) it, as cat does.
func BenchmarkChildLogPipeFloor(b *testing.B) {
	for _, c := range []struct {
		name   string
		size   int
		splice bool
	}{{"splice", 0, true}, {"splice-1MiB", 1 << 20, true}, {"read-write", 0, false}} {
		b.Run(c.name, func(b *testing.B) { benchPipeFloor(b, c.size, c.splice) })
	}
}

func benchPipeFloor(b *testing.B, pipeSize int, splice bool) {
	const total = 256 << 20
	var elapsed time.Duration
	buf := make([]byte, 128<<10)
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		out, err := os.Create(filepath.Join(dir, "out.log"))
		if err != nil {
			b.Fatal(err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		if pipeSize > 0 {
			if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, pipeSize); err != nil {
				b.Fatalf("grow the pipe to %d bytes: %v", pipeSize, err)
			}
		}
		cmd, goFile := startBlast(b, dir, total, w)
		w.Close()
		rfd, ofd := int(r.Fd()), int(out.Fd())
		t0 := time.Now()
		b.StartTimer()
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		moved := 0
		for moved < total {
			var n int
			if splice {
				var n64 int64
				n64, err = unix.Splice(rfd, nil, ofd, nil, total-moved, 0)
				n = int(n64)
			} else if n, err = unix.Read(rfd, buf); n > 0 {
				n, err = unix.Write(ofd, buf[:n])
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				b.Fatalf("moved %d of %d bytes: %d, %v", moved, total, n, err)
			}
			moved += n
		}
		b.StopTimer()
		elapsed += time.Since(t0)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		r.Close()
		out.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/(1<<20)*float64(b.N)/elapsed.Seconds(), "MiB/s")
}

// startBlast starts the blast helper with stdout on out; it writes total
// bytes once the returned file is created.
func startBlast(b *testing.B, dir string, total int, out *os.File) (*exec.Cmd, string) {
	b.Helper()
	goFile := filepath.Join(dir, "go")
	cmd := exec.Command(os.Args[0], "blast", strconv.Itoa(total), goFile)
	cmd.Env = append(os.Environ(), "GO_WANT_HELPER_PROCESS=1")
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return cmd, goFile
}
