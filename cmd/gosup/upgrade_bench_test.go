package main

import (
	"context"
	"testing"
	"time"
)

// BenchmarkUpgrade500 measures `gosup ctl upgrade` with 500 children: from
// the request until the new image answers on the socket (what the CLI
// waits for), the new binary's check included. The daemon is a real gosup
// binary built for the benchmark; the children are sleep processes
// writing to the default (piped, rotated) logs, so each hands over its log
// pipe. Run:
//
//	go test -run '^$' -bench Upgrade500 -benchtime 20x ./cmd/gosup/
func BenchmarkUpgrade500(b *testing.B) {
	const n = 500
	d := startUpgradeDaemon(b, buildGosup(b, b.TempDir(), "bench"), n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ResetTimer()
	for range b.N {
		reply, err := d.cl.Upgrade(ctx, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.cl.WaitUpgrade(ctx, reply); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	info, err := d.cl.Info(ctx)
	if err != nil || info.Upgrades != b.N || info.Pid != d.cmd.Process.Pid {
		b.Fatalf("after %d upgrades: info %+v, err %v (daemon pid %d)", b.N, info, err, d.cmd.Process.Pid)
	}
}
