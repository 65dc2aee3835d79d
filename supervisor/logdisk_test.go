package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gosup/gosup/procgroup/pathtrust/pathtrusttest"

	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/supervisor/api"
)

// mountTmpfs mounts a tmpfs of the given size (and flags) on dir, which it
// creates; the test's cleanup unmounts it.
func mountTmpfs(t *testing.T, dir string, flags uintptr, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "size="+size+",mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// fillUp writes path until the filesystem has no space left.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

const diskConfig = `
[program.chatty]
command = "@HELPER@ chatty"
startsecs = 0
stdout_logfile = "log/chatty.log"
stdout_logfile_maxbytes = "16KB"
stdout_logfile_backups = 1
stderr_logfile = "none"
` + helperEnv + "\n"

// A log disk that is full or read-only: the child stays RUNNING with its
// pid (its pipe is drained, it never blocks), every byte it writes is
// counted as dropped (per stream, in status, info and the API), the status
// table warns while the log is failing, and the daemon log says so once
// when it starts failing (WARN, with the path and the error) and once
// when it recovers (INFO, with the bytes dropped meanwhile), not per write.
func TestFailingLogDiskIsCountedAndReported(t *testing.T) {
	pathtrusttest.NeedRoot(t)
	cases := []struct {
		name    string
		errText string
		// reopenFails: gosup ctl reopen-logs fails (and says why) while
		// the log is failing.
		reopenFails bool
		fail        func(t *testing.T, logdir string) // before the daemon starts
		heal        func(t *testing.T, logdir string)
	}{
		{
			name:    "full",
			errText: "no space left on device",
			fail: func(t *testing.T, logdir string) {
				mountTmpfs(t, logdir, 0, "256k")
				fillUp(t, filepath.Join(logdir, "filler"))
			},
			heal: func(t *testing.T, logdir string) {
				if err := os.Remove(filepath.Join(logdir, "filler")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:        "read-only",
			errText:     "read-only file system",
			reopenFails: true,
			fail: func(t *testing.T, logdir string) {
				mountTmpfs(t, logdir, unix.MS_RDONLY, "256k")
			},
			heal: func(t *testing.T, logdir string) {
				if err := unix.Mount("", logdir, "", unix.MS_REMOUNT, "size=256k"); err != nil {
					t.Fatalf("remount %s read-write: %v", logdir, err)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, diskConfig)
			logdir := filepath.Join(filepath.Dir(file), "log")
			path := filepath.Join(logdir, "chatty.log")
			tc.fail(t, logdir)
			_, cl, logs := guardedDaemon(t, file, nil)
			ctx := context.Background()
			pid := waitAll(t, cl, "RUNNING", "chatty")[0].Pid

			// 64 KiB of output (a thousand lines) are lost, none
			// written.
			failing := waitStatus(t, cl, "chatty", "64 KiB dropped", func(p api.ProcStatus) bool { return p.LogDroppedBytes >= 64<<10 })
			if failing.State != "RUNNING" || failing.Pid != pid {
				t.Errorf("the child was disturbed by its failing log: %+v (pid was %d)", failing, pid)
			}
			checkFailing(t, failing, path, tc.errText)
			st, warnings, err := cl.StatusWarning(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !containsAll(strings.Join(warnings, "\n"), "chatty:chatty", "stdout", path, tc.errText, "dropped") {
				t.Errorf("ctl status warnings do not name the failing log: %q", warnings)
			}
			if len(st) != 1 {
				t.Fatalf("status: %+v", st)
			}
			info := mustInfo(t, cl)
			if info.LogDroppedBytes < failing.LogDroppedBytes || info.LogsFailing != 1 || info.LogDroppedProcesses != 1 {
				t.Errorf("ctl info: log_dropped_bytes %d (status said %d), logs_failing %d, log_dropped_processes %d; want 1 failing, 1 process",
					info.LogDroppedBytes, failing.LogDroppedBytes, info.LogsFailing, info.LogDroppedProcesses)
			}
			warn := regexp.MustCompile(`level=WARN msg="log write failed[^\n]*process=chatty:chatty[^\n]*stream=stdout[^\n]*path=` + regexp.QuoteMeta(path) + `[^\n]*` + tc.errText)
			if n := len(warn.FindAllString(logs.String(), -1)); n != 1 {
				t.Fatalf("want one WARN naming the path and the error while failing, have %d in:\n%s", n, logs.String())
			}

			if tc.reopenFails {
				res, err := cl.ReopenLogs(ctx, "chatty")
				if err != nil || len(res) != 1 || res[0].OK || !containsAll(res[0].Message, path, tc.errText) {
					t.Errorf("reopen-logs on a failing log: %+v, %v; want one failed result naming %s and %q", res, err, path, tc.errText)
				}
			}

			tc.heal(t, logdir)
			waitLog(t, "a line in the log after it healed", func() bool {
				b, _ := os.ReadFile(path)
				return strings.Contains(string(b), "line ")
			})
			healed := waitStatus(t, cl, "chatty", "no longer failing", func(p api.ProcStatus) bool { return len(p.LogFailing) == 0 })
			if healed.State != "RUNNING" || healed.Pid != pid || healed.StdoutDroppedBytes < failing.StdoutDroppedBytes {
				t.Errorf("after healing: %+v (pid was %d, %d bytes dropped before)", healed, pid, failing.StdoutDroppedBytes)
			}
			if _, warnings, _ := cl.StatusWarning(ctx); len(warnings) != 0 {
				t.Errorf("warnings after healing: %q", warnings)
			}
			if info := mustInfo(t, cl); info.LogsFailing != 0 {
				t.Errorf("ctl info after healing: logs_failing %d", info.LogsFailing)
			}
			out := logs.String()
			if n := len(warn.FindAllString(out, -1)); n != 1 {
				t.Errorf("want still one WARN, have %d", n)
			}
			recovered := regexp.MustCompile(`level=INFO msg="log writable again"[^\n]*process=chatty:chatty[^\n]*stream=stdout[^\n]*path=` + regexp.QuoteMeta(path) + `[^\n]*dropped_bytes=([0-9]+)`)
			m := recovered.FindAllStringSubmatch(out, -1)
			if len(m) != 1 || m[0][1] == "0" {
				t.Errorf("want one INFO with the bytes dropped when the log recovered, have %q in:\n%s", m, out)
			}
		})
	}
}

// checkFailing checks what status says of a stdout log failing with errText.
func checkFailing(t *testing.T, p api.ProcStatus, path, errText string) {
	t.Helper()
	if p.StdoutDroppedBytes != p.LogDroppedBytes || p.StderrDroppedBytes != 0 {
		t.Errorf("dropped: stdout %d, stderr %d, total %d; want all on stdout", p.StdoutDroppedBytes, p.StderrDroppedBytes, p.LogDroppedBytes)
	}
	if len(p.LogFailing) != 1 {
		t.Fatalf("log_failing: want the stdout log, have %+v", p.LogFailing)
	}
	f := p.LogFailing[0]
	if f.Stream != "stdout" || f.Path != path || !strings.Contains(f.Error, errText) || f.Since.IsZero() || f.DroppedBytes <= 0 || f.DroppedBytes > p.LogDroppedBytes {
		t.Errorf("log_failing: %+v; want stdout, %s, %q", f, path, errText)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
