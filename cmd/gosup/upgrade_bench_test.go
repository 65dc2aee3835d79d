package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// BenchmarkUpgrade500 measures `gosup ctl upgrade` with 500 children: from
// the request until the new image answers on the socket (what the CLI
// waits for). The daemon is a real gosup binary built for the benchmark;
// the children are sleep processes writing to the default (piped,
// rotated) logs, so each hands over its log pipes. Run:
//
//	go test -run '^$' -bench Upgrade500 -benchtime 20x ./cmd/gosup/
func BenchmarkUpgrade500(b *testing.B) {
	const n = 500
	dir, err := os.MkdirTemp("", "gup")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "gosup")
	build := exec.Command("go", "build", "-o", bin, "github.com/gosup/gosup/cmd/gosup")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "run", "gosup.sock")
	cfg := filepath.Join(dir, "gosup.toml")
	body := fmt.Sprintf(`[supervisor]
socket = %q
logdir = %q
shutdown_timeout = "30s"
[program.sl]
command = "sleep 3600"
numprocs = %d
process_name = "sl_%%(process_num)d"
startsecs = 0
stopsignal = "KILL"
`, sock, filepath.Join(dir, "log"), n)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	daemon := exec.Command(bin, "start", "-c", cfg)
	daemon.Stderr = nil
	if err := daemon.Start(); err != nil {
		b.Fatal(err)
	}
	cl := api.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	defer func() {
		if _, err := cl.Shutdown(ctx); err != nil {
			_ = daemon.Process.Signal(syscall.SIGTERM)
		}
		_ = daemon.Wait()
	}()
	for {
		st, err := cl.Status(ctx)
		running := 0
		for _, p := range st {
			if p.State == "RUNNING" {
				running++
			}
		}
		if err == nil && running == n {
			break
		}
		if ctx.Err() != nil {
			b.Fatalf("%d of %d RUNNING: %v", running, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.ResetTimer()
	for range b.N {
		reply, err := cl.Upgrade(ctx, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cl.WaitUpgrade(ctx, reply); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	info, err := cl.Info(ctx)
	if err != nil || info.Upgrades != b.N || info.Pid != daemon.Process.Pid {
		b.Fatalf("after %d upgrades: info %+v, err %v (daemon pid %d)", b.N, info, err, daemon.Process.Pid)
	}
}
