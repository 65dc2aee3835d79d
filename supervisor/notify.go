package supervisor

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gosup/gosup/procgroup"
)

// notifier speaks systemd's sd_notify protocol: datagrams of KEY=VALUE
// lines to $NOTIFY_SOCKET. A nil notifier does nothing.
type notifier struct {
	conn *net.UnixConn
}

// newNotifier dials socket ("" when not under systemd; a leading '@' is
// the abstract namespace).
func newNotifier(socket string) (*notifier, error) {
	if socket == "" {
		return nil, nil
	}
	addr := &net.UnixAddr{Name: socket, Net: "unixgram"}
	if strings.HasPrefix(socket, "@") {
		addr.Name = "\x00" + socket[1:]
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET %s: %w", socket, err)
	}
	return &notifier{conn: c}, nil
}

func (n *notifier) send(lines ...string) error {
	if n == nil {
		return nil
	}
	_, err := n.conn.Write([]byte(strings.Join(lines, "\n")))
	return err
}

func (n *notifier) close() {
	if n != nil {
		n.conn.Close()
	}
}

// summary is the one-line STATUS= systemd shows.
func summary(procs []*procgroup.Process) string {
	var running, fatal, other int
	for _, p := range procs {
		switch p.Status().State {
		case procgroup.Running:
			running++
		case procgroup.Fatal:
			fatal++
		default:
			other++
		}
	}
	s := fmt.Sprintf("%d running, %d fatal", running, fatal)
	if other > 0 {
		s += fmt.Sprintf(", %d other", other)
	}
	return s
}

// settled reports whether every autostart process has reached RUNNING or FATAL.
func settled(procs []*procgroup.Process) bool {
	for _, p := range procs {
		if !p.Spec().Program.AutoStart {
			continue
		}
		if st := p.Status().State; st != procgroup.Running && st != procgroup.Fatal {
			return false
		}
	}
	return true
}

// runNotify sends READY=1 once every autostart process is RUNNING or FATAL,
// then STATUS= whenever the summary changes (changed is signalled on every
// state change), and WATCHDOG=1 every watchdog/2 when systemd asked for it.
func (s *Supervisor) runNotify(ctx context.Context, n *notifier, changed <-chan struct{}, watchdog time.Duration) {
	var ping <-chan time.Time
	if watchdog > 0 {
		t := time.NewTicker(watchdog / 2)
		defer t.Stop()
		ping = t.C
	}
	ready, last := false, ""
	report := func() {
		procs := s.all() // a reload changes them
		st := summary(procs)
		if !ready && settled(procs) {
			ready = true
			s.readySent.Store(true)
			last = st
			if err := n.send("READY=1", "STATUS="+st); err != nil {
				s.log.Warn("sd_notify failed", "err", err)
			}
			return
		}
		if ready && st != last {
			last = st
			_ = n.send("STATUS=" + st)
		}
	}
	report()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			report()
		case <-ping:
			_ = n.send("WATCHDOG=1")
		}
	}
}
