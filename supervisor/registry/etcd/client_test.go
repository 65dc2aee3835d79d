package etcd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/registry/etcd"
	"github.com/gosup/gosup/supervisor/registry/etcd/etcdtest"
)

func newClient(t *testing.T, cfg etcd.Config) *etcd.Client {
	t.Helper()
	c, err := etcd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A key attached to a lease lives as long as the lease: kept alive it
// stays, revoked it goes; an ended lease can be neither renewed nor used.
func TestLeasePutRangeDelete(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}})
	ctx := ctxT(t)

	id, ttl, err := c.Grant(ctx, 2500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if ttl != 3*time.Second {
		t.Errorf("granted TTL %v, want 3s (rounded up to whole seconds)", ttl)
	}
	if _, err := c.Put(ctx, "/p/a", []byte(`{"v":1}`), id); err != nil {
		t.Fatal(err)
	}
	rev, err := c.Put(ctx, "/p/b", []byte("two"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/pq", []byte("not under /p/"), 0); err != nil {
		t.Fatal(err)
	}
	kvs, at, err := c.RangePrefix(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	if at < rev || len(kvs) != 2 || kvs[0].Key != "/p/a" || string(kvs[0].Value) != `{"v":1}` || kvs[0].Lease != id || kvs[1].Key != "/p/b" || kvs[1].Lease != 0 {
		t.Fatalf("range /p/ at %d: %+v", at, kvs)
	}
	if ttl, err := c.KeepAliveOnce(ctx, id); err != nil || ttl != 3*time.Second {
		t.Fatalf("keepalive: %v %v", ttl, err)
	}
	if n, err := c.Delete(ctx, "/p/b"); err != nil || n != 1 {
		t.Fatalf("delete /p/b: %d %v", n, err)
	}
	if n, err := c.Delete(ctx, "/p/b"); err != nil || n != 0 {
		t.Fatalf("delete /p/b again: %d %v", n, err)
	}
	if err := c.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, ok, _, err := c.Get(ctx, "/p/a"); err != nil || ok {
		t.Fatalf("/p/a after its lease was revoked: ok=%v err=%v", ok, err)
	}
	if _, err := c.KeepAliveOnce(ctx, id); !errors.Is(err, etcd.ErrLeaseNotFound) || strings.Contains(err.Error(), ": :") {
		t.Errorf("keepalive of a revoked lease: %v, want ErrLeaseNotFound (and no empty endpoint)", err)
	}
	if got := (&etcd.Error{Code: 5, Message: "etcdserver: requested lease not found"}).Error(); got != "etcdserver: requested lease not found (code 5)" {
		t.Errorf("an error without an endpoint reads %q", got)
	}
	if _, err := c.Put(ctx, "/p/c", nil, id); !errors.Is(err, etcd.ErrLeaseNotFound) {
		t.Errorf("put with a revoked lease: %v, want ErrLeaseNotFound", err)
	}
	if err := c.Revoke(ctx, id); !errors.Is(err, etcd.ErrLeaseNotFound) {
		t.Errorf("revoke twice: %v, want ErrLeaseNotFound", err)
	}
	if n, err := c.DeletePrefix(ctx, "/p"); err != nil || n != 1 {
		t.Errorf("delete prefix /p: %d %v, want 1 (/pq)", n, err)
	}
}

// A lease nobody keeps alive expires, and its keys with it.
func TestLeaseExpires(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}})
	ctx := ctxT(t)
	id, _, err := c.Grant(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/l/k", []byte("v"), id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, ok, _, err := c.Get(ctx, "/l/k")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/l/k still there 30s after its 1s lease")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.KeepAliveOnce(ctx, id); !errors.Is(err, etcd.ErrLeaseNotFound) {
		t.Errorf("keepalive of an expired lease: %v, want ErrLeaseNotFound", err)
	}
}

// recorder collects what a watch delivers.
type recorder struct {
	mu      sync.Mutex
	events  []string // "PUT /k=v@rev", "DELETE /k@rev"
	broken  []error
	created int
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) handle(w etcd.WatchResponse) error {
	r.mu.Lock()
	for _, e := range w.Events {
		if e.Type == etcd.Delete {
			r.events = append(r.events, fmt.Sprintf("DELETE %s@%d", e.KV.Key, e.KV.ModRevision))
		} else {
			r.events = append(r.events, fmt.Sprintf("PUT %s=%s@%d", e.KV.Key, e.KV.Value, e.KV.ModRevision))
		}
	}
	r.mu.Unlock()
	r.poke()
	return nil
}

func (r *recorder) opts() etcd.WatchOptions {
	return etcd.WatchOptions{
		Broken:  func(err error) { r.mu.Lock(); r.broken = append(r.broken, err); r.mu.Unlock(); r.poke() },
		Created: func() { r.mu.Lock(); r.created++; r.mu.Unlock(); r.poke() },
	}
}

// waitFor waits until cond (under r.mu) holds.
func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("waiting for %s: events %q, broken %v, created %d", what, r.events, r.broken, r.created)
		}
	}
}

// A watch from a revision gives every change under the prefix from there,
// in order, and nothing outside it.
func TestWatchFromRevision(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}})
	ctx := ctxT(t)
	r1, err := c.Put(ctx, "/w/a", []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := c.Put(ctx, "/x", []byte("outside"), 0)
	r3, _ := c.Put(ctx, "/w/b", []byte("2"), 0)
	r4, _ := c.Delete(ctx, "/w/a")
	_ = r4
	rec := newRecorder()
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Watch(wctx, "/w/", r1, rec.handle, rec.opts()) }()
	rec.waitFor(t, "three events", func() bool { return len(rec.events) >= 3 })
	r5, _ := c.Put(ctx, "/w/c", []byte("3"), 0)
	rec.waitFor(t, "four events", func() bool { return len(rec.events) >= 4 })
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch after cancel: %v", err)
	}
	want := []string{
		fmt.Sprintf("PUT /w/a=1@%d", r1), fmt.Sprintf("PUT /w/b=2@%d", r3),
		fmt.Sprintf("DELETE /w/a@%d", r3+1), fmt.Sprintf("PUT /w/c=3@%d", r5),
	}
	if strings.Join(rec.events, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(rec.events, "\n"), strings.Join(want, "\n"))
	}
	if r2 != r1+1 {
		t.Errorf("revisions %d %d: want consecutive", r1, r2)
	}
}

// Stopping etcd under a live client breaks its requests and its watch;
// once etcd is back the same client answers again and the watch resumes
// from the revision after the last one it delivered: nothing missed,
// nothing twice.
func TestEtcdRestartUnderLiveClient(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}, Timeout: 2 * time.Second})
	ctx := ctxT(t)
	rec := newRecorder()
	done := make(chan error, 1)
	wctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-done }()
	go func() { done <- c.Watch(wctx, "/r/", 0, rec.handle, rec.opts()) }()
	rec.waitFor(t, "the watch set up", func() bool { return rec.created == 1 })
	if _, err := c.Put(ctx, "/r/1", []byte("a"), 0); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the first event", func() bool { return len(rec.events) == 1 })

	srv.Stop(t)
	rec.waitFor(t, "the watch broken", func() bool { return len(rec.broken) >= 1 })
	if _, err := c.Put(ctx, "/r/2", []byte("b"), 0); err == nil {
		t.Fatal("put with etcd stopped: no error")
	}
	srv.Restart(t)
	// Written before the watch is back: it must still arrive.
	if _, err := c.Put(ctx, "/r/2", []byte("b"), 0); err != nil {
		t.Fatalf("put after etcd restarted: %v", err)
	}
	rec.waitFor(t, "the watch set up again", func() bool { return rec.created >= 2 })
	if _, err := c.Put(ctx, "/r/3", []byte("c"), 0); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "three events", func() bool { return len(rec.events) >= 3 })
	got := strings.Join(rec.events, " ")
	if !strings.Contains(got, "PUT /r/1=a@") || !strings.Contains(got, "PUT /r/2=b@") || !strings.Contains(got, "PUT /r/3=c@") || len(rec.events) != 3 {
		t.Errorf("events %q: want /r/1, /r/2, /r/3 once each, in order", rec.events)
	}
}

// A watch from a compacted revision ends with *CompactedError: the caller
// reads the prefix again.
func TestWatchCompacted(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}})
	ctx := ctxT(t)
	r1, _ := c.Put(ctx, "/c/a", []byte("1"), 0)
	c.Put(ctx, "/c/a", []byte("2"), 0)
	r3, _ := c.Put(ctx, "/c/a", []byte("3"), 0)
	srv.Compact(t, "", r3)
	err := c.Watch(ctx, "/c/", r1, func(etcd.WatchResponse) error { return nil }, etcd.WatchOptions{})
	var ce *etcd.CompactedError
	if !errors.As(err, &ce) || !errors.Is(err, etcd.ErrCompacted) || ce.Next != r1 {
		t.Fatalf("watch from a compacted revision: %v, want CompactedError{Next: %d}", err, r1)
	}
}

// The handler's error ends the watch and is returned as is.
func TestWatchHandlerError(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}})
	ctx := ctxT(t)
	r1, _ := c.Put(ctx, "/h/a", []byte("1"), 0)
	mine := errors.New("mine")
	if err := c.Watch(ctx, "/h/", r1, func(etcd.WatchResponse) error { return mine }, etcd.WatchOptions{}); err != mine {
		t.Fatalf("Watch: %v, want the handler's error", err)
	}
}

// silent accepts connections and never answers: the per-request timeout
// gives up on it and the request goes to the next endpoint.
func silent(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + l.Addr().String()
}

func refusing(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// Endpoints that refuse or never answer are skipped, each after at most
// one timeout; the one that answered is asked first from then on.
func TestFailoverAndTimeout(t *testing.T) {
	srv := etcdtest.Start(t)
	dead, mute := refusing(t), silent(t)
	// Generous: the attempt on the real etcd must fit in it on a loaded
	// machine; the silent endpoint costs one.
	c := newClient(t, etcd.Config{Endpoints: []string{dead, mute, srv.Endpoint}, Timeout: 5 * time.Second})
	ctx := ctxT(t)
	if _, err := c.Put(ctx, "/f/a", []byte("1"), 0); err != nil {
		t.Fatalf("put with a dead and a silent endpoint first: %v", err)
	}
	if eps := c.Endpoints(); eps[0] != srv.Endpoint {
		t.Errorf("endpoints after failover: %v, want %s first", eps, srv.Endpoint)
	}
	// The caller's context bounds the whole request.
	only := newClient(t, etcd.Config{Endpoints: []string{mute}, Timeout: time.Minute})
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := only.Put(short, "/f/b", nil, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("put to a silent endpoint under a 300ms context: %v", err)
	}
	// Every endpoint down: one error naming each.
	none := newClient(t, etcd.Config{Endpoints: []string{dead, mute}, Timeout: 300 * time.Millisecond})
	_, err := none.Put(ctx, "/f/c", nil, 0)
	if err == nil || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), mute) {
		t.Errorf("put with no endpoint up: %v, want both endpoints named", err)
	}
}

// An answer over MaxResponseBytes is an error, not a big allocation.
func TestResponseBound(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}, MaxResponseBytes: 1024})
	ctx := ctxT(t)
	r1, err := c.Put(ctx, "/b/big", []byte(strings.Repeat("x", 2000)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.RangePrefix(ctx, "/b/"); err == nil || !strings.Contains(err.Error(), "over 1024 bytes") {
		t.Errorf("range of a 2000-byte value with a 1024-byte bound: %v", err)
	}
	// A watch message over the bound breaks the stream (reported), and
	// resumes to the same message again: it never gets through.
	broken := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		_ = c.Watch(wctx, "/b/", r1, func(etcd.WatchResponse) error { t.Error("a message over the bound got through"); return nil },
			etcd.WatchOptions{Broken: func(err error) {
				select {
				case broken <- err:
				default:
				}
			}})
	})
	select {
	case err := <-broken:
		if !strings.Contains(err.Error(), "over 1024 bytes") {
			t.Errorf("watch broken by: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the watch never reported the message over the bound")
	}
}

// With authentication on, the client logs in with its username and
// password, and logs in again when etcd drops its token.
func TestAuthTokenRefresh(t *testing.T) {
	srv := etcdtest.Start(t)
	srv.EnableAuth(t, "s3cret-pass")
	ctx := ctxT(t)
	wrong := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}, Username: "root", Password: "nope"})
	if _, err := wrong.Put(ctx, "/a/x", nil, 0); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("put with a wrong password: %v", err)
	}
	anon := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}})
	if _, err := anon.Put(ctx, "/a/x", nil, 0); err == nil {
		t.Error("put without credentials on an etcd with auth: no error")
	}
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}, Username: "root", Password: "s3cret-pass"})
	r1, err := c.Put(ctx, "/a/1", []byte("v"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// Turning auth off and on drops every token etcd gave, the
	// client's too.
	tok := login(t, srv)
	srv.Post(t, "/v3/auth/disable", tok, map[string]string{})
	srv.Post(t, "/v3/auth/enable", "", map[string]string{})
	if _, err := c.Put(ctx, "/a/2", []byte("w"), 0); err != nil {
		t.Fatalf("put after etcd dropped the token: %v", err)
	}
	// The watch logs in again too.
	rec := newRecorder()
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = c.Watch(wctx, "/a/", r1, rec.handle, rec.opts()) })
	rec.waitFor(t, "two events", func() bool { return len(rec.events) >= 2 })
}

func login(t *testing.T, srv *etcdtest.Server) string {
	out := srv.Post(t, "/v3/auth/authenticate", "", map[string]string{"name": "root", "password": "s3cret-pass"})
	i := strings.Index(string(out), `"token":"`)
	if i < 0 {
		t.Fatalf("authenticate: %s", out)
	}
	tok := string(out[i+len(`"token":"`):])
	return tok[:strings.IndexByte(tok, '"')]
}

// Over TLS with a client certificate: the CA and the certificate from
// files; without the certificate etcd refuses.
func TestTLS(t *testing.T) {
	srv := etcdtest.StartWith(t, etcdtest.Config{TLS: true})
	ctx := ctxT(t)
	ca, cert, key := readFile(t, srv.CAFile), readFile(t, srv.CertFile), readFile(t, srv.KeyFile)
	// The daemon's TLS settings, as [registry] gives them.
	tc, err := (&config.Registry{CA: ca, Cert: cert, Key: key}).TLS()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}, TLS: tc})
	rev, err := c.Put(ctx, "/t/a", []byte("1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = c.Watch(wctx, "/t/", rev, rec.handle, rec.opts()) })
	rec.waitFor(t, "the event over TLS", func() bool { return len(rec.events) == 1 })

	caOnly, err := (&config.Registry{CA: ca}).TLS()
	if err != nil {
		t.Fatal(err)
	}
	nocert := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}, TLS: caOnly, Timeout: 2 * time.Second})
	if _, err := nocert.Put(ctx, "/t/b", nil, 0); err == nil {
		t.Error("put without a client certificate: no error")
	}
	if _, err := (&config.Registry{CA: ca, Cert: cert}).TLS(); err == nil {
		t.Error("TLS with a cert and no key: no error")
	}
	if _, err := (&config.Registry{CA: []byte("not PEM")}).TLS(); err == nil {
		t.Error("TLS with a ca that holds no certificate: no error")
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewChecksEndpoints(t *testing.T) {
	for _, eps := range [][]string{nil, {"127.0.0.1:2379"}, {"http://a:1", "unix:///x"}} {
		if _, err := etcd.New(etcd.Config{Endpoints: eps}); err == nil {
			t.Errorf("New(%q): no error", eps)
		}
	}
}

// RangePages reads every key under a prefix at one revision whatever the
// answer's bound: many keys go in pages, and keys whose values would make
// a page larger than MaxResponseBytes go in smaller pages, where the
// whole range at once is refused as too large.
func TestRangePagesUnderTheBound(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, etcd.Config{Endpoints: []string{srv.Endpoint}, MaxResponseBytes: 1 << 20})
	ctx := ctxT(t)
	big := bytes.Repeat([]byte("x"), 400<<10) // 3 of them (base64 in JSON) pass 1 MiB
	want := []string{}
	for i := range 600 {
		key := fmt.Sprintf("/p/%04d", i)
		value := []byte("small")
		if i%100 == 7 {
			value = big
		}
		if _, err := c.Put(ctx, key, value, 0); err != nil {
			t.Fatal(err)
		}
		want = append(want, key)
	}
	if _, _, err := c.RangePrefix(ctx, "/p/"); !errors.Is(err, etcd.ErrTooLarge) {
		t.Fatalf("the whole range at once: %v, want ErrTooLarge", err)
	}
	var have []string
	pages := 0
	rev, err := c.RangePages(ctx, "/p/", func(kvs []etcd.KV) error {
		pages++
		for _, kv := range kvs {
			have = append(have, kv.Key)
			if bytes.Equal(kv.Value, big) != (kv.Key[len(kv.Key)-2:] == "07") {
				t.Errorf("%s: value of %d bytes", kv.Key, len(kv.Value))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(have, want) {
		t.Fatalf("%d keys read, want %d in order", len(have), len(want))
	}
	// A put after the read is at a later revision: the read was of one.
	after, err := c.Put(ctx, "/p/late", []byte("x"), 0)
	if err != nil || rev >= after || pages < 3 {
		t.Errorf("revision %d, put after at %d (%v), %d pages", rev, after, err, pages)
	}
}
