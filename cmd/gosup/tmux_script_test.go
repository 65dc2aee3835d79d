package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// The scripts' commands to drive a terminal program in tmux, as a person
// at a terminal would: each script has its own tmux server on
// $WORK/tmux.sock (never another tmux server), killed when the script
// ends, or by itself tmuxLifetime after it started if the script never
// ends (go test's -timeout kills the test binary, whose deferred kill
// then never runs: the panes would live on).

// tmuxCmds are the commands, for TestScripts.
func tmuxCmds() map[string]func(*testscript.TestScript, bool, []string) {
	return map[string]func(*testscript.TestScript, bool, []string){
		"tmuxstart": cmdTmuxstart,
		"keys":      cmdKeys,
		"screen":    cmdScreen,
		"topsorted": cmdTopsorted,
		"freeze":    cmdFreeze,
		"thaw":      cmdThaw,
	}
}

// tmuxConf: no status line (the pane is the whole terminal), panes stay
// after their command exits (their last screen can be read), sh runs the
// commands.
const tmuxConf = `set -g status off
set -g remain-on-exit on
set -g default-shell /bin/sh
set -g default-terminal screen
`

// tmuxLifetime bounds a script's tmux server: far longer than any script
// takes, even on a loaded machine.
const tmuxLifetime = 15 * time.Minute

// tmux runs a tmux command on the script's private server.
func tmux(ts *testscript.TestScript, args ...string) (string, error) {
	work := ts.Getenv("WORK")
	conf := filepath.Join(work, ".tmux.conf")
	if _, err := os.Stat(conf); err != nil {
		if err := os.WriteFile(conf, []byte(tmuxConf), 0o644); err != nil {
			return "", err
		}
	}
	cmd := exec.Command("tmux", append([]string{"-S", filepath.Join(work, "tmux.sock"), "-f", conf}, args...)...)
	cmd.Dir = work
	// The server, started by the first command, passes its environment
	// to the panes: the script's, for its gosup and its ports.
	env := []string{"TERM=xterm-256color"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "TMUX" && k != "TERM" {
			env = append(env, kv)
		}
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "WORK", "GORACE", "GOSUP_SOCKET"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	for i := range portBlock {
		env = append(env, fmt.Sprintf("PORT%d=%s", i, ts.Getenv("PORT"+strconv.Itoa(i))))
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tmux %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// cmdTmuxstart runs the shell command CMD in $WORK in a new detached tmux
// session NAME of WxH cells (80x24 by default), on the script's own tmux
// server, which is killed when the script ends.
//
//	tmuxstart [-x W] [-y H] NAME CMD
func cmdTmuxstart(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! tmuxstart")
	}
	w, h := "80", "24"
	for len(args) > 2 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-x":
			w = args[1]
		case "-y":
			h = args[1]
		default:
			ts.Fatalf("tmuxstart: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: tmuxstart [-x W] [-y H] NAME CMD")
	}
	ts.Defer(func() { tmux(ts, "kill-server") }) // gone already after an earlier one: fine
	if _, err := tmux(ts, "has-session", "-t", "watchdog"); err != nil {
		// The server's first session: it kills the server (every pane,
		// and what runs in them) after tmuxLifetime. tmux sets $TMUX in
		// the pane, which names this server.
		_, err := tmux(ts, "new-session", "-d", "-s", "watchdog", fmt.Sprintf("sleep %d; exec tmux kill-server", int(tmuxLifetime.Seconds())))
		ts.Check(err)
	}
	_, err := tmux(ts, "new-session", "-d", "-s", args[0], "-x", w, "-y", h, "-c", ts.Getenv("WORK"), args[1])
	ts.Check(err)
}

// cmdKeys sends keys to the tmux session NAME (tmux's key names: q, C-c,
// Down, NPage...).
//
//	keys NAME KEY...
func cmdKeys(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: keys NAME KEY...")
	}
	_, err := tmux(ts, append([]string{"send-keys", "-t", args[0]}, args[1:]...)...)
	ts.Check(err)
}

// cmdScreen polls the screen of the tmux session NAME until one capture
// matches every REGEXP (multi-line mode) and none of the REGEXPs after
// -none. With -set VAR, VAR is set to the first REGEXP's first group in
// that capture. It fails after -t (default 30s), showing the last screen.
//
//	screen [-t 30s] [-set VAR] NAME REGEXP... [-none REGEXP...]
func cmdScreen(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! screen (wait for what should show instead)")
	}
	timeout, setVar := 30*time.Second, ""
	for len(args) > 2 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-t":
			d, err := time.ParseDuration(args[1])
			ts.Check(err)
			timeout = d
		case "-set":
			setVar = args[1]
		default:
			ts.Fatalf("screen: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: screen [-t D] [-set VAR] NAME REGEXP... [-none REGEXP...]")
	}
	name := args[0]
	var want, none []*regexp.Regexp
	list := &want
	for _, a := range args[1:] {
		if a == "-none" {
			list = &none
			continue
		}
		re, err := regexp.Compile("(?m)" + a)
		ts.Check(err)
		*list = append(*list, re)
	}
	if len(want) == 0 {
		ts.Fatalf("screen: no REGEXP to wait for")
	}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		screen, err := tmux(ts, "capture-pane", "-p", "-t", name)
		if err == nil {
			last = screen
			if matchScreen(screen, want, none) {
				if setVar != "" {
					m := want[0].FindStringSubmatch(screen)
					if len(m) < 2 {
						ts.Fatalf("screen -set %s: %s has no group", setVar, want[0])
					}
					ts.Setenv(setVar, m[1])
				}
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("screen %s: no capture matched %q (none of %q) in %s (last error: %v); last screen:\n%s", name, want, none, timeout, err, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func matchScreen(screen string, want, none []*regexp.Regexp) bool {
	for _, re := range want {
		if !re.MatchString(screen) {
			return false
		}
	}
	for _, re := range none {
		if re.MatchString(screen) {
			return false
		}
	}
	return true
}

// cmdTopsorted polls the screen of the tmux session NAME, which runs gosup
// ctl top, until it shows at least N rows ordered by COLUMN (CPU% or MEM,
// descending; NAME, ascending) under the header "sort: KEY". It fails
// after 30s, showing the last screen.
//
//	topsorted NAME N CPU%|MEM|NAME
func cmdTopsorted(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: topsorted NAME N CPU%%|MEM|NAME")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	col, key := map[string]int{"NAME": 0, "CPU%": 4, "MEM": 5}, map[string]string{"NAME": "name", "CPU%": "cpu", "MEM": "mem"}
	i, ok := col[args[2]]
	if !ok {
		ts.Fatalf("topsorted: unknown column %s", args[2])
	}
	header := regexp.MustCompile(`(?m)^gosup pid [0-9]+ .*\| sort: ` + key[args[2]] + ` \|`)
	deadline := time.Now().Add(30 * time.Second)
	var last, why string
	for {
		screen, err := tmux(ts, "capture-pane", "-p", "-t", args[0])
		if err == nil {
			last = screen
			if why = topOrder(screen, header, i, n); why == "" {
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("topsorted %s: %s (error %v); last screen:\n%s", args[2], why, err, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// topOrder says why screen does not show at least n rows ordered by
// column col under header ("" when it does).
func topOrder(screen string, header *regexp.Regexp, col, n int) string {
	if !header.MatchString(screen) {
		return "no header " + header.String()
	}
	lines := strings.Split(screen, "\n")
	var rows [][]string
	for i, l := range lines {
		if !strings.HasPrefix(l, "NAME ") {
			continue
		}
		for _, r := range lines[i+1:] {
			f := strings.Fields(r)
			if len(f) < 8 {
				break
			}
			rows = append(rows, f)
		}
		break
	}
	if len(rows) < n {
		return fmt.Sprintf("%d rows, want %d", len(rows), n)
	}
	for i := 1; i < len(rows); i++ {
		a, b := rows[i-1][col], rows[i][col]
		if col == 0 {
			if a > b {
				return fmt.Sprintf("%s before %s", a, b)
			}
			continue
		}
		if topValue(a) < topValue(b) {
			return fmt.Sprintf("%s %s before %s %s", rows[i-1][0], a, rows[i][0], b)
		}
	}
	return ""
}

// topValue reads a CPU% or MEM cell: 12.5, 512K, 3.0M+, 1.25G; - is -1.
func topValue(s string) float64 {
	s = strings.TrimSuffix(s, "+")
	unit := 1.0
	switch {
	case s == "-":
		return -1
	case strings.HasSuffix(s, "K"):
		unit = 1 << 10
	case strings.HasSuffix(s, "M"):
		unit = 1 << 20
	case strings.HasSuffix(s, "G"):
		unit = 1 << 30
	}
	v, err := strconv.ParseFloat(strings.TrimRight(s, "KMG"), 64)
	if err != nil {
		return -2
	}
	return v * unit
}

// cmdFreeze stops the process PID with SIGSTOP (a daemon that hangs);
// it is sent SIGCONT when the script ends, however it ends (thaw before
// then), so that the script's cleanup never waits on a stopped process.
//
//	freeze PID
func cmdFreeze(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeze PID")
	}
	pid, err := strconv.Atoi(args[0])
	ts.Check(err)
	if pid <= 1 {
		ts.Fatalf("freeze: pid %d", pid)
	}
	ts.Defer(func() { syscall.Kill(pid, syscall.SIGCONT) })
	ts.Check(syscall.Kill(pid, syscall.SIGSTOP))
}

// cmdThaw sends SIGCONT to the process PID.
//
//	thaw PID
func cmdThaw(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: thaw PID")
	}
	pid, err := strconv.Atoi(args[0])
	ts.Check(err)
	ts.Check(syscall.Kill(pid, syscall.SIGCONT))
}
