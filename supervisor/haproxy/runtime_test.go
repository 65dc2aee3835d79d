package haproxy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/haproxy"
	"github.com/gosup/gosup/supervisor/haproxy/haproxytest"
)

func states(t *testing.T, rt haproxy.Runtime) map[string]haproxy.ServerState {
	t.Helper()
	sts, err := rt.ServerStates(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]haproxy.ServerState{}
	for _, st := range sts {
		out[st.Server] = st
	}
	return out
}

// A server set to drain shows so in HAProxy's own state, and ready undoes
// it; HAProxy's refusal (no such server) is the error, in its words; a
// command that would smuggle a second one is refused before HAProxy.
func TestSetServerState(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "web.cfg")
	os.WriteFile(cfg, []byte(`backend web
    server 127.0.0.2:9000 127.0.0.2:9000
    server 127.0.0.3:9000 127.0.0.3:9000 disabled
`), 0o644)
	h := haproxytest.Start(t, cfg)
	rt := h.Runtime()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := states(t, rt)
	if a, b := st["127.0.0.2:9000"], st["127.0.0.3:9000"]; a.Draining() || a.Maint() || !b.Maint() || a.Backend != "web" || a.Addr != "127.0.0.2" {
		t.Fatalf("at start: %+v", st)
	}
	if err := rt.SetServerState(ctx, "web", "127.0.0.2:9000", haproxy.StateDrain); err != nil {
		t.Fatal(err)
	}
	if err := rt.SetServerState(ctx, "web", "127.0.0.3:9000", haproxy.StateReady); err != nil {
		t.Fatal(err)
	}
	st = states(t, rt)
	if a, b := st["127.0.0.2:9000"], st["127.0.0.3:9000"]; !a.Draining() || b.Maint() || b.Draining() {
		t.Fatalf("after drain and ready: %+v", st)
	}
	err := rt.SetServerState(ctx, "web", "127.0.0.9:9000", haproxy.StateDrain)
	if err == nil || !strings.Contains(err.Error(), "No such server") {
		t.Errorf("no such server: %v", err)
	}
	if _, err := rt.Command(ctx, "show info; shutdown frontend x"); err == nil {
		t.Error("a command with ';' was sent")
	}
	if err := rt.SetServerState(ctx, "web", "a b", haproxy.StateDrain); err == nil {
		t.Error("a server name with a space was sent")
	}
}

// No HAProxy on the socket: an error naming it, at once.
func TestRuntimeWithoutHAProxy(t *testing.T) {
	rt := haproxy.Runtime{Socket: filepath.Join(t.TempDir(), "none.sock")}
	_, err := rt.Command(context.Background(), "show info")
	if err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("%v", err)
	}
}
