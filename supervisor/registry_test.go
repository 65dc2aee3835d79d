package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/gosup/gosup/supervisor/registry"
	"github.com/gosup/gosup/supervisor/registry/etcd"
	"github.com/gosup/gosup/supervisor/registry/etcd/etcdtest"
)

// registryConfig is a pool of n web children on ports from base, ready
// once they listen, in upstream web, published to srv with a 3s lease
// under prefix.
func registryConfig(srv *etcdtest.Server, n, base int, prefix, extra string) string {
	return fmt.Sprintf(`
[program.web]
command = "@HELPER@ listen"
numprocs = %d
process_name = "web_%%(process_num)d"
port_start = %d
startsecs = 0
ready = "tcp"
upstream = "web"
drain = "500ms"
%s

[registry]
etcd = [%q]
host = "127.0.0.1"
prefix = %q
ttl = "3s"
%s
`, n, base, helperEnv, srv.Endpoint, prefix, extra)
}

// memberLog records, in order, every change etcd reports under a prefix.
type memberLog struct {
	mu      sync.Mutex
	events  []string // "PUT key state pid" or "DELETE key"
	changed chan struct{}
}

// watchMembers watches prefix in srv from revision 1 until the test ends.
func watchMembers(t *testing.T, srv *etcdtest.Server, prefix string) *memberLog {
	t.Helper()
	c, err := etcd.New(etcd.Config{Endpoints: []string{srv.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	ml := &memberLog{changed: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, prefix, 1, func(w etcd.WatchResponse) error {
			ml.mu.Lock()
			for _, e := range w.Events {
				if e.Type == etcd.Delete {
					ml.events = append(ml.events, "DELETE "+e.KV.Key)
					continue
				}
				var v struct {
					State string `json:"state"`
					Pid   int    `json:"pid"`
				}
				json.Unmarshal(e.KV.Value, &v)
				ml.events = append(ml.events, fmt.Sprintf("PUT %s %s %d", e.KV.Key, v.State, v.Pid))
			}
			ml.mu.Unlock()
			select {
			case ml.changed <- struct{}{}:
			default:
			}
			return nil
		}, etcd.WatchOptions{})
	}()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	return ml
}

// waitFor waits until cond holds of the events so far.
func (ml *memberLog) waitFor(t *testing.T, what string, cond func(events []string) bool) []string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		ml.mu.Lock()
		ev := append([]string(nil), ml.events...)
		ml.mu.Unlock()
		if cond(ev) {
			return ev
		}
		select {
		case <-ml.changed:
		case <-deadline:
			t.Fatalf("waiting for %s: events\n%s", what, strings.Join(ev, "\n"))
		}
	}
}

// members reads the members published under prefix.
func members(t *testing.T, srv *etcdtest.Server, prefix string) map[string]registry.Member {
	t.Helper()
	out := map[string]registry.Member{}
	for k, v := range srv.Keys(t, "", prefix+"/upstreams/") {
		m, err := registry.ParseMember(prefix, k, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		out[m.Process] = m
	}
	return out
}

// waitMembers waits until cond holds of the members published.
func waitMembers(t *testing.T, srv *etcdtest.Server, prefix, what string, cond func(map[string]registry.Member) bool) map[string]registry.Member {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ms := members(t, srv, prefix)
		if cond(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: members %+v", what, ms)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func allUp(n int, sts []api.ProcStatus) func(map[string]registry.Member) bool {
	return func(ms map[string]registry.Member) bool {
		if len(ms) != n {
			return false
		}
		for _, st := range sts {
			if m, ok := ms[st.Name]; !ok || m.State != registry.StateUp || m.Pid != st.Pid {
				return false
			}
		}
		return true
	}
}

// Every ready process of the upstream is published under
// PREFIX/upstreams/NAME/HOST:PORT with the value, attached to the
// daemon's lease; ctl info says so.
func TestRegistryPublishesReadyMembers(t *testing.T) {
	srv := etcdtest.Start(t)
	base := freePortRange(t, 2)
	cl, _ := startDaemon(t, writeConfig(t, registryConfig(srv, 2, base, "/gosup", "")))
	sts := waitAll(t, cl, "RUNNING")
	ms := waitMembers(t, srv, "/gosup", "both members up", allUp(2, sts))
	for _, st := range sts {
		m := ms[st.Name]
		if m.Upstream != "web" || m.Host != "127.0.0.1" || m.Port != st.Port || m.Weight != 1 || m.Program != "web" || m.StartTime.IsZero() {
			t.Errorf("%s: %+v", st.Name, m)
		}
	}
	raw := srv.Keys(t, "", "/gosup/upstreams/web/")
	key := fmt.Sprintf("/gosup/upstreams/web/127.0.0.1:%d", base)
	var v map[string]any
	if err := json.Unmarshal([]byte(raw[key]), &v); err != nil {
		t.Fatalf("%s: %q: %v", key, raw[key], err)
	}
	for _, f := range []string{"host", "port", "weight", "state", "program", "process", "pid", "start_time"} {
		if _, ok := v[f]; !ok {
			t.Errorf("%s's value %s has no %q", key, raw[key], f)
		}
	}
	// etcd holds both members before the pass that wrote them ends and
	// counts them: wait for the count.
	r := waitRegistry(t, cl, "both members counted", func(r *api.RegistryStatus) bool { return r.Published == 2 })
	if r.State != "ok" || r.Lease == "" || r.Host != "127.0.0.1" || r.Prefix != "/gosup" || r.FailedWrites != 0 {
		t.Fatalf("info.Registry: %+v", r)
	}
}

// waitRegistry waits until ctl info shows a registry for which cond holds.
func waitRegistry(t *testing.T, cl *api.Client, what string, cond func(*api.RegistryStatus) bool) *api.RegistryStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := mustInfo(t, cl).Registry
		if r != nil && cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: info.Registry %+v", what, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctl stop: the member is marked down while its process still runs, and
// removed once it has stopped; ctl start publishes it again.
func TestRegistryPlannedStopMarksDownThenRemoves(t *testing.T) {
	srv := etcdtest.Start(t)
	ml := watchMembers(t, srv, "/gosup/")
	base := freePortRange(t, 2)
	cl, _ := startDaemon(t, writeConfig(t, registryConfig(srv, 2, base, "/gosup", "")))
	sts := waitAll(t, cl, "RUNNING")
	waitMembers(t, srv, "/gosup", "both members up", allUp(2, sts))
	key := fmt.Sprintf("/gosup/upstreams/web/127.0.0.1:%d", base)
	pid := sts[0].Pid
	if _, err := cl.Action(context.Background(), "stop", api.ActionRequest{Patterns: []string{"web:web_0"}}); err != nil {
		t.Fatal(err)
	}
	ev := ml.waitFor(t, "web_0 deleted", func(ev []string) bool { return len(ev) > 0 && ev[len(ev)-1] == "DELETE "+key })
	// The last two changes of the key: down (with the pid still
	// running), then gone.
	var mine []string
	for _, e := range ev {
		if strings.Contains(e, key) {
			mine = append(mine, e)
		}
	}
	if len(mine) < 3 || mine[len(mine)-2] != fmt.Sprintf("PUT %s down %d", key, pid) || mine[0] != fmt.Sprintf("PUT %s up %d", key, pid) {
		t.Fatalf("web_0's changes: want up, down, then DELETE:\n%s", strings.Join(mine, "\n"))
	}
	if _, err := cl.Action(context.Background(), "start", api.ActionRequest{Patterns: []string{"web:web_0"}}); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, cl, "web:web_0", "RUNNING", func(p api.ProcStatus) bool { return p.State == "RUNNING" })
	waitMembers(t, srv, "/gosup", "web_0 up again", func(ms map[string]registry.Member) bool {
		return ms["web:web_0"].State == registry.StateUp && ms["web:web_0"].Pid == st.Pid
	})
}

// kill -9 of a child: its member goes at once (not marked down first),
// and its replacement is published once ready.
func TestRegistryCrashRemovesAtOnce(t *testing.T) {
	srv := etcdtest.Start(t)
	ml := watchMembers(t, srv, "/gosup/")
	base := freePortRange(t, 2)
	cl, _ := startDaemon(t, writeConfig(t, registryConfig(srv, 2, base, "/gosup", "")))
	sts := waitAll(t, cl, "RUNNING")
	waitMembers(t, srv, "/gosup", "both members up", allUp(2, sts))
	key := fmt.Sprintf("/gosup/upstreams/web/127.0.0.1:%d", base)
	pid := sts[0].Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := ml.waitFor(t, "web_0 deleted", func(ev []string) bool { return len(ev) > 0 && ev[len(ev)-1] == "DELETE "+key })
	for _, e := range ev {
		if strings.HasPrefix(e, "PUT "+key+" down") {
			t.Errorf("a crashed member was marked down before it went: %s", e)
		}
	}
	st := waitStatus(t, cl, "web:web_0", "running again", func(p api.ProcStatus) bool { return p.State == "RUNNING" && p.Pid != pid })
	ml.waitFor(t, "web_0 published again", func(ev []string) bool {
		return len(ev) > 0 && ev[len(ev)-1] == fmt.Sprintf("PUT %s up %d", key, st.Pid)
	})
}

// A daemon killed with SIGKILL cannot remove its members: they vanish
// when its lease expires, within the ttl.
func TestRegistryLeaseExpiresWhenDaemonKilled(t *testing.T) {
	srv := etcdtest.Start(t)
	base := freePortRange(t, 2)
	file := writeConfig(t, registryConfig(srv, 2, base, "/gosup", ""))
	proc, exitC := spawnHelper(t, nil, nil, "daemon", file)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	cl := api.NewClient(cfg.Supervisor.Socket)
	waitMembers(t, srv, "/gosup", "both members up", func(ms map[string]registry.Member) bool {
		return len(ms) == 2 && ms["web:web_0"].State == registry.StateUp && ms["web:web_1"].State == registry.StateUp
	})
	info, err := cl.Info(context.Background())
	if err != nil || info.Registry == nil || info.Registry.State != "ok" {
		t.Fatalf("info: %+v %v", info.Registry, err)
	}
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exitC
	killed := time.Now()
	waitMembers(t, srv, "/gosup", "the members gone with the lease", func(ms map[string]registry.Member) bool { return len(ms) == 0 })
	t.Logf("members gone %v after the daemon was killed (ttl 3s)", time.Since(killed).Round(10*time.Millisecond))
	os.Remove(cfg.Supervisor.Socket)
}

// etcd stopped under the daemon: the pool keeps running, status warns,
// ctl info and /metrics say unreachable since when and why; a child that
// crashes meanwhile is replaced. etcd back: every member is published
// with its current pid, and the warning goes.
func TestRegistryEtcdRestart(t *testing.T) {
	srv := etcdtest.Start(t)
	base := freePortRange(t, 2)
	sup, cl, _ := startSupervisor(t, writeConfig(t, registryConfig(srv, 2, base, "/gosup", "")))
	sts := waitAll(t, cl, "RUNNING")
	waitMembers(t, srv, "/gosup", "both members up", allUp(2, sts))

	srv.Stop(t)
	var warn string
	deadline := time.Now().Add(60 * time.Second)
	for warn == "" {
		_, warnings, err := cl.StatusWarning(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range warnings {
			if strings.HasPrefix(w, "registry: etcd unreachable since ") {
				warn = w
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no registry warning with etcd stopped: %q", warnings)
		}
		time.Sleep(50 * time.Millisecond)
	}
	info := mustInfo(t, cl)
	if r := info.Registry; r == nil || r.State != "unreachable" || r.Error == "" || r.Since.IsZero() {
		t.Fatalf("info.Registry with etcd stopped: %+v", r)
	}
	if snap := sup.metricsSnapshot(); !snap.Registry || snap.RegistryReachable {
		t.Errorf("metrics with etcd stopped: registry %v reachable %v", snap.Registry, snap.RegistryReachable)
	}
	// A crash meanwhile: replaced, to be published with its new pid.
	if err := syscall.Kill(sts[1].Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	web1 := waitStatus(t, cl, "web:web_1", "running again", func(p api.ProcStatus) bool { return p.State == "RUNNING" && p.Pid != sts[1].Pid })

	srv.Restart(t)
	now := []api.ProcStatus{sts[0], web1}
	waitMembers(t, srv, "/gosup", "every member published again", allUp(2, now))
	if st := mustStatus(t, cl, "web:web_0"); st[0].Pid != sts[0].Pid || st[0].State != "RUNNING" {
		t.Errorf("web_0 did not keep running through etcd's restart: %+v (pid was %d)", st[0], sts[0].Pid)
	}
	if r := waitRegistry(t, cl, "etcd restarted", func(r *api.RegistryStatus) bool { return r.State == "ok" && r.Published == 2 }); r.FailedWrites == 0 {
		t.Errorf("no failed write counted while etcd was stopped: %+v", r)
	}
	if snap := sup.metricsSnapshot(); !snap.RegistryReachable || snap.RegistryMembers != 2 {
		t.Errorf("metrics after etcd restarted: %+v", snap.RegistryReachable)
	}
	_, warnings, _ := cl.StatusWarning(context.Background())
	for _, w := range warnings {
		if strings.HasPrefix(w, "registry:") {
			t.Errorf("warning after etcd answers again: %s", w)
		}
	}
}

// A reload that moves the prefix publishes every member under the new
// one and removes them from the old one.
func TestRegistryReloadMovesPrefix(t *testing.T) {
	srv := etcdtest.Start(t)
	base := freePortRange(t, 2)
	file := writeConfig(t, registryConfig(srv, 2, base, "/gosup", ""))
	cl, _ := startDaemon(t, file)
	sts := waitAll(t, cl, "RUNNING")
	waitMembers(t, srv, "/gosup", "both members up", allUp(2, sts))
	rewriteConfig(t, file, registryConfig(srv, 2, base, "/fleet", ""))
	if _, err := cl.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, srv, "/fleet", "both members under the new prefix", allUp(2, sts))
	waitMembers(t, srv, "/gosup", "none left under the old prefix", func(ms map[string]registry.Member) bool { return len(ms) == 0 })
	waitRegistry(t, cl, "the new settings in force, counted", func(r *api.RegistryStatus) bool {
		return r.Prefix == "/fleet" && r.LeaseGrants == 2 && r.Published == 2
	})
}

// etcd unreachable: a planned stop drains without waiting for the
// registry's confirmation, and says why.
func TestRegistryDrainWithEtcdDown(t *testing.T) {
	srv := etcdtest.Start(t)
	base := freePortRange(t, 2)
	cl, _ := startDaemon(t, writeConfig(t, registryConfig(srv, 2, base, "/gosup", "")))
	sts := waitAll(t, cl, "RUNNING")
	waitMembers(t, srv, "/gosup", "both members up", allUp(2, sts))
	srv.Stop(t)
	waitRegistry(t, cl, "etcd stopped", func(r *api.RegistryStatus) bool { return r.State == "unreachable" })
	var draining []string
	began := time.Now()
	if _, err := cl.ActionStream(context.Background(), "stop", api.ActionRequest{Patterns: []string{"web:web_0"}}, func(e api.Event) {
		if e.Step == api.StepDraining {
			draining = append(draining, e.Message)
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("ctl stop of one process (drain 500ms) with etcd unreachable took %v", time.Since(began).Round(time.Millisecond))
	if len(draining) != 1 || !strings.Contains(draining[0], "the registry is unreachable") {
		t.Errorf("draining events %q: want one that says the registry is unreachable (not waited for)", draining)
	}
}

// One attempt of a request to etcd ends within the lease's renewal
// period, so that a silent endpoint cannot outlast a short lease.
func TestRegistryTimeout(t *testing.T) {
	for _, c := range []struct{ ttl, want time.Duration }{
		{3 * time.Second, time.Second},
		{10 * time.Second, 10 * time.Second / 3},
		{time.Minute, etcd.DefaultTimeout},
	} {
		if got := registryTimeout(c.ttl); got != c.want {
			t.Errorf("ttl %v: timeout %v, want %v", c.ttl, got, c.want)
		}
	}
}

// The shutdown revokes the lease even when etcd did not answer last: it
// may answer again (here, restarted), and the members then go at once
// rather than when the lease expires.
func TestRegistryShutdownRevokesAfterUnreachable(t *testing.T) {
	srv := etcdtest.Start(t)
	client, err := etcd.New(etcd.Config{Endpoints: []string{srv.Endpoint}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	want := []registry.Member{{Upstream: "web", Host: "127.0.0.1", Port: 9100, State: registry.StateUp}}
	pub := registry.New(registry.Options{Client: client, Prefix: "/gosup", TTL: 30 * time.Second, Members: func() []registry.Member {
		mu.Lock()
		defer mu.Unlock()
		return append([]registry.Member(nil), want...)
	}})
	ctx, cancel := context.WithCancel(context.Background())
	r := &registryRun{cfg: &config.Registry{TTL: 30 * time.Second}, pub: pub, client: client, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		pub.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if err := pub.Wait(wctx, pub.Kick()); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	mu.Lock()
	want = nil // stopped meanwhile: its removal fails
	mu.Unlock()
	pub.Kick()
	for deadline := time.Now().Add(60 * time.Second); pub.Status().State != "unreachable"; {
		if time.Now().After(deadline) {
			t.Fatalf("etcd stopped: status %+v", pub.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The publisher stops before it sees etcd again: the state the
	// shutdown reads stays unreachable.
	cancel()
	<-r.done
	srv.Restart(t)
	r.shutdown(slog.Default())
	if have := srv.Keys(t, "", "/gosup/upstreams/"); len(have) != 0 {
		t.Errorf("after the shutdown etcd still holds %v (until the 30s lease expires): the lease was not revoked", have)
	}
}

// A process that listens only on the address the registry publishes
// (not on loopback) is ready once it answers there, and is published.
func TestRegistryReadyAtPublishedHost(t *testing.T) {
	srv := etcdtest.Start(t)
	base := freePortRange(t, 1)
	cl, _ := startDaemon(t, writeConfig(t, fmt.Sprintf(`
[program.web]
command = "@HELPER@ listen-on 127.0.0.2"
port_start = %d
startsecs = 0
ready = "tcp"
ready_timeout = "60s"
upstream = "web"
%s

[registry]
etcd = [%q]
host = "127.0.0.2"
ttl = "3s"
`, base, helperEnv, srv.Endpoint)))
	sts := waitAll(t, cl, "RUNNING")
	ms := waitMembers(t, srv, "/gosup", "the member published", func(ms map[string]registry.Member) bool { return len(ms) == 1 })
	if m := ms[sts[0].Name]; m.Host != "127.0.0.2" || m.Port != base || m.Pid != sts[0].Pid {
		t.Fatalf("member %+v, process %+v", m, sts[0])
	}
}
