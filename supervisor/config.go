package supervisor

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
)

// Settings is the [supervisor] table.
type Settings struct {
	Socket          string             `toml:"socket"`
	SocketMode      string             `toml:"socket_mode"`
	SocketGroup     string             `toml:"socket_group"`
	LogDir          string             `toml:"logdir"`
	ShutdownTimeout procgroup.Duration `toml:"shutdown_timeout"`
	LogLevel        string             `toml:"loglevel"`
}

// Program is one validated [program.NAME] table and its expanded processes.
type Program struct {
	Name  string
	Spec  *procgroup.Spec
	Procs []procgroup.ProcSpec
}

// Config is a loaded, validated configuration. It is never modified after Load.
type Config struct {
	File       string // absolute path
	Supervisor Settings
	Programs   []*Program     // ascending priority, then name
	Nginx      *NginxSettings // nil without an [nginx] table
	Memmon     *memmon.Settings
	Email      *memmon.Email
}

// rawConfig is the file as decoded; each program is decoded separately so it
// starts from supervisord's defaults.
type rawConfig struct {
	Supervisor Settings                  `toml:"supervisor"`
	Program    map[string]toml.Primitive `toml:"program"`
	Nginx      *NginxSettings            `toml:"nginx"`
	Memmon     toml.Primitive            `toml:"memmon"`
	Email      toml.Primitive            `toml:"email"`
}

// ConfigError is one mistake in a configuration file.
type ConfigError struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted path such as program.web.numprocs; may be empty
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// DefaultSocket is where the daemon listens when neither the config nor the
// command line says otherwise.
func DefaultSocket() string {
	if os.Getuid() == 0 {
		return "/run/gosup/gosup.sock"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "gosup", "gosup.sock")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("gosup-%d", os.Getuid()), "gosup.sock")
}

func defaultLogDir() string {
	if os.Getuid() == 0 {
		return "/var/log/gosup"
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("gosup-%d", os.Getuid()), "log")
}

// maxSocketPath is the room in sockaddr_un.sun_path, less the NUL.
const maxSocketPath = 107

// Load reads, decodes and validates a configuration file. Every error names
// the file, the line where one is known, and the key; all problems found are
// reported together.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parse(abs, data)
}

func parse(file string, data []byte) (*Config, error) {
	lines := keyLines(data)
	cerr := func(key, format string, args ...any) *ConfigError {
		return &ConfigError{File: file, Line: lines.find(key), Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	var raw rawConfig
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, decodeError(file, "", err)
	}
	var errs []error
	cfg := &Config{File: file, Supervisor: raw.Supervisor, Nginx: raw.Nginx}
	here := filepath.Dir(file)
	st := &cfg.Supervisor
	if st.Socket == "" {
		st.Socket = DefaultSocket()
	}
	st.Socket = absTo(here, st.Socket)
	if len(st.Socket) > maxSocketPath {
		errs = append(errs, cerr("supervisor.socket", "path %q is %d bytes; a unix socket path may have at most %d", st.Socket, len(st.Socket), maxSocketPath))
	}
	if st.SocketMode == "" {
		st.SocketMode = "0600"
		if st.SocketGroup != "" {
			st.SocketMode = "0660"
		}
	}
	if _, err := parseMode(st.SocketMode); err != nil {
		errs = append(errs, cerr("supervisor.socket_mode", "%v", err))
	}
	if st.LogDir == "" {
		st.LogDir = defaultLogDir()
	}
	st.LogDir = absTo(here, st.LogDir)
	if !md.IsDefined("supervisor", "shutdown_timeout") {
		st.ShutdownTimeout = procgroup.Duration(30e9)
	}
	switch strings.ToLower(st.LogLevel) {
	case "", "info", "debug", "warn", "error":
	default:
		errs = append(errs, cerr("supervisor.loglevel", "invalid level %q: want debug, info, warn or error", st.LogLevel))
	}

	host, _ := os.Hostname()
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	xc := procgroup.ExpandContext{Here: here, Host: host, Env: env, LogDir: st.LogDir}
	names := slices.Sorted(mapsKeys(raw.Program))
	decodeFailed := map[string]bool{}
	for _, name := range names {
		spec := procgroup.DefaultSpec()
		if err := md.PrimitiveDecode(raw.Program[name], &spec); err != nil {
			errs = append(errs, decodeError(file, "program."+name, err))
			decodeFailed[name] = true
			continue
		}
		if !md.IsDefined("program", name, "killasgroup") {
			spec.KillAsGroup = spec.StopAsGroup
		}
		procs, err := spec.Expand(name, xc)
		if err != nil {
			for _, e := range unjoin(err) {
				var fe *procgroup.FieldError
				if errors.As(e, &fe) {
					key := "program." + name
					if fe.Key != "" {
						key += "." + fe.Key
					}
					errs = append(errs, cerr(key, "%v", fe.Err))
				} else {
					errs = append(errs, cerr("program."+name, "%v", e))
				}
			}
			continue
		}
		cfg.Programs = append(cfg.Programs, &Program{Name: name, Spec: &spec, Procs: procs})
	}
	// Before the unknown-key check: decoding marks [memmon] and [email] keys known.
	errs = append(errs, checkMemmon(cfg, md, raw, file, lines)...)
	undecoded := map[string]bool{}
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
	}
	for _, k := range md.Undecoded() {
		key := k.String()
		if reportedParent(undecoded, k) {
			continue
		}
		// A failed decode stops early, leaving valid keys of that program undecoded.
		if len(k) >= 3 && k[0] == "program" && decodeFailed[k[1]] && slices.Contains(knownKeys["program"], k[2]) {
			continue
		}
		msg := "unknown key"
		if s := suggest(k); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		errs = append(errs, cerr(key, "%s", msg))
	}
	errs = append(errs, crossCheck(cfg, cerr)...)
	if len(errs) == 0 {
		errs = append(errs, checkNginx(cfg, md, here, cerr)...)
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortStableFunc(cfg.Programs, func(a, b *Program) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), cmp.Compare(a.Name, b.Name))
	})
	return cfg, nil
}

// crossCheck finds what two programs can only get wrong together: the same
// process name, overlapping ports, the same log file.
func crossCheck(cfg *Config, cerr func(key, format string, args ...any) *ConfigError) []error {
	var errs []error
	names := map[string]string{}
	ports := map[int]string{}
	logs := map[string]string{}
	for _, p := range cfg.Programs {
		reported := map[string]bool{}
		for _, ps := range p.Procs {
			if other, ok := names[ps.Name]; ok && other != p.Name && !reported["name"] {
				errs = append(errs, cerr("program."+p.Name+".process_name", "process name %q is also used by program %q; process names must be unique", ps.Name, other))
				reported["name"] = true
			}
			names[ps.Name] = p.Name
			if ps.Port > 0 {
				if other, ok := ports[ps.Port]; ok && !reported["port"] {
					errs = append(errs, cerr("program."+p.Name+".port_start", "port %d is also claimed by %s", ps.Port, other))
					reported["port"] = true
				}
				ports[ps.Port] = ps.FullName()
			}
			for _, l := range []procgroup.LogSpec{ps.Stdout, ps.Stderr} {
				if l.Kind != procgroup.LogFile {
					continue
				}
				if other, ok := logs[l.Path]; ok && other != ps.FullName() && !reported["log"] {
					errs = append(errs, cerr("program."+p.Name, "log file %s is also written by %s; two processes may not share a log file", l.Path, other))
					reported["log"] = true
				}
				logs[l.Path] = ps.FullName()
			}
		}
	}
	return errs
}

func decodeError(file, key string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		k := pe.LastKey
		if k == "" {
			k = key
		}
		return &ConfigError{File: file, Line: pe.Position.Line, Key: k, Msg: pe.Message}
	}
	// Type mismatches come as `toml: line N (last key "K"): message`.
	if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &ConfigError{File: file, Line: line, Key: m[2], Msg: m[3]}
	}
	return &ConfigError{File: file, Key: key, Msg: err.Error()}
}

var typeErrRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func absTo(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// knownKeys lists the keys of each table, for "did you mean" hints.
var knownKeys = map[string][]string{
	"supervisor": tomlKeys(Settings{}),
	"program":    tomlKeys(procgroup.Spec{}),
	"nginx":      tomlKeys(NginxSettings{}),
	"memmon":     tomlKeys(memmon.Settings{}),
	"email":      tomlKeys(memmon.Email{}),
}

// reportedParent reports whether a table enclosing k is itself unknown.
func reportedParent(undecoded map[string]bool, k toml.Key) bool {
	for i := 1; i < len(k); i++ {
		if undecoded[k[:i].String()] {
			return true
		}
	}
	return false
}

func suggest(k toml.Key) string {
	if _, known := knownKeys[k[0]]; !known {
		return closest(k[0], slices.Sorted(mapsKeys(knownKeys)))
	}
	if len(k) < 2 {
		return ""
	}
	table := k[0]
	last := k[len(k)-1]
	switch {
	case table == "program" && len(k) != 3:
		return ""
	case table == "nginx" && len(k) == 4 && k[1] == "upstream":
		return closest(last, tomlKeys(UpstreamSettings{}))
	case table == "nginx" && len(k) != 2:
		return ""
	case (table == "memmon" || table == "email") && len(k) != 2:
		return ""
	}
	return closest(last, knownKeys[table])
}

func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, cand := range candidates {
		if d := editDistance(s, cand); d < bestD {
			best, bestD = cand, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
