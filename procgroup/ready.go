package procgroup

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Readiness probing: how often a check is tried while a process is
// STARTING, and how long one attempt may take.
const (
	probeFirst    = 10 * time.Millisecond
	probeInterval = 100 * time.Millisecond
	probeAttempt  = time.Second
)

// What an HTTP check reads of the answer: a health check's headers are a
// few hundred bytes (net/http would take 10 MiB); the body is read to
// maxProbeBodyBytes and the rest left unread.
const (
	maxProbeHeaderBytes = 64 << 10
	maxProbeBodyBytes   = 64 << 10
)

// probe checks 127.0.0.1:port (and then host:port, when host is set and
// the loopback check fails) until it is ready or timeout passes, and
// sends the outcome (nil: ready) on out. It ends early with ctx.
//
// At the deadline it makes one last check, with a whole attempt of its own:
// a daemon frozen past the deadline (SIGSTOP, a VM pause) has not been
// checking meanwhile, and its last check before the freeze, or one cut
// short by the expired deadline after it, says nothing about a process that
// may have been listening for seconds.
func probe(ctx context.Context, out chan<- error, kind, path, host string, port int, timeout time.Duration) {
	probeLeft(ctx, out, kind, path, host, port, timeout, timeout)
}

// probeLeft is probe with left of timeout still to run (a check taken up
// again after an upgrade): the final check comes when left has passed.
func probeLeft(ctx context.Context, out chan<- error, kind, path, host string, port int, timeout, left time.Duration) {
	tctx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	addrs := []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	if host != "" && host != "127.0.0.1" {
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	check := checkTCP
	if kind == ReadyHTTP {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil, MaxResponseHeaderBytes: maxProbeHeaderBytes}}
		defer client.CloseIdleConnections()
		check = func(ctx context.Context, addr string) error { return checkHTTP(ctx, client, "http://"+addr+path) }
	}
	// Ready when one address passes: a process may listen on every
	// address, on loopback only, or only on the address the registry
	// publishes (which may also be one this host does not hold: NAT).
	attempt := func(ctx context.Context) error {
		actx, acancel := context.WithTimeout(ctx, probeAttempt)
		defer acancel()
		var err error
		for _, addr := range addrs {
			if err = check(actx, addr); err == nil {
				return nil
			}
		}
		return err
	}
	wait := probeFirst
	for {
		if err := attempt(tctx); err == nil {
			out <- nil
			return
		}
		select {
		case <-tctx.Done():
			if ctx.Err() != nil {
				return // stopped: no judgement
			}
			err := attempt(ctx)
			if err != nil && ctx.Err() != nil {
				return
			}
			if err != nil {
				err = fmt.Errorf("not ready within ready_timeout %s: %w", timeout, err)
			}
			out <- err
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, probeInterval)
	}
}

func checkTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func checkHTTP(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBodyBytes))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
