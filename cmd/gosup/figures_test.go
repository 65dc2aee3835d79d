package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/supervisor/api"
)

// figChild is the figchild command of the scripts: a supervised child
// whose CPU and memory are known.
//
//	figchild burn               spin on one core
//	figchild idle               do nothing
//	figchild hold MB            hold MB MiB of resident memory
//	figchild hold-once MB FLAG  hold MB MiB if first to create FLAG, else nothing
//	figchild fork MB            run `figchild hold MB` as a child, and idle
func figChild(args []string) int {
	if len(args) == 0 {
		return 2
	}
	switch args[0] {
	case "burn":
		for n := 0; ; n++ {
			_ = n
		}
	case "idle":
	case "hold":
		hold(args[1])
	case "hold-once":
		f, err := os.OpenFile(args[2], os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
			hold(args[1])
		}
	case "fork":
		cmd := exec.Command(os.Args[0], "hold", args[1])
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	default:
		return 2
	}
	fmt.Println("figchild", args[0], "pid", os.Getpid(), "ready")
	select {}
}

// hold maps mb MiB of anonymous memory populated by the kernel: resident
// at once.
func hold(mb string) {
	n, err := strconv.Atoi(mb)
	if err != nil {
		panic(err)
	}
	if _, err := unix.Mmap(-1, 0, n<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		panic(err)
	}
}

// cmdFigures runs `gosup ctl status --json NAME` and checks that every
// condition holds of the process; with -wait D it runs it again until they
// do, for up to D. A condition is FIELD OP VALUE with FIELD one of pid,
// restarts, cpu_percent, rss_bytes, tree_rss_bytes, OP one of < <= > >=
// == !=, and VALUE a number (with a K, M or G suffix: KiB, MiB, GiB) or
// another field. The last status stays in stdout.
//
//	figures [-wait D] NAME COND...
func cmdFigures(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! figures")
	}
	var wait time.Duration
	if len(args) > 1 && args[0] == "-wait" {
		var err error
		wait, err = time.ParseDuration(args[1])
		ts.Check(err)
		args = args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: figures [-wait D] NAME COND...")
	}
	name, conds := args[0], args[1:]
	deadline := time.Now().Add(wait)
	for {
		ts.Check(ts.Exec("gosup", "ctl", "status", "--json", name))
		var st []api.ProcStatus
		ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &st))
		if len(st) != 1 {
			ts.Fatalf("figures: %d processes match %s", len(st), name)
		}
		failed := ""
		for _, c := range conds {
			ok, err := figureHolds(st[0], c)
			ts.Check(err)
			if !ok {
				failed = c
				break
			}
		}
		if failed == "" {
			return
		}
		if time.Now().After(deadline) {
			p := st[0]
			ts.Fatalf("figures: %s: %s does not hold (pid %d, restarts %d, cpu_percent %.1f over %.1f s, rss_bytes %d, tree_rss_bytes %d) after %s",
				name, failed, p.Pid, p.Restarts, p.CPUPercent, p.CPUWindowS, p.RSSBytes, p.TreeRSSBytes, wait)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func figureHolds(p api.ProcStatus, cond string) (bool, error) {
	for _, op := range []string{"<=", ">=", "==", "!=", "<", ">"} {
		l, r, ok := strings.Cut(cond, op)
		if !ok {
			continue
		}
		a, err := figure(p, l)
		if err != nil {
			return false, err
		}
		b, err := figure(p, r)
		if err != nil {
			return false, err
		}
		switch op {
		case "<=":
			return a <= b, nil
		case ">=":
			return a >= b, nil
		case "==":
			return a == b, nil
		case "!=":
			return a != b, nil
		case "<":
			return a < b, nil
		default:
			return a > b, nil
		}
	}
	return false, fmt.Errorf("condition %q: no operator", cond)
}

func figure(p api.ProcStatus, s string) (float64, error) {
	switch s {
	case "pid":
		return float64(p.Pid), nil
	case "restarts":
		return float64(p.Restarts), nil
	case "cpu_percent":
		return p.CPUPercent, nil
	case "cpu_window_s":
		return p.CPUWindowS, nil
	case "sampled":
		if p.Sampled {
			return 1, nil
		}
		return 0, nil
	case "rss_bytes":
		return float64(p.RSSBytes), nil
	case "tree_rss_bytes":
		return float64(p.TreeRSSBytes), nil
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: not a field or a number", s)
	}
	return f * mult, nil
}

// The status table's CPU and MEM: "-" without a pid (or a sample), CPU
// "-" for a process younger than the shortest window, 0 shown as 0 (a
// zombie sampled at RSS 0), the tree only where it is larger than the
// process, GiB from 1 GiB.
func TestPrintStatusFigures(t *testing.T) {
	var b strings.Builder
	printStatus(&b, []api.ProcStatus{
		{Name: "a:a", State: "RUNNING", Pid: 10, Sampled: true, CPUWindowS: 2, CPUPercent: 0.04, RSSBytes: 12<<20 + 512<<10},
		{Name: "b:b", State: "RUNNING", Pid: 11, Sampled: true, CPUWindowS: 2, CPUPercent: 153.25, RSSBytes: 3 << 30, TreeRSSBytes: 5 << 30},
		{Name: "c:c", State: "RUNNING", Pid: 12, Sampled: true, CPUWindowS: 1.5, CPUPercent: 1, RSSBytes: 1 << 20, TreeRSSBytes: 1 << 20},
		{Name: "d:d", State: "EXITED", Description: "not started"},
		{Name: "e:e", State: "STOPPING", Pid: 13, Sampled: true, CPUWindowS: 2.5, CPUPercent: 3},
		{Name: "f:f", State: "STARTING", Pid: 14, Sampled: true, RSSBytes: 2 << 20},
		{Name: "g:g", State: "RUNNING", Pid: 15},
	})
	want := []string{
		"NAME  STATE     PID  PORT  UPTIME   RESTARTS  CPU     MEM                 INFO",
		"a:a   RUNNING   10   -     0:00:00  0         0.0%    12.5M               ",
		"b:b   RUNNING   11   -     0:00:00  0         153.2%  3.00G (tree 5.00G)  ",
		"c:c   RUNNING   12   -     0:00:00  0         1.0%    1.0M                ",
		"d:d   EXITED    -    -     -        0         -       -                   not started",
		"e:e   STOPPING  13   -     0:00:00  0         3.0%    0.0M                ",
		"f:f   STARTING  14   -     0:00:00  0         -       2.0M                ",
		"g:g   RUNNING   15   -     0:00:00  0         -       -                   ",
	}
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if strings.TrimRight(g, " ") != strings.TrimRight(w, " ") {
			t.Errorf("line %d:\n got %q\nwant %q", i, g, w)
		}
	}
}
