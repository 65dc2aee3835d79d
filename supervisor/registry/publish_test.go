package registry

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/registry/etcd"
	"github.com/gosup/gosup/supervisor/registry/etcd/etcdtest"
)

// members is a settable desired set.
type members struct {
	mu sync.Mutex
	m  []Member
}

func (ms *members) set(m ...Member) {
	ms.mu.Lock()
	ms.m = m
	ms.mu.Unlock()
}

func (ms *members) get() []Member {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]Member(nil), ms.m...)
}

func member(port int, state string) Member {
	return Member{Upstream: "web", Host: "10.0.0.5", Port: port, State: state, Program: "web",
		Process: fmt.Sprintf("web:web_%02d", port-9100), Pid: 1000 + port, StartTime: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
}

func start(t *testing.T, srv *etcdtest.Server, ttl time.Duration, ms *members) (*Publisher, context.CancelFunc, chan struct{}) {
	t.Helper()
	return startAt(t, srv.Endpoint, ttl, ms)
}

// startAt is start on the etcd endpoint (a proxy in front of one).
func startAt(t *testing.T, endpoint string, ttl time.Duration, ms *members) (*Publisher, context.CancelFunc, chan struct{}) {
	t.Helper()
	c, err := etcd.New(etcd.Config{Endpoints: []string{endpoint}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	p := New(Options{Client: c, Prefix: "/gosup", TTL: ttl, Members: ms.get})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, cancel, done
}

// waitKeys waits until etcd holds exactly want under /gosup/upstreams/
// (key -> substring of the value).
func waitKeys(t *testing.T, srv *etcdtest.Server, what string, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		have := srv.Keys(t, "", "/gosup/upstreams/")
		ok := len(have) == len(want)
		for k, v := range want {
			if !strings.Contains(have[k], v) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: etcd holds %v, want %v", what, have, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMemberValueRoundTrip(t *testing.T) {
	m := member(9100, StateUp)
	m.Host = "fd00::5"
	key := m.Key("/gosup")
	if key != "/gosup/upstreams/web/[fd00::5]:9100" {
		t.Errorf("key %s", key)
	}
	v := string(m.Value())
	want := `{"host":"fd00::5","port":9100,"weight":1,"state":"up","program":"web","process":"web:web_00","pid":10100,"start_time":"2026-11-30T12:00:00Z"}`
	if v != want {
		t.Errorf("value\n%s\nwant\n%s", v, want)
	}
	back, err := ParseMember("/gosup", key, []byte(v))
	m.Weight = 1
	if err != nil || back != m {
		t.Errorf("parsed back: %+v %v\nwant %+v", back, err, m)
	}
	for _, bad := range []struct{ key, value string }{
		{"/gosup/upstreams/web", v},
		{"/gosup/upstreams/web/10.0.0.9:9100", v},
		{key, `{"host":"fd00::5","port":9100,"state":"maybe"}`},
		{key, `not json`},
		// Whatever a balancer would write into its configuration: a
		// member read from etcd is not trusted with it.
		{"/gosup/upstreams/web/a b:9100", `{"host":"a b","port":9100,"state":"up","program":"web","process":"web:web_00"}`},
		{"/gosup/upstreams/web/x;}\n:9100", `{"host":"x;}\n","port":9100,"state":"up","program":"web","process":"web:web_00"}`},
		{"/gosup/upstreams/web/10.0.0.9:0", `{"host":"10.0.0.9","port":0,"state":"up","program":"web","process":"web:web_00"}`},
		{"/gosup/upstreams/web/10.0.0.9:9100", `{"host":"10.0.0.9","port":9100,"weight":-1,"state":"up","program":"web","process":"web:web_00"}`},
		{"/gosup/upstreams/web/10.0.0.9:9100", `{"host":"10.0.0.9","port":9100,"state":"up","program":"web","process":"web:web_00\nserver evil"}`},
		{"/gosup/upstreams/web/10.0.0.9:9100", `{"host":"10.0.0.9","port":9100,"state":"up","program":"w b","process":"web:web_00"}`},
		{"/gosup/upstreams/web/10.0.0.9:9100", `{"host":"10.0.0.9","port":9100,"state":"up","program":"web","process":"web_00"}`},
	} {
		if _, err := ParseMember("/gosup", bad.key, []byte(bad.value)); err == nil {
			t.Errorf("ParseMember(%s, %s): no error", bad.key, bad.value)
		}
	}
}

// The members wanted are written, changed and removed; Wait returns once
// etcd holds them.
func TestPublishReconciles(t *testing.T) {
	srv := etcdtest.Start(t)
	var ms members
	ms.set(member(9100, StateUp), member(9101, StateUp))
	p, _, _ := start(t, srv, 3*time.Second, &ms)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Wait(ctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	have := srv.Keys(t, "", "/gosup/upstreams/")
	if len(have) != 2 || have["/gosup/upstreams/web/10.0.0.5:9100"] != string(member(9100, StateUp).Value()) {
		t.Fatalf("after the first pass: %v", have)
	}
	ms.set(member(9100, StateDown), member(9101, StateUp))
	if err := p.Wait(ctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	if v := srv.Keys(t, "", "/gosup/upstreams/")["/gosup/upstreams/web/10.0.0.5:9100"]; !strings.Contains(v, `"state":"down"`) {
		t.Fatalf("marked down: %s", v)
	}
	ms.set(member(9101, StateUp))
	if err := p.Wait(ctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	if have := srv.Keys(t, "", "/gosup/upstreams/"); len(have) != 1 {
		t.Fatalf("after removal: %v", have)
	}
	st := p.Status()
	if st.State != "ok" || st.Published != 1 || st.Lease == 0 || st.FailedWrites != 0 || st.LeaseGrants != 1 {
		t.Errorf("status %+v", st)
	}
}

// A publisher that stops renewing (its daemon killed) loses its members
// when the lease expires; Revoke removes them at once.
func TestPublishLeaseExpiresAndRevoke(t *testing.T) {
	srv := etcdtest.Start(t)
	var ms members
	ms.set(member(9100, StateUp))
	p, cancel, done := start(t, srv, 3*time.Second, &ms)
	ctx, cancelCtx := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelCtx()
	if err := p.Wait(ctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	stopped := time.Now()
	waitKeys(t, srv, "after the lease expired", map[string]string{})
	if took := time.Since(stopped); took < 2*time.Second {
		t.Errorf("members gone %v after the publisher stopped: before the 3s lease could expire", took)
	}

	p2, cancel2, done2 := start(t, srv, 3*time.Second, &ms)
	if err := p2.Wait(ctx, p2.Kick()); err != nil {
		t.Fatal(err)
	}
	cancel2()
	<-done2
	if err := p2.Revoke(ctx); err != nil {
		t.Fatal(err)
	}
	if have := srv.Keys(t, "", "/gosup/upstreams/"); len(have) != 0 {
		t.Errorf("after Revoke: %v", have)
	}
}

// etcd stopped: the publisher says unreachable (with the error and since
// when) and counts the writes that failed; etcd back: every member is
// there, changes made meanwhile too.
func TestPublishEtcdRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	var ms members
	ms.set(member(9100, StateUp), member(9101, StateUp))
	p, _, _ := start(t, srv, 3*time.Second, &ms)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := p.Wait(ctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	ms.set(member(9100, StateUp), member(9101, StateUp), member(9102, StateUp))
	n := p.Kick()
	deadline := time.Now().Add(60 * time.Second)
	for p.Status().State != "unreachable" {
		if time.Now().After(deadline) {
			t.Fatalf("etcd stopped: status %+v", p.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := p.Status()
	if st.LastError == "" || st.Since.IsZero() || st.FailedWrites < 1 {
		t.Errorf("unreachable: %+v", st)
	}
	srv.Restart(t)
	if err := p.Wait(ctx, n); err != nil {
		t.Fatal(err)
	}
	waitKeys(t, srv, "after etcd restarted", map[string]string{
		"/gosup/upstreams/web/10.0.0.5:9100": `"up"`, "/gosup/upstreams/web/10.0.0.5:9101": `"up"`, "/gosup/upstreams/web/10.0.0.5:9102": `"up"`,
	})
	if st := p.Status(); st.State != "ok" || st.Published != 3 {
		t.Errorf("after etcd restarted: %+v", st)
	}
}

// A lease lost under the publisher (revoked by someone, or expired while
// etcd was unreachable) is replaced at the next renewal, and every member
// published again.
func TestPublishLeaseLost(t *testing.T) {
	srv := etcdtest.Start(t)
	var ms members
	ms.set(member(9100, StateUp))
	p, _, _ := start(t, srv, 3*time.Second, &ms)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.Wait(ctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	old := p.Status().Lease
	srv.Post(t, "/v3/lease/revoke", "", map[string]string{"ID": fmt.Sprint(old)})
	waitKeys(t, srv, "published again under a new lease", map[string]string{"/gosup/upstreams/web/10.0.0.5:9100": `"up"`})
	if st := p.Status(); st.Lease == old || st.LeaseGrants != 2 {
		t.Errorf("status %+v: want a second lease", st)
	}
}

// lossyProxy forwards to target; while drop is set, etcd's answers are
// swallowed (the request still reaches etcd); delay (a time.Duration)
// holds each answer back that long (a slow link).
type lossyProxy struct {
	drop  atomic.Bool
	delay atomic.Int64
	l     net.Listener
	wg    sync.WaitGroup
}

func newLossyProxy(t *testing.T, target string) *lossyProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{l: l}
	var mu sync.Mutex
	var conns []net.Conn
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(u, c) })
			p.wg.Go(func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := u.Read(buf)
					if d := time.Duration(p.delay.Load()); n > 0 && d > 0 {
						time.Sleep(d)
					}
					if n > 0 && !p.drop.Load() {
						_, _ = c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			})
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-accepting
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// A put etcd applied but whose answer was lost, then the member is no
// longer wanted (its process crashed): the key does not stay in etcd.
func TestPublishLostPutAnswer(t *testing.T) {
	srv := etcdtest.Start(t)
	px := newLossyProxy(t, srv.Endpoint[len("http://"):])
	var ms members
	p, _, _ := startAt(t, "http://"+px.l.Addr().String(), 30*time.Second, &ms)
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if err := p.Wait(wctx, p.Kick()); err != nil { // lease granted, nothing written
		t.Fatal(err)
	}
	px.drop.Store(true)
	ms.set(member(9100, StateUp))
	p.Kick()
	waitKeys(t, srv, "the put applied by etcd", map[string]string{"/gosup/upstreams/web/10.0.0.5:9100": `"up"`})
	for deadline := time.Now().Add(60 * time.Second); p.Status().FailedWrites == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the lost answer never counted as a failed write: %+v", p.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ms.set() // the process crashed
	px.drop.Store(false)
	if err := p.Wait(wctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	if have := srv.Keys(t, "", "/gosup/upstreams/"); len(have) != 0 {
		t.Errorf("confirmed, yet etcd still holds a member no longer wanted: %v (status %+v)", have, p.Status())
	}
	if st := p.Status(); st.State != "ok" || st.LastError != "" {
		t.Errorf("etcd answers again: status %+v", st)
	}
}

// A pass that takes longer than the lease (many members over a slow
// link) renews the lease as it goes: it converges, under one lease.
func TestPublishPassLongerThanLease(t *testing.T) {
	srv := etcdtest.Start(t)
	px := newLossyProxy(t, srv.Endpoint[len("http://"):])
	px.delay.Store(int64(25 * time.Millisecond))
	c, err := etcd.New(etcd.Config{Endpoints: []string{"http://" + px.l.Addr().String()}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var ms members
	var all []Member
	for i := range 200 { // at least 200 x 25ms = 5s a pass, on a 2s lease
		all = append(all, member(10000+i, StateUp))
	}
	ms.set(all...)
	p := New(Options{Client: c, Prefix: "/gosup", TTL: 2 * time.Second, Members: ms.get})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if err := p.Wait(wctx, p.Kick()); err != nil {
		t.Fatalf("200 members never published under a 2s lease: %v; status %+v", err, p.Status())
	}
	if have := srv.Keys(t, "", "/gosup/upstreams/"); len(have) != 200 {
		t.Errorf("etcd holds %d members, want 200", len(have))
	}
	if st := p.Status(); st.LeaseGrants != 1 || st.Published != 200 {
		t.Errorf("status %+v: want every member under one lease", st)
	}
}

// A delete etcd applied but whose answer was lost, then the member is
// wanted again as it was: it is written again, and the status says etcd
// answers once it does.
func TestPublishLostDeleteAnswer(t *testing.T) {
	srv := etcdtest.Start(t)
	px := newLossyProxy(t, srv.Endpoint[len("http://"):])
	var ms members
	ms.set(member(9100, StateUp))
	p, _, _ := startAt(t, "http://"+px.l.Addr().String(), 30*time.Second, &ms)
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if err := p.Wait(wctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	px.drop.Store(true)
	ms.set() // a planned stop
	p.Kick()
	waitKeys(t, srv, "the delete applied by etcd", map[string]string{})
	for deadline := time.Now().Add(60 * time.Second); p.Status().State != "unreachable"; {
		if time.Now().After(deadline) {
			t.Fatalf("the lost answer never made etcd unreachable: %+v", p.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ms.set(member(9100, StateUp)) // started again, as it was
	px.drop.Store(false)
	if err := p.Wait(wctx, p.Kick()); err != nil {
		t.Fatal(err)
	}
	if have := srv.Keys(t, "", "/gosup/upstreams/"); len(have) != 1 {
		t.Errorf("confirmed, yet etcd holds %v: want the member wanted again", have)
	}
	if st := p.Status(); st.State != "ok" || st.LastError != "" {
		t.Errorf("etcd answers again: status %+v", st)
	}
}
