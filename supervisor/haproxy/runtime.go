// Package haproxy speaks HAProxy's runtime API: the commands a balancer
// host's gosup sends to a running HAProxy through its stats socket (at
// level admin) to change a server's state without a reload.
package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// maxAnswer bounds what one command's answer may hold: `set server`
// answers nothing, `show servers state` a line a server.
const maxAnswer = 4 << 20

// Runtime is HAProxy's runtime API on a unix socket.
type Runtime struct {
	Socket string
	// Timeout bounds one command, from the dial to the last byte of the
	// answer (0: 5 s).
	Timeout time.Duration
}

// Command sends one command and gives HAProxy's answer: each command on
// its own connection, which HAProxy closes once it has answered.
func (r Runtime) Command(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\n;") {
		return "", fmt.Errorf("haproxy runtime API: one command, without ';' or a line break: %q", cmd)
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", r.Socket)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime API: %s: %w", r.Socket, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, maxAnswer+1))
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API: %s: %q: %w", r.Socket, cmd, err)
	}
	if len(b) > maxAnswer {
		return "", fmt.Errorf("haproxy runtime API: %q: answer over %d MiB", cmd, maxAnswer>>20)
	}
	return string(b), nil
}

// WorkerPid is the pid of the worker that answers the runtime API (`show
// info`): a reload of HAProxy's master starts a new one.
func (r Runtime) WorkerPid(ctx context.Context) (string, error) {
	ans, err := r.Command(ctx, "show info")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(ans) {
		if v, ok := strings.CutPrefix(line, "Pid: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("haproxy runtime API: show info: no Pid: %s", oneLine(ans))
}

// States a server can be set to.
const (
	StateReady = "ready" // takes traffic (health checks permitting)
	StateDrain = "drain" // takes no new connections, finishes its own
	StateMaint = "maint"
)

// SetServerState sets backend/server's administrative state. HAProxy
// answers nothing when it took the command, and says why when not.
func (r Runtime) SetServerState(ctx context.Context, backend, server, state string) error {
	for _, s := range []string{backend, server, state} {
		if s == "" || strings.ContainsAny(s, " \t/\n;") {
			return fmt.Errorf("haproxy runtime API: cannot name %q in a command", s)
		}
	}
	ans, err := r.Command(ctx, fmt.Sprintf("set server %s/%s state %s", backend, server, state))
	if err != nil {
		return err
	}
	if ans = strings.TrimSpace(ans); ans != "" {
		return fmt.Errorf("haproxy refused set server %s/%s state %s: %s", backend, server, state, oneLine(ans))
	}
	return nil
}

// ServerState is one server as `show servers state` gives it.
type ServerState struct {
	Backend, Server, Addr string
	// Operational state: 0 stopped, 1 starting, 2 running, 3 stopping.
	OpState int
	// Admin is the administrative state's bits (0x01 forced maintenance,
	// 0x08 forced drain, ...).
	Admin int
}

// Draining says the server was set to drain.
func (s ServerState) Draining() bool { return s.Admin&0x08 != 0 }

// Maint says the server is in maintenance (disabled, or set so).
func (s ServerState) Maint() bool { return s.Admin&0x01 != 0 || s.Admin&0x20 != 0 }

// ServerStates gives every server of backend ("": of every backend).
func (r Runtime) ServerStates(ctx context.Context, backend string) ([]ServerState, error) {
	ans, err := r.Command(ctx, strings.TrimSpace("show servers state "+backend))
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(ans), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "1") {
		return nil, fmt.Errorf("haproxy runtime API: show servers state: %s", oneLine(ans))
	}
	var out []ServerState
	for _, line := range lines[1:] {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		// be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
		if len(f) < 7 {
			return nil, errors.New("haproxy runtime API: show servers state: short line: " + line)
		}
		var op, admin int
		if _, err := fmt.Sscan(f[5], &op); err != nil {
			return nil, fmt.Errorf("haproxy runtime API: show servers state: %q: %w", line, err)
		}
		if _, err := fmt.Sscan(f[6], &admin); err != nil {
			return nil, fmt.Errorf("haproxy runtime API: show servers state: %q: %w", line, err)
		}
		out = append(out, ServerState{Backend: f[1], Server: f[3], Addr: f[4], OpState: op, Admin: admin})
	}
	return out, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
