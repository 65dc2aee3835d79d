package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The cost of a CLI call as an operator pays it: a fresh process of a real
// gosup binary, its start-up (package initialisation, Bubble Tea's tables
// included) and its work. The binary is built for the benchmark, or is
// $GOSUP_BENCH_BIN, to compare another build on the same machine. Run:
//
//	go test -run '^$' -bench CLI -benchtime 100x -count 3 ./cmd/gosup/

func benchBinary(b *testing.B) string {
	if bin := os.Getenv("GOSUP_BENCH_BIN"); bin != "" {
		return bin
	}
	return buildGosup(b, b.TempDir(), "bench")
}

// BenchmarkCLIVersion is `gosup version`: start-up and a line of output.
func BenchmarkCLIVersion(b *testing.B) {
	bin := benchBinary(b)
	b.ResetTimer()
	for b.Loop() {
		out, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.HasPrefix(string(out), "gosup ") {
			b.Fatalf("gosup version: %q, %v", out, err)
		}
	}
}

// BenchmarkCLIStatus4 is `gosup ctl status` against a daemon (the same
// binary) with 4 processes: start-up, one request over the socket, the
// table.
func BenchmarkCLIStatus4(b *testing.B) {
	bin := benchBinary(b)
	d := startUpgradeDaemon(b, bin, 4)
	d.waitRunning(b, 4)
	b.ResetTimer()
	for b.Loop() {
		out, err := exec.Command(bin, "--socket", d.cl.Socket, "ctl", "status").Output()
		if err != nil || strings.Count(string(out), " RUNNING ") != 4 {
			b.Fatalf("gosup ctl status: %q, %v", out, err)
		}
	}
}
