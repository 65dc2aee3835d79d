package registry

import (
	"context"
	"encoding/base64"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/registry/etcd"
	"github.com/gosup/gosup/supervisor/registry/etcd/etcdtest"
)

// startWatcher runs a Watcher on srv until the test ends; changes counts
// its Changed calls.
func startWatcher(t *testing.T, srv *etcdtest.Server) (*Watcher, *atomic.Int64) {
	t.Helper()
	c, err := etcd.New(etcd.Config{Endpoints: []string{srv.Endpoint}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var changes atomic.Int64
	w := NewWatcher(WatcherOptions{Client: c, Prefix: "/gosup", Changed: func() { changes.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, &changes
}

// waitFor polls cond (a positive signal) for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ports gives the ports of upstream web's members as "HOST:PORT/STATE".
func ports(w *Watcher) string {
	ms, _ := w.Members()
	s := ""
	for _, m := range ms["web"] {
		s += fmt.Sprintf("%s:%d/%s ", m.Host, m.Port, m.State)
	}
	return s
}

// The watcher reads what is there, then follows puts, state changes and
// deletes; a key that is not a member is counted and ignored.
func TestWatcherFollowsMembers(t *testing.T) {
	srv := etcdtest.Start(t)
	put := func(m Member) {
		srv.Post(t, "/v3/kv/put", "", map[string]string{"key": b64(m.Key("/gosup")), "value": b64(string(m.Value()))})
	}
	a := member(9100, StateUp)
	b := member(9101, StateUp)
	b.Host = "10.0.0.4"
	put(a)
	srv.Post(t, "/v3/kv/put", "", map[string]string{"key": b64("/gosup/upstreams/web/junk"), "value": b64("not json")})
	w, changes := startWatcher(t, srv)
	waitFor(t, "the first read", func() bool { return w.Status().Synced })
	if have := ports(w); have != "10.0.0.5:9100/up " {
		t.Fatalf("after the read: %q", have)
	}
	if st := w.Status(); st.State != "ok" || st.Ignored != 1 || st.Members != 1 {
		t.Errorf("status %+v", st)
	}
	put(b)
	waitFor(t, "the second member", func() bool { return ports(w) == "10.0.0.4:9101/up 10.0.0.5:9100/up " })
	a.State = StateDown
	put(a)
	waitFor(t, "the member marked down", func() bool { return ports(w) == "10.0.0.4:9101/up 10.0.0.5:9100/down " })
	if st := w.Status(); st.Down != 1 {
		t.Errorf("status %+v: want 1 down", st)
	}
	srv.Post(t, "/v3/kv/deleterange", "", map[string]string{"key": b64(a.Key("/gosup"))})
	waitFor(t, "the member deleted", func() bool { return ports(w) == "10.0.0.4:9101/up " })
	if n := changes.Load(); n < 4 {
		t.Errorf("%d changes heard, want 4 or more", n)
	}
}

// etcd stopped: the members last known stay and the status says
// unreachable; etcd back, the watch resumes and follows new changes.
func TestWatcherKeepsMembersWhileEtcdIsDown(t *testing.T) {
	srv := etcdtest.Start(t)
	m := member(9100, StateUp)
	srv.Post(t, "/v3/kv/put", "", map[string]string{"key": b64(m.Key("/gosup")), "value": b64(string(m.Value()))})
	w, _ := startWatcher(t, srv)
	waitFor(t, "the first read", func() bool { return ports(w) == "10.0.0.5:9100/up " })
	srv.Stop(t)
	waitFor(t, "the watch to break", func() bool { return w.Status().State == "unreachable" })
	if have := ports(w); have != "10.0.0.5:9100/up " {
		t.Fatalf("while etcd is down: %q, want the last known member", have)
	}
	srv.Restart(t)
	waitFor(t, "etcd to answer again", func() bool { return w.Status().State == "ok" })
	n := member(9101, StateUp)
	srv.Post(t, "/v3/kv/put", "", map[string]string{"key": b64(n.Key("/gosup")), "value": b64(string(n.Value()))})
	waitFor(t, "the member put after the restart", func() bool { return ports(w) == "10.0.0.5:9100/up 10.0.0.5:9101/up " })
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
