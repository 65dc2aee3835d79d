package supervisor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/config"
	"golang.org/x/sys/unix"
)

// countSpawns is a slog handler that counts the "spawned" records of a
// daemon and closes all once it has counted n: a daemon's spawns seen
// without asking it anything (the daemon logs "spawned" once the child
// has exec'd: os.StartProcess returns then).
type countSpawns struct {
	slog.Handler
	n     int64
	count *atomic.Int64
	all   chan struct{}
}

func (c *countSpawns) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "spawned" && c.count.Add(1) == c.n {
		close(c.all)
	}
	return c.Handler.Handle(ctx, r)
}

func (c *countSpawns) WithAttrs(as []slog.Attr) slog.Handler {
	d := *c
	d.Handler = c.Handler.WithAttrs(as)
	return &d
}

func (c *countSpawns) WithGroup(name string) slog.Handler {
	d := *c
	d.Handler = c.Handler.WithGroup(name)
	return &d
}

// BenchmarkDaemonSpawn500 is the harness's spawn scenario with nobody
// polling (SPAWN_NOAPI=1), in process: daemon start (configuration
// loaded) → 500 autostarted C sleepers exec'd, with AUTO logs. Nothing
// asks the daemon anything meanwhile: the spawns are counted from its log.
// ms-to-exec is the figure to compare with the C vfork+exec floor
// (../shared/bench/floor), daemon-cpu-ms the CPU the daemon spent on it
// (less at the mercy of a shared machine's load); run it with -count 5
// or more.
func BenchmarkDaemonSpawn500(b *testing.B) {
	const n = 500
	bin := sleeper(b)
	var wall, cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		dir, err := os.MkdirTemp("", "gsb")
		if err != nil {
			b.Fatal(err)
		}
		file := filepath.Join(dir, "gosup.toml")
		body := fmt.Sprintf("[supervisor]\nsocket = \"gosup.sock\"\nlogdir = \"log\"\n[program.sl]\ncommand = %q\nnumprocs = %d\nprocess_name = \"sl_%%(process_num)d\"\nstartsecs = 0\n", bin, n)
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
		cfg, err := config.Load(file)
		if err != nil {
			b.Fatal(err)
		}
		h := &countSpawns{Handler: slog.NewTextHandler(io.Discard, nil), n: n, count: new(atomic.Int64), all: make(chan struct{})}
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime(b)
		// As gosup start does: no garbage collection until the daemon
		// serves (its start's processes are spawned).
		gcPercent := debug.SetGCPercent(-1)
		s := New(cfg, Options{Reaper: testReaper, Logger: slog.New(h), Serving: func() { debug.SetGCPercent(gcPercent) }})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		select {
		case <-h.all:
		case err := <-done:
			b.Fatalf("daemon ended: %v", err)
		}
		wall += time.Since(start)
		cpu += cpuTime(b) - cpu0
		b.StopTimer()
		<-s.serving
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(wall.Microseconds())/1000/float64(b.N), "ms-to-exec")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "daemon-cpu-ms")
}

// cpuTime is the CPU time (user and system) this process has used: the
// daemon's, in a benchmark that runs one (its children's is theirs).
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
