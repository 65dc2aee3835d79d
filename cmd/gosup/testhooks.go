//go:build gosup_testhooks

package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gosup/gosup/supervisor"
)

// A binary built with -tags gosup_testhooks makes, on SIGTTIN, the owner
// goroutine of the process $GOSUP_TEST_PANIC (group:name) panic: the
// end-to-end tests of the daemon's recovery from a panic in its core use
// it. Release builds have no such hook.
func init() {
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
