// Package config reads gosup's TOML configuration: the schema, the
// defaults, every validation and the include logic. Load yields plain
// runtime structs (procgroup.Spec, memmon.Settings, the [nginx] table as
// data); every mistake is an *Error naming the file, the line and the key.
// It imports nothing of the daemon (layering_test.go checks it).
package config

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/hostlimits"
)

// Settings is the [supervisor] table.
type Settings struct {
	Socket          string
	SocketMode      string // octal, such as "0660"; SocketPerm has it parsed
	SocketGroup     string
	LogDir          string
	ShutdownTimeout time.Duration
	LogLevel        string
	// Watch reloads the configuration when the main file or an included
	// file changes (the watcher uses Config.Files and Config.Include).
	Watch bool
	// TasksMax is the unit's TasksMax= (gosup systemd-unit); 0: derived
	// from the programs (see Config.TasksMax); TasksInfinity: no limit.
	TasksMax int
}

// SocketPerm is SocketMode as permission bits.
func (s *Settings) SocketPerm() os.FileMode {
	m, _ := parseMode(s.SocketMode) // validated by Load
	return os.FileMode(m)
}

// Program is one validated [program.NAME] table and its expanded processes.
type Program struct {
	Name  string
	File  string // absolute path of the file that defines it: the main file or an included one
	Spec  *procgroup.Spec
	Procs []procgroup.ProcSpec
	// TouchReload is Spec.TouchReload made absolute against File's directory.
	TouchReload []string
}

// Config is a loaded, validated configuration. It is never modified after Load.
type Config struct {
	File       string   // absolute path of the main file
	Files      []string // every file read: File first, then the included files in reading order
	Include    []string // the include patterns, absolute
	Supervisor Settings
	Programs   []*Program // ascending priority, then name
	// Nginx is the [nginx] table the daemon keeps written and nginx
	// reloaded: nil without an [nginx] table, or without its output.
	Nginx *Nginx
	// NginxRenderOnly is an [nginx] table without output: gosup render
	// prints it, the daemon writes nothing and reloads no nginx (what
	// gosup import writes until the operator sets output). Nil otherwise.
	NginxRenderOnly *Nginx
	Memmon          *memmon.Settings // nil without a [memmon] table
	Email           *memmon.Email    // nil without an [email] table
	// HTTP is the [http] table: the read-only HTTP listener (metrics,
	// status page, health). Nil without the table or without its listen.
	HTTP *HTTP
	// Registry is the [registry] table: the etcd cluster the daemon
	// publishes its upstream members to. Nil without the table.
	Registry *Registry
	// HAProxy is the [haproxy] table: the balancer tier's configuration
	// rendered from the registry (nil without one).
	HAProxy *HAProxy
	// Sources is the content of every file the load read, keyed by its
	// absolute path as in File, Files and Nginx.TemplateFile: the main
	// file, the included files and the nginx template. Each is at most
	// 4 MiB (a larger file is refused). It is what an upgrade hands the
	// next daemon image (LoadOptions.Sources), so that it loads the
	// configuration this one runs even if the files changed on disk since.
	// Like the rest of Config it must not be modified.
	Sources map[string][]byte
	// Warnings are what is valid but will not work here as it stands
	// (an [email] sendmail command that does not exist): check prints
	// them, the daemon logs them when it starts and reloads, and ctl
	// status shows them.
	Warnings []*Error
}

// Error is one mistake in a configuration file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted path such as program.web.numprocs; may be empty
	Msg  string
}

// Warning is the error as a warning: FILE:LINE: warning: KEY: MESSAGE.
func (e *Error) Warning() string {
	where := e.File
	if e.Line > 0 {
		where += fmt.Sprintf(":%d", e.Line)
	}
	msg := e.Msg
	if e.Key != "" {
		msg = e.Key + ": " + msg
	}
	return where + ": warning: " + msg
}

// KeyError is an Error (or, with Warning, a warning) about key in file,
// one of cfg's Files, at the line that sets it: for what is checked
// outside Load, such as gosup check's PATH warnings.
func (cfg *Config) KeyError(file, key, format string, args ...any) *Error {
	return &Error{File: file, Line: keyLines(cfg.Sources[file]).find(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
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

// What a derived TasksMax allows: gosup's own threads and the commands it
// runs (nginx tests and reloads, sendmail), and each process with its
// threads and children.
const (
	TasksDaemon     = 256
	TasksPerProcess = 512
	// TasksInfinity is tasks_max = "infinity": TasksMax=infinity.
	TasksInfinity = -1
)

// TasksMax is the most tasks (processes and threads) the daemon and all its
// children may have together, for systemd's TasksMax=: [supervisor]
// tasks_max (TasksInfinity: no limit), or TasksDaemon plus TasksPerProcess
// for each process of every program (autostart or not). why says which,
// for the unit's comment.
func (cfg *Config) TasksMax() (n int, why string) {
	if cfg.Supervisor.TasksMax != 0 {
		return cfg.Supervisor.TasksMax, "[supervisor] tasks_max"
	}
	procs := 0
	for _, p := range cfg.Programs {
		procs += len(p.Procs)
	}
	return TasksDaemon + TasksPerProcess*procs, fmt.Sprintf("%d for gosup + %d for each of its %d processes", TasksDaemon, TasksPerProcess, procs)
}

// maxSocketPath is the room in sockaddr_un.sun_path, less the NUL.
const maxSocketPath = 107

// LoadOptions change what LoadWith accepts.
type LoadOptions struct {
	// InsecureFiles reads files that others than root can change, or
	// replace, when running as root (gosup's --insecure-config): see
	// trust.go.
	InsecureFiles bool
	// Sources, when not nil, is where every file comes from instead of
	// the disk: the main file, the included files and the nginx template
	// (the Config.Sources of the load being reproduced, handed over by an
	// upgrade). Nothing is checked for who may change it (see trust.go):
	// each file was checked when the load that made Sources read it.
	// Include patterns match the keys as filepath.Glob matches files on
	// disk (a directory is never a key); a file named by the configuration
	// (the main file, the template) that is not a key is an error naming
	// it.
	Sources map[string][]byte
	// Files, with Sources, is the Config.Files of the load that made
	// Sources. Sources alone cannot tell an included file left out of it
	// from one that was not there: each of Files that Sources lacks is an
	// error naming it, and so is a load that reads other files than Files.
	// Nil skips that check.
	Files []string
}

// Load reads, decodes and validates a configuration file. Every error names
// the file, the line where one is known, and the key; all problems found are
// reported together. Running as root, it reads only files that root alone
// can change (see LoadOptions).
func Load(path string) (*Config, error) {
	return LoadWith(path, LoadOptions{})
}

// LoadWith is Load with options.
func LoadWith(path string, o LoadOptions) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	fr := &fileReader{strict: !o.InsecureFiles && os.Geteuid() == 0, insecure: o.InsecureFiles, from: o.Sources, read: map[string][]byte{}}
	if o.Sources != nil && o.Files != nil {
		var errs []error
		for _, f := range o.Files {
			if _, ok := o.Sources[f]; !ok {
				errs = append(errs, notHandedOver(f))
			}
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	data, err := fr.readFile(abs)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := parse(abs, data, fr)
	if err != nil {
		return nil, err
	}
	if o.Sources != nil && o.Files != nil && !slices.Equal(cfg.Files, o.Files) {
		return nil, &Error{File: abs, Msg: fmt.Sprintf("the configuration handed over reads %q, not %q as the running one did", cfg.Files, o.Files)}
	}
	cfg.Sources = fr.read
	cfg.Warnings = append(cfg.Warnings, LimitWarnings(cfg, hostlimits.Read())...)
	return cfg, nil
}

// fileReader reads the files of one load, from the disk or from
// LoadOptions.Sources, and keeps what it read for Config.Sources.
type fileReader struct {
	strict bool // read only files root alone can change (readFile)
	// insecure: LoadOptions.InsecureFiles ([http]'s credential files
	// are checked whoever the daemon runs as, unless set).
	insecure bool
	from     map[string][]byte // LoadOptions.Sources; nil: the disk
	read     map[string][]byte // every file read, by absolute path
}

func (fr *fileReader) readFile(path string) ([]byte, error) {
	var data []byte
	if fr.from != nil {
		var ok bool
		if data, ok = fr.from[path]; !ok {
			return nil, notHandedOver(path)
		}
	} else {
		var err error
		if data, err = readFile(path, fr.strict); err != nil {
			return nil, err
		}
	}
	fr.read[path] = data
	return data, nil
}

// notHandedOver is the error for a file LoadOptions.Sources lacks.
func notHandedOver(path string) *Error {
	return &Error{File: path, Msg: "not in the configuration handed over (it was not read when the running configuration was loaded)"}
}

// includeMatches is what pattern matches on disk (includeMatches) or,
// with Sources, what filepath.Glob would match on a disk that holds only
// the files of Sources.
func (fr *fileReader) includeMatches(pattern string) ([]string, error) {
	if fr.from == nil {
		return includeMatches(pattern)
	}
	// Glob fails on a bad pattern whatever matches.
	if _, err := filepath.Match(pattern, ""); err != nil {
		return nil, err
	}
	// Glob returns a pattern without metacharacters as written when it
	// exists, and otherwise each match joined to its directory, so cleaned
	// (a pattern written with "//" or "/./" matches cleaned paths).
	if !strings.ContainsAny(pattern, `*?[\`) {
		if _, ok := fr.from[pattern]; ok {
			return []string{pattern}, nil
		}
		return nil, nil
	}
	clean := filepath.Clean(pattern)
	var matches []string
	for k := range fr.from {
		if ok, _ := filepath.Match(clean, k); ok {
			matches = append(matches, k)
		}
	}
	slices.Sort(matches)
	return matches, nil
}

// source is one file Load read: the main file or an included one.
type source struct {
	file     string // absolute path
	dir      string // %(here)s and the base of relative paths for its programs
	lines    lineIndex
	md       toml.MetaData
	included bool
	clashed  map[string]bool // programs defined earlier in another file, not decoded here
}

func (s *source) cerr(key, format string, args ...any) *Error {
	return &Error{File: s.file, Line: s.lines.find(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

// at is FILE:LINE of a program's table, for messages that point at another file.
func (s *source) at(program string) string {
	if n := s.lines.first("program." + program); n > 0 {
		return fmt.Sprintf("%s:%d", s.file, n)
	}
	return s.file
}

// programTable is one [program.NAME] table before decoding, with its file.
type programTable struct {
	name string
	prim toml.Primitive
	src  *source
}

// loader is the state of one Load: the files read and which one defines
// each program, so that every error points into the right file.
type loader struct {
	files   *fileReader
	main    *source
	sources []*source          // main first, then included files in reading order
	from    map[string]*source // program name → the file that defines it
}

// cerr makes an error for key in the file that defines it: a program's keys
// belong to that program's file, everything else to the main file.
func (l *loader) cerr(key, format string, args ...any) *Error {
	return l.sourceOf(key).cerr(key, format, args...)
}

func (l *loader) sourceOf(key string) *source {
	rest, ok := strings.CutPrefix(key, "program.")
	if !ok {
		return l.main
	}
	// Program names may contain '.', so take the longest name that fits.
	best := ""
	for name := range l.from {
		if (rest == name || strings.HasPrefix(rest, name+".")) && len(name) > len(best) {
			best = name
		}
	}
	if best == "" {
		return l.main
	}
	return l.from[best]
}

// addPrograms registers the program tables of src in name order. A name
// already defined by another file is an error on the later definition.
func (l *loader) addPrograms(src *source, tables map[string]toml.Primitive) ([]programTable, []error) {
	var out []programTable
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(tables)) {
		key := "program." + name
		if prev, ok := l.from[name]; ok {
			errs = append(errs, &Error{File: src.file, Line: src.lines.first(key), Key: key,
				Msg: fmt.Sprintf("also defined in %s; program names must be unique across included files", prev.at(name))})
			src.clashed[name] = true
			continue
		}
		l.from[name] = src
		out = append(out, programTable{name: name, prim: tables[name], src: src})
	}
	return out, errs
}

// includeMatches is what an include pattern names: its matches in sorted
// order, directories left out.
func includeMatches(pattern string) ([]string, error) {
	matches, err := filepath.Glob(pattern)
	slices.Sort(matches)
	return slices.DeleteFunc(matches, func(m string) bool {
		fi, err := os.Stat(m)
		return err == nil && fi.IsDir()
	}), err
}

// MatchIncludes lists the files the include patterns match now, as Load
// reads them (each once, in pattern order): when it differs from
// Files[1:], a file was added or removed since.
func (cfg *Config) MatchIncludes() []string {
	var out []string
	seen := map[string]bool{cfg.File: true}
	for _, p := range cfg.Include {
		matches, _ := includeMatches(p)
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// readIncludes reads the files the include patterns match: pattern by
// pattern, each pattern's matches in sorted order, each file once.
// Directories are skipped; a pattern matching nothing is fine.
func (l *loader) readIncludes(cfg *Config, patterns []string) ([]programTable, []error) {
	var progs []programTable
	var errs []error
	seen := map[string]bool{l.main.file: true}
	for _, pat := range patterns {
		if strings.TrimSpace(pat) == "" {
			errs = append(errs, l.main.cerr("include", "empty pattern: want a glob such as \"conf.d/*.toml\""))
			continue
		}
		abs := absTo(l.main.dir, pat)
		matches, err := l.files.includeMatches(abs)
		if err != nil {
			errs = append(errs, l.main.cerr("include", "pattern %q: %v", pat, err))
			continue
		}
		cfg.Include = append(cfg.Include, abs)
		for _, m := range matches {
			if seen[m] {
				continue
			}
			seen[m] = true
			data, err := l.files.readFile(m)
			if err != nil {
				var ce *Error
				if errors.As(err, &ce) {
					errs = append(errs, ce)
				} else {
					errs = append(errs, l.main.cerr("include", "%v", err))
				}
				continue
			}
			cfg.Files = append(cfg.Files, m)
			var ri rawInclude
			md, err := toml.Decode(string(data), &ri)
			if err != nil {
				errs = append(errs, decodeError(m, "", err))
				continue
			}
			src := &source{file: m, dir: filepath.Dir(m), lines: keyLines(data), md: md, included: true, clashed: map[string]bool{}}
			l.sources = append(l.sources, src)
			p, perrs := l.addPrograms(src, ri.Program)
			progs = append(progs, p...)
			errs = append(errs, perrs...)
		}
	}
	return progs, errs
}

func parse(file string, data []byte, files *fileReader) (*Config, error) {
	var raw rawConfig
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, decodeError(file, "", err)
	}
	main := &source{file: file, dir: filepath.Dir(file), lines: keyLines(data), md: md, clashed: map[string]bool{}}
	l := &loader{files: files, main: main, sources: []*source{main}, from: map[string]*source{}}
	cerr := main.cerr
	var errs []error
	cfg := &Config{File: file, Files: []string{file}}
	convert(&cfg.Supervisor, &raw.Supervisor)
	here := main.dir
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
		st.ShutdownTimeout = 30 * time.Second
	}
	switch strings.ToLower(st.LogLevel) {
	case "", "info", "debug", "warn", "error":
	default:
		errs = append(errs, cerr("supervisor.loglevel", "invalid level %q: want debug, info, warn or error", st.LogLevel))
	}

	programs, perrs := l.addPrograms(main, raw.Program)
	errs = append(errs, perrs...)
	included, ierrs := l.readIncludes(cfg, raw.Include)
	programs = append(programs, included...)
	errs = append(errs, ierrs...)

	host, _ := os.Hostname()
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	decodeFailed := map[string]bool{}
	for _, rp := range programs {
		name, src := rp.name, rp.src
		spec, err := decodeProgram(src.md, rp.prim)
		if err != nil {
			errs = append(errs, decodeError(src.file, "program."+name, err))
			decodeFailed[name] = true
			continue
		}
		if !src.md.IsDefined("program", name, "killasgroup") {
			spec.KillAsGroup = spec.StopAsGroup
		}
		// The readiness wait covers startsecs, with room to spare.
		if min := time.Duration(spec.StartSecs)*time.Second + 30*time.Second; !src.md.IsDefined("program", name, "ready_timeout") && spec.ReadyTimeout < min {
			spec.ReadyTimeout = min
		}
		if !procgroup.ValidName(name) {
			errs = append(errs, src.cerr("program."+name, "program name %q may only contain letters, digits, '_', '.' and '-'", name))
			continue
		}
		if perrs := src.checkProgram(name, &spec); len(perrs) > 0 {
			errs = append(errs, perrs...)
			continue
		}
		// %(here)s and relative paths follow the file that defines the program.
		xc := procgroup.ExpandContext{Here: src.dir, Host: host, Env: env, LogDir: st.LogDir}
		procs, err := spec.Expand(name, xc)
		if err != nil {
			for _, e := range unjoin(err) {
				var fe *procgroup.FieldError
				if errors.As(e, &fe) {
					key := "program." + name
					if fe.Key != "" {
						key += "." + fe.Key
					}
					errs = append(errs, src.cerr(key, "%v", fe.Err))
				} else {
					errs = append(errs, src.cerr("program."+name, "%v", e))
				}
			}
			continue
		}
		var touch []string
		for _, f := range spec.TouchReload {
			touch = append(touch, filepath.Clean(absTo(src.dir, f)))
		}
		cfg.Programs = append(cfg.Programs, &Program{Name: name, File: src.file, Spec: &spec, Procs: procs, TouchReload: touch})
	}
	if md.IsDefined("supervisor", "tasks_max") && st.TasksMax != TasksInfinity {
		// Below this the Go runtime cannot even start gosup's threads, or
		// a process cannot be spawned at all.
		procs := 0
		for _, p := range cfg.Programs {
			procs += len(p.Procs)
		}
		if least := TasksDaemon + procs; st.TasksMax < least {
			errs = append(errs, cerr("supervisor.tasks_max", "must be at least %d (%d for gosup + 1 for each of its %d processes) or \"infinity\", have %d", least, TasksDaemon, procs, st.TasksMax))
		}
	}
	// Before the unknown-key check: decoding marks [memmon] and [email] keys known.
	errs = append(errs, checkMemmon(cfg, main, raw, files.insecure)...)
	errs = append(errs, checkHTTP(cfg, main, raw.HTTP, files.insecure)...)
	errs = append(errs, checkRegistry(cfg, main, raw.Registry, files.insecure)...)
	for _, src := range l.sources {
		errs = append(errs, unknownKeys(src, decodeFailed)...)
	}
	errs = append(errs, l.crossCheck(cfg)...)
	if len(errs) == 0 {
		errs = append(errs, checkNginx(cfg, md, raw.Nginx, here, l.cerr, files.readFile)...)
		errs = append(errs, checkHAProxy(cfg, md, raw.HAProxy, here, l.cerr, files.readFile)...)
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortStableFunc(cfg.Programs, func(a, b *Program) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), cmp.Compare(a.Name, b.Name))
	})
	return cfg, nil
}

// forbiddenInInclude is the error for anything but a program table in an
// included file.
const forbiddenInInclude = "only [program.NAME] tables may appear in an included file"

// unknownKeys reports the keys of src that nothing decoded: typos (with a
// suggestion) and, in an included file, anything outside [program.NAME].
func unknownKeys(src *source, decodeFailed map[string]bool) []error {
	var errs []error
	undecoded := map[string]bool{}
	for _, k := range src.md.Undecoded() {
		undecoded[k.String()] = true
	}
	forbidden := map[string]bool{}
	for _, k := range src.md.Undecoded() {
		key := k.String()
		if src.included && k[0] != "program" {
			if !forbidden[k[0]] {
				forbidden[k[0]] = true
				msg := forbiddenInInclude
				if len(k) == 1 && k[0] == "include" {
					msg = "an included file cannot include further files; " + msg
				}
				errs = append(errs, &Error{File: src.file, Line: src.lines.first(k[0]), Key: k[0], Msg: msg})
			}
			continue
		}
		if reportedParent(undecoded, k) {
			continue
		}
		// A program defined earlier in another file was reported as a clash.
		if len(k) >= 2 && k[0] == "program" && src.clashed[k[1]] {
			continue
		}
		// A failed decode stops early, leaving valid keys of that program undecoded.
		if len(k) >= 3 && k[0] == "program" && decodeFailed[k[1]] && slices.Contains(knownKeys()["program"], k[2]) {
			continue
		}
		msg := "unknown key"
		if s := suggest(k); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else if !src.included && len(k) > 1 && k[len(k)-1] == "include" {
			msg += " (include is a top-level key: put it before the first table)"
		}
		errs = append(errs, src.cerr(key, "%s", msg))
	}
	return errs
}

// crossCheck finds what two programs can only get wrong together: the same
// process name, overlapping ports, the same log file. The later program is
// reported, in its own file; when the other one is defined in another file,
// the message says where.
func (l *loader) crossCheck(cfg *Config) []error {
	type owner struct {
		name string // process (group:name) or program name
		p    *Program
	}
	elsewhere := func(p, other *Program) string {
		if p.File == other.File {
			return ""
		}
		return fmt.Sprintf(" (defined in %s)", l.from[other.Name].at(other.Name))
	}
	var errs []error
	names := map[string]owner{}
	ports := map[int]owner{}
	logs := map[string]owner{}
	for _, p := range cfg.Programs {
		reported := map[string]bool{}
		for _, ps := range p.Procs {
			if other, ok := names[ps.Name]; ok && other.p != p && !reported["name"] {
				errs = append(errs, l.cerr("program."+p.Name+".process_name", "process name %q is also used by program %q%s; process names must be unique", ps.Name, other.name, elsewhere(p, other.p)))
				reported["name"] = true
			}
			names[ps.Name] = owner{p.Name, p}
			if ps.Port > 0 {
				if other, ok := ports[ps.Port]; ok && !reported["port"] {
					errs = append(errs, l.cerr("program."+p.Name+".port_start", "port %d is also claimed by %s%s", ps.Port, other.name, elsewhere(p, other.p)))
					reported["port"] = true
				}
				ports[ps.Port] = owner{ps.FullName(), p}
			}
			for _, ls := range []procgroup.LogSpec{ps.Stdout, ps.Stderr} {
				// A device (/dev/stdout in a container) is shared by design.
				if ls.Kind != procgroup.LogFile || strings.HasPrefix(ls.Path, "/dev/") {
					continue
				}
				if other, ok := logs[ls.Path]; ok && other.name != ps.FullName() && !reported["log"] {
					errs = append(errs, l.cerr("program."+p.Name, "log file %s is also written by %s%s; two processes may not share a log file", ls.Path, other.name, elsewhere(p, other.p)))
					reported["log"] = true
				}
				logs[ls.Path] = owner{ps.FullName(), p}
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
		return &Error{File: file, Line: pe.Position.Line, Key: k, Msg: pe.Message}
	}
	// Type mismatches come as `toml: line N (last key "K"): message`.
	if m := typeErrRE().FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: file, Line: line, Key: m[2], Msg: m[3]}
	}
	return &Error{File: file, Key: key, Msg: err.Error()}
}

var typeErrRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)
})

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

// programRelTo makes a relative path as a command line's program
// (bin/mta -t, ./bin/check) relative to dir, the directory of the file
// that names it, as every relative path in a file is: the daemon runs
// commands from its own working directory (/ under systemd), which check
// cannot know. A name looked up in $PATH, an absolute path and a command
// run through /bin/sh (shell syntax) are left as they are.
func programRelTo(dir, command string) string {
	argv, err := procgroup.CommandArgv(command)
	if err != nil || len(argv) == 0 || argv[0] == "/bin/sh" || !strings.Contains(argv[0], "/") || filepath.IsAbs(argv[0]) {
		return command
	}
	if rest, ok := strings.CutPrefix(strings.TrimLeft(command, " \t"), argv[0]); ok {
		return filepath.Join(dir, argv[0]) + rest
	}
	return command
}

// knownKeys lists the keys of each table, for "did you mean" hints: read
// from the structs at first use, not at every command's start.
var knownKeys = sync.OnceValue(func() map[string][]string {
	return map[string][]string{
		"supervisor": tomlKeys(rawSettings{}),
		"program":    tomlKeys(rawProgram{}),
		"nginx":      tomlKeys(rawNginx{}),
		"memmon":     tomlKeys(rawMemmon{}),
		"email":      tomlKeys(rawEmail{}),
		"http":       tomlKeys(rawHTTP{}),
		"registry":   tomlKeys(rawRegistry{}),
		"haproxy":    tomlKeys(rawHAProxy{}),
	}
})

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
	if _, known := knownKeys()[k[0]]; !known {
		return closest(k[0], append(slices.Sorted(maps.Keys(knownKeys())), "include"))
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
		return closest(last, tomlKeys(rawUpstream{}))
	case table == "nginx" && len(k) != 2:
		return ""
	case table == "haproxy" && len(k) == 4 && k[1] == "backend":
		return closest(last, tomlKeys(rawBackend{}))
	case table == "haproxy" && len(k) != 2:
		return ""
	case (table == "memmon" || table == "email" || table == "http" || table == "registry") && len(k) != 2:
		return ""
	}
	return closest(last, knownKeys()[table])
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

// SocketOf returns the control socket a configuration file names, reading
// only [supervisor] socket: a client must reach the daemon even when the
// file has mistakes elsewhere, which is when `gosup ctl reload` has to
// report them.
func SocketOf(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("config %s: %w", path, err)
	}
	data, err := readFile(abs, false)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return "", ce
		}
		return "", fmt.Errorf("read config: %w", err)
	}
	var raw struct {
		Supervisor struct {
			Socket string `toml:"socket"`
		} `toml:"supervisor"`
	}
	if _, err := toml.Decode(string(data), &raw); err != nil {
		return "", decodeError(abs, "", err)
	}
	if raw.Supervisor.Socket == "" {
		return DefaultSocket(), nil
	}
	return absTo(filepath.Dir(abs), raw.Supervisor.Socket), nil
}
