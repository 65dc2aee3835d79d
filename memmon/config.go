// Package memmon is gosup's RSS watchdog: it samples every supervised
// process's resident memory (optionally with its whole descendant tree),
// restarts a process that stays over its limit through the supervisor's
// graceful path, and mails an alert, rate limited with digests. It does what
// superlance's memmon does for supervisord, without its blind spots.
package memmon

import (
	"time"

	"github.com/gosup/gosup/procgroup"
)

// Settings are the watchdog's: the [memmon] table, as the config package
// decodes and validates it.
type Settings struct {
	Interval       time.Duration
	Any            procgroup.Size
	Program        map[string]procgroup.Size
	Group          map[string]procgroup.Size
	Cumulative     bool
	Samples        int
	MaxRestarting  int
	AlertMaxUptime time.Duration
	Name           string
}

// DefaultSettings are the values of keys a [memmon] table leaves out.
func DefaultSettings() Settings {
	return Settings{Interval: 5 * time.Second, Samples: 3, MaxRestarting: 1}
}

// Email says how alerts are mailed: the [email] table, as the config
// package decodes and validates it.
type Email struct {
	To        []string
	From      string
	SMTP      string
	Username  string
	Password  string
	StartTLS  *bool
	Timeout   time.Duration
	Sendmail  string
	RateLimit time.Duration
}

// DefaultEmail are the values of keys an [email] table leaves out.
func DefaultEmail() Email {
	return Email{Timeout: 10 * time.Second, RateLimit: 10 * time.Minute}
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
