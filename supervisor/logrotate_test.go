package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const chattyConfig = `
[program.chatty]
command = "@HELPER@ chatty"
startsecs = 0
stdout_logfile = "log/chatty.log"
stdout_logfile_maxbytes = %q
stdout_logfile_backups = 5
stderr_logfile = "none"
` + helperEnv + "\n"

// Lowering stdout_logfile_maxbytes by reload below the size of the log a
// child is writing is an in-place change: the daemon and the child live on
// (same pid, no respawn), the oversize file is rotated away, and rotation
// goes on at the new limit. From 0 (no rotation, for an external rotator)
// too: every log file goes through the copier, so only the limit changes.
func TestReloadLowersLogMaxBytesUnderChattyChild(t *testing.T) {
	for _, from := range []string{"10MB", "0"} {
		t.Run("from "+from, func(t *testing.T) { reloadLowersLogMaxBytes(t, from) })
	}
}

func reloadLowersLogMaxBytes(t *testing.T, from string) {
	file := writeConfig(t, fmt.Sprintf(chattyConfig, from))
	_, cl, _ := startSupervisor(t, file)
	ctx := context.Background()
	before := waitAll(t, cl, "RUNNING", "chatty")[0]
	log := before.Stdout
	if !filepath.IsAbs(log) {
		t.Fatalf("stdout log %q is not absolute", log)
	}
	waitLog(t, "the log to pass 16 KiB", func() bool {
		fi, err := os.Stat(log)
		return err == nil && fi.Size() >= 16<<10
	})

	const limit = 4 << 10
	rewriteConfig(t, file, fmt.Sprintf(chattyConfig, "4KB"))
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if c := findChange(t, plan, "chatty"); len(c.Restart) > 0 || len(c.InPlace) != 1 || c.InPlace[0] != "stdout_logfile_maxbytes" {
		t.Fatalf("want stdout_logfile_maxbytes changed in place, have %+v", c)
	}
	for _, r := range plan.Results {
		if !r.OK {
			t.Errorf("result: %+v", r)
		}
	}

	// Two files completed at the new limit: the one started after the
	// oversize file was rotated away, and the next.
	waitLog(t, "two files rotated at 4 KiB", func() bool {
		fi, err := os.Stat(log + ".2")
		return err == nil && fi.Size() > 0 && fi.Size() <= limit
	})
	for _, name := range []string{log + ".2", log + ".1"} {
		checkChattyFile(t, name, readRotated(t, name), limit)
	}
	if b := readRotated(t, log); len(b) >= limit {
		t.Errorf("%s: %d bytes, want less than %d", log, len(b), limit)
	}

	after, err := cl.Status(ctx, "chatty")
	if err != nil {
		t.Fatal(err)
	}
	if a := after[0]; a.State != "RUNNING" || a.Pid != before.Pid || a.Restarts != before.Restarts {
		t.Errorf("the child did not live through the reload: before %+v, after %+v", before, a)
	}
}

// checkChattyFile checks a log file rotated at limit from the chatty
// helper: whole 64-byte lines, numbered consecutively, as many as fit.
func checkChattyFile(t *testing.T, name string, b []byte, limit int) {
	t.Helper()
	if len(b) > limit || len(b) <= limit-64 || b[len(b)-1] != '\n' {
		t.Errorf("%s: %d bytes; want whole lines filling %d bytes less at most one line", name, len(b), limit)
		return
	}
	prev := -1
	for i, line := range bytes.Split(b[:len(b)-1], []byte{'\n'}) {
		if len(line) != 63 || !bytes.HasPrefix(line, []byte("line ")) {
			t.Errorf("%s: line %d is %q", name, i+1, line)
			return
		}
		n, err := strconv.Atoi(string(line[5:13]))
		if err != nil || (prev >= 0 && n != prev+1) {
			t.Errorf("%s: line %d is number %d after %d", name, i+1, n, prev)
			return
		}
		prev = n
	}
}

// readRotated reads a file of a log that is rotating: a name is missing
// for a moment while the files move up by one.
func readRotated(t *testing.T, name string) []byte {
	t.Helper()
	var b []byte
	waitLog(t, name, func() bool {
		var err error
		b, err = os.ReadFile(name)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return err == nil
	})
	return b
}

// waitLog polls cond for up to 30 s (the machine may be slow).
func waitLog(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
