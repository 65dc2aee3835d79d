package supervisor

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/haproxy"
	"github.com/gosup/gosup/supervisor/haproxy/haproxytest"
	"github.com/gosup/gosup/supervisor/registry"
	"github.com/gosup/gosup/supervisor/registry/etcd/etcdtest"
)

// waitInfo polls ctl info until cond holds, for up to a minute.
func waitInfo(t *testing.T, cl *api.Client, what string, cond func(api.Info) bool) api.Info {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		info := mustInfo(t, cl)
		if cond(info) {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: info.Nginx %+v, info.HAProxy %+v, info.Watch %+v", what, info.Nginx, info.HAProxy, info.Watch)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitWarning polls ctl status until a warning contains want (or, with
// want "", until there is none about the registry).
func waitWarning(t *testing.T, cl *api.Client, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, warnings, err := cl.StatusWarning(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(warnings, "\n")
		if want != "" && strings.Contains(all, want) || want == "" && !strings.Contains(all, "registry") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for the warning %q: have %q", want, warnings)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// putMember publishes m in srv under /gosup by hand, as another host's
// daemon would.
func putMember(t *testing.T, srv *etcdtest.Server, m registry.Member) {
	t.Helper()
	srv.Post(t, "/v3/kv/put", "", map[string]string{"key": b64(m.Key("/gosup")), "value": b64(string(m.Value()))})
}

// appHost is an app host's configuration: two web children on ports
// from base in upstream web, published to etcd at endpoint as 127.0.0.1
// with a 3s lease; extra follows.
func appHost(endpoint string, base int, extra string) string {
	return fmt.Sprintf(`
[program.web]
command = "@HELPER@ http"
numprocs = 2
process_name = "web_%%(process_num)d"
port_start = %d
startsecs = 0
upstream = "web"
%s

[registry]
etcd = [%q]
host = "127.0.0.1"
ttl = "3s"
%s`, base, helperEnv, endpoint, extra)
}

// A balancer host with no programs renders a registry-sourced nginx
// upstream from another host's daemon's members: nginx sends traffic to
// both; a stopped process leaves the upstream; etcd down keeps the file
// and warns; the last member gone keeps the servers last known (nginx
// refuses an empty upstream) and warns.
func TestNginxUpstreamFromRegistry(t *testing.T) {
	srv := etcdtest.Start(t)
	n := startNginx(t)
	base := freePortRange(t, 2)
	app, _ := startDaemon(t, writeConfig(t, appHost(srv.Endpoint, base, "")))
	waitAll(t, app, "RUNNING")
	bal, _ := startDaemon(t, writeConfig(t, fmt.Sprintf(`
[registry]
etcd = [%q]

[nginx]
output = %q
test_command = %q
reload_command = %q

[nginx.upstream.web]
source = "registry"
protocol = "http"
listen = "127.0.0.1:%d"
`, srv.Endpoint, n.include, n.args("-t", "-q"), n.args("-s", "reload"), n.port)))
	waitInfo(t, bal, "both members rendered", func(i api.Info) bool {
		return i.Nginx != nil && i.Nginx.OK && i.Nginx.Servers == 2 && i.Nginx.Down == 0
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", n.port)
	if seen := portsBehind(t, url, 2); len(seen) != 2 {
		t.Fatalf("nginx reached ports %v, want both", seen)
	}
	if w := mustInfo(t, bal).Watch; w == nil || w.State != "ok" || !w.Synced || w.Members != 2 {
		t.Fatalf("info.Watch %+v", w)
	}

	if _, err := app.Action(context.Background(), "stop", api.ActionRequest{Patterns: []string{"web_0"}}); err != nil {
		t.Fatal(err)
	}
	waitInfo(t, bal, "the stopped process gone", func(i api.Info) bool { return i.Nginx.OK && i.Nginx.Servers == 1 && i.Nginx.Down == 0 })
	rendered := func() string {
		b, err := os.ReadFile(n.include)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := fmt.Sprintf("server 127.0.0.1:%d;  # web:web_1", base+1)
	if r := rendered(); !strings.Contains(r, want) || strings.Contains(r, fmt.Sprintf("127.0.0.1:%d;", base)) {
		t.Fatalf("rendered:\n%s\nwant only %s", r, want)
	}

	srv.Stop(t)
	waitWarning(t, bal, "registry watch: etcd unreachable since")
	// A rendering while etcd is down (a reload asks for one) keeps the
	// member last known: nginx takes the file, one server in it.
	before := time.Now()
	if _, err := bal.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	st := waitInfo(t, bal, "a rendering while etcd is down", func(i api.Info) bool { return i.Nginx.LastAttempt.After(before) }).Nginx
	if r := rendered(); !st.OK || st.Servers != 1 || !strings.Contains(r, want) {
		t.Fatalf("etcd down: nginx %+v, rendered:\n%s\nwant the member last known", st, r)
	}
	srv.Restart(t)
	waitWarning(t, bal, "")

	if _, err := app.Action(context.Background(), "stop", api.ActionRequest{Patterns: []string{"web_1"}}); err != nil {
		t.Fatal(err)
	}
	waitWarning(t, bal, "registry watch: upstream web has no members in the registry: its 1 servers last known stay rendered")
	waitInfo(t, bal, "the watch without members", func(i api.Info) bool { return i.Watch.Members == 0 })
	// Last known marked down: it drained before it stopped.
	if r, kept := rendered(), fmt.Sprintf("server 127.0.0.1:%d down;  # web:web_1", base+1); !strings.Contains(r, kept) {
		t.Fatalf("no member left: rendered:\n%s\nwant the server last known: %s", r, kept)
	}
	if st := mustInfo(t, bal).Nginx; !st.OK || st.Servers != 1 {
		t.Fatalf("nginx %+v", st)
	}
}

// A member marked down, then up again, reaches HAProxy through its runtime
// API (drain, ready) without a reload; a new member reloads it.
func TestHAProxyStateChangesWithoutReload(t *testing.T) {
	srv := etcdtest.Start(t)
	out := filepath.Join(t.TempDir(), "gosup.cfg")
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h := haproxytest.Start(t, out)
	member := func(host string, state string) registry.Member {
		return registry.Member{Upstream: "web", Host: host, Port: 9000, Weight: 1, State: state, Program: "web",
			Process: "web:web_00", Pid: 1000, StartTime: time.Now()}
	}
	putMember(t, srv, member("127.0.0.2", registry.StateUp))
	putMember(t, srv, member("127.0.0.3", registry.StateUp))
	sup, bal, _ := startSupervisor(t, writeConfig(t, fmt.Sprintf(`
[registry]
etcd = [%q]

[haproxy]
output = %q
test_command = %q
reload_command = %q
socket = %q

[haproxy.backend.web]
bind = "127.0.0.1:%d"
`, srv.Endpoint, out, h.TestCommand(out), h.ReloadCommand(), h.Socket, freePort(t))))
	info := waitInfo(t, bal, "both members loaded", func(i api.Info) bool { return i.HAProxy != nil && i.HAProxy.OK && i.HAProxy.Servers == 2 })
	reloads := info.HAProxy.Reloads
	rt := h.Runtime()
	server := func(name string) haproxy.ServerState {
		sts, err := rt.ServerStates(context.Background(), "web")
		if err != nil {
			return haproxy.ServerState{}
		}
		for _, st := range sts {
			if st.Server == name {
				return st
			}
		}
		return haproxy.ServerState{}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %+v", what, mustInfo(t, bal).HAProxy)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("HAProxy to have both", func() bool { return server("127.0.0.2:9000").Server != "" && server("127.0.0.3:9000").Server != "" })

	// A reload would start it in maintenance (disabled): drain is the
	// runtime API's.
	putMember(t, srv, member("127.0.0.2", registry.StateDown))
	waitFor("127.0.0.2:9000 draining", func() bool { return server("127.0.0.2:9000").Draining() })
	putMember(t, srv, member("127.0.0.2", registry.StateUp))
	waitFor("127.0.0.2:9000 ready again", func() bool {
		st := server("127.0.0.2:9000")
		return st.Server != "" && !st.Draining() && !st.Maint()
	})
	waitInfo(t, bal, "the file as HAProxy runs it", func(i api.Info) bool { return i.HAProxy.OK && i.HAProxy.Down == 0 })
	if r := mustInfo(t, bal).HAProxy.Reloads; r != reloads {
		t.Fatalf("%d reloads for state changes alone, want none", r-reloads)
	}
	if m := sup.metricsSnapshot(); !m.HAProxy || m.HAProxyRuntime != [2]int64{2, 0} || m.HAProxyReloads[0] != int64(reloads) ||
		!m.Watch || !m.WatchReachable || m.WatchMembers != 2 || m.HAProxyServers != 2 {
		t.Fatalf("metrics: %+v", m)
	}

	putMember(t, srv, member("127.0.0.4", registry.StateUp))
	waitInfo(t, bal, "the new member loaded", func(i api.Info) bool { return i.HAProxy.OK && i.HAProxy.Servers == 3 && i.HAProxy.Reloads > reloads })
	waitFor("HAProxy to have the new member", func() bool { return server("127.0.0.4:9000").Server != "" })
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// nginx with a local upstream and a registry-sourced one, etcd down since
// the start: nothing can be rendered (the registry upstream's servers are
// not known, and an empty one would take its traffic down), and a drain
// of a local process says nginx did not confirm it instead of taking it
// as confirmed.
func TestMixedUpstreamsEtcdDownDrainNotConfirmed(t *testing.T) {
	dead := freePortRange(t, 1) // nothing listens: etcd unreachable
	base := freePortRange(t, 2)
	out := t.TempDir() + "/upstreams.conf"
	cl, _ := startDaemon(t, writeConfig(t, appHost(fmt.Sprintf("http://127.0.0.1:%d", dead), base, fmt.Sprintf(`
[nginx]
output = %q
test_command = ""
reload_command = ""

[nginx.upstream.web]
protocol = "http"

[nginx.upstream.fleet]
source = "registry"
protocol = "http"
`, out))))
	waitAll(t, cl, "RUNNING")
	waitInfo(t, cl, "the watch unreachable", func(i api.Info) bool { return i.Watch != nil && i.Watch.State == "unreachable" })
	var draining []string
	if _, err := cl.ActionStream(context.Background(), "stop", api.ActionRequest{Patterns: []string{"web_0"}}, func(ev api.Event) {
		if ev.Step == api.StepDraining {
			draining = append(draining, ev.Message)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(draining) != 1 || !strings.Contains(draining[0], "nginx did not confirm: "+out+" not updated: the registry's members were never read") {
		t.Fatalf("draining: %q", draining)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("%s written while the registry's members are unknown: %v", out, err)
	}
}

// A balancer host with only [haproxy] (no programs, no [nginx]): a reload
// that changes a backend's settings must render them.
func TestHAProxyOnlyReloadRenders(t *testing.T) {
	srv := etcdtest.Start(t)
	out := filepath.Join(t.TempDir(), "gosup.cfg")
	putMember(t, srv, registry.Member{Upstream: "web", Host: "127.0.0.2", Port: 9000, Weight: 1, State: registry.StateUp,
		Program: "web", Process: "web:web_00", Pid: 1000, StartTime: time.Now()})
	body := func(interval string) string {
		return fmt.Sprintf(`
[registry]
etcd = [%q]

[haproxy]
output = %q
test_command = ""
reload_command = ""

[haproxy.backend.web]
check_interval = %q
`, srv.Endpoint, out, interval)
	}
	file := writeConfig(t, body("2s"))
	bal, _ := startDaemon(t, file)
	waitInfo(t, bal, "the member rendered", func(i api.Info) bool { return i.HAProxy != nil && i.HAProxy.OK && i.HAProxy.Servers == 1 })
	rewriteConfig(t, file, body("3s"))
	if _, err := bal.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		if strings.Contains(string(b), "inter 3000ms") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reloaded with check_interval 3s; the file still says:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nginx with a local upstream and a registry-sourced one that has no
// members yet (etcd up): the local upstream must still reach nginx; an
// empty upstream block makes nginx -t refuse the whole file.
func TestMixedUpstreamsRegistryEmpty(t *testing.T) {
	srv := etcdtest.Start(t)
	n := startNginx(t)
	base := freePortRange(t, 2)
	cl, _ := startDaemon(t, writeConfig(t, appHost(srv.Endpoint, base, fmt.Sprintf(`
[nginx]
output = %q
test_command = %q
reload_command = %q

[nginx.upstream.web]
protocol = "http"
listen = "127.0.0.1:%d"

[nginx.upstream.fleet]
source = "registry"
protocol = "http"
`, n.include, n.args("-t", "-q"), n.args("-s", "reload"), n.port))))
	waitAll(t, cl, "RUNNING")
	waitInfo(t, cl, "the watch synced", func(i api.Info) bool { return i.Watch != nil && i.Watch.Synced })
	info := waitInfo(t, cl, "an nginx outcome", func(i api.Info) bool { return i.Nginx != nil && !i.Nginx.LastAttempt.IsZero() })
	if !info.Nginx.OK {
		t.Fatalf("local upstream web not loaded: %+v", info.Nginx)
	}
}
