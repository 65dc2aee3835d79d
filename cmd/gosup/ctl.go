package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/gosup/gosup/logtail"
	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/spf13/cobra"
)

func newCtlCmd(g *globalFlags) *cobra.Command {
	ctl := &cobra.Command{
		Use:   "ctl",
		Short: "Drive a running daemon, like supervisorctl",
		// Without Args and RunE cobra prints help and exits 0 for an
		// unknown subcommand; it is a usage error.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	ctl.AddCommand(
		newStatusCmd(g),
		newTopCmd(g),
		newActionCmd(g, "start", "Start processes and wait until they are RUNNING"),
		newActionCmd(g, "stop", "Stop processes and wait until they are stopped"),
		newRestartCmd(g),
		newReloadCmd(g),
		newSignalCmd(g),
		newPidCmd(g),
		newTailCmd(g),
		newReopenLogsCmd(g),
		newShutdownCmd(g),
		newNginxCmd(g),
		newInfoCmd(g),
		newUpgradeCmd(g),
		newTestAlertCmd(g),
	)
	return ctl
}

func newTestAlertCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "test-alert",
		Short: "Mail a test alert the way memmon's alerts go ([email]: the same server or sendmail command); exit 1, saying why, if it is not taken",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			reply, err := cl.TestAlert(cmd.Context())
			if err != nil {
				return clientErr(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "test alert mailed to %s through the %s\n", strings.Join(reply.To, ", "), reply.Via)
			return nil
		},
	}
}

// clientErr maps a client error to an exit code: a daemon error naming no
// process or a bad request is usage (2), anything else failed (1).
func clientErr(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code/100 == 4 {
		return usage(err)
	}
	return failed(err)
}

func newStatusCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [PATTERN...]",
		Short: "Show processes: NAME STATE PID PORT UPTIME RESTARTS CPU MEM INFO",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			// The daemon formats the table or the JSON; they are
			// copied out as they come (a buffer for the table: the
			// warnings follow it).
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 64<<10)
			var warning []string
			if asJSON {
				warning, err = cl.StatusJSON(cmd.Context(), out, args...)
			} else {
				warning, err = cl.StatusTable(cmd.Context(), out, args...)
			}
			if err != nil {
				return clientErr(err)
			}
			if err := out.Flush(); err != nil {
				return failed(err)
			}
			if asJSON {
				return nil
			}
			for _, w := range warning {
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING:", w)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return c
}

func printStatus(w io.Writer, st []api.ProcStatus) {
	_, _ = w.Write(api.AppendStatusTable(nil, st))
}

func newActionCmd(g *globalFlags, verb, short string) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   verb + " PATTERN...",
		Short: short + " (PATTERN: group:process, group:*, group, program, process or all)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAction(cmd, g, verb, api.ActionRequest{Patterns: args}, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, jsonStepsUsage)
	return c
}

// jsonStepsUsage is the --json of the commands that print their steps.
const jsonStepsUsage = "print each step as one JSON object a line as it happens, the outcome last (see docs/cli.md)"

// runAction runs start, stop, restart or signal, printing each step of
// the first three as it happens (see progressPrinter), then one line a
// process. Ctrl-C stops the wait for processes an operation in progress
// holds; what has begun runs to its end in the daemon.
func runAction(cmd *cobra.Command, g *globalFlags, verb string, req api.ActionRequest, asJSON bool) error {
	cl, err := g.client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if verb == "signal" {
		results, err := cl.Action(ctx, verb, req)
		if err != nil {
			return clientErr(err)
		}
		return printResults(cmd, results)
	}
	pp := newProgressPrinter(cmd.OutOrStdout(), asJSON)
	results, err := cl.ActionStream(ctx, verb, req, pp.event)
	if err != nil && ctx.Err() != nil && cmd.Context().Err() == nil {
		return failed(fmt.Errorf("interrupted: what the daemon had begun goes on to its end (gosup ctl status shows it); %w", err))
	}
	if err != nil {
		return clientErr(err)
	}
	if asJSON {
		if err := pp.final(api.Event{Step: api.StepResult, Results: results}); err != nil {
			return failed(err)
		}
		if slices.ContainsFunc(results, func(r api.Result) bool { return !r.OK }) {
			return silent(exitFailed)
		}
		return nil
	}
	return printResults(cmd, results)
}

// printResults prints one line a result, "NAME: ERROR (...)" for a
// failure, and fails (exit 1) if any did.
func printResults(cmd *cobra.Command, results []api.Result) error {
	bad := 0
	for _, r := range results {
		if r.OK {
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", r.Name, r.Message)
		} else {
			bad++
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ERROR (%s)\n", r.Name, r.Message)
		}
	}
	if bad > 0 {
		return silent(exitFailed)
	}
	return nil
}

func newRestartCmd(g *globalFlags) *cobra.Command {
	var rolling, asJSON bool
	c := &cobra.Command{
		Use:   "restart PATTERN...",
		Short: "Stop, then start processes (PATTERN: group:process, group:*, group, program, process or all)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAction(cmd, g, "restart", api.ActionRequest{Patterns: args, Rolling: rolling}, asJSON)
		},
	}
	c.Flags().BoolVar(&rolling, "rolling", false, "restart at most max_unavailable processes of a program at a time, drained from nginx, each waited for until ready")
	c.Flags().BoolVar(&asJSON, "json", false, jsonStepsUsage)
	return c
}

func newReloadCmd(g *globalFlags) *cobra.Command {
	var dryRun, asJSON, noWait bool
	c := &cobra.Command{
		Use:   "reload",
		Short: "Re-read the configuration and apply only what changed (exit 2: invalid, nothing changed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if dryRun {
				// Nothing happens, so nothing streams: the plan alone,
				// as it always was.
				plan, err := cl.Reload(cmd.Context(), true)
				if err != nil {
					return clientErr(err)
				}
				if asJSON {
					return printJSON(out, plan)
				}
				printPlan(out, plan)
				return nil
			}
			pp := newProgressPrinter(out, asJSON)
			if noWait {
				// systemd's ExecReload: done once the new configuration
				// is in force, however long the rollout takes.
				plan, err := cl.ReloadAccepted(cmd.Context(), pp.event)
				if err != nil {
					return clientErr(err)
				}
				if !asJSON {
					if !pp.planShown {
						printChanges(out, plan)
					}
					fmt.Fprintln(out, "reload accepted: the rollout carries on in the daemon (gosup ctl status shows where it is; gosup ctl info and the daemon's log, its outcome)")
				}
				return nil
			}
			plan, err := cl.ReloadStream(cmd.Context(), false, pp.event)
			if err != nil {
				return clientErr(err)
			}
			switch {
			case asJSON:
				if err := pp.final(api.Event{Step: api.StepResult, Plan: plan}); err != nil {
					return failed(err)
				}
			case pp.planShown:
				printOutcome(out, plan, pp)
			default:
				printPlan(out, plan)
			}
			for _, r := range plan.Results {
				if !r.OK {
					return silent(exitFailed)
				}
			}
			if plan.Nginx != "" && plan.Nginx != "ok" && !plan.NginxNotRunning {
				return silent(exitFailed)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change, change nothing")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return once the new configuration is in force (the plan), leaving the rollout to the daemon: systemd's ExecReload, which TimeoutStartSec bounds")
	c.MarkFlagsMutuallyExclusive("dry-run", "no-wait")
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan, each step and the outcome as one JSON object a line as they happen, the outcome last (see docs/cli.md); with --dry-run, the plan as one JSON object")
	return c
}

// printPlan prints one line per program (and note), then each failed result.
func printPlan(w io.Writer, plan *api.ReloadPlan) {
	printChanges(w, plan)
	printOutcome(w, plan, nil)
}

// printChanges prints a plan: one line per program, and the notes.
func printChanges(w io.Writer, plan *api.ReloadPlan) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range plan.Changes {
		var what []string
		if len(c.Restart) > 0 {
			what = append(what, fmt.Sprintf("restart %s (%s changed)", nameList(c.Restart), strings.Join(c.Why, ", ")))
		}
		if len(c.Start) > 0 {
			what = append(what, "start "+nameList(c.Start))
		}
		if len(c.Stop) > 0 {
			what = append(what, "stop "+nameList(c.Stop))
		}
		if len(c.InPlace) > 0 {
			what = append(what, "in place: "+strings.Join(c.InPlace, ", "))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Program, c.Action, strings.Join(what, "; "))
	}
	tw.Flush()
	for _, n := range plan.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// printOutcome prints what a plan's application did wrong, and nginx's
// outcome; the failures shown already as steps by pp (nil: none) are not
// printed again.
func printOutcome(w io.Writer, plan *api.ReloadPlan, pp *progressPrinter) {
	if plan.DryRun {
		fmt.Fprintln(w, "dry run: nothing changed")
	}
	for _, r := range plan.Results {
		if !r.OK && (pp == nil || !pp.shownFailed(r)) {
			fmt.Fprintf(w, "%s: ERROR (%s)\n", r.Name, r.Message)
		}
	}
	switch {
	case plan.Nginx == "":
	case plan.Nginx == "ok":
		fmt.Fprintln(w, "nginx: ok")
	case plan.NginxNotRunning:
		// "not running: FILE written and checked; ...": no failure.
		fmt.Fprintln(w, "nginx:", strings.TrimPrefix(plan.Nginx, "nginx is "))
	default:
		fmt.Fprintf(w, "nginx: FAILED (%s)\n", plan.Nginx)
	}
}

// nameList shortens a long list of process names: web_00 … web_19 (20).
func nameList(names []string) string {
	if len(names) <= 4 {
		return strings.Join(names, " ")
	}
	return fmt.Sprintf("%s … %s (%d)", names[0], names[len(names)-1], len(names))
}

func newSignalCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "signal SIGNAL PATTERN...",
		Short: "Send a signal (HUP, USR1, ...) to processes",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAction(cmd, g, "signal", api.ActionRequest{Signal: args[0], Patterns: args[1:]}, false)
		},
	}
}

func newPidCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "pid [PATTERN...]",
		Short: "Print the daemon's pid, or the pids of processes (0 when not running)",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				info, err := cl.Info(cmd.Context())
				if err != nil {
					return clientErr(err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), info.Pid)
				return nil
			}
			st, err := cl.Status(cmd.Context(), args...)
			if err != nil {
				return clientErr(err)
			}
			for _, p := range st {
				fmt.Fprintln(cmd.OutOrStdout(), p.Pid)
			}
			return nil
		},
	}
}

func newTailCmd(g *globalFlags) *cobra.Command {
	var follow, prefix, noPrefix, timestamps, daemon bool
	var n int
	var maxBytes string
	c := &cobra.Command{
		Use:   "tail [-f] [-n N] [--bytes SIZE] [-t] [--prefix|--no-prefix] [--daemon] PATTERN [stdout|stderr]",
		Short: "Print the end of the logs of the processes PATTERN names (or of the daemon's own, --daemon); -f keeps following them",
		Long: `Print the last lines of the log of every process PATTERN names (group:process,
group:*, group, program, process or all; stdout unless stderr is asked for),
log by log; with -f keep printing what each gets appended, line by line, as
it comes. With more than one log each line starts with its process's name
("web:web_03 | ..."); one process's log is printed as it is, unless
--prefix or --timestamps. The processes are those PATTERN names when the
tail begins: one a reload adds later is not followed (run ctl tail again).
A line longer than 16KB in prefixed output is cut, and its end says how much
was left out.

--daemon prints the daemon's own recent log too (what it writes to stderr
or the journal), as "gosup | ..." among processes; it is kept in memory,
the last 1MB of it; an in-place upgrade hands the newest 32KB to the new image.
If none of PATTERN's processes sends the stream to a file, the daemon's log
is printed alone (and a note says why); "--daemon stderr" (or stdout) is the
daemon's log alone: the word is a stream, not a pattern.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if daemon {
				return cobra.RangeArgs(0, 2)(cmd, args)
			}
			return cobra.RangeArgs(1, 2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			req := api.TailRequest{Lines: n, Follow: follow, Timestamps: timestamps, Daemon: daemon}
			switch {
			case daemon && len(args) == 1 && (args[0] == "stdout" || args[0] == "stderr"):
				// A stream, not a pattern: the daemon's log alone
				// (what it writes to stderr).
			case len(args) > 0:
				req.Patterns = args[:1]
			}
			if len(args) == 2 {
				req.Stream = args[1]
			}
			switch {
			case prefix && noPrefix:
				return usage(errors.New("--prefix and --no-prefix: give one"))
			case prefix || noPrefix:
				req.Prefix = &prefix
			}
			if req.MaxBytes, err = logtail.ParseLimit(maxBytes); err != nil {
				return usage(fmt.Errorf("--bytes %w", err))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			var before api.Info
			if follow {
				// To tell a stream cut by an in-place upgrade (the
				// daemon re-executed: same pid, one more upgrade) from
				// the daemon going away.
				if before, err = cl.Info(ctx); err != nil {
					return clientErr(err)
				}
			}
			for {
				body, notes, err := cl.TailLogs(ctx, req)
				if err != nil {
					return clientErr(err)
				}
				for _, note := range notes {
					fmt.Fprintln(cmd.ErrOrStderr(), "gosup:", note)
				}
				_, err = io.Copy(cmd.OutOrStdout(), body)
				body.Close()
				if ctx.Err() != nil {
					return nil
				}
				if !follow {
					if err != nil {
						return failed(err)
					}
					return nil
				}
				info, ierr := cl.Info(ctx)
				if ierr != nil || info.Pid != before.Pid || info.Upgrades+info.Rescues == before.Upgrades+before.Rescues {
					if err == nil {
						err = errors.New("the daemon ended the stream")
					}
					return failed(err)
				}
				// Followed on from the logs' ends: what was written
				// since the old image's last read (up to 250 ms before
				// it stopped), and a line it held unfinished, are
				// missing here (never from the log files).
				fmt.Fprintf(cmd.ErrOrStderr(), "gosup: the daemon was upgraded in place (%s); following again\n", info.Version)
				before, req.Lines = info, 0
			}
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what is appended")
	c.Flags().IntVarP(&n, "lines", "n", 10, "number of lines of each log")
	c.Flags().StringVar(&maxBytes, "bytes", logtail.SizeString(logtail.DefaultBytes), "at most this much of each log's lines, and of each read with -f (at most "+logtail.SizeString(logtail.MaxBytes)+"); a line \"[gosup: SIZE cut]\" stands for the rest")
	c.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "start each line with the time the daemon read it as -f follows (RFC 3339, milliseconds); \"-\" for a line from before the tail began (a log file keeps no times), a daemon's record's own time")
	c.Flags().BoolVar(&prefix, "prefix", false, "start each line with its process's name even for one process")
	c.Flags().BoolVar(&noPrefix, "no-prefix", false, "print lines without their process's name even for several")
	c.Flags().BoolVar(&daemon, "daemon", false, "the daemon's own recent log (with PATTERN: besides the processes')")
	return c
}

func newReopenLogsCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "reopen-logs [PATTERN...]",
		Short: "Reopen the log files of processes (all when no PATTERN) at their paths, after an external rotation (as SIGUSR1 to the daemon)",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			results, err := cl.ReopenLogs(cmd.Context(), args...)
			if err != nil {
				return clientErr(err)
			}
			return printResults(cmd, results)
		},
	}
}

func newShutdownCmd(g *globalFlags) *cobra.Command {
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "shutdown",
		Short: "Stop every process and the daemon; waits until it has exited",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			info, err := cl.Shutdown(cmd.Context())
			if err != nil {
				return clientErr(err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			for {
				if _, err := cl.Info(ctx); errors.Is(err, api.ErrNotRunning) {
					fmt.Fprintf(cmd.OutOrStdout(), "shut down (pid %d)\n", info.Pid)
					return nil
				}
				select {
				case <-ctx.Done():
					return failed(fmt.Errorf("daemon pid %d is still shutting down after %s", info.Pid, timeout))
				case <-time.After(20 * time.Millisecond):
				}
			}
		},
	}
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the daemon to exit")
	return c
}

// httpLine is the HTTP listener as ctl info shows it: "listening on
// 127.0.0.1:9180 (auth none); 12 connections, 0 refused (at most 32 at
// once)", or why it does not listen.
func httpLine(h api.HTTPInfo) string {
	conns := fmt.Sprintf("%d connections, %d refused (at most %d at once)", h.Accepted, h.Refused, h.MaxConnections)
	switch h.State {
	case "listening":
		return fmt.Sprintf("listening on %s (auth %s); %s", h.Listen, h.Auth, conns)
	case "failed":
		return fmt.Sprintf("FAILED on %s since %s, %d attempts, retrying: %s; %s", h.Listen, h.ErrorAt.Format(time.DateTime), h.Attempts, h.Error, conns)
	}
	return fmt.Sprintf("%s on %s; %s", h.State, h.Listen, conns)
}

// registryLine is the registry as ctl info shows it: "ok since ..., 4
// members published (1 down) as 10.0.0.5 under /gosup, lease 694d...
// (ttl 10s) on http://10.0.0.10:2379; 0 failed writes", or UNREACHABLE
// with the error.
func registryLine(r api.RegistryStatus) string {
	state := fmt.Sprintf("%s since %s", r.State, r.Since.Format(time.DateTime))
	if r.State == "unreachable" {
		state = fmt.Sprintf("UNREACHABLE since %s: %s", r.Since.Format(time.DateTime), r.Error)
	}
	down := ""
	if r.Down > 0 {
		down = fmt.Sprintf(" (%d down)", r.Down)
	}
	return fmt.Sprintf("%s; %d members published%s as %s under %s, lease %s (ttl %gs) on %s; %d failed writes, %d leases granted",
		state, r.Published, down, r.Host, r.Prefix, r.Lease, r.TTLS, strings.Join(r.Endpoints, ", "), r.FailedWrites, r.LeaseGrants)
}

// watchLine is the registry watch as ctl info shows it: "ok since ...;
// 6 members (1 down) of every host under /gosup, as of revision 42, on
// http://10.0.0.10:2379", UNREACHABLE with the error (the members last
// known), or connecting; then the keys ignored.
func watchLine(w api.WatchStatus) string {
	state := fmt.Sprintf("%s since %s", w.State, w.Since.Format(time.DateTime))
	if w.State == "unreachable" {
		state = fmt.Sprintf("UNREACHABLE since %s: %s", w.Since.Format(time.DateTime), strings.Join(strings.Fields(w.Error), " "))
	}
	members := "members not read yet"
	if w.Synced {
		down := ""
		if w.Down > 0 {
			down = fmt.Sprintf(" (%d down)", w.Down)
		}
		members = fmt.Sprintf("%d members%s of every host, as of revision %d", w.Members, down, w.Revision)
		if w.State == "unreachable" {
			members += " (the last known, still rendered)"
		}
	}
	dropped := ""
	if w.Dropped > 0 {
		dropped = fmt.Sprintf(", %d left out past the bounds", w.Dropped)
	}
	return fmt.Sprintf("%s; %s under %s on %s; %d keys ignored (not members)%s, %d whole reads",
		state, members, w.Prefix, strings.Join(w.Endpoints, ", "), w.Ignored, dropped, w.Reads)
}

func newInfoCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "info",
		Short: "Show the daemon: pid, config, socket, uptime, memmon and alert counters, last reload, HTTP listener, registry, log output dropped, panics recovered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			info, err := cl.Info(cmd.Context())
			if err != nil {
				return clientErr(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, info)
			}
			if info.State != "" {
				fmt.Fprintf(out, "state:           %s\n", info.State)
			}
			fmt.Fprintf(out, "pid:             %d\nversion:         %s\nbinary:          %s\nconfig:          %s\nsocket:          %s\nstarted:         %s (uptime %s)\n",
				info.Pid, describeBuild(api.Build{Version: info.Version, Revision: info.Revision}), info.Binary, info.Config, info.Socket,
				info.StartedAt.Format(time.DateTime), api.FormatUptime(time.Duration(info.UptimeS*float64(time.Second))))
			upgrades := "none"
			if info.Upgrades > 0 {
				upgrades = fmt.Sprintf("%d, last at %s from %s", info.Upgrades, info.UpgradedAt.Format(time.DateTime), info.UpgradedFrom)
			}
			if info.UpgradeFailures > 0 {
				upgrades += fmt.Sprintf("; %d failed, last: %s", info.UpgradeFailures, info.LastUpgradeError)
			}
			fmt.Fprintf(out, "upgrades:        %s\n", upgrades)
			if info.Rescues > 0 {
				fmt.Fprintf(out, "rescues:         %d (re-executed after a panic in the daemon's core, a bug in gosup: see its log)\n", info.Rescues)
			}
			retrying := strconv.FormatInt(info.AlertsRetrying, 10)
			if info.AlertsRetrying > 0 && !info.AlertRetryAt.IsZero() {
				retrying += ", next attempt at " + info.AlertRetryAt.Format(time.DateTime)
			}
			fmt.Fprintf(out, "memmon restarts: %d\nalerts sent:     %d\nalerts mailed:   %d (in those mails)\nalerts held:     %d (waiting for a mail)\nalert failures:  %d (attempts; see the daemon's log)\nalerts retrying: %s\nalerts given up: %d (not mailed after retrying for %s)\nalerts filtered: %d (alert_max_uptime)\nalerts dropped:  %d\n",
				info.MemmonRestarts, info.AlertsSent, info.AlertsMailed, info.AlertsHeld, info.AlertFailures, retrying, info.AlertsGivenUp, memmon.RetryFor, info.AlertsFiltered, info.AlertsDropped)
			missed := strconv.FormatInt(info.WatchdogMissed, 10)
			if info.WatchdogLastFailure != "" {
				missed += " (last at " + info.WatchdogLastFailure + ")"
			}
			fmt.Fprintf(out, "watchdog missed: %s\n", missed)
			last := "none since start"
			switch r := info.LastReload; {
			case r.OK:
				last = "ok at " + r.At.Format(time.DateTime)
			case r.Error != "":
				last = "FAILED at " + r.At.Format(time.DateTime) + ": " + r.Error
			}
			fmt.Fprintf(out, "last reload:     %s\n", last)
			if n := info.Nginx; n != nil {
				fmt.Fprintf(out, "nginx:           %s, %s servers in %s\n", nginxState(*n), nginxServers(*n), n.Output)
			}
			if h := info.HAProxy; h != nil {
				fmt.Fprintf(out, "haproxy:         %s, %s servers in %s\n", balancerState("haproxy", *h), nginxServers(*h), h.Output)
			}
			if h := info.HTTP; h != nil {
				fmt.Fprintf(out, "http:            %s\n", httpLine(*h))
			}
			if r := info.Registry; r != nil {
				fmt.Fprintf(out, "registry:        %s\n", registryLine(*r))
			}
			if w := info.Watch; w != nil {
				fmt.Fprintf(out, "registry watch:  %s\n", watchLine(*w))
			}
			dropped := "none"
			if info.LogDroppedBytes > 0 || info.LogsFailing > 0 {
				dropped = fmt.Sprintf("%d bytes by %d processes", info.LogDroppedBytes, info.LogDroppedProcesses)
				if info.LogsFailing > 0 {
					dropped += fmt.Sprintf("; %d logs failing now (see gosup ctl status)", info.LogsFailing)
				}
			}
			fmt.Fprintf(out, "log dropped:     %s\n", dropped)
			if info.TailFilesMax > 0 {
				tails := fmt.Sprintf("%d following %d log files (at most %d at once)", info.Tails, info.TailFiles, info.TailFilesMax)
				if info.TailsRefused > 0 {
					tails += fmt.Sprintf("; %d refused", info.TailsRefused)
				}
				fmt.Fprintf(out, "tails:           %s\n", tails)
			}
			if len(info.Panics) == 0 {
				fmt.Fprintf(out, "panics:          none\n")
			}
			for _, p := range info.Panics {
				fmt.Fprintf(out, "panics:          %s: %d, last at %s: %s; %s\n", p.Component, p.Count, p.LastAt.Format(time.DateTime), p.Last, p.State)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
