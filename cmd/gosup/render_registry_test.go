package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/registry"
	"github.com/gosup/gosup/supervisor/registry/etcd/etcdtest"
)

// gosup render on a balancer's configuration reads the registry once and
// renders every host's members: HAProxy's file by default without
// [nginx], nginx's with it, HAProxy's with --haproxy; an upstream without
// members is said on stderr.
func TestRenderReadsTheRegistry(t *testing.T) {
	srv := etcdtest.Start(t)
	for i, host := range []string{"10.0.0.6", "10.0.0.5"} {
		m := registry.Member{Upstream: "web", Host: host, Port: 9000, Weight: 1, State: registry.StateUp, Program: "web",
			Process: "web:web_00", Pid: 100 + i, StartTime: time.Now()}
		if i == 0 {
			m.State = registry.StateDown
		}
		b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
		srv.Post(t, "/v3/kv/put", "", map[string]string{"key": b64(m.Key("/gosup")), "value": b64(string(m.Value()))})
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "gosup.toml")
	body := fmt.Sprintf(`[supervisor]
socket = "s/gosup.sock"
[registry]
etcd = [%q]
[haproxy]
output = "haproxy.cfg"
[haproxy.backend.web]
[haproxy.backend.api]
`, srv.Endpoint)
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	render := func(args ...string) (string, string) {
		t.Helper()
		root := newRootCmd()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(append([]string{"render", "-c", file}, args...))
		if err := root.Execute(); err != nil {
			t.Fatalf("render %v: %v: %s", args, err, errOut.String())
		}
		return out.String(), errOut.String()
	}
	out, errOut := render()
	for _, want := range []string{
		"    server 10.0.0.5:9000 10.0.0.5:9000  # web:web_00\n    server 10.0.0.6:9000 10.0.0.6:9000 disabled  # web:web_00\n",
		"\nbackend api\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render:\n%s\nwant %q", out, want)
		}
	}
	if errOut != "gosup render: upstream api has no members in the registry\n" {
		t.Errorf("stderr %q", errOut)
	}

	body += "[nginx]\noutput = \"up.conf\"\n[nginx.upstream.web]\nsource = \"registry\"\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = render()
	if want := "    server 10.0.0.5:9000;  # web:web_00\n    server 10.0.0.6:9000 down;  # web:web_00\n"; !strings.Contains(out, want) {
		t.Errorf("render with [nginx]:\n%s\nwant %q", out, want)
	}
	if out, _ = render("--haproxy"); !strings.Contains(out, "backend web") {
		t.Errorf("render --haproxy:\n%s", out)
	}

	srv.Stop(t)
	root := newRootCmd()
	var errOut2 bytes.Buffer
	root.SetOut(&bytes.Buffer{})
	root.SetErr(&errOut2)
	root.SetArgs([]string{"render", "-c", file})
	if err := root.Execute(); err == nil {
		t.Fatal("render with etcd down: no error")
	}
}
