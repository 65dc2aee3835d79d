//go:build gosup_testhooks

package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gosup/gosup/supervisor"
	"github.com/gosup/gosup/supervisor/handover"
)

// A binary built with -tags gosup_testhooks has hooks for the
// end-to-end tests; release builds have neither:
//   - on SIGTTIN, the owner goroutine of the process $GOSUP_TEST_PANIC
//     (group:name) panics: the daemon's recovery from a panic in its core;
//   - in an upgrade, just before the exec, the child of the process
//     $GOSUP_TEST_KILL_BEFORE_EXEC is killed and left a zombie: an exit
//     in the handover window, which the new image must reap and act on;
//   - $GOSUP_TEST_SERVING_DELAY (a duration) holds the daemon that long
//     between answering on its socket and serving in full: the window in
//     which an upgrade is refused as "still starting";
//   - in an upgrade, just before the exec, if the file
//     $GOSUP_TEST_REPLACE_BEFORE_EXEC exists, it is removed and the binary
//     is replaced by a copy of itself (a new inode): the exec is refused,
//     and the daemon must undo everything.
func init() {
	testOptions = func(log *slog.Logger, o *supervisor.Options) {
		if d, err := time.ParseDuration(os.Getenv("GOSUP_TEST_SERVING_DELAY")); err == nil {
			o.BeforeServing = func() {
				log.Warn("test hook: holding the daemon before it serves", "for", d)
				time.Sleep(d)
			}
		}
		if flag := os.Getenv("GOSUP_TEST_REPLACE_BEFORE_EXEC"); flag != "" {
			o.BeforeExec = func(doc *handover.Doc) {
				if os.Remove(flag) != nil {
					return
				}
				log.Warn("test hook: replacing the binary just before the exec", "binary", doc.Binary)
				b, err := os.ReadFile(doc.Binary)
				if err == nil {
					err = os.WriteFile(doc.Binary+".tmp", b, 0o755)
				}
				if err == nil {
					err = os.Rename(doc.Binary+".tmp", doc.Binary)
				}
				if err != nil {
					log.Error("test hook", "err", err)
				}
			}
			return
		}
		name := os.Getenv("GOSUP_TEST_KILL_BEFORE_EXEC")
		if name == "" {
			return
		}
		o.BeforeExec = func(doc *handover.Doc) {
			for _, p := range doc.Processes {
				if p.Name != name || p.Pid <= 0 {
					continue
				}
				log.Warn("test hook: killing a child in the handover window", "process", name, "pid", p.Pid)
				_ = syscall.Kill(p.Pid, syscall.SIGKILL)
				// Reaping is held: the child stays a zombie.
				for range 1000 {
					if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid)); err == nil && zombie(b) {
						return
					}
					time.Sleep(time.Millisecond)
				}
				log.Error("test hook: the child did not become a zombie", "pid", p.Pid)
			}
		}
	}
	testHooks = func(log *slog.Logger, d *supervisor.Supervisor) {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTTIN)
		go func() {
			for range c {
				name := os.Getenv("GOSUP_TEST_PANIC")
				log.Warn("test hook: injecting a panic", "process", name)
				if err := d.InjectPanic(name); err != nil {
					log.Error("test hook", "err", err)
				}
			}
		}()
	}
}

// zombie reports whether a /proc/PID/stat line says state Z.
func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
