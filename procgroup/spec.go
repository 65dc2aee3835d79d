package procgroup

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Spec is one program's settings: what the config package decodes from a
// [program.NAME] table, whose keys it names. Meanings and defaults follow
// supervisord's [program:x] section where the name is the same.
type Spec struct {
	// Group is the name processes are addressed by (group:process), like
	// supervisord's [group:x] programs=; default: the program's name.
	Group          string
	Command        string
	NumProcs       int
	NumProcsStart  int
	PortStart      int
	ProcessName    string
	Directory      string
	Environment    map[string]string
	User           string
	Priority       int
	AutoStart      bool
	AutoRestart    AutoRestart
	ExitCodes      []int
	StartSecs      int
	StartRetries   int
	StopSignal     Signal
	StopWaitSecs   int
	StopAsGroup    bool
	KillAsGroup    bool
	RedirectStderr bool
	Umask          Umask

	// BackoffMax caps the wait before respawning a process that keeps
	// exiting unexpectedly (1 s, 2 s, 4 s ...); 0: respawn at once, as
	// supervisord does. BackoffReset is the run that ends such a streak.
	BackoffMax   time.Duration
	BackoffReset time.Duration

	// Upstream names the nginx upstream whose servers these processes are;
	// Weight is their server weight there (0 or 1: none).
	Upstream string
	Weight   int

	// Ready says when STARTING becomes RUNNING: "tcp" (the port accepts a
	// connection; the default with port_start), "http:/path" (a GET
	// answers 2xx) or "startsecs" (the process stayed up startsecs; the
	// default without a port). A check must pass within ReadyTimeout.
	Ready        string
	ReadyTimeout time.Duration
	// Drain is how long a process is kept out of its nginx upstream before
	// a planned stop. MaxUnavailable bounds how many processes of the
	// program a rolling restart takes out at once.
	Drain          time.Duration
	MaxUnavailable Unavailable
	// TouchReload lists files whose change restarts the program's
	// processes, rolling (uWSGI's touch-reload). Relative to the config file.
	TouchReload []string

	StdoutLogfile         string
	StdoutLogfileMaxBytes Size
	StdoutLogfileBackups  int
	StderrLogfile         string
	StderrLogfileMaxBytes Size
	StderrLogfileBackups  int
	// LogTimestamps starts each line the processes write to a log file
	// with the time gosup wrote it (logtail.TimeFormat).
	LogTimestamps bool
}

// DefaultSpec returns supervisord's defaults, which the config package
// decodes a [program.NAME] table over. killasgroup follows stopasgroup
// unless set (the config package applies that after decoding).
func DefaultSpec() Spec {
	return Spec{
		NumProcs:              1,
		ProcessName:           "%(program_name)s",
		Priority:              999,
		AutoStart:             true,
		AutoRestart:           RestartUnexpected,
		ExitCodes:             []int{0},
		StartSecs:             1,
		StartRetries:          3,
		StopSignal:            Signal(15),
		StopWaitSecs:          10,
		BackoffMax:            60 * time.Second,
		BackoffReset:          60 * time.Second,
		StdoutLogfile:         "AUTO",
		StdoutLogfileMaxBytes: 50 << 20,
		StdoutLogfileBackups:  10,
		StderrLogfile:         "AUTO",
		StderrLogfileMaxBytes: 50 << 20,
		StderrLogfileBackups:  10,
		ReadyTimeout:          60 * time.Second,
		Drain:                 2 * time.Second,
		MaxUnavailable:        Unavailable{N: 1},
	}
}

// Unavailable is max_unavailable: a number of processes, or (Percent) a
// percentage of the program's numprocs.
type Unavailable struct {
	N       int
	Percent bool
}

// Of is how many of a program's numprocs processes a rolling restart may
// take out at once: N, or N percent of numprocs rounded down but at least
// 1 (Kubernetes' rule for maxUnavailable); never less than 1.
func (u Unavailable) Of(numprocs int) int {
	if u.Percent {
		return max(1, numprocs*u.N/100)
	}
	return max(1, u.N)
}

// String is the value as written: "3" or "25%".
func (u Unavailable) String() string {
	if u.Percent {
		return strconv.Itoa(u.N) + "%"
	}
	return strconv.Itoa(u.N)
}

// FieldError is a problem Expand found with one key of a program: Key is
// relative to the table ("process_name"); the config package adds the
// file, line and table.
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Err: fmt.Errorf(format, args...)}
}

// nameRE is what may reach a process name, a file name or an nginx template.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.-]+$`) })

// ValidName reports whether s may be used as a program or process name.
func ValidName(s string) bool { return nameRE().MatchString(s) }

// LogKind says where a child's output goes.
type LogKind uint8

// Log destinations.
const (
	LogFile LogKind = iota
	LogNone
	LogSyslog
)

// LogSpec is one output stream's destination.
type LogSpec struct {
	Kind     LogKind
	Path     string
	MaxBytes Size
	Backups  int
}

// Device says the stream goes to a device (/dev/stdout in a container),
// handed to the child as an open file rather than through a pipe: never
// rotated nor reopened, maybe shared by several processes, and no file
// gosup reads or opens for anyone but the child.
func (l LogSpec) Device() bool {
	return l.Kind == LogFile && strings.HasPrefix(l.Path, "/dev/")
}

// copied reports whether the output goes to a file through gosup's copier
// (which log_timestamps stamps).
func (l LogSpec) copied() bool {
	return l.Kind == LogFile && !l.Device()
}

func (l LogSpec) String() string {
	switch l.Kind {
	case LogNone:
		return "none"
	case LogSyslog:
		return "syslog"
	}
	return l.Path
}

// A program, an address group and a process are three different things,
// and each has its own name type, so that a map keyed by one cannot be
// read with another:
//
//   - a program is one [program.NAME] table, one command run numprocs
//     times; its running processes are a Pool. ProgramName names it.
//   - an address group is the first half of the name a process is
//     addressed by, GROUP:PROCESS: the program's `group` key (what
//     supervisord's [group:x] programs= makes), by default the program's
//     name. Several programs may share one. GroupName names it.
//   - a process is addressed by its FullName, GROUP:PROCESS; its own name
//     (process_name) alone is also unique within a configuration.
//
// None of them is a POSIX process group (stopasgroup, killasgroup).
type (
	ProgramName string
	GroupName   string
)

// ProcSpec is one expanded process of a program: everything needed to spawn it.
type ProcSpec struct {
	Group       GroupName // what it is addressed by: group:name
	Name        string
	ProgramName ProgramName // the [program.NAME] it comes from
	Num         int         // process_num: numprocs_start + Index
	Index       int         // 0-based position in the program
	Port        int         // 0 when the program has no port_start
	// ReadyHost is the address the readiness check also tries when
	// 127.0.0.1 does not answer: [registry] host, for a process in an
	// upstream the balancers reach there ("": none).
	ReadyHost string
	Argv      []string
	Env       []string // KEY=VALUE added to the daemon's environment, sorted
	Dir       string
	User      string
	Umask     Umask
	Stdout    LogSpec
	Stderr    LogSpec // Kind LogNone with RedirectStderr
	// Program holds the lifecycle settings shared by every process of the program.
	Program *Spec
}

// FullName is group:name, the supervisord way to address a process.
func (p *ProcSpec) FullName() string { return string(p.Group) + ":" + p.Name }

// ExpandContext carries the values of supervisord's expansions that do not
// depend on the program.
type ExpandContext struct {
	Here   string            // directory of the config file: %(here)s; relative paths resolve against it
	Host   string            // %(host_node_name)s
	Env    map[string]string // %(ENV_X)s
	LogDir string            // where AUTO logs go
}

// Expand returns the processes of s, in process_num order. The config
// package has validated s; Expand reports what only expansion finds (names,
// expansions, quoting) as *FieldError.
func (s *Spec) Expand(program string, xc ExpandContext) ([]ProcSpec, error) {
	group := program
	if s.Group != "" {
		if !ValidName(s.Group) {
			return nil, fieldErr("group", "group name %q may only contain letters, digits, '_', '.' and '-'", s.Group)
		}
		group = s.Group
	}
	if s.PortStart == 0 && strings.Contains(s.Command, "%(port)") {
		return nil, fieldErr("command", "uses %%(port)d but the program has no port_start")
	}
	var errs []error
	procs := make([]ProcSpec, 0, s.NumProcs)
	seen := make(map[string]bool, s.NumProcs)
	// The variables are the same for every process but process_num and
	// port: one map, updated for each (the environment alone is tens of
	// entries, times numprocs).
	vars := map[string]any{
		"program_name":   program,
		"group_name":     group,
		"numprocs":       s.NumProcs,
		"host_node_name": xc.Host,
		"here":           xc.Here,
	}
	for k, v := range xc.Env {
		vars["ENV_"+k] = v
	}
	for i := range s.NumProcs {
		vars["process_num"] = s.NumProcsStart + i
		if s.PortStart > 0 {
			vars["port"] = s.PortStart + i
		}
		exp := func(key, v string) string {
			out, err := Expand(v, vars)
			if err != nil {
				errs = append(errs, &FieldError{Key: key, Err: err})
			}
			return out
		}
		p := ProcSpec{Group: GroupName(group), ProgramName: ProgramName(program), Num: s.NumProcsStart + i, Index: i, User: s.User, Umask: s.Umask, Program: s}
		if s.PortStart > 0 {
			p.Port = s.PortStart + i
		}
		p.Name = exp("process_name", s.ProcessName)
		cmd := exp("command", s.Command)
		if s.Directory != "" {
			p.Dir = xc.abs(exp("directory", s.Directory))
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		if !ValidName(p.Name) {
			return nil, fieldErr("process_name", "%q expands to %q; a process name may only contain letters, digits, '_', '.' and '-'", s.ProcessName, p.Name)
		}
		if seen[p.Name] {
			return nil, fieldErr("process_name", "%q gives the same name %q to several processes; with numprocs = %d it must contain %%(process_num)d", s.ProcessName, p.Name, s.NumProcs)
		}
		seen[p.Name] = true
		argv, err := SplitCommand(cmd)
		if err != nil {
			return nil, fieldErr("command", "%w", err)
		}
		p.Argv = argv
		keys := make([]string, 0, len(s.Environment))
		for k := range s.Environment {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p.Env = append(p.Env, k+"="+exp("environment", s.Environment[k]))
		}
		p.Stdout = xc.logSpec(exp("stdout_logfile", s.StdoutLogfile), p.Name, "stdout", s.StdoutLogfileMaxBytes, s.StdoutLogfileBackups)
		p.Stderr = xc.logSpec(exp("stderr_logfile", s.StderrLogfile), p.Name, "stderr", s.StderrLogfileMaxBytes, s.StderrLogfileBackups)
		if s.RedirectStderr {
			p.Stderr = LogSpec{Kind: LogNone}
		}
		if s.LogTimestamps && !p.Stdout.copied() && !p.Stderr.copied() {
			return nil, fieldErr("log_timestamps", "stamps the lines of a log file gosup writes, and this program has none: stdout_logfile is %s, stderr_logfile %s (syslog stamps its messages itself; a device such as /dev/stdout is handed to the process as it is)", p.Stdout, p.Stderr)
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		procs = append(procs, p)
	}
	return procs, nil
}

func (xc ExpandContext) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(xc.Here, p)
}

func (xc ExpandContext) logSpec(v, name, stream string, maxBytes Size, backups int) LogSpec {
	switch strings.ToLower(v) {
	case "none", "":
		return LogSpec{Kind: LogNone}
	case "syslog":
		return LogSpec{Kind: LogSyslog}
	case "auto":
		return LogSpec{Kind: LogFile, Path: filepath.Join(xc.LogDir, name+"."+stream+".log"), MaxBytes: maxBytes, Backups: backups}
	}
	path := xc.abs(v)
	if strings.HasPrefix(path, "/dev/") {
		maxBytes = 0 // a device (/dev/stdout) is written directly, never rotated
	}
	return LogSpec{Kind: LogFile, Path: path, MaxBytes: maxBytes, Backups: backups}
}

// Expand replaces supervisord-style %(name)s / %(name)02d references in s
// with vars. "%%" is a literal percent sign. A reference is
// %(NAME)FLAGSVERB: NAME of letters, digits and '_', FLAGS any of "-#0 +"
// then a width and a precision (".N"), VERB one of s d i x X o; a '%'
// that starts none is kept as it is. (A scan, not a regular expression:
// a daemon expands every field of every process at its start, and 500
// processes took 6 ms of it so.)
func Expand(s string, vars map[string]any) (string, error) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, nil
	}
	field := s
	var err error
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i >= 0 {
		b.WriteString(s[:i])
		s = s[i:]
		n, name, flags, verb := expansionAt(s)
		switch {
		case n == 0:
			b.WriteByte('%') // starts no reference: as it is
			n = 1
		case name == "":
			b.WriteByte('%') // %%
		default:
			out, ok, xerr := expandOne(field, name, flags, verb, vars)
			if xerr != nil && err == nil {
				err = xerr
			}
			if !ok {
				out = s[:n]
			}
			b.WriteString(out)
		}
		s = s[n:]
		i = strings.IndexByte(s, '%')
	}
	b.WriteString(s)
	return b.String(), err
}

// expansionAt parses the reference s starts with ('%' first): its length
// (0 if none starts there), and its name, flags and verb; "%%" has length
// 2 and no name.
func expansionAt(s string) (n int, name, flags string, verb byte) {
	if len(s) >= 2 && s[1] == '%' {
		return 2, "", "", 0
	}
	if len(s) < 2 || s[1] != '(' {
		return 0, "", "", 0
	}
	j := 2
	for j < len(s) && (s[j] == '_' || s[j] >= '0' && s[j] <= '9' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z') {
		j++
	}
	if j == 2 || j >= len(s) || s[j] != ')' {
		return 0, "", "", 0
	}
	name = s[2:j]
	j++
	f := j
	for j < len(s) && strings.IndexByte("-#0 +", s[j]) >= 0 {
		j++
	}
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j+1 < len(s) && s[j] == '.' && s[j+1] >= '0' && s[j+1] <= '9' {
		j++
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
	}
	if j >= len(s) || strings.IndexByte("sdixXo", s[j]) < 0 {
		return 0, "", "", 0
	}
	return j + 1, name, s[f:j], s[j]
}

// expandOne is the text of a reference %(name)FLAGSVERB of field: ok is
// false (and err says why) when it cannot be expanded, and the reference
// is then kept as it is.
func expandOne(field, name, flags string, verb byte, vars map[string]any) (out string, ok bool, err error) {
	v, found := vars[name]
	if !found {
		return "", false, fmt.Errorf("unknown expansion %%(%s)%c in %q", name, verb, field)
	}
	if verb == 's' {
		str, isStr := v.(string)
		if !isStr {
			str = fmt.Sprint(v)
		}
		if flags == "" {
			return str, true, nil
		}
		return fmt.Sprintf("%"+flags+"s", str), true, nil
	}
	n, isInt := v.(int)
	if !isInt {
		x, perr := strconv.Atoi(fmt.Sprint(v))
		if perr != nil {
			return "", false, fmt.Errorf("%%(%s)%c in %q needs a number, and %q is not one", name, verb, field, v)
		}
		n = x
	}
	if verb == 'i' {
		verb = 'd'
	}
	if verb == 'd' && flags == "" {
		return strconv.Itoa(n), true, nil
	}
	return fmt.Sprintf("%"+flags+string(verb), n), true, nil
}

// SplitCommand splits a command line the way supervisord does (Python's
// shlex.split in POSIX mode): whitespace separates words, single quotes keep
// everything literal, double quotes allow backslash escapes of \ " $ and `,
// a backslash outside quotes escapes the next character. No shell runs.
func SplitCommand(s string) ([]string, error) {
	var (
		args    []string
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			if quote == '"' && !strings.ContainsRune("\\\"$`\n", r) {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote in %q", quote, s)
	}
	if escaped {
		return nil, fmt.Errorf("trailing backslash in %q", s)
	}
	if inWord {
		args = append(args, cur.String())
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	return args, nil
}

// Readiness checks.
const (
	ReadyStartSecs = "startsecs"
	ReadyTCP       = "tcp"
	ReadyHTTP      = "http"
)

// ParseReady validates a ready value and returns its kind and, for http,
// the path. An empty value is tcp with a port and startsecs without.
func ParseReady(v string, port int) (kind, path string, err error) {
	switch {
	case v == "":
		if port > 0 {
			return ReadyTCP, "", nil
		}
		return ReadyStartSecs, "", nil
	case v == ReadyStartSecs:
		return ReadyStartSecs, "", nil
	case v == ReadyTCP || strings.HasPrefix(v, "http:"):
		if port == 0 {
			return "", "", fmt.Errorf("%q checks the process's port, but the program has no port_start", v)
		}
		if v == ReadyTCP {
			return ReadyTCP, "", nil
		}
		path = strings.TrimPrefix(v, "http:")
		u, perr := url.Parse(path)
		if !strings.HasPrefix(path, "/") || perr != nil || u.Host != "" || strings.ContainsAny(path, " \t\r\n") {
			return "", "", fmt.Errorf("%q: want http: followed by a path such as http:/healthz", v)
		}
		return ReadyHTTP, path, nil
	}
	return "", "", fmt.Errorf("unknown check %q: want tcp, http:/PATH or startsecs", v)
}
