package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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

// BenchmarkCLIStatus is `gosup ctl status -c FILE` (as ../shared/bench
// runs it), as a table and with --json, against a daemon (the same
// binary) with 100 and 1,000 sleep children: what issue 16 holds to 2×
// (100) and 3× (1,000) a Go hello world's start and exit. Each status is
// followed by a run of a hello world built here the same way, timed
// apart: ms/op is the status, hello-ms the hello world, x-hello the
// ratio; daemon-cpu-ms is the daemon's CPU time (user and system, from
// /proc, its ticks between statuses included) a status, which the load
// of a shared machine moves less than the wall times. Run:
//
//	go test -run '^$' -bench 'CLIStatus$' -benchtime 200x -count 5 ./cmd/gosup/
func BenchmarkCLIStatus(b *testing.B) {
	bin := benchBinary(b)
	hello := helloBinary(b)
	for _, n := range []int{100, 1000} {
		d := startUpgradeDaemon(b, bin, n)
		d.waitRunning(b, n)
		cfg := d.cmd.Args[len(d.cmd.Args)-1] // start -c FILE
		for _, format := range []string{"text", "json"} {
			b.Run(fmt.Sprintf("%d/%s", n, format), func(b *testing.B) {
				args := []string{"ctl", "status", "-c", cfg}
				want := " RUNNING "
				if format == "json" {
					args, want = append(args, "--json"), `"state": "RUNNING"`
				}
				var status, helloTime time.Duration
				cpu0 := processCPU(b, d.cmd.Process.Pid)
				for b.Loop() {
					t0 := time.Now()
					out, err := exec.Command(bin, args...).Output()
					status += time.Since(t0)
					if err != nil || strings.Count(string(out), want) != n {
						b.Fatalf("gosup %s: %d RUNNING, %v", strings.Join(args, " "), strings.Count(string(out), want), err)
					}
					t0 = time.Now()
					if err := exec.Command(hello).Run(); err != nil {
						b.Fatal(err)
					}
					helloTime += time.Since(t0)
				}
				cpu := processCPU(b, d.cmd.Process.Pid) - cpu0
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(float64(status.Microseconds())/1000/float64(b.N), "ms/op")
				b.ReportMetric(float64(helloTime.Microseconds())/1000/float64(b.N), "hello-ms")
				b.ReportMetric(float64(status)/float64(helloTime), "x-hello")
				b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "daemon-cpu-ms")
			})
		}
	}
}

// processCPU is the user and system CPU time pid has used, from
// /proc/PID/stat (in clock ticks: 10ms on Linux, USER_HZ 100).
func processCPU(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command's name, which may hold spaces:
	// state is field 3, utime 14, stime 15.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(fields[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// helloBinary builds a Go hello world (write a line, exit) the way
// buildGosup builds gosup: the floor a Go CLI's start and exit costs.
func helloBinary(b *testing.B) string {
	dir := b.TempDir()
	src := "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := goBuild(dir, "-o", "hello", ".").CombinedOutput(); err != nil {
		b.Fatalf("go build hello: %v\n%s", err, out)
	}
	return filepath.Join(dir, "hello")
}
