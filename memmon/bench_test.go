package memmon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchHost serves a fixed list of targets; limits in the benchmark are
// never reached, so Restart is never called.
type benchHost struct{ targets []Target }

func (h benchHost) Targets() []Target                                          { return h.targets }
func (h benchHost) Restart(context.Context, string, int, string, func()) error { return nil }
func (h benchHost) StderrTail(string, int, int) string                         { return "" }

// BenchmarkTick1000 is one watchdog tick over 1,000 real sleeping
// processes, own RSS and cumulative (a full /proc pass). It reports the CPU
// the tick costs (user + system). Target: under 10 ms.
//
//	go test -run '^$' -bench Tick ./memmon/
func BenchmarkTick1000(b *testing.B) {
	bin := sleeperBinary(b)
	var procs []*os.Process
	var targets []Target
	for i := range 1000 {
		p, err := os.StartProcess(bin, []string{bin}, &os.ProcAttr{Files: []*os.File{nil, nil, nil}})
		if err != nil {
			b.Fatal(err)
		}
		procs = append(procs, p)
		targets = append(targets, Target{ID: ID{Program: "sl", Group: "sl", Process: "sl_" + strconv.Itoa(i)}, Name: "sl:sl_" + strconv.Itoa(i), Pid: p.Pid, StartedAt: time.Now()})
	}
	defer func() {
		for _, p := range procs {
			_ = p.Kill()
			_, _ = p.Wait()
		}
	}()
	for _, cumulative := range []bool{false, true} {
		name := "own"
		if cumulative {
			name = "cumulative"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultSettings()
			cfg.Any = 1 << 40
			cfg.Cumulative = cumulative
			w := New(cfg, benchHost{targets}, nil, "/proc", slog.New(slog.NewTextHandler(io.Discard, nil)))
			var wg sync.WaitGroup
			before := cpuTime()
			for b.Loop() {
				w.Tick(context.Background(), &wg)
			}
			b.ReportMetric(float64((cpuTime()-before).Microseconds())/1000/float64(b.N), "cpu-ms/tick")
			if s, ok := w.Sample(targets[999].Name); !ok || s.RSS == 0 {
				b.Fatalf("no sample of the last process: %+v", s)
			}
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sleeperBinary builds a static C program that only pause()s, or falls
// back to coreutils sleep.
func sleeperBinary(b *testing.B) string {
	dir := b.TempDir()
	src, bin := filepath.Join(dir, "s.c"), filepath.Join(dir, "sleeper")
	if err := os.WriteFile(src, []byte("#include <unistd.h>\nint main(void) { for (;;) pause(); }\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := exec.Command("cc", "-O2", "-static", "-o", bin, src).Run(); err != nil {
		b.Logf("no C compiler (%v); using sleep", err)
		path, err := exec.LookPath("sleep")
		if err != nil {
			b.Fatal(err)
		}
		return path
	}
	return bin
}
