package api

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gosup/gosup/logtail"
)

// BenchmarkTailManyPoll measures one poll of `ctl tail -f all` over 1,000
// logs (what the follow loop does four times a second), with nothing
// appended (idle) and with a line appended to each (busy). One goroutine
// and one 32 KiB buffer serve them all; each log costs its tailFile and
// open file.
//
//	go test -run '^$' -bench TailManyPoll -benchmem ./supervisor/api/
func BenchmarkTailManyPoll(b *testing.B) {
	const logs = 1000
	dir := b.TempDir()
	mt := &multiTail{limit: logtail.DefaultBytes, buf: make([]byte, 32<<10), now: time.Now()}
	mt.lw = &lineWriter{w: io.Discard, prefix: true, width: 16}
	var writers []*os.File
	for i := range logs {
		path := filepath.Join(dir, fmt.Sprintf("p%04d.log", i))
		w, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		writers = append(writers, w)
		f, err := logtail.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		tf := &tailFile{TailLog: TailLog{Name: fmt.Sprintf("web:web_%04d", i), Path: path}, lines: lineSplitter{max: MaxLineBytes}}
		tf.setFile(f)
		tf.emit = mt.emitter(tf.Name)
		mt.files = append(mt.files, tf)
	}
	poll := func(b *testing.B) {
		mt.polls++ // every fourth checks the paths for rotation
		for _, tf := range mt.files {
			if err := mt.poll(tf); err != nil {
				b.Fatal(err)
			}
		}
		if err := mt.lw.flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("idle", func(b *testing.B) {
		for b.Loop() {
			poll(b)
		}
	})
	line := []byte("GET /api/v1/things 200 3.2ms user=42 request_id=0123456789abcdef\n")
	b.Run("busy", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			for _, w := range writers {
				if _, err := w.Write(line); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			poll(b)
		}
	})
}
