package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// balancerConfig writes a balancer host's configuration: no programs, a
// [registry] without host (it publishes nothing), and body.
func balancerConfig(t *testing.T, body string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "gosup.toml")
	cfg := "[supervisor]\nsocket = \"/tmp/gs-bal-test.sock\"\n[registry]\netcd = [\"http://127.0.0.1:2379\"]\n" + body
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// A balancer host with no programs of its own is valid with [haproxy]:
// the defaults are the (leastconn, health checks every 2s, rise
// and fall 2, HAProxy's own test and systemd's reload), and it renders a
// server line per member, disabled when down, weight when above 1.
func TestHAProxyDefaultsAndRender(t *testing.T) {
	cfg, err := Load(balancerConfig(t, "[haproxy]\noutput = \"haproxy/gosup.cfg\"\n[haproxy.backend.web]\nbind = \"127.0.0.1:8080\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.HAProxy
	dir := filepath.Dir(cfg.File)
	out := filepath.Join(dir, "haproxy/gosup.cfg")
	if h == nil || h.Output != out || h.TestCommand != "haproxy -c -f /etc/haproxy/haproxy.cfg -f "+out ||
		h.ReloadCommand != "systemctl reload haproxy" || h.Socket != "" || h.CommandTimeout != 10*time.Second {
		t.Fatalf("haproxy %+v", h)
	}
	b := h.Backend["web"]
	if b.Mode != "http" || b.Balance != "leastconn" || b.CheckPath != "/" || b.CheckInterval != 2*time.Second || b.Rise != 2 || b.Fall != 2 || b.Bind != "127.0.0.1:8080" {
		t.Fatalf("backend %+v", b)
	}
	if got := cfg.RegistryUpstreams(); strings.Join(got, " ") != "web" {
		t.Errorf("registry upstreams %v", got)
	}
	remote := sampleRemote(h.Backend, func(Backend) string { return SourceRegistry })
	remote["web"][0].Weight = 3
	text, err := cfg.RenderHAProxy(remote)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nbackend web\n    mode http\n    balance leastconn\n    option httpchk GET /\n",
		"    default-server check inter 2000ms rise 2 fall 2 observe layer4 error-limit 1 on-error fail-check\n",
		"    option redispatch 1\n",
		"    server 192.0.2.1:9000 192.0.2.1:9000 weight 3  # web:web_00\n",
		"    server 192.0.2.2:9000 192.0.2.2:9000 disabled  # web:web_00\n",
		"\nfrontend web\n    mode http\n    bind 127.0.0.1:8080\n    default_backend web\n",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("rendered:\n%s\nwant %q", text, want)
		}
	}
	if !strings.HasSuffix(string(text), "\n") {
		t.Error("no final line break")
	}
}

// TestHAProxyBad: each mistake names the file, the line and the key.
func TestHAProxyBad(t *testing.T) {
	cases := map[string]string{
		"[haproxy.backend.web]": `haproxy.output: missing`,
		"output = \"x\"":        `haproxy: no backend`,
		"output = \"x\"\n[haproxy.backend.web]\nmode = \"udp\"":                   `:8: haproxy.backend.web.mode: invalid mode "udp"`,
		"output = \"x\"\n[haproxy.backend.web]\nbalance = \"least_conn\"":         `haproxy.backend.web.balance: invalid balance "least_conn"`,
		"output = \"x\"\n[haproxy.backend.web]\ncheck_path = \"health\"":          `haproxy.backend.web.check_path: "health": want a path from /`,
		"output = \"x\"\n[haproxy.backend.web]\nbind = \"1.2.3.4:80 ssl\"":        `haproxy.backend.web.bind: "1.2.3.4:80 ssl" cannot go into HAProxy's configuration`,
		"output = \"x\"\n[haproxy.backend.web]\ncheck_interval = \"10ms\"":        `haproxy.backend.web.check_interval: must be whole milliseconds, at least 100ms`,
		"output = \"x\"\n[haproxy.backend.web]\nfall = 0":                         `haproxy.backend.web.fall: must be from 1 to 100, have 0`,
		"output = \"x\"\n[haproxy.backend.\"w b\"]":                               `backend name "w b" may only contain`,
		"output = \"x\"\n[haproxy.backend.web]\nchek_path = \"/\"":                `haproxy.backend.web.chek_path: unknown key (did you mean "check_path"?)`,
		"output = \"x\"\ntest_command = \"haproxy -c 'x\"\n[haproxy.backend.web]": `haproxy.test_command:`,
	}
	for body, want := range cases {
		_, err := Load(balancerConfig(t, "[haproxy]\n"+body+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\nhave %v\nwant %s", body, err, want)
		}
	}
	long := "/" + strings.Repeat("s", 120) + ".sock"
	for body, want := range map[string]string{
		"[haproxy]\noutput = \"up.conf\"\n[haproxy.backend.web]\n[nginx]\noutput = \"up.conf\"\n[nginx.upstream.web]\nsource = \"registry\"\n": `haproxy.output: ` + filepath.Join("DIR", "up.conf") + ` is [nginx] output too`,
		"[haproxy]\noutput = \"x\"\nsocket = \"" + long + "\"\n[haproxy.backend.web]\n":                                                        `:7: haproxy.socket: ` + long + ` is 126 bytes: a unix socket's path takes at most 107`,
	} {
		file := balancerConfig(t, body)
		want = strings.ReplaceAll(want, "DIR", filepath.Dir(file))
		if _, err := Load(file); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\nhave %v\nwant %s", body, err, want)
		}
	}
	// Without [registry] a backend has nothing to balance.
	file := filepath.Join(t.TempDir(), "gosup.toml")
	os.WriteFile(file, []byte("[haproxy]\noutput = \"x\"\n[haproxy.backend.web]\n"), 0o644)
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), ":3: haproxy.backend.web: its servers come from the registry: add a [registry] table") {
		t.Errorf("without [registry]: %v", err)
	}
}

// [nginx.upstream.NAME] source = "registry" renders every host's members
// (no program of this host need join it); "local" stays the default.
func TestNginxRegistrySource(t *testing.T) {
	cfg, err := Load(balancerConfig(t, "[nginx]\noutput = \"up.conf\"\n[nginx.upstream.web]\nsource = \"registry\"\nprotocol = \"http\"\nlisten = \"127.0.0.1:8080\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if u := cfg.Nginx.Upstream["web"]; u.Source != SourceRegistry || !cfg.Nginx.FromRegistry() {
		t.Fatalf("upstream %+v", u)
	}
	remote := sampleRemote(cfg.Nginx.Upstream, func(u Upstream) string { return u.Source })
	text, err := cfg.RenderNginx(remote)
	if err != nil {
		t.Fatal(err)
	}
	if want := "    server 192.0.2.1:9000;  # web:web_00\n    server 192.0.2.2:9000 down;  # web:web_00\n"; !strings.Contains(string(text), want) {
		t.Errorf("rendered:\n%s\nwant %s", text, want)
	}
	cases := map[string]string{
		"source = \"etcd\"":                          `:8: nginx.upstream.web.source: invalid source "etcd": want local`,
		"source = \"registry\"\nhost = \"10.1.1.1\"": `nginx.upstream.web.host: a registry-sourced upstream's servers are at the addresses their hosts publish`,
		"": `nginx.upstream.web: no program has upstream = "web"`,
	}
	for body, want := range cases {
		_, err := Load(balancerConfig(t, "[nginx]\noutput = \"up.conf\"\n[nginx.upstream.web]\n"+body+"\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\nhave %v\nwant %s", body, err, want)
		}
	}
	// A program of this host in a registry-sourced upstream is published
	// only with [registry] host.
	file := filepath.Join(t.TempDir(), "gosup.toml")
	os.WriteFile(file, []byte("[program.web]\ncommand = \"/bin/true\"\nport_start = 9100\nupstream = \"web\"\n[registry]\netcd = [\"http://127.0.0.1:2379\"]\n[nginx]\noutput = \"up.conf\"\n[nginx.upstream.web]\nsource = \"registry\"\n"), 0o644)
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), `:5: registry.host: missing: program "web" has upstream = "web"`) {
		t.Errorf("without host: %v", err)
	}
}
