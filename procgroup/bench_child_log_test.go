package procgroup

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkChildLogFile measures a child writing 64 MiB to its stdout log
// without rotation (maxbytes 0), in one write: one op is a spawn until
// the file holds all of it (through the pipe and copier since
// reopen-logs; handed to the child directly before).
func BenchmarkChildLogFile(b *testing.B) {
	const total = 64 << 20
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.SetBytes(total)
	for b.Loop() {
		dir := b.TempDir()
		spec := helperSpec("spamdone", strconv.Itoa(total))
		spec.StdoutLogfile = filepath.Join(dir, "out.log")
		spec.StdoutLogfileMaxBytes = 0
		spec.StderrLogfile = "none"
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
			if fi, err := os.Stat(spec.StdoutLogfile); err == nil && fi.Size() >= total {
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
