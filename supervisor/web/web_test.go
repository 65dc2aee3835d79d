package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// served is a route's handler that counts its requests.
type served struct{ n atomic.Int64 }

func (s *served) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.n.Add(1)
	fmt.Fprintf(w, "served %s\n", r.URL.Path)
}

// serve runs h on a real listener on 127.0.0.1 with maxConns and returns
// its base URL and counters.
func serve(t *testing.T, h http.Handler, maxConns int) (string, *Counters) {
	t.Helper()
	return serveLimits(t, h, maxConns, DefaultLimits())
}

// serveLimits is serve with other bounds.
func serveLimits(t *testing.T, h http.Handler, maxConns int, lim Limits) (string, *Counters) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &Counters{}
	srv := NewServerLimits(h, maxConns, c, slog.New(slog.NewTextHandler(io.Discard, nil)), lim)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), c
}

// do does a request with a client that keeps no connection.
func do(t *testing.T, method, url string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	var body io.Reader
	if method != http.MethodGet && method != http.MethodHead {
		body = strings.NewReader("x=1")
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

var routes = []string{"/", "/status.json", "/metrics", "/healthz", "/nope", "/v1/info", "/v1/stop"}

// TestOnlyGetAndHead: every other method, on every path, gets 405 with
// Allow: GET, HEAD, and reaches no handler.
func TestOnlyGetAndHead(t *testing.T) {
	metrics, page := &served{}, &served{}
	var health atomic.Int64
	h := NewHandler(Options{Metrics: metrics, Page: page, Health: func(context.Context) (bool, []string) {
		health.Add(1)
		return true, nil
	}})
	base, _ := serve(t, h, 8)
	for _, path := range routes {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, "TRACE", "CONNECT2"} {
			code, hdr, _ := do(t, m, base+path, nil)
			if code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow \"GET, HEAD\"", m, path, code, hdr.Get("Allow"))
			}
		}
	}
	if n := metrics.n.Load() + page.n.Load() + health.Load(); n != 0 {
		t.Fatalf("%d requests of other methods reached a handler", n)
	}
	want := map[string]int{"/": 200, "/status.json": 200, "/metrics": 200, "/healthz": 200, "/nope": 404, "/v1/info": 404, "/v1/stop": 404}
	for _, path := range routes {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			if code, _, _ := do(t, m, base+path, nil); code != want[path] {
				t.Errorf("%s %s: %d, want %d", m, path, code, want[path])
			}
		}
	}
	if metrics.n.Load() != 2 || page.n.Load() != 4 || health.Load() != 2 {
		t.Errorf("handlers saw metrics %d, page %d, health %d requests; want 2, 4, 2", metrics.n.Load(), page.n.Load(), health.Load())
	}
}

// TestHandlersMissing: a route without a handler is 404, /healthz without
// a check is 503.
func TestHandlersMissing(t *testing.T) {
	base, _ := serve(t, NewHandler(Options{}), 8)
	for path, want := range map[string]int{"/": 404, "/status.json": 404, "/metrics": 404, "/healthz": 503} {
		if code, _, _ := do(t, "GET", base+path, nil); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
}

// TestHealthzBounded: at most 20 reasons and "and N more", each one line
// of at most maxReasonBytes.
func TestHealthzBounded(t *testing.T) {
	var reasons []string
	for i := range 25 {
		reasons = append(reasons, fmt.Sprintf("web:web_%02d is BACKOFF: exited too quickly\nsecond line", i))
	}
	reasons[0] = strings.Repeat("é", 1000)
	base, _ := serve(t, NewHandler(Options{Health: func(context.Context) (bool, []string) { return false, reasons }}), 8)
	code, hdr, body := do(t, "GET", base+"/healthz", nil)
	if code != 503 || hdr.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("healthz: %d %q", code, hdr.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) != 21 || lines[20] != "and 5 more" {
		t.Fatalf("healthz: %d lines, last %q; want 21, \"and 5 more\":\n%s", len(lines), lines[len(lines)-1], body)
	}
	if len(lines[0]) > maxReasonBytes || !strings.HasSuffix(lines[0], "é...") {
		t.Errorf("first reason: %d bytes, ends %q", len(lines[0]), lines[0][len(lines[0])-8:])
	}
	if lines[1] != "web:web_01 is BACKOFF: exited too quickly second line" {
		t.Errorf("second reason %q", lines[1])
	}
	code, _, body = do(t, "HEAD", base+"/healthz", nil)
	if code != 503 || body != "" {
		t.Errorf("HEAD /healthz: %d %q", code, body)
	}
}

// TestAuth: with credentials, a request without valid ones gets 401 and
// the challenges; basic (bcrypt, as htpasswd -B writes it: $2y$) and
// bearer both let in; /healthz answers its code to anyone, its reasons
// only to a client that authenticated.
func TestAuth(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hash = []byte("$2y$" + string(hash[4:])) // as htpasswd -B writes it
	var creds atomic.Pointer[Credentials]
	creds.Store(NewCredentials(map[string][]byte{"prom": hash}, [][]byte{[]byte("tok-0123456789abcdef")}))
	metrics := &served{}
	unhealthy := atomic.Bool{}
	h := NewHandler(Options{Metrics: metrics, Auth: creds.Load, Health: func(context.Context) (bool, []string) {
		if unhealthy.Load() {
			return false, []string{"web:web_00 is FATAL: secret detail"}
		}
		return true, nil
	}})
	base, _ := serve(t, h, 8)
	basic := func(u, p string) map[string]string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(u, p)
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}
	cases := []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"none", nil, 401},
		{"basic good", basic("prom", "s3cret pass"), 200},
		{"basic good again (cached)", basic("prom", "s3cret pass"), 200},
		{"basic wrong password", basic("prom", "s3cret pas"), 401},
		{"basic unknown user", basic("nobody", "s3cret pass"), 401},
		{"bearer good", map[string]string{"Authorization": "Bearer tok-0123456789abcdef"}, 200},
		{"bearer lowercase scheme", map[string]string{"Authorization": "bearer tok-0123456789abcdef"}, 200},
		{"bearer wrong", map[string]string{"Authorization": "Bearer tok-0123456789abcdeX"}, 401},
		{"bearer prefix", map[string]string{"Authorization": "Bearer tok-0123456789abcde"}, 401},
		{"bearer empty", map[string]string{"Authorization": "Bearer "}, 401},
	}
	for _, c := range cases {
		code, hdr, _ := do(t, "GET", base+"/metrics", c.hdr)
		if code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
		if code == 401 {
			got := hdr.Values("WWW-Authenticate")
			if len(got) != 2 || !strings.HasPrefix(got[0], "Basic ") || !strings.HasPrefix(got[1], "Bearer ") {
				t.Errorf("%s: WWW-Authenticate %q", c.name, got)
			}
		}
	}
	if n := metrics.n.Load(); n != 4 {
		t.Errorf("metrics served %d requests, want 4 (those with valid credentials)", n)
	}
	// 405 comes first, credentials or not.
	if code, _, _ := do(t, "POST", base+"/metrics", basic("prom", "s3cret pass")); code != 405 {
		t.Errorf("POST with credentials: %d, want 405", code)
	}
	if code, _, body := do(t, "GET", base+"/healthz", nil); code != 200 || body != "ok\n" {
		t.Errorf("healthz without credentials, healthy: %d %q", code, body)
	}
	unhealthy.Store(true)
	if code, _, body := do(t, "GET", base+"/healthz", nil); code != 503 || strings.Contains(body, "secret") {
		t.Errorf("healthz without credentials, unhealthy: %d %q; want 503 without the reasons", code, body)
	}
	if code, _, body := do(t, "GET", base+"/healthz", basic("prom", "s3cret pass")); code != 503 || body != "web:web_00 is FATAL: secret detail\n" {
		t.Errorf("healthz with credentials, unhealthy: %d %q", code, body)
	}
	// Replaced credentials (a reload) are those asked for at once.
	creds.Store(NewCredentials(nil, [][]byte{[]byte("tok-new-0123456789abcdef")}))
	if code, _, _ := do(t, "GET", base+"/metrics", map[string]string{"Authorization": "Bearer tok-0123456789abcdef"}); code != 401 {
		t.Errorf("old token after the swap: %d, want 401", code)
	}
	if code, _, _ := do(t, "GET", base+"/metrics", basic("prom", "s3cret pass")); code != 401 {
		t.Errorf("old basic credentials (cached before) after the swap: %d, want 401", code)
	}
	if code, _, _ := do(t, "GET", base+"/metrics", map[string]string{"Authorization": "Bearer tok-new-0123456789abcdef"}); code != 200 {
		t.Errorf("new token after the swap: %d, want 200", code)
	}
	creds.Store(nil)
	if code, _, _ := do(t, "GET", base+"/metrics", nil); code != 200 {
		t.Errorf("no credentials set: %d, want 200", code)
	}
}

// blocking is a handler that holds each request until released.
type blocking struct {
	in      chan struct{}
	release chan struct{}
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.in <- struct{}{}
	<-b.release
	fmt.Fprintln(w, "done")
}

// TestConnectionBound: with max connections busy, one more gets a 503
// at once and is counted; once one ends, a new one is served.
func TestConnectionBound(t *testing.T) {
	b := &blocking{in: make(chan struct{}), release: make(chan struct{})}
	base, c := serve(t, NewHandler(Options{Metrics: b}), 2)
	addr := strings.TrimPrefix(base, "http://")
	results := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(base + "/metrics")
			if err != nil {
				results <- -1
				return
			}
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	for range 2 {
		<-b.in // both being served
	}
	// A raw connection that sends nothing: the refusal comes once the
	// wait for its request ends.
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the connection over the bound: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	conn.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many connections") {
		t.Fatalf("the connection over the bound: %d %q", resp.StatusCode, body)
	}
	if c.Refused.Load() != 1 || c.Active.Load() != 2 || c.Accepted.Load() != 2 {
		t.Fatalf("counters: refused %d active %d accepted %d; want 1, 2, 2", c.Refused.Load(), c.Active.Load(), c.Accepted.Load())
	}
	close(b.release)
	for range 2 {
		if code := <-results; code != 200 {
			t.Fatalf("a request within the bound: %d", code)
		}
	}
	// The two connections are counted out once closed.
	for deadline := time.Now().Add(30 * time.Second); c.Active.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("active %d after both connections closed", c.Active.Load())
		}
	}
	go func() { <-b.in }()
	if code, _, _ := do(t, "GET", base+"/metrics", nil); code != 200 {
		t.Fatalf("after the busy ones ended: %d", code)
	}
	if c.Refused.Load() != 1 || c.Accepted.Load() != 3 {
		t.Fatalf("counters: refused %d accepted %d; want 1, 3", c.Refused.Load(), c.Accepted.Load())
	}
}

// TestHeaderBound: headers past MaxHeaderBytes get 431, and the
// handler is not reached.
func TestHeaderBound(t *testing.T) {
	m := &served{}
	base, _ := serve(t, NewHandler(Options{Metrics: m}), 8)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	req := "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2*MaxHeaderBytes) + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "HTTP/1.1 431 ") || m.n.Load() != 0 {
		t.Fatalf("oversized headers: %q, handler reached %d times; want 431, 0", line, m.n.Load())
	}
}

// TestSlowHeadersCut: a client that never finishes its headers is cut
// off after ReadHeaderTimeout (here 300 ms; the test waits for the server
// to close the connection, not for time).
func TestSlowHeadersCut(t *testing.T) {
	lim := DefaultLimits()
	lim.ReadHeaderTimeout = 300 * time.Millisecond
	base, c := serveLimits(t, NewHandler(Options{}), 8, lim)
	began := time.Now() // before the server can have accepted
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	_, err = io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the server did not close the slow connection: %v", err)
	}
	// A lower bound only: a slow machine makes it later, never sooner.
	if took := time.Since(began); took < lim.ReadHeaderTimeout {
		t.Fatalf("closed after %s, before ReadHeaderTimeout", took)
	}
	for deadline := time.Now().Add(30 * time.Second); c.Active.Load() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("active %d after the slow connection was cut", c.Active.Load())
		}
	}
}

// TestPauseAnswersAndHolds: Pause (an upgrade's handover) answers a
// request whose connection was accepted before and whose request comes
// after the pause began (http.Server.Shutdown drops it: the client sees
// EOF), holds new connections in the backlog, and serves them once
// resumed.
func TestPauseAnswersAndHolds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	c := &Counters{}
	srv := NewServer(NewHandler(Options{Health: func(context.Context) (bool, []string) { return true, nil }}), 8, c, nil)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Shutdown(context.Background())
	// Accepted, its request not sent yet.
	early, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	for deadline := time.Now().Add(30 * time.Second); c.Active.Load() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the early connection was not accepted")
		}
	}
	type pauseResult struct {
		resume func()
		err    error
	}
	paused := make(chan pauseResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := srv.Pause(ctx)
		paused <- pauseResult{r, err}
	}()
	// Accept is parked: the pause began.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		srv.gateMu.Lock()
		g := srv.gate
		srv.gateMu.Unlock()
		if g != nil && isClosed(g.parked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Accept was not parked")
		}
	}
	// The early connection's request, read after the pause began: answered.
	_ = early.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := early.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(early), nil)
	if err != nil {
		t.Fatalf("the request read after the pause began: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("the request read after the pause began: %d", resp.StatusCode)
	}
	r := <-paused // every connection closed
	if r.err != nil {
		t.Fatal(r.err)
	}
	// A new connection waits in the backlog, and is served once resumed.
	got := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/healthz")
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	r.resume()
	if code := <-got; code != 200 {
		t.Fatalf("the connection made during the pause: %d", code)
	}
	if c.Accepted.Load() != 2 || c.Refused.Load() != 0 {
		t.Fatalf("accepted %d refused %d; want 2, 0", c.Accepted.Load(), c.Refused.Load())
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestHealthzFloodChecksOnce: /healthz needs no credentials, and each
// check pings the daemon's loops and its control socket: many requests at
// once share one check, and a check's answer serves the requests of the
// next HealthMaxAge.
func TestHealthzFloodChecksOnce(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	h := NewHandler(Options{HealthMaxAge: time.Minute, Health: func(context.Context) (bool, []string) {
		calls.Add(1)
		<-release
		return true, nil
	}})
	const n = 20
	base, c := serve(t, h, n+1)
	codes := make(chan int, n)
	for range n {
		go func() {
			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(base + "/healthz")
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for deadline := time.Now().Add(time.Minute); calls.Load() == 0 || c.Accepted.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d checks, %d connections", calls.Load(), c.Accepted.Load())
		}
	}
	close(release)
	for range n {
		if code := <-codes; code != 200 {
			t.Fatalf("healthz: %d", code)
		}
	}
	if code, _, _ := do(t, "GET", base+"/healthz", nil); code != 200 {
		t.Fatalf("healthz after: %d", code)
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("%d requests ran %d health checks, want 1", n+1, got)
	}
}

// TestBcryptOneAtATime: a flood of wrong passwords (no credentials are
// needed to send one) runs at most bcryptSlots bcrypts at once, the rest
// waiting their turn, and an unknown user costs the same bcrypt as a
// known one (the cost of the file's hashes: htpasswd -B writes cost 5).
func TestBcryptOneAtATime(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	creds := NewCredentials(map[string][]byte{"prom": hash}, nil)
	var cur, most atomic.Int64
	var costs sync.Map
	release := make(chan struct{})
	creds.compare = func(h, pw []byte) error {
		n := cur.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		cost, _ := bcrypt.Cost(h)
		costs.Store(cost, true)
		<-release
		cur.Add(-1)
		return bcrypt.CompareHashAndPassword(h, pw)
	}
	base, _ := serve(t, NewHandler(Options{Metrics: &served{}, Auth: func() *Credentials { return creds }}), 32)
	const n = 8
	codes := make(chan int, n)
	for i := range n {
		go func() {
			req, _ := http.NewRequest("GET", base+"/metrics", nil)
			req.SetBasicAuth([]string{"prom", "nobody"}[i%2], "wrong")
			resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	// Every request is in a bcrypt or waiting for one.
	for deadline := time.Now().Add(time.Minute); cur.Load()+creds.waiting.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d in bcrypt, %d waiting", cur.Load(), creds.waiting.Load())
		}
	}
	close(release)
	for range n {
		if code := <-codes; code != 401 {
			t.Fatalf("wrong password: %d", code)
		}
	}
	if m := most.Load(); m > int64(bcryptSlots()) {
		t.Errorf("%d bcrypts at once, want at most %d", m, bcryptSlots())
	}
	costs.Range(func(k, _ any) bool {
		if k.(int) != bcrypt.MinCost {
			t.Errorf("a bcrypt of cost %d, the file's hashes have %d: an unknown user is told apart by the time", k, bcrypt.MinCost)
		}
		return true
	})
}

// TestCacheKeyIsUnambiguous: a user:password pair accepted once is not
// also another pair whose bytes run together the same way.
func TestCacheKeyIsUnambiguous(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("c"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	creds := NewCredentials(map[string][]byte{"a\x00b": hash}, nil)
	req := func(u, p string) *http.Request {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(u, p)
		return r
	}
	if !creds.Check(req("a\x00b", "c")) {
		t.Fatal("the right password refused")
	}
	if creds.Check(req("a", "b\x00c")) {
		t.Fatal("another user and password let in by the cache")
	}
}

// TestHostCheck: with LocalOnly, a request whose Host is a name a web
// page could be served from (DNS rebinding) gets 421 on every path and
// reaches no handler; an IP address, localhost and a name under
// .localhost are answered. Without it, any Host is.
func TestHostCheck(t *testing.T) {
	var local atomic.Bool
	local.Store(true)
	m := &served{}
	var health atomic.Int64
	base, _ := serve(t, NewHandler(Options{Metrics: m, Page: m, LocalOnly: local.Load, Health: func(context.Context) (bool, []string) {
		health.Add(1)
		return true, nil
	}}), 8)
	port := base[strings.LastIndex(base, ":")+1:]
	get := func(host, path string) (int, string) {
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatalf("Host %q: %v", host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, host := range []string{"127.0.0.1:" + port, "127.0.0.1", "localhost:" + port, "LocalHost", "localhost.", "[::1]:" + port, "[::1]", "gosup.localhost:" + port, "10.1.2.3:9180"} {
		for _, path := range []string{"/metrics", "/", "/healthz"} {
			if code, body := get(host, path); code != 200 {
				t.Errorf("Host %q %s: %d %q, want 200", host, path, code, body)
			}
		}
	}
	if m.n.Load() != 18 || health.Load() != 9 {
		t.Fatalf("handlers reached %d, %d times; want 18, 9", m.n.Load(), health.Load())
	}
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example", "localhost.evil.example:" + port, "1.2.3.4.nip.io"} {
		for _, path := range []string{"/metrics", "/", "/status.json", "/healthz", "/nope"} {
			code, body := get(host, path)
			if code != http.StatusMisdirectedRequest || !strings.Contains(body, "DNS rebinding") || !strings.Contains(body, "basic_auth_file or token_file") {
				t.Errorf("Host %q %s: %d %q, want 421 saying why", host, path, code, body)
			}
		}
	}
	if m.n.Load() != 18 || health.Load() != 9 {
		t.Fatalf("a request for another Host reached a handler: %d, %d", m.n.Load(), health.Load())
	}
	// The absolute form of a request line names the host too.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte("GET http://evil.example/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 421 ") {
		t.Errorf("absolute-form request for evil.example: %q %v", line, err)
	}
	local.Store(false)
	if code, _ := get("evil.example:"+port, "/metrics"); code != 200 {
		t.Errorf("without LocalOnly, Host evil.example: %d, want 200", code)
	}
}
