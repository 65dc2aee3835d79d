package procgroup

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/procgroup/safefile"
	"golang.org/x/sys/unix"
)

// stackHas reports whether some goroutine's stack holds fn.
func stackHas(fn string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), fn)
		}
		buf = make([]byte, 2*len(buf))
	}
}

// returnsWithin runs f and reports whether it returned within d.
func returnsWithin(d time.Duration, f func()) bool {
	done := make(chan struct{})
	go func() {
		f()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// A copier stuck writing to a hung log (an NFS server gone, a disk that
// stopped answering) holds that log's lock; closing the log waits for it.
// Status (ctl status of every process) and a limits change (the owner
// goroutine) must not wait behind them. The hung disk is a pipe nobody
// reads, put under the rotator in place of its file: its write blocks
// for real, and the test sees that it does (the pipe is full).
func TestStatusDoesNotWaitForAHungLogWrite(t *testing.T) {
	dir := t.TempDir()
	spec := helperSpec("sleep")
	spec.StdoutLogfileMaxBytes = 0 // no rotation: the writes stay on the pipe
	procs, err := spec.Expand("t", ExpandContext{Here: dir, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p := NewProcess(&procs[0], testReaper, slog.New(slog.NewTextHandler(newTestWriter(t), nil)))
	sink, err := p.out.sink("stdout", procs[0].Stdout, safefile.NoUser)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("first line\n")); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	capacity, err := unix.FcntlInt(pw.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := rotatorOf(p.out.sinks.stdout)
	r.mu.Lock()
	r.f.Close()
	r.f = pw
	r.mu.Unlock()

	wrote, closed := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = sink.Write(bytes.Repeat([]byte("x"), 4*capacity))
		close(wrote)
	}()
	released := false
	release := func() {
		if !released {
			released = true
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			<-wrote
			<-closed
			pr.Close()
		}
	}
	defer release()
	waitFor(t, "the log write blocked on a full pipe", func() bool {
		n, err := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ)
		return err == nil && n >= capacity
	})
	go func() {
		p.out.close() // as Run does at its end, or a reload moving the log
		close(closed)
	}()
	waitFor(t, "closing the log waits for the write", func() bool { return stackHas("procgroup.(*rotator).Close(") })

	if !returnsWithin(20*time.Second, func() { p.Status() }) {
		t.Error("Status did not return while a log write hung")
	}
	newSpec := procs[0]
	newSpec.Stdout.MaxBytes = 1 << 20
	if !returnsWithin(20*time.Second, func() { p.out.setSpec(&newSpec) }) {
		t.Error("a limits change did not return while a log write hung")
	}
	select {
	case <-wrote:
		t.Fatal("the write was not blocked throughout")
	default:
	}
}
