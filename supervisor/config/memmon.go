package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
	"unicode"

	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
)

// checkMemmon decodes [memmon] and [email] over their defaults, validates
// them, and checks that every name under program and group names a
// process the way the watchdog applies it.
func checkMemmon(cfg *Config, main *source, raw rawConfig, insecure bool) []error {
	var errs []error
	if main.md.IsDefined("memmon") {
		s := memmon.DefaultSettings()
		if err := decodeOver[rawMemmon](main.md, raw.Memmon, &s); err != nil {
			errs = append(errs, decodeError(main.file, "", err))
		} else if verrs := checkMemmonSettings(main, &s); len(verrs) > 0 {
			errs = append(errs, verrs...)
		} else {
			cfg.Memmon = &s
		}
	}
	if main.md.IsDefined("email") {
		e := memmon.DefaultEmail()
		if err := decodeOver[rawEmail](main.md, raw.Email, &e); err != nil {
			errs = append(errs, decodeError(main.file, "", err))
		} else if verrs := checkEmail(main, &e, insecure); len(verrs) > 0 {
			errs = append(errs, verrs...)
		} else {
			cfg.Email = &e
			if w := sendmailWarning(main, &e); w != nil {
				cfg.Warnings = append(cfg.Warnings, w)
			}
			if w := readablePasswordWarning(main, &e); w != nil {
				cfg.Warnings = append(cfg.Warnings, w)
			}
		}
	}
	if cfg.Memmon == nil {
		return errs
	}
	var ids []memmon.ID
	groupOf := map[string]procgroup.GroupName{}
	for _, p := range cfg.Programs {
		for _, ps := range p.Procs {
			ids = append(ids, memmon.ID{Program: ps.ProgramName, Group: ps.Group, Process: ps.Name})
		}
		if len(p.Procs) > 0 {
			groupOf[p.Name] = p.Procs[0].Group
		}
	}
	// The names are checked exactly as the watchdog's LimitFor applies them.
	program, group := cfg.Memmon.Unmatched(ids)
	for _, name := range program {
		msg := fmt.Sprintf("%q names no program and no process: use a program name, a process name such as web_00, or group:process such as web:web_00", name)
		if g, p, ok := strings.Cut(name, ":"); ok {
			if grp, isProg := groupOf[g]; isProg && string(grp) != g {
				msg = fmt.Sprintf("%q names no process: program %s is in group %s, so its processes are %s:%s", name, g, grp, grp, p)
			}
		}
		errs = append(errs, main.cerr("memmon.program."+name, "%s", msg))
	}
	for _, name := range group {
		msg := fmt.Sprintf("no group is named %q (a group is a program's group key, by default its name)", name)
		if grp, isProg := groupOf[name]; isProg {
			msg = fmt.Sprintf("%q is a program in group %s: limit it with program = { %s = ... } or group = { %s = ... }", name, grp, name, grp)
		}
		errs = append(errs, main.cerr("memmon.group."+name, "%s", msg))
	}
	return errs
}

// checkMemmonSettings checks the [memmon] table on its own.
func checkMemmonSettings(main *source, s *memmon.Settings) []error {
	var errs []error
	if s.Interval < 100*time.Millisecond {
		errs = append(errs, main.cerr("memmon.interval", "must be at least 100ms, have %s", s.Interval))
	}
	if s.Samples < 1 {
		errs = append(errs, main.cerr("memmon.samples", "must be at least 1, have %d", s.Samples))
	}
	if s.MaxRestarting < 1 {
		errs = append(errs, main.cerr("memmon.max_restarting", "must be at least 1, have %d", s.MaxRestarting))
	}
	if s.MaxRestarts < 0 {
		errs = append(errs, main.cerr("memmon.max_restarts", "must not be negative (0: no limit), have %d", s.MaxRestarts))
	}
	if s.RestartWindow <= 0 {
		errs = append(errs, main.cerr("memmon.restart_window", "must be positive, have %s", s.RestartWindow))
	}
	if r, ok := controlChar(s.Name); ok {
		errs = append(errs, main.cerr("memmon.name", "%q contains control character %U: the name goes into the alerts' Subject header", s.Name, r))
	}
	if s.Any == 0 && len(s.Program) == 0 && len(s.Group) == 0 {
		errs = append(errs, main.cerr("memmon", "no limit: set any, program or group"))
	}
	return errs
}

// controlChar returns the first control character in s (C0 including tab,
// DEL, C1): no value that reaches a mail header or nginx's configuration
// may hold one, since a line break there starts a header or a directive of
// its own.
func controlChar(s string) (rune, bool) {
	for _, r := range s {
		if unicode.IsControl(r) {
			return r, true
		}
	}
	return 0, false
}

// checkEmail checks the [email] table, and reads the password of
// password_file (a credential file: readSecret's checks).
func checkEmail(main *source, e *memmon.Email, insecure bool) []error {
	var errs []error
	e.Sendmail = strings.ReplaceAll(e.Sendmail, "%(here)s", main.dir)
	e.Sendmail = programRelTo(main.dir, e.Sendmail)
	if len(e.To) == 0 {
		errs = append(errs, main.cerr("email.to", "is required: who gets the alerts"))
	}
	// Values that reach a mail header, or the SMTP conversation.
	for _, f := range []struct {
		key  string
		vals []string
	}{{"email.to", e.To}, {"email.from", []string{e.From}}, {"email.smtp", []string{e.SMTP}}} {
		for _, v := range f.vals {
			if r, ok := controlChar(v); ok {
				errs = append(errs, main.cerr(f.key, "%q contains control character %U: it would reach a mail header", v, r))
			}
		}
	}
	switch {
	case e.SMTP == "" && e.Sendmail == "":
		errs = append(errs, main.cerr("email", "set smtp = \"host:port\" or sendmail = \"/usr/sbin/sendmail -t -i\""))
	case e.SMTP != "" && e.Sendmail != "":
		errs = append(errs, main.cerr("email.sendmail", "set smtp or sendmail, not both"))
	case e.SMTP != "":
		if _, _, err := net.SplitHostPort(e.SMTP); err != nil {
			errs = append(errs, main.cerr("email.smtp", "want host:port, have %q", e.SMTP))
		}
	}
	if e.Timeout <= 0 {
		errs = append(errs, main.cerr("email.timeout", "must be positive"))
	}
	switch {
	case e.PasswordFile != "" && e.Password != "":
		errs = append(errs, main.cerr("email.password_file", "set password or password_file, not both"))
	case e.PasswordFile != "" && e.Username == "":
		errs = append(errs, main.cerr("email.password_file", "missing: username and password_file go together (the password is only sent with AUTH PLAIN as username)"))
	case e.PasswordFile != "":
		e.PasswordFile = absTo(main.dir, e.PasswordFile)
		pw, err := readPassword(e.PasswordFile, insecure)
		if err != nil {
			errs = append(errs, credError(main, "email.password_file", err))
		}
		e.Password = pw
	}
	return errs
}

// readablePasswordWarning says when [email] password is written in a
// configuration file every user may read (the mode a config needs for
// gosup ctl to find the socket in it): the SMTP password is then theirs.
// nil when it is not, or the password comes from password_file.
func readablePasswordWarning(main *source, e *memmon.Email) *Error {
	if e.Password == "" || e.PasswordFile != "" {
		return nil
	}
	fi, err := os.Stat(main.file)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return nil
	}
	return main.cerr("email.password", "%s is mode %04o: every user on this host can read the SMTP password in it; move the password into a file only gosup's user reads (install -m 600) and name it with password_file = \"FILE\" (then the config may stay readable, for gosup ctl), or chmod o-r %s", main.file, fi.Mode().Perm(), main.file)
}

// sendmailWarning says, naming it, when the command of [email] sendmail
// cannot run here: its program (argv[0], resolved as the daemon runs it:
// a path, or a name looked up in $PATH) does not exist or is not
// executable. Every alert would fail; nil when it can run, or when there
// is no sendmail.
func sendmailWarning(main *source, e *memmon.Email) *Error {
	if e.Sendmail == "" {
		return nil
	}
	const what = "alerts cannot be mailed: install a mail transfer agent that provides it (such as postfix, or msmtp-mta), point sendmail at a command that exists, or set smtp = \"host:port\" instead"
	argv, err := procgroup.CommandArgv(e.Sendmail)
	if err != nil {
		return main.cerr("email.sendmail", "%q: %v: %s", e.Sendmail, err, what)
	}
	prog := argv[0]
	if _, err := exec.LookPath(prog); err == nil {
		return nil
	} else if !strings.Contains(prog, "/") {
		return main.cerr("email.sendmail", "%s is not found in $PATH (%s): %s", prog, os.Getenv("PATH"), what)
	}
	fi, err := os.Stat(prog)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return main.cerr("email.sendmail", "%s does not exist: %s", prog, what)
	case err != nil:
		return main.cerr("email.sendmail", "%s: %v: %s", prog, err, what)
	case fi.IsDir():
		return main.cerr("email.sendmail", "%s is a directory: %s", prog, what)
	}
	return main.cerr("email.sendmail", "%s is not executable (mode %s): %s", prog, fi.Mode().Perm(), what)
}
