package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gosup/gosup/logtail"
	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
)

// memmonHost is the supervisor as the watchdog sees it.
type memmonHost struct{ s *Supervisor }

func (h memmonHost) Targets() []memmon.Target {
	if h.s.hooks.memmonTargets != nil {
		h.s.hooks.memmonTargets()
	}
	var out []memmon.Target
	for _, p := range h.s.all() {
		st := p.Status()
		if st.State != procgroup.Running || st.Pid == 0 {
			continue
		}
		spec := p.Spec()
		t := memmon.Target{ID: memmonID(spec), Name: spec.FullName(), Pid: st.Pid, PidStart: st.PidStart, Port: spec.Port, StartedAt: st.StartedAt}
		t.StderrLog = stderrPath(spec)
		out = append(out, t)
	}
	return out
}

func memmonID(spec *procgroup.ProcSpec) memmon.ID {
	return memmon.ID{Program: spec.ProgramName, Group: spec.Group, Process: spec.Name}
}

// stderrPath is the file an alert quotes: the one a process's stderr goes
// to (its stdout log with redirect_stderr), or its stdout log when stderr
// goes to no file (none, syslog, or a device such as /dev/null, which
// holds nothing gosup can read back); "" if neither does.
func stderrPath(spec *procgroup.ProcSpec) string {
	isFile := func(ls procgroup.LogSpec) bool { return ls.Kind == procgroup.LogFile && !ls.Device() }
	ls := spec.Stderr
	if spec.Program.RedirectStderr || !isFile(ls) {
		ls = spec.Stdout
	}
	if !isFile(ls) {
		return ""
	}
	return ls.Path
}

// Restart is the graceful path a ctl restart takes, for one pid only: it
// waits its turn in the program's lane (behind a reload or a ctl stop of
// that program, never behind other programs), drains the process from
// nginx, stops it and starts it again. Once the stop is sent it runs to
// the end (only shutdown cuts it short), so a process is never left
// stopped because memmon was reconfigured meanwhile.
func (h memmonHost) Restart(ctx context.Context, name string, pid int, reason string, beforeStop func()) (err error) {
	// Called off before anything was stopped (the watchdog stopped while
	// this waited for its lane): no restart, nothing to report.
	begun := false
	defer func() {
		if err != nil && !begun && ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", memmon.ErrNotBegun, err)
		}
	}()
	procs, l, err := h.s.claimFunc(withOp(ctx, "a memmon restart"), func() ([]*procgroup.Process, error) {
		if p := h.s.process(name); p != nil {
			return []*procgroup.Process{p}, nil
		}
		return nil, fmt.Errorf("%w: %s", ErrNoMatch, name)
	})
	if err != nil {
		return err
	}
	defer l.release()
	p := procs[0]
	if err := l.acquire(p.Spec().ProgramName); err != nil {
		return err
	}
	if gone(p) || p.Status().Pid != pid {
		return fmt.Errorf("%s %w %d", name, memmon.ErrPidGone, pid)
	}
	h.s.drain(ctx, l, []*procgroup.Process{p})
	defer func() {
		if p.Status().State == procgroup.Running {
			h.s.setDown([]*procgroup.Process{p}, false)
		}
		h.s.submitNginx()
	}()
	if err := ctx.Err(); err != nil {
		return err
	}
	begun = true
	if beforeStop != nil {
		beforeStop()
	}
	if err := p.StopPid(pid); err != nil {
		if errors.Is(err, procgroup.ErrPidChanged) {
			return fmt.Errorf("%s %w %d", name, memmon.ErrPidGone, pid)
		}
		return err
	}
	h.s.log.Info("stopping for memmon", "process", name, "pid", pid, "reason", reason)
	octx := h.s.opsCtx
	sctx, cancel := context.WithTimeout(octx, time.Duration(p.Spec().Program.StopWaitSecs+5)*time.Second)
	defer cancel()
	if st, err := p.Wait(sctx, stoppedish); err != nil {
		return fmt.Errorf("still %s after stop: %w", st.State, err)
	}
	before := p.Status().Spawns
	if err := p.Start(); err != nil && !errors.Is(err, procgroup.ErrAlreadyStarted) {
		return err
	}
	if msg, ok := waitStarted(octx, l, p, before); !ok {
		return errors.New(msg)
	}
	return nil
}

func (h memmonHost) StderrTail(name string, lines, maxBytes int) string {
	p := h.s.process(name)
	if p == nil {
		return ""
	}
	path := stderrPath(p.Spec())
	if path == "" {
		return ""
	}
	b, _ := logtail.Lines(path, lines, maxBytes)
	return strings.TrimRight(string(b), "\n")
}

// sendmail pipes a message into a sendmail command run through the reaper.
func (s *Supervisor) sendmail(ctx context.Context, command string, msg []byte) error {
	if s.hooks.sendmail != nil {
		s.hooks.sendmail()
	}
	deadline, ok := ctx.Deadline()
	timeout := 10 * time.Second
	if ok {
		timeout = time.Until(deadline)
	}
	_, err := procgroup.RunCommand(ctx, s.rp, command, msg, timeout)
	return err
}
