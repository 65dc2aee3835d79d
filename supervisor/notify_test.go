package supervisor

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// The daemon speaks sd_notify to a real unixgram socket: READY=1 only once
// every autostart process is RUNNING (here after startsecs = 1), STATUS=
// when the picture changes, WATCHDOG=1 at half the watchdog interval, and
// RELOADING=1 (with MONOTONIC_USEC) … READY=1 around a reload, and
// STOPPING=1 on shutdown.
func TestSystemdNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type msg struct {
		text string
		at   time.Time
	}
	msgs := make(chan msg, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			msgs <- msg{string(buf[:n]), time.Now()}
		}
	}()
	body := `
[program.web]
command = "@HELPER@ sleep"
numprocs = 2
process_name = "web_%(process_num)d"
startsecs = 1
` + helperEnv
	file := writeConfig(t, body)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	_, cl, stop := runDaemon(t, cfg, Options{NotifySocket: sock, Watchdog: 200 * time.Millisecond})
	next := func(prefix string) msg {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m := <-msgs:
				if strings.HasPrefix(m.text, prefix) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q from the daemon", prefix)
			}
		}
	}
	ready := next("READY=1")
	if ready.text != "READY=1\nSTATUS=2 running, 0 fatal" {
		t.Errorf("ready message: %q", ready.text)
	}
	if d := ready.at.Sub(start); d < time.Second {
		t.Errorf("READY=1 after %s, before the processes' startsecs", d)
	}
	if _, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{"web:web_1"}}); err != nil {
		t.Fatal(err)
	}
	if m := next("STATUS="); m.text != "STATUS=1 running, 0 fatal, 1 other" {
		t.Errorf("status after a stop: %q", m.text)
	}
	// A reload: RELOADING=1 with the monotonic clock, then READY=1 again.
	rewriteConfig(t, file, strings.Replace(body, "numprocs = 2", "numprocs = 3", 1))
	beforeReload := monotonicUsec()
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	reloading := next("RELOADING=1")
	var usec int64
	if _, err := fmt.Sscanf(reloading.text, "RELOADING=1\nMONOTONIC_USEC=%d\n", &usec); err != nil || usec < beforeReload || usec > monotonicUsec() {
		t.Errorf("reloading message: %q (MONOTONIC_USEC %d, clock before %d)", reloading.text, usec, beforeReload)
	}
	if m := next("READY=1"); m.text != "READY=1\nSTATUS=2 running, 0 fatal, 1 other" {
		t.Errorf("ready after reload: %q", m.text)
	}
	first := next("WATCHDOG=1")
	for range 4 {
		next("WATCHDOG=1")
	}
	if d := time.Since(first.at); d > 800*time.Millisecond {
		t.Errorf("5 watchdog pings took %s; want one every 100ms", d)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if m := next("STOPPING=1"); !strings.HasPrefix(m.text, "STOPPING=1\nSTATUS=stopping") {
		t.Errorf("stopping message: %q", m.text)
	}
}
