package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/config"
)

// systemdPath is the PATH systemd gives a system service that sets none
// (systemd.exec(5), "Environment Variables in Spawned Processes"; Debian's
// and Fedora's systemd alike). The unit gosup systemd-unit writes sets no
// PATH, so under it gosup, and every child that does not set its own PATH,
// searches exactly this.
const systemdPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// pathWarnings names each program whose command is a bare name that the
// PATH of this shell (pathEnv) resolves through an entry systemd's PATH
// does not have: a pyenv shim under /root, a virtualenv, ~/bin, a relative
// entry. Under systemd the program would run another executable, or none.
// A program that sets PATH in its environment is left alone: it takes
// that PATH under systemd too.
func pathWarnings(cfg *config.Config, pathEnv string) []*config.Error {
	unitDirs := filepath.SplitList(systemdPath)
	var out []*config.Error
	for _, p := range cfg.Programs {
		if len(p.Procs) == 0 {
			continue
		}
		ps := p.Procs[0]
		name, via, ok := searchedName(ps.Argv)
		if !ok {
			continue
		}
		if slices.ContainsFunc(ps.Env, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
			continue
		}
		here, err := procgroup.LookPath(name, ps.Dir, []string{"PATH=" + pathEnv})
		if err != nil {
			continue // not found here either: the spawn says so
		}
		dir := filepath.Dir(here)
		if slices.Contains(unitDirs, dir) {
			continue
		}
		why := "which systemd's PATH does not have"
		switch home, _ := os.UserHomeDir(); {
		case !filepath.IsAbs(dir):
			why = "a relative entry (against gosup's working directory), which systemd's PATH does not have"
		case home != "" && under(dir, home):
			why = "under $HOME (" + home + "), which systemd's PATH does not have"
		}
		instead := "it would not be found"
		if other, err := procgroup.LookPath(name, ps.Dir, []string{"PATH=" + systemdPath}); err == nil {
			instead = "it would be " + other
		}
		what := fmt.Sprintf("%q", name)
		if via != "" {
			what += " (run by " + via + ")"
		}
		out = append(out, cfg.KeyError(p.File, "program."+p.Name+".command", "%s is %s here, found through the PATH entry %s, %s (%s): under systemd %s. Write the absolute path (%s), or set PATH in [program.%s.environment]",
			what, here, dir, why, systemdPath, instead, commandWith(p.Spec.Command, name, absPath(here)), p.Name))
	}
	return out
}

// searchedName is the word of argv that is looked up in PATH: the
// command's first word when it has no slash, or the command an absolute
// env runs (/usr/bin/env NAME=VALUE python3 ..., via is then env's path).
// ok is false when nothing is looked up in the PATH gosup gives: a path,
// env -i (no PATH), env PATH=... (its own), env -S (not read here).
func searchedName(argv []string) (name, via string, ok bool) {
	if len(argv) == 0 {
		return "", "", false
	}
	if !strings.Contains(argv[0], "/") {
		return argv[0], "", true
	}
	if filepath.Base(argv[0]) != "env" {
		return "", "", false
	}
	for i := 1; i < len(argv); i++ {
		switch a := argv[i]; {
		case a == "-" || a == "-i" || a == "--ignore-environment" || strings.HasPrefix(a, "-S") || strings.HasPrefix(a, "--split-string"):
			return "", "", false
		case a == "-u" || a == "--unset" || a == "-C" || a == "--chdir":
			i++ // and its argument
		case strings.HasPrefix(a, "-"):
		case strings.HasPrefix(a, "PATH="):
			return "", "", false
		case strings.Contains(a, "="):
		case strings.Contains(a, "/"):
			return "", "", false
		default:
			return a, argv[0], true
		}
	}
	return "", "", false
}

// commandWith is command with the word name (its first, or the one env
// runs) replaced by path, as the warning suggests writing it.
func commandWith(command, name, path string) string {
	re := regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(name) + `(\s|$)`)
	loc := re.FindStringSubmatchIndex(command)
	if loc == nil {
		return "command = \"" + path + " ...\""
	}
	// loc[3] ends what precedes the word, loc[4] begins what follows it.
	return fmt.Sprintf("command = %q", command[:loc[3]]+path+command[loc[4]:])
}

// printPathWarnings prints pathWarnings for this shell's PATH, one line
// each, as FILE:LINE: warning: KEY: MESSAGE like the configuration's
// warnings.
func printPathWarnings(w io.Writer, cfg *config.Config) {
	for _, e := range pathWarnings(cfg, os.Getenv("PATH")) {
		fmt.Fprintln(w, e.Warning())
	}
}

// absPath is p made absolute against gosup's working directory, as the
// spawn resolves a relative PATH entry; p itself if that fails.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
