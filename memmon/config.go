// Package memmon is gosup's RSS watchdog: it samples every supervised
// process's resident memory (optionally with its whole descendant tree),
// restarts a process that stays over its limit through the supervisor's
// graceful path, and mails an alert, rate limited with digests. It does what
// superlance's memmon does for supervisord, without its blind spots.
package memmon

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gosup/gosup/procgroup"
)

// Settings is the [memmon] table.
type Settings struct {
	Interval       procgroup.Duration        `toml:"interval"`
	Any            procgroup.Size            `toml:"any"`
	Program        map[string]procgroup.Size `toml:"program"`
	Group          map[string]procgroup.Size `toml:"group"`
	Cumulative     bool                      `toml:"cumulative"`
	Samples        int                       `toml:"samples"`
	MaxRestarting  int                       `toml:"max_restarting"`
	AlertMaxUptime procgroup.Duration        `toml:"alert_max_uptime"`
	Name           string                    `toml:"name"`
}

// DefaultSettings are the values of keys a [memmon] table leaves out.
func DefaultSettings() Settings {
	return Settings{Interval: procgroup.Duration(5 * time.Second), Samples: 3, MaxRestarting: 1}
}

// Email is the [email] table.
type Email struct {
	To        []string           `toml:"to"`
	From      string             `toml:"from"`
	SMTP      string             `toml:"smtp"`
	Username  string             `toml:"username"`
	Password  string             `toml:"password"`
	StartTLS  *bool              `toml:"starttls"`
	Timeout   procgroup.Duration `toml:"timeout"`
	Sendmail  string             `toml:"sendmail"`
	RateLimit procgroup.Duration `toml:"rate_limit"`
}

// DefaultEmail are the values of keys an [email] table leaves out.
func DefaultEmail() Email {
	return Email{Timeout: procgroup.Duration(10 * time.Second), RateLimit: procgroup.Duration(10 * time.Minute)}
}

// KeyError is a problem with one key of [memmon] or [email]; Key is the
// dotted path from the top of the file.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

func keyErr(key, format string, args ...any) error {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Validate checks the table on its own; the supervisor checks that the
// names in program and group exist.
func (s *Settings) Validate() error {
	var errs []error
	if time.Duration(s.Interval) < 100*time.Millisecond {
		errs = append(errs, keyErr("memmon.interval", "must be at least 100ms, have %s", s.Interval))
	}
	if s.Samples < 1 {
		errs = append(errs, keyErr("memmon.samples", "must be at least 1, have %d", s.Samples))
	}
	if s.MaxRestarting < 1 {
		errs = append(errs, keyErr("memmon.max_restarting", "must be at least 1, have %d", s.MaxRestarting))
	}
	if s.Any == 0 && len(s.Program) == 0 && len(s.Group) == 0 {
		errs = append(errs, keyErr("memmon", "no limit: set any, program or group"))
	}
	return errors.Join(errs...)
}

// Validate checks the [email] table.
func (e *Email) Validate() error {
	var errs []error
	if len(e.To) == 0 {
		errs = append(errs, keyErr("email.to", "is required: who gets the alerts"))
	}
	for _, a := range append(append([]string(nil), e.To...), e.From) {
		if strings.ContainsAny(a, "\r\n") {
			errs = append(errs, keyErr("email", "address %q contains a line break", a))
		}
	}
	switch {
	case e.SMTP == "" && e.Sendmail == "":
		errs = append(errs, keyErr("email", "set smtp = \"host:port\" or sendmail = \"/usr/sbin/sendmail -t -i\""))
	case e.SMTP != "" && e.Sendmail != "":
		errs = append(errs, keyErr("email.sendmail", "set smtp or sendmail, not both"))
	case e.SMTP != "":
		if _, _, err := net.SplitHostPort(e.SMTP); err != nil {
			errs = append(errs, keyErr("email.smtp", "want host:port, have %q", e.SMTP))
		}
	}
	if time.Duration(e.Timeout) <= 0 {
		errs = append(errs, keyErr("email.timeout", "must be positive"))
	}
	return errors.Join(errs...)
}

// Rule says which limit applies to a process, and why.
type Rule struct {
	Limit procgroup.Size
	Name  string // "program web_00", "group web", "any"
}

// LimitFor returns the most specific limit for a process: its own (by
// process name or group:name), then its group's, then any. memmon takes the
// largest of those; here the most specific wins, so a larger per-process
// limit is not overridden by a smaller -a.
func (s *Settings) LimitFor(group, process string) Rule {
	if l, ok := s.Program[group+":"+process]; ok {
		return Rule{Limit: l, Name: "program " + group + ":" + process}
	}
	if l, ok := s.Program[process]; ok {
		return Rule{Limit: l, Name: "program " + process}
	}
	if l, ok := s.Group[group]; ok {
		return Rule{Limit: l, Name: "group " + group}
	}
	if s.Any > 0 {
		return Rule{Limit: s.Any, Name: "any"}
	}
	return Rule{}
}
