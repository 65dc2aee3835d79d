package config

import (
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/gosup/gosup/procgroup"
)

// decodeProgram decodes a [program.NAME] table over supervisord's defaults.
func decodeProgram(md toml.MetaData, prim toml.Primitive) (procgroup.Spec, error) {
	spec := procgroup.DefaultSpec()
	err := decodeOver[rawProgram](md, prim, &spec)
	return spec, err
}

// checkProgram checks the keys of program name that need no expansion;
// expansion (procgroup.Spec.Expand) finds the rest.
func (src *source) checkProgram(name string, s *procgroup.Spec) []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, src.cerr("program."+name+"."+key, format, args...))
	}
	if strings.TrimSpace(s.Command) == "" {
		add("command", "is required")
	}
	if s.NumProcs < 1 {
		add("numprocs", "must be at least 1, have %d", s.NumProcs)
	}
	if s.NumProcsStart < 0 {
		add("numprocs_start", "must not be negative, have %d", s.NumProcsStart)
	}
	if s.PortStart < 0 || s.PortStart > 65535 {
		add("port_start", "must be a TCP port (1-65535), have %d", s.PortStart)
	} else if s.PortStart > 0 && s.PortStart+s.NumProcs-1 > 65535 {
		add("port_start", "%d + numprocs %d runs past port 65535", s.PortStart, s.NumProcs)
	}
	for _, kv := range []struct {
		key string
		v   int
	}{{"startsecs", s.StartSecs}, {"startretries", s.StartRetries}, {"stopwaitsecs", s.StopWaitSecs},
		{"stdout_logfile_backups", s.StdoutLogfileBackups}, {"stderr_logfile_backups", s.StderrLogfileBackups}} {
		if kv.v < 0 {
			add(kv.key, "must not be negative, have %d", kv.v)
		}
	}
	for _, c := range s.ExitCodes {
		if c < 0 || c > 255 {
			add("exitcodes", "exit code %d is not in 0-255", c)
		}
	}
	if _, _, err := procgroup.ParseReady(s.Ready, s.PortStart); err != nil {
		add("ready", "%v", err)
	}
	if s.ReadyTimeout <= 0 {
		add("ready_timeout", "must be positive, have %s", s.ReadyTimeout)
	} else if s.ReadyTimeout < time.Duration(s.StartSecs)*time.Second {
		add("ready_timeout", "%s is shorter than startsecs = %d", s.ReadyTimeout, s.StartSecs)
	}
	if s.BackoffMax < 0 {
		add("backoff_max", "must not be negative, have %s", s.BackoffMax)
	}
	if s.BackoffReset <= 0 {
		add("backoff_reset", "must be positive, have %s", s.BackoffReset)
	}
	if s.Drain < 0 {
		add("drain", "must not be negative, have %s", s.Drain)
	}
	switch mu := s.MaxUnavailable; {
	case mu.Percent && (mu.N < 1 || mu.N > 100):
		add("max_unavailable", "a percentage of numprocs must be 1%%-100%%, have %s", mu)
	case !mu.Percent && mu.N < 1:
		add("max_unavailable", "must be at least 1 (or a percentage of numprocs such as \"25%%\"), have %s", mu)
	}
	for _, f := range s.TouchReload {
		if strings.TrimSpace(f) == "" {
			add("touch_reload", "empty path")
		}
	}
	if s.Weight < 0 {
		add("weight", "must not be negative, have %d", s.Weight)
	}
	if s.Upstream != "" && !procgroup.ValidName(s.Upstream) {
		add("upstream", "upstream name %q may only contain letters, digits, '_', '.' and '-'", s.Upstream)
	}
	if s.Upstream != "" && s.PortStart == 0 {
		add("upstream", "program is a server of upstream %q but has no port_start", s.Upstream)
	}
	for k := range s.Environment {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			add("environment", "invalid variable name %q", k)
		}
	}
	return errs
}

// StartAttempt is the longest one start attempt of p waits before it
// counts as failed, and the key that sets it: startsecs, or ready_timeout
// (at least startsecs) when a tcp or http readiness check decides.
func (p *Program) StartAttempt() (time.Duration, string) {
	d := time.Duration(p.Spec.StartSecs) * time.Second
	if kind, _, _ := procgroup.ParseReady(p.Spec.Ready, p.Spec.PortStart); kind != procgroup.ReadyStartSecs {
		return max(d, p.Spec.ReadyTimeout), "ready_timeout"
	}
	return d, "startsecs"
}

// StartBound is the longest a start of one of p's processes can take
// before it is RUNNING or FATAL: each of its startretries + 1 attempts
// running out StartAttempt, plus the backoff between them (1 s, 2 s, ...).
func (p *Program) StartBound() time.Duration {
	attempt, _ := p.StartAttempt()
	tries := p.Spec.StartRetries + 1
	return time.Duration(tries)*attempt + time.Duration(tries*(tries-1)/2)*time.Second
}

// LogFiles are the files p's processes log to, in process order, stdout
// before stderr (not syslog, none or the daemon's output).
func (p *Program) LogFiles() []string {
	var out []string
	for _, ps := range p.Procs {
		for _, l := range []procgroup.LogSpec{ps.Stdout, ps.Stderr} {
			if l.Kind == procgroup.LogFile {
				out = append(out, l.Path)
			}
		}
	}
	return out
}
