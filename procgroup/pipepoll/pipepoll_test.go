package pipepoll

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	return p[0], p[1]
}

func waitWake(t *testing.T, woken <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-woken:
	case <-time.After(30 * time.Second):
		t.Fatalf("no wake-up for %s within 30s", what)
	}
}

// pollerRunning reports whether the poller's goroutine is alive.
func pollerRunning() bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Contains(string(buf[:n]), "pipepoll.(*Poller).run")
}

// A pipe wakes its reader once when it has data, not again until armed
// (whatever comes meanwhile), at once when armed with data waiting, and
// when every writer has closed it. A closed poller ends once its last
// pipe is removed.
func TestPollerWakesOncePerArm(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r, w := pipe(t)
	defer unix.Close(r)
	woken := make(chan struct{}, 10)
	reg, err := p.Add(r, func() { woken <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(w, []byte("a")); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woken, "data")
	// Not armed: more data wakes nothing. The check: arming wakes at
	// once, and exactly once, for the data waiting.
	if _, err := unix.Write(w, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := reg.Arm(); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woken, "data waiting when armed")
	buf := make([]byte, 8)
	if n, err := unix.Read(r, buf); err != nil || string(buf[:n]) != "ab" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if err := reg.Arm(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if p.Pipes() != 1 {
		t.Fatalf("%d pipes; want 1 (closing waits for it)", p.Pipes())
	}
	unix.Close(w)
	waitWake(t, woken, "the hang-up")
	if len(woken) != 0 {
		t.Fatalf("%d wake-ups more than once per arm", len(woken))
	}
	if _, err := p.Add(r, func() {}); err != ErrClosed {
		t.Fatalf("Add after Close: %v", err)
	}
	if !pollerRunning() {
		t.Fatal("the poller ended with a pipe left")
	}
	reg.Remove()
	if err := reg.Arm(); err != ErrClosed {
		t.Fatalf("Arm after Remove: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for pollerRunning() {
		if time.Now().After(deadline) {
			t.Fatal("the poller's goroutine did not end after Close and its last Remove")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
