package config

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gosup/gosup/memmon"
)

// checkMemmon decodes [memmon] and [email] over their defaults, validates
// them, and checks that the processes and groups they name exist.
func checkMemmon(cfg *Config, main *source, raw rawConfig) []error {
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
		} else if verrs := checkEmail(main, &e); len(verrs) > 0 {
			errs = append(errs, verrs...)
		} else {
			cfg.Email = &e
		}
	}
	if cfg.Memmon == nil {
		return errs
	}
	procs, groups := map[string]bool{}, map[string]bool{}
	for _, p := range cfg.Programs {
		groups[p.Name] = true
		for _, ps := range p.Procs {
			groups[string(ps.Group)] = true
			procs[ps.Name] = true
			procs[ps.FullName()] = true
		}
	}
	for name := range cfg.Memmon.Program {
		if !procs[name] {
			key := "memmon.program." + name
			errs = append(errs, &Error{File: main.file, Line: main.lines.find("memmon.program"), Key: key, Msg: fmt.Sprintf("no process is named %q (use a process name such as web_00, or group:name)", name)})
		}
	}
	for name := range cfg.Memmon.Group {
		if !groups[name] {
			errs = append(errs, &Error{File: main.file, Line: main.lines.find("memmon.group"), Key: "memmon.group." + name, Msg: fmt.Sprintf("no program is named %q", name)})
		}
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
	if s.Any == 0 && len(s.Program) == 0 && len(s.Group) == 0 {
		errs = append(errs, main.cerr("memmon", "no limit: set any, program or group"))
	}
	return errs
}

// checkEmail checks the [email] table.
func checkEmail(main *source, e *memmon.Email) []error {
	var errs []error
	if len(e.To) == 0 {
		errs = append(errs, main.cerr("email.to", "is required: who gets the alerts"))
	}
	for _, a := range append(append([]string(nil), e.To...), e.From) {
		if strings.ContainsAny(a, "\r\n") {
			errs = append(errs, main.cerr("email", "address %q contains a line break", a))
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
	return errs
}
