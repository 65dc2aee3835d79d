package supervisor

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
)

// ErrNoMatch is returned when a pattern names no process.
var ErrNoMatch = errors.New("no such process")

// ErrBadPattern is returned when a pattern is not a well-formed glob: the
// request is wrong, not the daemon unable to take it now.
var ErrBadPattern = errors.New("bad pattern")

// patternError is err from resolve as the control API serves it: a
// malformed pattern is an invalid request (400), one that names nothing
// is not found (404); anything else (the daemon shutting down, the client
// giving up) is unavailable (503).
func patternError(err error) error {
	switch {
	case errors.Is(err, ErrBadPattern):
		return api.Invalid(err)
	case errors.Is(err, ErrNoMatch):
		return api.NotFound(err)
	default:
		return api.Unavailable(err)
	}
}

// resolve selects processes by supervisorctl patterns: pattern by
// pattern, each pattern's in the order of procs (configuration order),
// each process once. Each pattern is read by the first of these rules that
// applies:
//
//  1. "all": every process.
//  2. "GROUP:*" (or "GROUP:"): every process of the address groups GROUP
//     matches.
//  3. "GROUP:NAME": the processes named NAME in the address groups GROUP
//     matches.
//  4. a bare NAME: the processes of the address groups NAME matches, if it
//     matches any; else those of the programs it matches, if any; else the
//     processes whose own name it matches.
//
// The address group is a program's `group` key, by default the program's
// name: without group keys "web" is both the group and the program. GROUP,
// NAME and a bare NAME are shell globs as path.Match reads them (*, ?,
// [a-z], \ to quote). A malformed glob, or a pattern that matches nothing,
// is an error naming the pattern.
func resolve(procs []*procgroup.Process, patterns []string) ([]*procgroup.Process, error) {
	seen := map[*procgroup.Process]bool{}
	var out []*procgroup.Process
	for _, pat := range patterns {
		sel, err := resolveOne(procs, pat)
		if err != nil {
			return nil, err
		}
		for _, p := range sel {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func resolveOne(procs []*procgroup.Process, pat string) ([]*procgroup.Process, error) {
	if pat == "all" {
		if len(procs) == 0 {
			return nil, fmt.Errorf("%w: %s (no processes are configured)", ErrNoMatch, pat)
		}
		return procs, nil
	}
	group, name, qualified := strings.Cut(pat, ":")
	if name == "" {
		name = "*"
	}
	for _, glob := range []string{group, name} {
		if _, err := path.Match(glob, ""); err != nil {
			return nil, fmt.Errorf("%w %q: %w (patterns are shell globs: *, ?, [a-z], \\ quotes)", ErrBadPattern, pat, err)
		}
	}
	sel := func(match func(*procgroup.ProcSpec) bool) []*procgroup.Process {
		var out []*procgroup.Process
		for _, p := range procs {
			if match(p.Spec()) {
				out = append(out, p)
			}
		}
		return out
	}
	var out []*procgroup.Process
	if qualified {
		out = sel(func(s *procgroup.ProcSpec) bool { return glob(group, string(s.Group)) && glob(name, s.Name) })
	} else {
		out = sel(func(s *procgroup.ProcSpec) bool { return glob(pat, string(s.Group)) })
		if len(out) == 0 {
			out = sel(func(s *procgroup.ProcSpec) bool { return glob(pat, string(s.ProgramName)) })
		}
		if len(out) == 0 {
			out = sel(func(s *procgroup.ProcSpec) bool { return glob(pat, s.Name) })
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	// "worker:*" where worker is a program in group jobs: say where it is.
	if qualified {
		for _, p := range procs {
			if s := p.Spec(); string(s.ProgramName) == group && string(s.Group) != group {
				return nil, fmt.Errorf("%w: %s (program %s is in group %s: its processes are %s:%s)", ErrNoMatch, pat, group, s.Group, s.Group, name)
			}
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNoMatch, pat)
}

// glob reports whether name matches the shell glob pattern (checked
// well-formed beforehand).
func glob(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}
