// Package memmon is gosup's RSS watchdog: it samples every supervised
// process's resident memory (optionally with its whole descendant tree),
// restarts a process that stays over its limit through the supervisor's
// graceful path, and mails an alert, rate limited with digests. It does what
// superlance's memmon does for supervisord, without its blind spots.
package memmon

import (
	"slices"
	"time"

	"github.com/gosup/gosup/procgroup"
)

// Settings are the watchdog's: the [memmon] table, as the config package
// decodes and validates it.
type Settings struct {
	Interval time.Duration
	Any      procgroup.Size
	// Program limits a process by (most specific first) group:process,
	// its own name or its program's name; Group limits the processes of
	// an address group. See LimitFor.
	Program        map[string]procgroup.Size
	Group          map[string]procgroup.Size
	Cumulative     bool
	Samples        int
	MaxRestarting  int
	AlertMaxUptime time.Duration
	Name           string

	// MaxRestarts restarts of one process within RestartWindow, and memmon
	// gives up on it (monit's "3 restarts within 5 cycles then
	// unmonitor"); 0: no limit.
	MaxRestarts   int
	RestartWindow time.Duration
}

// DefaultSettings are the values of keys a [memmon] table leaves out.
func DefaultSettings() Settings {
	return Settings{Interval: 5 * time.Second, Samples: 3, MaxRestarting: 1, MaxRestarts: 3, RestartWindow: 10 * time.Minute}
}

// Email says how alerts are mailed: the [email] table, as the config
// package decodes and validates it.
type Email struct {
	To       []string
	From     string
	SMTP     string
	Username string
	Password string `json:"-"`
	// PasswordFile is where Password was read from, if it was.
	PasswordFile string
	StartTLS     *bool
	Timeout      time.Duration
	Sendmail     string
	RateLimit    time.Duration
}

// DefaultEmail are the values of keys an [email] table leaves out.
func DefaultEmail() Email {
	return Email{Timeout: 10 * time.Second, RateLimit: 10 * time.Minute}
}

// ID is what a limit can name a process by.
type ID struct {
	Program procgroup.ProgramName // its [program.NAME]
	Group   procgroup.GroupName   // its address group
	Process string                // its own name
}

// FullName is group:process.
func (id ID) FullName() string { return string(id.Group) + ":" + id.Process }

// programKeys are the keys of Settings.Program that name id, most specific
// first: group:process, the process's name (superlance memmon's -p takes
// these two), and its program's name (every process of the program).
func (id ID) programKeys() [3]string {
	return [3]string{id.FullName(), id.Process, string(id.Program)}
}

// Rule says which limit applies to a process, and why.
type Rule struct {
	Limit procgroup.Size `json:"limit"`
	Name  string         `json:"name"` // "program web_00", "group web", "any"
}

// LimitFor returns the most specific limit for a process: a program key
// naming it (as group:process, then by its name, then by its program's
// name), then its address group's, then any. memmon takes the largest of
// those; here the most specific wins, so a larger per-process limit is not
// overridden by a smaller -a.
func (s *Settings) LimitFor(id ID) Rule {
	for _, k := range id.programKeys() {
		if l, ok := s.Program[k]; ok {
			return Rule{Limit: l, Name: "program " + k}
		}
	}
	if l, ok := s.Group[string(id.Group)]; ok {
		return Rule{Limit: l, Name: "group " + string(id.Group)}
	}
	if s.Any > 0 {
		return Rule{Limit: s.Any, Name: "any"}
	}
	return Rule{}
}

// Unmatched returns, sorted, the keys of Program and of Group that name
// none of the processes ids, read as LimitFor reads them: such a limit
// would never apply.
func (s *Settings) Unmatched(ids []ID) (program, group []string) {
	hit := map[string]bool{}
	groups := map[string]bool{}
	for _, id := range ids {
		for _, k := range id.programKeys() {
			hit[k] = true
		}
		groups[string(id.Group)] = true
	}
	for k := range s.Program {
		if !hit[k] {
			program = append(program, k)
		}
	}
	for k := range s.Group {
		if !groups[k] {
			group = append(group, k)
		}
	}
	slices.Sort(program)
	slices.Sort(group)
	return program, group
}
