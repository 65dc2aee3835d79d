package supervisor

import (
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/proctree"
	"github.com/gosup/gosup/procgroup/reaper"
	"github.com/gosup/gosup/supervisor/handover"
	"golang.org/x/sys/unix"
)

// adoption is one process handed over by the previous image, ready for
// its new Process (see procgroup.Process.Adopt).
type adoption struct {
	h     procgroup.Handover
	exitC <-chan reaper.Exit
	files []*os.File
	used  bool
}

// takeHandover subscribes to the exits of the children the previous image
// handed over and wraps their pipes, before the reaper reaps anything: an
// exit during the handover waits, a zombie, for this. A child that is not
// ours (not possible after an exec: an unreaped child keeps its pid) is
// left out, and its process is EXITED, respawning at once.
func (s *Supervisor) takeHandover(doc *handover.Doc, rp *reaper.Reaper) map[string]*adoption {
	// A few syscalls a process, on the upgrade's critical path: spread
	// over the CPUs.
	adopted := make([]*adoption, len(doc.Processes))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(doc.Processes)/64))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(doc.Processes); i += workers {
				adopted[i] = s.takeProcess(doc.Processes[i], rp)
			}
		})
	}
	wg.Wait()
	out := make(map[string]*adoption, len(adopted))
	for _, a := range adopted {
		out[a.h.Name] = a
	}
	return out
}

// takeProcess wraps one process's pipes and subscribes to its child's exit.
func (s *Supervisor) takeProcess(h procgroup.Handover, rp *reaper.Reaper) *adoption {
	a := &adoption{h: h}
	a.h.Pipes = nil
	for _, pipe := range h.Pipes {
		f, err := procgroup.PipeFile(pipe.FD, h.Name+" "+pipe.Stream)
		if err != nil {
			s.log.Error("a log pipe handed over is unusable; that output is lost", "process", h.Name, "stream", pipe.Stream, "err", err)
			continue
		}
		a.h.Pipes = append(a.h.Pipes, pipe)
		a.files = append(a.files, f)
	}
	if h.Pid > 0 {
		// An unreaped child keeps its pid: the kernel's word that it is
		// ours is enough.
		exitC, err := rp.Adopt(h.Pid)
		if err != nil {
			s.log.Error("a child handed over is not this daemon's; its process starts afresh", "process", h.Name, "pid", h.Pid, "err", err)
			// As after an exit: respawned at once (if its policy says
			// so, which adopted() leaves to it).
			a.h.Pid, a.h.State, a.h.RespawnAt = 0, procgroup.Exited, time.Now()
			a.h.Reason = "its child was lost in the upgrade"
		} else {
			a.exitC = exitC
			// Unreaped, the pid names the child: its start time names it
			// for status's sampler (0, and no figures, if unreadable).
			a.h.PidStart, _ = proctree.StartTime(h.Pid)
		}
	}
	return a
}

// adopt gives p what the previous image handed over for it, if anything.
func (s *Supervisor) adopt(p *procgroup.Process) {
	a := s.adoptions[p.Spec().FullName()]
	if a == nil {
		return
	}
	if err := p.Adopt(a.h, a.exitC, a.files); err != nil {
		s.log.Error("could not adopt a process handed over", "process", p.Spec().FullName(), "err", err)
		return
	}
	a.used = true
	s.adoptedNames[p.Spec().FullName()] = true
}

// adopted reports whether p was handed over with its state (it is not
// autostarted).
func (s *Supervisor) adopted(p *procgroup.Process) bool {
	return s.adoptedNames[p.Spec().FullName()]
}

// dropUnadopted stops the children handed over whose process the running
// configuration no longer has (it cannot: the configuration is the one
// handed over; but never leave one unsupervised).
//
// It ends the adoptions: a process a reload adds later starts afresh.
func (s *Supervisor) dropUnadopted() {
	defer func() { s.adoptions = nil }()
	for name, a := range s.adoptions {
		if a.used {
			continue
		}
		for _, f := range a.files {
			f.Close()
		}
		if a.h.Pid > 0 && a.exitC != nil {
			s.log.Error("a child handed over has no process in the configuration; stopping it", "process", name, "pid", a.h.Pid)
			_ = unix.Kill(-a.h.Pid, unix.SIGTERM)
			go func() {
				select {
				case <-a.exitC:
				case <-time.After(10 * time.Second):
					_ = unix.Kill(-a.h.Pid, unix.SIGKILL)
				}
			}()
		}
	}
}
