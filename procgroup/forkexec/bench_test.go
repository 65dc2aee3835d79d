package forkexec

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkStart: a spawn of /bin/true (started, then waited for) by a
// process holding held descriptors, as the daemon holds six for each
// process it runs: the fast path against os.StartProcess.
//
//	go test -run '^$' -bench Start -count 5 ./procgroup/forkexec/
func BenchmarkStart(b *testing.B) {
	for _, held := range []int{0, 3000, 12000} {
		for _, fast := range []bool{true, false} {
			b.Run(fmt.Sprintf("held=%d/fast=%t", held, fast), func(b *testing.B) {
				// The Spawner first, as the daemon makes it: its slots
				// low, below what it holds for its processes.
				s, err := New()
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if s.slow != "" {
					b.Fatalf("no fast path on this machine: %s", s.slow)
				}
				var fds []int
				for range held {
					fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
					if err != nil {
						b.Fatalf("open: %v (RLIMIT_NOFILE too low for %d?)", err, held)
					}
					fds = append(fds, fd)
				}
				defer func() {
					for _, fd := range fds {
						unix.Close(fd)
					}
				}()
				if !fast {
					s.slow = "os.StartProcess asked for by the benchmark"
				}
				null, err := os.Open(os.DevNull)
				if err != nil {
					b.Fatal(err)
				}
				defer null.Close()
				a := &Attr{Umask: -1, Files: [3]*os.File{null, null, null}}
				argv := []string{"/bin/true"}
				for b.Loop() {
					p, err := s.Start(argv[0], argv, a)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := p.Wait(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
