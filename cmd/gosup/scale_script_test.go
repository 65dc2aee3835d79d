package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// scaleCmds are the commands of scale_1000.txtar.
func scaleCmds() map[string]func(*testscript.TestScript, bool, []string) {
	return map[string]func(*testscript.TestScript, bool, []string){
		"statuspids": cmdStatuspids,
		"procsgone":  cmdProcsgone,
	}
}

var statusRow = regexp.MustCompile(`^(\S+)\s+(\S+)\s+(\d+|-)\s`)

// cmdStatuspids reads `gosup ctl status`'s text from the last command's
// stdout: it must list N processes, each RUNNING with a pid of its own that
// runs one of the COMMANDs (its /proc/PID/exe). The pids go to FILE, one a
// line.
//
//	statuspids N FILE COMMAND...
func cmdStatuspids(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: statuspids N FILE COMMAND...")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	var commands []string
	for _, c := range args[2:] {
		commands = append(commands, ts.MkAbs(c))
	}
	lines := strings.Split(strings.TrimRight(ts.ReadFile("stdout"), "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "NAME ") {
		ts.Fatalf("no status header: %q", lines[0])
	}
	seen := map[int]string{}
	var pids bytes.Buffer
	for _, line := range lines[1:] {
		m := statusRow.FindStringSubmatch(line)
		if m == nil || m[2] != "RUNNING" {
			ts.Fatalf("not a RUNNING process: %q", line)
		}
		pid, err := strconv.Atoi(m[3])
		if err != nil {
			ts.Fatalf("no pid: %q", line)
		}
		if other, ok := seen[pid]; ok {
			ts.Fatalf("%s and %s have the same pid %d", other, m[1], pid)
		}
		seen[pid] = m[1]
		if exe, err := os.Readlink("/proc/" + m[3] + "/exe"); err != nil || !slices.Contains(commands, exe) {
			ts.Fatalf("%s: pid %d runs %q (%v), not %s", m[1], pid, exe, err, strings.Join(commands, " or "))
		}
		pids.WriteString(m[3] + "\n")
	}
	if len(seen) != want {
		ts.Fatalf("status lists %d processes, want %d", len(seen), want)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), pids.Bytes(), 0o644))
}

// cmdProcsgone checks that none of the pids in FILE runs COMMAND any
// more, zombies included, and that no process at all does (none escaped
// the list: no orphan left behind).
//
//	procsgone FILE COMMAND
func cmdProcsgone(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: procsgone FILE COMMAND")
	}
	command := ts.MkAbs(args[1])
	// A zombie has no exe; its cmdline is empty too: its stat names it.
	runs := func(pid string) bool {
		if exe, err := os.Readlink("/proc/" + pid + "/exe"); err == nil {
			return exe == command
		}
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		return err == nil && bytes.Contains(stat, []byte("("+filepath.Base(command)+")"))
	}
	n := 0
	for pid := range strings.FieldsSeq(ts.ReadFile(args[0])) {
		if runs(pid) {
			ts.Fatalf("process %s still runs %s", pid, command)
		}
		n++
	}
	ents, err := os.ReadDir("/proc")
	ts.Check(err)
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil && runs(e.Name()) {
			ts.Fatalf("process %s runs %s, and was not in %s", e.Name(), command, args[0])
		}
	}
	ts.Logf("%d processes gone, none left", n)
}
