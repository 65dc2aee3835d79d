package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gosup/gosup/logtail"
	"github.com/gosup/gosup/supervisor"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/spf13/cobra"
)

func newStartCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "start",
		Short: "Run the supervisor in the foreground (what a systemd unit's ExecStart calls)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Every signal the daemon handles is caught first thing:
			// until then SIGTERM or SIGHUP would end the process, and in
			// the new image of an upgrade every child with it (their
			// parent-death signal). What arrives before the daemon runs
			// waits in these channels.
			// A closed stderr must not kill the daemon; a handled (not
			// ignored) SIGPIPE is reset to default in every child.
			signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// SIGUSR1 reopens the log files at their paths, as for nginx
			// (logrotate's postrotate); SIGUSR2 upgrades in place, as for
			// nginx (from the binary the daemon was started as); SIGHUP
			// reloads, as for supervisord and nginx (a storm of them
			// coalesces into one reload running and one pending).
			usr1, usr2, hup := make(chan os.Signal, 1), make(chan os.Signal, 1), make(chan os.Signal, 1)
			signal.Notify(usr1, syscall.SIGUSR1)
			signal.Notify(usr2, syscall.SIGUSR2)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(usr1)
			defer signal.Stop(usr2)
			defer signal.Stop(hup)
			// After an in-place upgrade: the previous image's handover,
			// and the configuration it ran, from the bytes it read.
			// A new image allocates much, from nothing, while it adopts
			// every process, and a fresh daemon while it spawns every
			// process of its start: collection waits until it answers
			// (Serving), sparing that critical path a few collections
			// (each stops the spawning thread too); what the start
			// allocated is collected and given back then (see
			// supervisor's settleMemory).
			gcPercent := debug.SetGCPercent(-1)
			doc, err := readHandover()
			if err != nil {
				return failed(fmt.Errorf("in-place upgrade: %w", err))
			}
			var cfg *config.Config
			if doc != nil {
				cfg, err = loadHandedConfig(doc)
				if err != nil {
					return failed(fmt.Errorf("in-place upgrade: the running configuration does not load: %w", err))
				}
				g.insecure = doc.Config.Insecure
			} else if cfg, err = g.loadConfig(); err != nil {
				return err
			}
			// The daemon's log goes to stderr (the journal), and its
			// recent records to memory too, for ctl tail --daemon.
			ring := logtail.NewRing(logtail.RingBytes)
			log := newLogger(cfg.Supervisor.LogLevel, teeWriter{ring, os.Stderr})
			opts := supervisor.Options{Logger: log, DaemonLog: ring, NotifySocket: os.Getenv("NOTIFY_SOCKET"), InsecureConfig: g.insecure,
				Binary: startedBinary(), Args: os.Args[1:], Build: buildInfo(), Handover: doc,
				Serving: func() { debug.SetGCPercent(gcPercent) }, RestoreSignals: func() { signal.Notify(hup, syscall.SIGHUP) }}
			if g.insecure && os.Geteuid() == 0 && doc == nil {
				log.Warn("--insecure-config: configuration files are read whoever can change them, now and at every reload", "config", cfg.File)
			}
			// WATCHDOG_USEC applies to us only if WATCHDOG_PID is unset or ours.
			if pid := os.Getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
				if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
					opts.Watchdog = time.Duration(usec) * time.Microsecond
				}
			}
			// Children must not talk to systemd as us.
			for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
				os.Unsetenv(k)
			}
			if testOptions != nil {
				testOptions(log, &opts)
			}
			d := supervisor.New(cfg, opts)
			if testHooks != nil {
				testHooks(log, d)
			}
			go func() {
				for range hup {
					log.Info("SIGHUP received: reloading the configuration")
					d.RequestReload()
				}
			}()
			go func() {
				for range usr2 {
					log.Info("SIGUSR2 received: upgrading in place", "binary", opts.Binary)
					d.RequestUpgrade()
				}
			}()
			go func() {
				for range usr1 {
					log.Info("SIGUSR1 received: reopening log files")
					_, _ = d.ReopenLogs(nil)
				}
			}()
			err = d.Run(ctx)
			if err != nil {
				return failed(err)
			}
			return nil
		},
	}
}

// testHooks, set only in a binary built with -tags gosup_testhooks (see
// testhooks.go), installs the end-to-end tests' hooks into the daemon.
// testOptions likewise sets the daemon's test options.
var (
	testHooks   func(*slog.Logger, *supervisor.Supervisor)
	testOptions func(*slog.Logger, *supervisor.Options)
)

// teeWriter writes each record to the ring, then to w: a stderr that
// fails (closed, or a pipe nobody reads) does not keep it from the ring.
type teeWriter struct {
	ring *logtail.Ring
	w    io.Writer
}

func (t teeWriter) Write(b []byte) (int, error) {
	_, _ = t.ring.Write(b)
	return t.w.Write(b)
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
