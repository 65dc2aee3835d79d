package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotRunning means nothing listens on the control socket.
var ErrNotRunning = errors.New("gosup is not running")

// Client talks to a daemon over its control socket.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	return &Client{Socket: socket, hc: &http.Client{Transport: tr}}
}

// Close closes the client's idle connections; the client stays usable.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	resp, err := c.raw(ctx, method, path, query, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode response from %s: %w", c.Socket, err)
	}
	return nil
}

// raw sends a request and returns a 2xx response, or the API's error.
func (c *Client) raw(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	return c.rawAccept(ctx, method, path, query, body, "")
}

// rawAccept is raw with an Accept header ("": none).
func (c *Client) rawAccept(ctx context.Context, method, path string, query url.Values, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := "http://gosup" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.talkErr(err)
	}
	return c.ok(resp)
}

// talkErr is the error of a request that got no answer: ErrNotRunning
// when nothing listens on the socket.
func (c *Client) talkErr(err error) error {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (no daemon listens on %s)", ErrNotRunning, c.Socket)
	}
	return fmt.Errorf("talk to gosup on %s: %w", c.Socket, err)
}

// ok returns resp if it is a 2xx, else closes it and returns the API's
// error.
func (c *Client) ok(resp *http.Response) (*http.Response, error) {
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var ae ErrorResponse
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ae) == nil && ae.Error != "" {
			return nil, &Error{Code: resp.StatusCode, Msg: ae.Error}
		}
		return nil, &Error{Code: resp.StatusCode, Msg: resp.Status}
	}
	return resp, nil
}

// onceReadSize is the read buffer of getOnce: the headers and a status
// table of 100 processes (7 KB) in one read; a larger body is read past
// it, straight into the caller's buffer (a table of 1,000 processes, 65
// KB: in two reads).
const onceReadSize = 16 << 10

// getOnce is a GET on a connection of its own, written and read on the
// calling goroutine, the connection closed with the response's Body: no
// Transport, no pool, no goroutine reading or writing the connection, no
// thread woken to hand the answer over (a status, which gosup ctl status
// asks once, then exits). ctx cancels it as it cancels the others (the
// connection's deadline is set in the past); the errors are theirs.
func (c *Client) getOnce(ctx context.Context, path string, query url.Values, accept string) (*http.Response, error) {
	u := "http://gosup" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Close = true // the daemon closes it too, once it has answered
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return nil, c.talkErr(err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		conn.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, c.talkErr(err)
	}
	if err := req.Write(conn); err != nil {
		return fail(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, onceReadSize), req)
	if err != nil {
		return fail(err)
	}
	resp.Body = &onceBody{r: resp.Body, conn: conn, ctx: ctx, stop: stop}
	return c.ok(resp)
}

// onceBody is the body of getOnce's response: Close closes the connection
// (what is left unread is not read), and a read cut by ctx says so.
type onceBody struct {
	r    io.Reader
	conn net.Conn
	ctx  context.Context
	stop func() bool
}

func (b *onceBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() != nil {
		err = b.ctx.Err()
	}
	return n, err
}

func (b *onceBody) Close() error {
	b.stop()
	return b.conn.Close()
}

// Error is an error the daemon returned.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Info returns the daemon's description.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var out Info
	err := c.do(ctx, http.MethodGet, "/v1/info", nil, nil, &out)
	return out, err
}

// Status returns the processes matching patterns (all when none).
func (c *Client) Status(ctx context.Context, patterns ...string) ([]ProcStatus, error) {
	st, _, err := c.StatusWarning(ctx, patterns...)
	return st, err
}

// MaxStatusBytes bounds the status a client reads: the JSON of about
// 100,000 processes.
const MaxStatusBytes = 64 << 20

// StatusTable writes the status table of the processes matching patterns
// (all when none) to w, as the daemon formats it (see StatusTableType),
// and returns the daemon's one-line warnings. The answer of a daemon
// that does not format it (JSON: one from before the table) is decoded
// and formatted here. The request is one of its own (see getOnce), the
// table written in writes of up to statusChunk bytes.
func (c *Client) StatusTable(ctx context.Context, w io.Writer, patterns ...string) ([]string, error) {
	resp, err := c.getOnce(ctx, "/v1/status", url.Values{"p": patterns}, StatusTableType)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	warnings := resp.Header.Values(WarningHeader)
	if mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); strings.TrimSpace(mt) == StatusTableType {
		buf := make([]byte, statusChunk(resp.ContentLength))
		if err := copyStatus(w, resp.Body, buf, 0); err != nil {
			if errors.Is(err, errStatusTooBig) {
				err = fmt.Errorf("the status table is over %d MiB", MaxStatusBytes>>20)
			}
			return nil, fmt.Errorf("read the status from %s: %w", c.Socket, err)
		}
		return warnings, nil
	}
	var out []ProcStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, MaxStatusBytes)).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode response from %s: %w", c.Socket, err)
	}
	if _, err := w.Write(AppendStatusTable(nil, out)); err != nil {
		return nil, err
	}
	return warnings, nil
}

// StatusJSON writes the status of the processes matching patterns (all
// when none) to w as the daemon encodes it (see ProcStatus), indented as
// gosup ctl status --json prints it, and returns the daemon's one-line
// warnings. It decodes nothing: the answer of a daemon that does not
// indent (one from before AppendStatusJSON) is indented here. The request
// is one of its own (see getOnce), as StatusTable's.
func (c *Client) StatusJSON(ctx context.Context, w io.Writer, patterns ...string) ([]string, error) {
	resp, err := c.getOnce(ctx, "/v1/status", url.Values{"p": patterns, "indent": {"1"}}, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	warnings := resp.Header.Values(WarningHeader)
	buf := make([]byte, statusChunk(resp.ContentLength))
	n, err := fillBuf(resp.Body, buf)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read the status from %s: %w", c.Socket, err)
	}
	if bytes.HasPrefix(buf[:n], []byte("[{")) {
		// Not indented.
		body := buf[:n]
		if err == nil {
			var rest []byte
			rest, err = io.ReadAll(io.LimitReader(resp.Body, MaxStatusBytes+1-int64(n)))
			body = append(body, rest...)
		}
		if err == nil && len(body) > MaxStatusBytes {
			err = fmt.Errorf("over %d MiB", MaxStatusBytes>>20)
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read the status from %s: %w", c.Socket, err)
		}
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return nil, fmt.Errorf("decode response from %s: %w", c.Socket, err)
		}
		_, err = out.WriteTo(w)
		return warnings, err
	}
	if n > 0 {
		if _, err := w.Write(buf[:n]); err != nil {
			return nil, fmt.Errorf("read the status from %s: %w", c.Socket, err)
		}
	}
	if err == nil {
		err = copyStatus(w, resp.Body, buf, int64(n))
	}
	if errors.Is(err, errStatusTooBig) {
		err = fmt.Errorf("over %d MiB", MaxStatusBytes>>20)
	}
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read the status from %s: %w", c.Socket, err)
	}
	return warnings, nil
}

// maxStatusChunk bounds the buffer a status is copied through.
const maxStatusChunk = 1 << 20

// statusChunk is the size of the buffer to copy a status of length bytes
// (-1: unknown) through: all of it in one write, up to maxStatusChunk.
func statusChunk(length int64) int {
	if length < 0 || length > maxStatusChunk {
		return maxStatusChunk
	}
	return max(int(length), 512)
}

// errStatusTooBig: a status over MaxStatusBytes.
var errStatusTooBig = errors.New("status over MaxStatusBytes")

// copyStatus copies r to w through buf, a full buf a write (the last
// aside), until EOF; done bytes were copied already. Past MaxStatusBytes
// in all, it stops with errStatusTooBig, before writing the buffer that
// went past.
func copyStatus(w io.Writer, r io.Reader, buf []byte, done int64) error {
	for {
		n, err := fillBuf(r, buf)
		if done += int64(n); done > MaxStatusBytes {
			return errStatusTooBig
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// fillBuf reads r into buf until buf is full, r ends (io.EOF) or fails.
func fillBuf(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// StatusWarning is Status plus the daemon's one-line warnings, if any (a
// failed nginx update, a refused reload). The request is one of its own
// (see getOnce), as StatusTable's.
func (c *Client) StatusWarning(ctx context.Context, patterns ...string) ([]ProcStatus, []string, error) {
	resp, err := c.getOnce(ctx, "/v1/status", url.Values{"p": patterns}, "")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var out []ProcStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, nil, fmt.Errorf("decode response from %s: %w", c.Socket, err)
	}
	return out, resp.Header.Values(WarningHeader), nil
}

// Reload has the daemon re-read its configuration and apply the difference
// (dryRun: only report it). An invalid configuration is an *Error with
// Code 422.
func (c *Client) Reload(ctx context.Context, dryRun bool) (*ReloadPlan, error) {
	var out ReloadPlan
	if err := c.do(ctx, http.MethodPost, "/v1/reload", nil, ReloadRequest{DryRun: dryRun}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ReloadStream is Reload with its plan and steps passed to each as they
// happen (see Event), before it returns the outcome. A daemon that does
// not stream (an older one) sends only the outcome.
func (c *Client) ReloadStream(ctx context.Context, dryRun bool, each func(Event)) (*ReloadPlan, error) {
	var out ReloadPlan
	final, err := c.stream(ctx, "/v1/reload", ReloadRequest{DryRun: dryRun}, &out, each)
	if err != nil {
		return nil, err
	}
	if final != nil {
		if final.Plan == nil {
			return nil, fmt.Errorf("decode response from %s: the outcome has no plan", c.Socket)
		}
		return final.Plan, nil
	}
	return &out, nil
}

// ReloadAccepted is ReloadStream that returns as soon as the daemon has
// put the new configuration in force (the plan, step "plan"), with the
// plan; the rollout (rolling restarts, starts, stops, the nginx update)
// carries on in the daemon, which logs its outcome. An invalid
// configuration is an *Error with Code 422, as for Reload. A daemon that
// does not stream answers only once the reload is over.
func (c *Client) ReloadAccepted(ctx context.Context, each func(Event)) (*ReloadPlan, error) {
	var out ReloadPlan
	final, err := c.streamUntil(ctx, "/v1/reload", ReloadRequest{}, &out, each, StepPlan)
	if err != nil {
		return nil, err
	}
	if final != nil {
		if final.Plan == nil {
			return nil, fmt.Errorf("decode response from %s: the %s has no plan", c.Socket, final.Step)
		}
		return final.Plan, nil
	}
	return &out, nil
}

// ActionStream is Action with the steps (start, stop, restart) passed to
// each as they happen (see Event), before it returns the outcome.
func (c *Client) ActionStream(ctx context.Context, verb string, req ActionRequest, each func(Event)) ([]Result, error) {
	var out ActionResponse
	final, err := c.stream(ctx, "/v1/"+verb, req, &out, each)
	if err != nil {
		return nil, err
	}
	if final != nil {
		return final.Results, nil
	}
	return out.Results, nil
}

// MaxEventBytes bounds one line of a progress stream (a reload's outcome
// for thousands of processes is the longest).
const MaxEventBytes = 16 << 20

// stream posts body asking for a progress stream and passes each event to
// each; it returns the outcome's event (step "result"), or an *Error for
// step "error". A plain reply (a daemon that does not stream) is decoded
// into plain instead, and the returned event is nil.
func (c *Client) stream(ctx context.Context, path string, body, plain any, each func(Event)) (*Event, error) {
	return c.streamUntil(ctx, path, body, plain, each, StepResult)
}

// streamUntil is stream that returns the first event of step until (or
// the outcome, or the error), closing the stream there: the operation
// carries on in the daemon.
func (c *Client) streamUntil(ctx context.Context, path string, body, plain any, each func(Event), until string) (*Event, error) {
	resp, err := c.rawAccept(ctx, http.MethodPost, path, nil, body, StreamType)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); mt != StreamType {
		if err := json.NewDecoder(resp.Body).Decode(plain); err != nil {
			return nil, fmt.Errorf("decode response from %s: %w", c.Socket, err)
		}
		return nil, nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), MaxEventBytes)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("decode progress from %s: %w", c.Socket, err)
		}
		if each != nil {
			each(ev)
		}
		switch ev.Step {
		case StepResult, until:
			return &ev, nil
		case StepError:
			return nil, &Error{Code: ev.Code, Msg: ev.Error}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read progress from %s: %w", c.Socket, err)
	}
	return nil, fmt.Errorf("read progress from %s: the stream ended without the outcome; the operation carries on in the daemon (gosup ctl status shows where it is)", c.Socket)
}

// Nginx returns the outcome of the last nginx update.
func (c *Client) Nginx(ctx context.Context) (NginxStatus, error) {
	var out NginxStatus
	err := c.do(ctx, http.MethodGet, "/v1/nginx", nil, nil, &out)
	return out, err
}

// Action runs start, stop, restart or signal and waits for the outcome.
func (c *Client) Action(ctx context.Context, verb string, req ActionRequest) ([]Result, error) {
	var out ActionResponse
	err := c.do(ctx, http.MethodPost, "/v1/"+verb, nil, req, &out)
	return out.Results, err
}

// ReopenLogs has the daemon reopen the log files of the processes matching
// patterns (all when none) at their paths, after an external rotation.
func (c *Client) ReopenLogs(ctx context.Context, patterns ...string) ([]Result, error) {
	var out ActionResponse
	err := c.do(ctx, http.MethodPost, "/v1/reopen-logs", nil, ReopenRequest{Patterns: patterns}, &out)
	return out.Results, err
}

// TestAlert has the daemon mail a test message the way alerts go, and
// says where it went.
func (c *Client) TestAlert(ctx context.Context) (TestAlertReply, error) {
	var out TestAlertReply
	err := c.do(ctx, http.MethodPost, "/v1/test-alert", nil, struct{}{}, &out)
	return out, err
}

// Shutdown asks the daemon to stop everything and exit.
func (c *Client) Shutdown(ctx context.Context) (Info, error) {
	var out Info
	err := c.do(ctx, http.MethodPost, "/v1/shutdown", nil, struct{}{}, &out)
	return out, err
}

// Upgrade asks the daemon to re-execute itself in place from binary (""
// for the file it was started from). It returns once the daemon has
// checked the binary; WaitUpgrade waits for the outcome.
func (c *Client) Upgrade(ctx context.Context, binary string) (UpgradeReply, error) {
	var out UpgradeReply
	err := c.do(ctx, http.MethodPost, "/v1/upgrade", nil, UpgradeRequest{Binary: binary}, &out)
	return out, err
}

// WaitUpgrade waits until the upgrade that reply started is done (the new
// image serves in full, and its Info is returned) or has failed (an error with
// the daemon's reason), or ctx ends. Connections wait meanwhile in the
// socket's backlog; a connection the exec cuts is tried again.
func (c *Client) WaitUpgrade(ctx context.Context, reply UpgradeReply) (Info, error) {
	for {
		info, err := c.Info(ctx)
		switch {
		case err == nil && info.Upgrades > reply.Upgrades && info.State != "starting":
			// The new image answers before it has adopted everything:
			// an upgrade or a stop asked for then would be refused.
			return info, nil
		case err == nil && info.UpgradeFailures > reply.Failures:
			return info, fmt.Errorf("upgrade failed, the daemon goes on as before: %s", info.LastUpgradeError)
		case ctx.Err() != nil:
			return info, fmt.Errorf("waiting for the upgrade: %w", ctx.Err())
		}
		t := time.NewTimer(2 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// TailRequest asks for the logs of several processes, the daemon's own, or
// both (see Client.TailLogs).
type TailRequest struct {
	// Patterns name the processes (as for start); Stream is stdout (the
	// default) or stderr; Daemon adds the daemon's own recent log.
	Patterns []string
	Stream   string
	Daemon   bool
	// Lines is how many of the last lines of each log to print first;
	// MaxBytes bounds them, and each read with Follow (0: the daemon's
	// default).
	Lines    int
	MaxBytes int
	Follow   bool
	// Prefix puts each log's name before its lines (nil: when there is
	// more than one log); Timestamps the time the daemon read each line.
	Prefix     *bool
	Timestamps bool
}

// TailLogs returns the logs req names, merged line by line, and the
// daemon's notes on processes left out (a stream that goes to no file).
// The caller closes the returned reader.
func (c *Client) TailLogs(ctx context.Context, req TailRequest) (io.ReadCloser, []string, error) {
	q := url.Values{"p": req.Patterns, "n": {strconv.Itoa(req.Lines)}}
	if len(req.Patterns) == 1 && !req.Daemon && req.Prefix == nil && !req.Timestamps {
		// A daemon older than p= reads name= (one process, as it is).
		q.Set("name", req.Patterns[0])
	}
	if req.Stream != "" {
		q.Set("stream", req.Stream)
	}
	if req.Daemon {
		q.Set("daemon", "1")
	}
	if req.MaxBytes > 0 {
		q.Set("bytes", strconv.Itoa(req.MaxBytes))
	}
	if req.Follow {
		q.Set("follow", "1")
	}
	if req.Prefix != nil {
		q.Set("prefix", map[bool]string{true: "1", false: "0"}[*req.Prefix])
	}
	if req.Timestamps {
		q.Set("timestamps", "1")
	}
	resp, err := c.raw(ctx, http.MethodGet, "/v1/tail", q, nil)
	if err != nil {
		return nil, nil, err
	}
	return resp.Body, resp.Header.Values(WarningHeader), nil
}
