// Package pipepoll wakes a stream's reader when its pipe has data or hangs
// up: one epoll instance watches every log pipe of the daemon, so that a
// stream with nothing to read holds no goroutine and no buffer.
//
// A pipe is registered one-shot: it wakes its reader once, and not again
// until the reader, having read until the pipe was empty (EAGAIN), arms it
// again. Only one reader of a pipe therefore runs at a time.
//
// The poller's own goroutine waits in Go's network poller (the epoll
// descriptor is itself pollable), so it holds no thread while it waits.
package pipepoll

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Poller watches pipes' read ends. Its zero value is not usable: see New.
type Poller struct {
	ep *os.File // the epoll instance
	rc syscall.RawConn
	fd int

	mu      sync.Mutex
	regs    map[uint64]*Reg
	next    uint64
	closing bool
	stopped bool
}

// Reg is one pipe registered with a Poller.
type Reg struct {
	p    *Poller
	fd   int
	id   uint64
	wake func()
	// mu orders Arm and Remove: after Remove, fd may be closed and its
	// number reused, and must not be armed again.
	mu      sync.Mutex
	removed bool
}

// ErrClosed is what Add returns once the poller is closed.
var ErrClosed = errors.New("pipe poller closed")

// New makes a poller and starts its goroutine, which ends after Close once
// the last pipe is removed.
func New() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	ep := os.NewFile(uintptr(fd), "pipepoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("epoll descriptor: %w", err)
	}
	p := &Poller{ep: ep, rc: rc, fd: fd, regs: map[uint64]*Reg{}}
	go p.run()
	return p, nil
}

// Add registers fd, a pipe's read end (non-blocking), armed: wake is
// called once, on the poller's goroutine, when the pipe has data or every
// writer has closed it; then not again until Arm. wake must not block,
// and must put up with a call after Remove (a wake-up already on its way).
func (p *Poller) Add(fd int, wake func()) (*Reg, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return nil, ErrClosed
	}
	p.next++
	r := &Reg{p: p, fd: fd, id: p.next, wake: wake}
	if err := unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, fd, r.event()); err != nil {
		return nil, fmt.Errorf("epoll_ctl add pipe %d: %w", fd, err)
	}
	p.regs[r.id] = r
	return r, nil
}

func (r *Reg) event() *unix.EpollEvent {
	return &unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLONESHOT,
		Fd:     int32(uint32(r.id)),
		Pad:    int32(uint32(r.id >> 32)),
	}
}

// Arm lets the pipe wake its reader again (once). The reader calls it
// after it has read the pipe empty; data that came meanwhile wakes it at
// once.
func (r *Reg) Arm() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.removed {
		return ErrClosed
	}
	if err := unix.EpollCtl(r.p.fd, unix.EPOLL_CTL_MOD, r.fd, r.event()); err != nil {
		return fmt.Errorf("epoll_ctl arm pipe %d: %w", r.fd, err)
	}
	return nil
}

// Remove stops watching the pipe; call it before closing the pipe (the
// kernel forgets a registration only when every duplicate of it is
// closed). A wake-up already on its way may still come.
func (r *Reg) Remove() {
	r.mu.Lock()
	if r.removed {
		r.mu.Unlock()
		return
	}
	r.removed = true
	_ = unix.EpollCtl(r.p.fd, unix.EPOLL_CTL_DEL, r.fd, nil)
	r.mu.Unlock()
	p := r.p
	p.mu.Lock()
	delete(p.regs, r.id)
	stop := p.closing && len(p.regs) == 0
	p.mu.Unlock()
	if stop {
		p.stop()
	}
}

// Close refuses new pipes; the poller goes on waking the readers of those
// it has until they are removed, then its goroutine ends.
func (p *Poller) Close() {
	p.mu.Lock()
	p.closing = true
	stop := len(p.regs) == 0
	p.mu.Unlock()
	if stop {
		p.stop()
	}
}

// Pipes is the number of pipes registered.
func (p *Poller) Pipes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.regs)
}

// stop wakes the goroutine to end (a read deadline in the past).
func (p *Poller) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.stopped = true
		_ = p.ep.SetReadDeadline(time.Unix(1, 0))
	}
}

func (p *Poller) run() {
	defer p.ep.Close()
	events := make([]unix.EpollEvent, 64)
	var wakes []*Reg
	for {
		var n int
		var werr error
		err := p.rc.Read(func(fd uintptr) bool {
			for {
				n, werr = unix.EpollWait(int(fd), events, 0)
				if werr != unix.EINTR {
					break
				}
			}
			// Nothing ready: wait in the runtime's poller for the
			// epoll descriptor to become readable.
			return werr != nil || n > 0
		})
		if err != nil || werr != nil {
			return // stopped (or the descriptor is unusable, which cannot be)
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if r := p.regs[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; r != nil {
				wakes = append(wakes, r)
			}
		}
		p.mu.Unlock()
		for i, r := range wakes {
			r.wake()
			wakes[i] = nil
		}
		wakes = wakes[:0]
	}
}
