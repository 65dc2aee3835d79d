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

	"github.com/gosup/gosup/logtail"
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
