package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gosup/gosup/supervisor/config"
	"github.com/spf13/cobra"
)

func newSystemdUnitCmd(g *globalFlags) *cobra.Command {
	var binary, configPath string
	cmd := &cobra.Command{
		Use:   "systemd-unit",
		Short: "Print a systemd service unit that runs the configuration",
		Long: "systemd-unit validates the configuration like `gosup check` and prints a systemd service unit\n" +
			"(Type=notify, KillMode=mixed, TimeoutStopSec from the largest stopwaitsecs, TasksMax from\n" +
			"the processes, hardening that fits the programs) that runs `gosup start -c FILE`, for\n" +
			"/etc/systemd/system/gosup.service. Regenerate it when stopwaitsecs, shutdown_timeout,\n" +
			"numprocs, tasks_max, user, directory, log paths or the socket change.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			if binary == "" {
				if binary, err = selfPath(); err != nil {
					return failed(err)
				}
			} else if !filepath.IsAbs(binary) {
				return usage(fmt.Errorf("--binary %s: must be an absolute path", binary))
			}
			if configPath != "" {
				if !filepath.IsAbs(configPath) {
					return usage(fmt.Errorf("--config-path %s: must be an absolute path", configPath))
				}
				c := *cfg
				c.File = filepath.Clean(configPath)
				cfg = &c
			}
			unit, err := systemdUnit(binary, cfg)
			if err != nil {
				return usage(err)
			}
			printPathWarnings(cmd.ErrOrStderr(), cfg)
			_, err = cmd.OutOrStdout().Write(unit)
			return err
		},
	}
	cmd.Flags().StringVar(&binary, "binary", "", "gosup binary the unit runs (default: this one, symlinks resolved)")
	cmd.Flags().StringVar(&configPath, "config-path", "", "configuration path written into the unit (default: the absolute path of -c)")
	return cmd
}

// selfPath is the running binary's absolute path with symlinks resolved.
func selfPath() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the gosup binary (give --binary): %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the gosup binary (give --binary): %w", err)
	}
	return filepath.Abs(exe)
}

// Margins added to the stop budget of the configuration.
const (
	stopWaitMargin = 10 * time.Second // over the largest stopwaitsecs
	shutdownMargin = 5 * time.Second  // over [supervisor] shutdown_timeout
	startMargin    = 30 * time.Second // over the slowest program's worst start
)

// systemdUnit renders the service unit that runs binary with cfg.File. The
// bytes depend only on its arguments.
func systemdUnit(binary string, cfg *config.Config) ([]byte, error) {
	for _, p := range []string{binary, cfg.File} {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%s: a systemd unit needs an absolute path", p)
		}
	}
	var b bytes.Buffer
	var errs []error
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	// exec quotes one word of ExecStart=; path one path of ReadWritePaths=.
	exec := func(s string) string {
		q, err := systemdQuote(s, true)
		errs = append(errs, err)
		return q
	}
	path := func(s string) string {
		q, err := systemdQuote(s, false)
		errs = append(errs, err)
		return q
	}
	desc, err := systemdEscape(cfg.File, false)
	errs = append(errs, err)
	bin, conf := exec(binary), exec(cfg.File)

	line("# Written by gosup systemd-unit for %s.", cfg.File)
	line("# Regenerate it when stopwaitsecs, shutdown_timeout, numprocs, tasks_max,")
	line("# user, directory, log paths or the socket change: the values below are")
	line("# derived from them.")
	line("")
	line("[Unit]")
	line("Description=gosup process supervisor (%s)", desc)
	line("Documentation=https://github.com/gosup/gosup/blob/main/docs/systemd.md")
	if cfg.Nginx != nil {
		line("# gosup writes %s and reloads nginx: nginx starts with gosup", commentSafe(cfg.Nginx.Output))
		line("# (Wants=: gosup runs even if nginx fails) and before it, so that the first reload finds it.")
		line("After=network.target nginx.service")
		line("Wants=nginx.service")
	} else {
		line("After=network.target")
	}
	line("")
	line("[Service]")
	line("# gosup sends READY=1 once every autostart process is RUNNING, FATAL, or EXITED or STOPPED for good.")
	line("Type=notify")
	line("NotifyAccess=main")
	// READY=1 waits for every autostart process to settle (RUNNING, FATAL,
	// EXITED or STOPPED for good):
	// the slowest program's worst case, every attempt running out its
	// readiness wait (or startsecs), plus the backoff between attempts.
	startWait, startProg, startWhy := time.Duration(0), "", ""
	for _, p := range cfg.Programs {
		if !p.Spec.AutoStart {
			continue
		}
		if d := p.StartBound(); d > startWait {
			attempt, what := p.StartAttempt()
			tries := p.Spec.StartRetries + 1
			startWait, startProg = d, p.Name
			startWhy = fmt.Sprintf("%d attempts × %s %s + %s backoff", tries, what, attempt, fmtSeconds(d-time.Duration(tries)*attempt))
		}
	}
	if startProg != "" && startWait+startMargin > 90*time.Second {
		line("# READY=1 waits for every autostart process to settle; at worst")
		line("# (program.%s: %s) + %s.", startProg, startWhy, fmtSeconds(startMargin))
		line("TimeoutStartSec=%d", int((startWait+startMargin)/time.Second))
	}
	line("ExecStart=%s start -c %s", bin, conf)
	line("# systemd bounds ExecReload by TimeoutStartSec; a rolling restart may take longer:")
	line("# reload returns once the new configuration is in force, the rollout carries on")
	line("# (gosup ctl status shows it; its outcome is logged). Exit 2: invalid, nothing changed.")
	line("ExecReload=%s ctl reload --no-wait -c %s", bin, conf)
	line("# SIGTERM goes to gosup alone, which stops the programs in priority order")
	line("# with their stopsignal and stopwaitsecs; systemd then SIGKILLs leftovers.")
	line("KillMode=mixed")
	stopWait, stopProg := 0, ""
	for _, p := range cfg.Programs {
		if p.Spec.StopWaitSecs > stopWait || stopProg == "" {
			stopWait, stopProg = p.Spec.StopWaitSecs, p.Name
		}
	}
	byPrograms := time.Duration(stopWait)*time.Second + stopWaitMargin
	shutdown := cfg.Supervisor.ShutdownTimeout
	byShutdown := shutdown.Truncate(time.Second) + shutdownMargin
	if shutdown%time.Second != 0 {
		byShutdown += time.Second
	}
	if stopProg != "" {
		line("# The larger of: stopwaitsecs %d (program.%s) + %s, shutdown_timeout %s + %s.",
			stopWait, stopProg, fmtSeconds(stopWaitMargin), shutdown, fmtSeconds(shutdownMargin))
	} else {
		line("# The larger of: stopwaitsecs (no programs) + %s, shutdown_timeout %s + %s.",
			fmtSeconds(stopWaitMargin), shutdown, fmtSeconds(shutdownMargin))
	}
	line("TimeoutStopSec=%d", int(max(byPrograms, byShutdown)/time.Second))
	line("Restart=on-failure")
	line("RestartSec=2")
	line("# gosup sends WATCHDOG=1 every 15 s; after 30 s of silence systemd restarts it.")
	line("WatchdogSec=30")
	// 65536, or the next power of two that holds what the daemon needs.
	fds, nofile := cfg.FDs(), 65536
	for nofile < fds {
		nofile *= 2
	}
	line("# gosup holds every child's pidfd, log pipes and files: up to %d descriptors", fds)
	line("# for this configuration (gosup check counts them). Children inherit the limit.")
	line("LimitNOFILE=%d", nofile)
	tasks, why := cfg.TasksMax()
	if cfg.Supervisor.TasksMax == 0 {
		why += " ([supervisor] tasks_max sets it)"
	}
	line("# Tasks (processes and threads) of gosup and all its children together, so")
	line("# that a fork bomb in one child cannot take every pid of the host:")
	line("# %s.", why)
	if tasks == config.TasksInfinity {
		line("TasksMax=infinity")
	} else {
		line("TasksMax=%d", tasks)
	}

	// The hardening must leave gosup and its children working: gosup writes
	// next to its socket, into its logs and the nginx file; children write
	// in their directory.
	writes := []string{filepath.Dir(cfg.Supervisor.Socket), cfg.Supervisor.LogDir}
	if cfg.Nginx != nil {
		writes = append(writes, filepath.Dir(cfg.Nginx.Output))
	}
	usesUser := false
	var noHome string // why ProtectHome is left off
	for _, p := range cfg.Programs {
		if p.Spec.User != "" {
			usesUser = true
		}
		for _, f := range p.LogFiles() {
			writes = append(writes, filepath.Dir(f))
		}
		for _, ps := range p.Procs {
			for _, pp := range []struct{ key, path string }{{"directory", ps.Dir}, {"command", firstWord(ps.Argv)}} {
				if noHome == "" && filepath.IsAbs(pp.path) && underAny(pp.path, homePaths) {
					noHome = fmt.Sprintf("program.%s.%s is %s", p.Name, pp.key, pp.path)
				}
			}
		}
	}
	var rw []string
	for _, w := range writes {
		w = filepath.Clean(w)
		if noHome == "" && underAny(w, homePaths) {
			noHome = "gosup writes to " + w
		}
		if underAny(w, systemPaths) && !slices.Contains(rw, w) {
			rw = append(rw, w)
		}
	}
	slices.Sort(rw)

	line("# /usr, /boot and /etc are read-only; add ReadWritePaths= for what children write there.")
	line("ProtectSystem=full")
	if len(rw) > 0 {
		line("# gosup writes here (\"-\": no error if missing).")
		words := make([]string, len(rw))
		for i, w := range rw {
			words[i] = "-" + path(w)
		}
		line("ReadWritePaths=%s", strings.Join(words, " "))
	}
	if noHome == "" {
		line("# /home, /root and /run/user read-only: no directory, command, log or")
		line("# socket of the configuration is there.")
		line("ProtectHome=read-only")
	} else {
		line("# No ProtectHome: %s.", commentSafe(noHome))
	}
	line("# No PrivateTmp: children such as uwsgi may share sockets in /tmp with nginx.")
	if !usesUser {
		line("# No program sets user, so every child is root and needs no setuid helper.")
		line("NoNewPrivileges=yes")
	} else {
		line("# No NoNewPrivileges: programs with user may need setuid helpers (sudo, ping).")
	}
	if sock := cfg.Supervisor.Socket; under(sock, "/run/gosup") && sock != "/run/gosup" {
		mode := "0700"
		if cfg.Supervisor.SocketGroup != "" {
			mode = "0750"
		}
		line("# The socket's directory, with gosup's mode; kept after a stop so that")
		line("# SOCKET.stopped (gosup ctl stop) survives restarts.")
		line("RuntimeDirectory=gosup")
		line("RuntimeDirectoryMode=%s", mode)
		line("RuntimeDirectoryPreserve=yes")
	}
	line("")
	line("[Install]")
	line("WantedBy=multi-user.target")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Directories ProtectHome= and ProtectSystem=full make read-only.
var (
	homePaths   = []string{"/home", "/root", "/run/user"}
	systemPaths = []string{"/usr", "/boot", "/efi", "/etc"}
)

func under(p, dir string) bool {
	p = filepath.Clean(p)
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func underAny(p string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool { return under(p, d) })
}

func firstWord(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	return argv[0]
}

// commentSafe keeps s on one comment line.
func commentSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

func fmtSeconds(d time.Duration) string { return fmt.Sprintf("%d s", int(d/time.Second)) }

var systemdSafe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_@+=:,./-]+$`) })

// systemdQuote makes s one word of a unit setting: double-quoted unless it
// is plain, with % written %% (specifiers) and, in a command line (exec),
// $ written $$ (variables).
func systemdQuote(s string, exec bool) (string, error) {
	if systemdSafe().MatchString(s) {
		return s, nil
	}
	e, err := systemdEscape(s, exec)
	if err != nil {
		return "", err
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(e) + `"`, nil
}

// systemdEscape escapes specifiers (and, with exec, variables) in s, which
// must fit on one line.
func systemdEscape(s string, exec bool) (string, error) {
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return "", fmt.Errorf("%q: a control character cannot be written into a systemd unit", s)
	}
	s = strings.ReplaceAll(s, "%", "%%")
	if exec {
		s = strings.ReplaceAll(s, "$", "$$")
	}
	return s, nil
}
