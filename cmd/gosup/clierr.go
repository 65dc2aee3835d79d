package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// explainArgs makes every command's argument errors say what is missing or
// extra by the argument's name (from its usage line), with the usage line,
// instead of cobra's "requires at least 1 arg(s)"; and an unknown
// subcommand gets a did-you-mean, as at the top level.
func explainArgs(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				return usage(argsError(cmd, args))
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		explainArgs(sub)
	}
}

// argsError says what is wrong with args for cmd.
func argsError(cmd *cobra.Command, args []string) error {
	line := "usage: " + strings.TrimSuffix(cmd.UseLine(), " [flags]")
	if cmd.HasAvailableSubCommands() && len(args) > 0 {
		msg := fmt.Sprintf("%s: unknown command %q", cmd.CommandPath(), args[0])
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2 // cobra's own, at the top level
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", s[0])
		}
		return fmt.Errorf("%s; `%s --help` lists them", msg, cmd.CommandPath())
	}
	names := strings.Fields(cmd.Use)[1:]
	var required []string
	for _, n := range strings.Fields(optionalArgs().ReplaceAllString(cmd.Use, ""))[1:] {
		required = append(required, strings.TrimSuffix(n, "..."))
	}
	switch {
	case len(names) == 0:
		return fmt.Errorf("%s takes no arguments, got %q\n%s", cmd.CommandPath(), strings.Join(args, " "), line)
	case len(args) < len(required):
		return fmt.Errorf("%s: missing %s\n%s", cmd.CommandPath(), strings.Join(required[len(args):], " "), line)
	}
	return fmt.Errorf("%s: too many arguments (%q)\n%s", cmd.CommandPath(), strings.Join(args, " "), line)
}

// optionalArgs are the bracketed parts of a usage line: optional arguments
// and flags.
var optionalArgs = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\[[^\]]*\]`) })

// pflag's value errors: invalid argument "x" for "-n, --lines" flag: ...
var flagValueErr = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^invalid argument "(.*)" for "(.*)" flag: (.*)$`) })

// flagError says a flag parse error in words, with the usage line.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if m := flagValueErr().FindStringSubmatch(msg); m != nil {
		value, name, why := m[1], strings.ReplaceAll(m[2], ", ", "/"), m[3]
		want := "a valid value"
		if f := cmd.Flags().Lookup(strings.TrimLeft(name[strings.LastIndex(name, "/")+1:], "-")); f != nil {
			switch f.Value.Type() {
			case "int", "int64", "uint", "uint64":
				want = "a whole number"
			case "duration":
				want = "a duration such as 30s or 2m"
			case "bool":
				want = "true or false"
			}
		}
		msg = fmt.Sprintf("%s wants %s, not %q", name, want, value)
		if strings.Contains(why, "out of range") {
			msg = fmt.Sprintf("%s: %q is out of range", name, value)
		}
	}
	return usage(fmt.Errorf("%s\nusage: %s (see `%s --help`)", msg, strings.TrimSuffix(cmd.UseLine(), " [flags]")+" [flags]", cmd.CommandPath()))
}

// notRunningHint says, after "no daemon listens on SOCKET", how to point at
// another daemon, and which configurations this user's running daemons
// use (found in /proc: processes of ours running `gosup start`).
func notRunningHint(tried string) string {
	var b strings.Builder
	b.WriteString("point at another daemon with -c CONFIG (its [supervisor] socket), --socket PATH or $GOSUP_SOCKET")
	var others []daemonSeen
	seen := ownDaemons(maxDaemonsSeen)
	for _, d := range seen {
		if d.socket != tried {
			others = append(others, d)
		}
	}
	// The daemons whose configuration is under the current directory come
	// first: the one in /etc/gosup for an operator there, a test's own
	// among other tests'.
	cwd, _ := os.Getwd()
	slices.SortStableFunc(others, func(x, y daemonSeen) int {
		switch bx, by := beneath(cwd, x), beneath(cwd, y); {
		case bx && !by:
			return -1
		case by && !bx:
			return 1
		}
		return 0
	})
	for i, d := range others {
		if i == namedDaemons {
			more := strconv.Itoa(len(others) - i)
			if len(seen) == maxDaemonsSeen {
				more = "at least " + more
			}
			fmt.Fprintf(&b, "\nand %s more: ps -C gosup -o pid,args lists them", more)
			break
		}
		fmt.Fprintf(&b, "\na gosup daemon of yours runs (pid %d)", d.pid)
		switch {
		case d.config != "":
			fmt.Fprintf(&b, " with -c %s: gosup ctl -c %s ...", d.config, d.config)
		case d.socket != "":
			fmt.Fprintf(&b, " on %s: gosup ctl --socket %s ...", d.socket, d.socket)
		}
	}
	return b.String()
}

// notRunningHint names namedDaemons of the daemons it finds, and looks at
// no more than maxDaemonsSeen.
const (
	namedDaemons   = 3
	maxDaemonsSeen = 64
)

// beneath says whether a daemon's configuration (else its socket) is under
// dir.
func beneath(dir string, d daemonSeen) bool {
	p := cmp.Or(d.config, d.socket)
	return dir != "" && p != "" && (dir == "/" || strings.HasPrefix(p, dir+"/"))
}

// daemonSeen is a running `gosup start` of this user.
type daemonSeen struct {
	pid            int
	config, socket string
}

// ownDaemons finds up to limit running `gosup start` processes of this
// user: their configuration file (absolute) and socket, as far as their
// command line says. Only /proc entries owned by this user are read.
func ownDaemons(limit int) []daemonSeen {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self, uid := os.Getpid(), uint32(os.Getuid())
	var out []daemonSeen
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || len(out) >= limit {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name(), &st) != nil || st.Uid != uid {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) > 64<<10 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 2 || filepath.Base(args[0]) != "gosup" || !slices.Contains(args[1:], "start") {
			continue
		}
		d := daemonSeen{pid: pid}
		cwd, _ := os.Readlink("/proc/" + e.Name() + "/cwd")
		for i := 1; i < len(args); i++ {
			name, value, ok := strings.Cut(args[i], "=")
			if !ok && i+1 < len(args) {
				value = args[i+1]
			}
			switch name {
			case "-c", "--config":
				d.config = absFrom(cwd, value)
			case "--socket":
				d.socket = absFrom(cwd, value)
			}
		}
		if d.socket == "" && d.config != "" {
			d.socket, _ = config.SocketOf(d.config)
		}
		out = append(out, d)
	}
	return out
}

func absFrom(dir, p string) string {
	if p == "" || filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}

// triedSocket is the socket named in an api.ErrNotRunning error.
var triedSocket = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`no daemon listens on (.*)\)$`) })

// hintNotRunning adds to an api.ErrNotRunning error how to point at
// another daemon (see notRunningHint); other errors pass.
func hintNotRunning(err error) error {
	if !errors.Is(err, api.ErrNotRunning) {
		return err
	}
	tried := ""
	if m := triedSocket().FindStringSubmatch(err.Error()); m != nil {
		tried = m[1]
	}
	return fmt.Errorf("%w\n%s", err, notRunningHint(tried))
}

// completeNames completes the commands that take process patterns or a
// process name from the running daemon (`gosup completion` installs the
// shell side): names as group:process, each group:*, the programs and all.
// Without a daemon it offers nothing (and no file names).
func completeNames(g *globalFlags, c *cobra.Command) {
	for _, sub := range c.Commands() {
		completeNames(g, sub)
	}
	if c.ValidArgsFunction != nil || !strings.Contains(c.Use, "PATTERN") && !strings.Contains(c.Use, " NAME") {
		return // not a command on processes: files complete as usual
	}
	c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		// Which argument this is, as the usage line names it.
		var kind string
		pos := 0
		for _, w := range strings.Fields(flagArgs().ReplaceAllString(c.Use, ""))[1:] {
			kind = strings.Trim(w, "[]")
			if pos >= len(args) || strings.HasSuffix(kind, "...") {
				break
			}
			pos++
			kind = ""
		}
		switch {
		case kind == "SIGNAL" && len(args) == 0:
			return prefixed([]string{"TERM", "HUP", "INT", "QUIT", "KILL", "USR1", "USR2"}, toComplete), cobra.ShellCompDirectiveNoFileComp
		case kind == "stdout|stderr":
			return prefixed([]string{"stdout", "stderr"}, toComplete), cobra.ShellCompDirectiveNoFileComp
		case !strings.HasPrefix(kind, "PATTERN") && kind != "NAME" && !(kind == "SIGNAL" && len(args) > 0):
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cl, err := g.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		defer cancel()
		st, err := cl.Status(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		seen := map[string]bool{}
		add := func(s string) {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		for _, p := range st {
			add(p.Name)
		}
		if kind != "NAME" {
			for _, p := range st {
				add(p.Group + ":*")
				add(p.Program)
			}
			add("all")
		}
		return prefixed(out, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// flagArgs are the flags a usage line shows, with their values.
var flagArgs = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\[-[^\]]*\]`) })

// prefixed keeps the words that start with prefix.
func prefixed(words []string, prefix string) []string {
	var out []string
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	return out
}
