// Package importer translates a supervisord.conf (and its memmon event
// listener) into an equivalent gosup TOML file: supervisord's INI dialect
// read as supervisord reads it, every key gosup has written with the same
// name and meaning, comments where the meaning shifts, and everything else
// kept as a comment with a warning, never dropped silently.
package importer

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gosup/gosup/procgroup"
)

// Warning is something in the supervisord.conf that gosup does not do, or
// does differently. It is also written into the output as a comment.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// Result is an imported configuration.
type Result struct {
	TOML     []byte
	Warnings []Warning
	// Files are the files read: the main one, then the included ones.
	Files []string
	// Upstreams are the nginx upstreams written (one per program that
	// listens on a sequence of ports), as "NAME (PROTOCOL, N servers)".
	Upstreams []string
}

type conv struct {
	o        out
	warnings []Warning
	sections []*section
	osEnv    map[string]string
	defaults defaults
	progs    []*prog
	// progBySection finds a [program:x]'s prog.
	progBySection map[*section]*prog
	// upstreams are the programs written with upstream = NAME, in order.
	upstreams []upstream
}

// upstream is a program that listens on a sequence of ports, and so is
// an nginx upstream of its own.
type upstream struct {
	name, protocol, why string
	first, last         int // its ports
}

// prog is one [program:x] as the pre-pass understood it: its name, group,
// the process names supervisord would give it, and what the output needs
// to change so that gosup check accepts it.
type prog struct {
	sec      *section
	name     string // [program.NAME], made valid for gosup
	group    groupInfo
	env      map[string]string // its own environment
	envOrder []string
	vars     map[string]string // what the import expands itself (see expandKnown)
	numprocs int
	start    int
	procs    []string // process names
	// rename is the process_name to write instead of the given one (the
	// names are also another program's).
	rename string
	// logs maps stdout_logfile/stderr_logfile to a value to write instead
	// (a file several processes share, made one per process).
	logs map[string]string
	// prio, when prioNote is set, replaces the program's priority: the
	// order supervisord starts it in, given its group.
	prio     int
	prioNote string
}

func (c *conv) warn(e *entry, format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	c.warnings = append(c.warnings, Warning{File: e.file, Line: e.line, Msg: msg})
	return msg
}

// dropped writes an entry as a comment and warns about it.
func (c *conv) dropped(sec string, e *entry, why string) {
	c.warn(e, "[%s] %s not imported: %s", sec, e.key, why)
	c.o.comment(fmt.Sprintf("%s = %s: not imported: %s", e.key, oneLine(e.value), why))
}

// Import reads the supervisord configuration at path and returns the gosup
// configuration that does the same. A file that is not supervisord's INI is
// a *ParseError naming its line.
func Import(file string) (*Result, error) {
	osEnv := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		osEnv[k] = v
	}
	sections, files, warnings, err := readConfig(file, func(v string) string { return expandKnown(v, envVars(osEnv)) })
	if err != nil {
		return nil, err
	}
	c := &conv{sections: sections, warnings: warnings, osEnv: osEnv}
	c.o.comment(fmt.Sprintf("Imported by `gosup import` from %s.", files[0]))
	c.o.comment("Comments mark where gosup's meaning differs from supervisord's, and what was not imported.")
	c.o.comment("Check it with `gosup check -c FILE`; run it with `gosup start -c FILE`.")
	c.o.comment("A program that keeps exiting unexpectedly is respawned after 1s, 2s, 4s ... up to backoff_max (60s),")
	c.o.comment("where supervisord respawned it at once: set backoff_max = \"0s\" in a program for supervisord's way.")
	c.defaults = c.programDefaults()
	c.collectPrograms(c.groups())
	c.supervisorTable()
	var memmonSec *section
	for _, s := range sections {
		kind, _, _ := strings.Cut(s.name, ":")
		switch kind {
		case "program":
			c.program(c.progBySection[s])
		case "eventlistener":
			if memmonSec == nil && isMemmon(s) {
				memmonSec = s
				continue
			}
			c.other(s, "an event listener: gosup has no event protocol; memmon is built in ([memmon]), other listeners need a replacement")
		case "fcgi-program":
			c.other(s, "fcgi-program: gosup does not open sockets for its children; run the FastCGI server with its own listen socket as a [program]")
		case "ctlplugin":
			c.other(s, "supervisorctl plugins do not exist for gosup ctl")
		case "supervisord", "unix_http_server", "supervisorctl", "include", "group", "rpcinterface":
		default:
			c.other(s, "not a section supervisord knows")
		}
	}
	c.nginx()
	if memmonSec != nil {
		c.memmon(memmonSec)
	}
	res := &Result{TOML: []byte(c.o.b.String()), Warnings: c.warnings, Files: files}
	for _, u := range c.upstreams {
		res.Upstreams = append(res.Upstreams, fmt.Sprintf("%s (%s, %d servers)", u.name, u.protocol, u.last-u.first+1))
	}
	return res, nil
}

func (c *conv) find(name string) *section {
	for _, s := range c.sections {
		if s.name == name {
			return s
		}
	}
	return nil
}

// other writes a whole section as comments, with one warning.
func (c *conv) other(s *section, why string) {
	c.warnings = append(c.warnings, Warning{File: s.file, Line: s.line, Msg: fmt.Sprintf("[%s] not imported: %s", s.name, why)})
	c.o.blank()
	c.o.comment(fmt.Sprintf("[%s] (%s:%d) not imported: %s", s.name, s.file, s.line, why))
	for _, e := range s.keys {
		c.o.comment(fmt.Sprintf("  %s = %s", e.key, oneLine(e.value)))
	}
}

// supervisorTable writes [supervisor] from [unix_http_server],
// [supervisorctl], [supervisord] and [inet_http_server].
func (c *conv) supervisorTable() {
	c.o.blank()
	c.o.line("[supervisor]")
	socketSet := false
	if s := c.find("unix_http_server"); s != nil {
		for _, e := range s.keys {
			switch e.key {
			case "file":
				c.o.kv("socket", tomlString(expandTilde(e.value)), "from [unix_http_server] file; gosup's control socket (gosup ctl finds it through -c). Change it to run gosup next to a running supervisord")
				socketSet = true
			case "chmod":
				c.o.kv("socket_mode", tomlString(e.value), "from [unix_http_server] chmod")
			case "chown":
				if _, grp, ok := strings.Cut(e.value, ":"); ok && grp != "" {
					c.o.kv("socket_group", tomlString(grp), "from [unix_http_server] chown "+e.value+"; the socket is owned by the daemon's user")
				} else {
					c.dropped("unix_http_server", e, "gosup's socket belongs to the user it runs as; give a group access with socket_group")
				}
			case "username", "password":
				c.dropped("unix_http_server", e, "gosup checks the caller's uid with SO_PEERCRED (root, the daemon's user, socket_group); there are no passwords")
			default:
				c.dropped("unix_http_server", e, "no such setting in gosup")
			}
		}
	}
	if s := c.find("supervisorctl"); s != nil {
		for _, e := range s.keys {
			switch {
			case e.key == "serverurl" && strings.HasPrefix(e.value, "unix://"):
				if !socketSet {
					c.o.kv("socket", tomlString(expandTilde(strings.TrimPrefix(e.value, "unix://"))), "from [supervisorctl] serverurl")
					socketSet = true
				}
			case e.key == "serverurl":
				c.dropped("supervisorctl", e, "gosup listens on a unix socket only, never on TCP")
			default:
				c.dropped("supervisorctl", e, "gosup ctl has no such setting")
			}
		}
	}
	if s := c.find("inet_http_server"); s != nil {
		for _, e := range s.keys {
			c.dropped("inet_http_server", e, "gosup has no TCP control listener, by design: use the unix socket (ssh to the host)")
		}
	}
	if s := c.find("supervisord"); s != nil {
		for _, e := range s.keys {
			switch e.key {
			case "childlogdir":
				c.o.kv("logdir", tomlString(expandTilde(e.value)), "from [supervisord] childlogdir; AUTO logs are named PROCESS.stdout.log there, not supervisord's random names")
			case "loglevel":
				lvl := map[string]string{"critical": "error", "error": "error", "warn": "warn", "info": "info", "debug": "debug", "trace": "debug", "blather": "debug"}[strings.ToLower(e.value)]
				if lvl == "" {
					c.dropped("supervisord", e, "not a log level")
					continue
				}
				c.o.kv("loglevel", tomlString(lvl), "from [supervisord] loglevel "+e.value)
			case "environment", "umask", "directory":
				// Applied to every program, which inherited them from supervisord.
			case "logfile", "logfile_maxbytes", "logfile_backups", "silent":
				c.dropped("supervisord", e, "gosup logs to stderr (the journal under systemd)")
			case "pidfile":
				c.dropped("supervisord", e, "no pidfile: systemd tracks the daemon; gosup ctl pid prints its pid")
			case "nodaemon":
				c.dropped("supervisord", e, "gosup always runs in the foreground (systemd's Type=notify)")
			case "minfds", "minprocs":
				c.dropped("supervisord", e, "set limits in the systemd unit (gosup systemd-unit writes LimitNOFILE=65536)")
			case "user":
				c.o.comment(fmt.Sprintf("[supervisord] user = %s: each program runs as this user (supervisord dropped to it)", e.value))
			case "nocleanup":
				c.dropped("supervisord", e, "gosup keeps each process's log across restarts and cleans nothing up")
			default:
				c.dropped("supervisord", e, "no such setting in gosup")
			}
		}
	}
	c.shutdownTimeout()
	if s := c.find("include"); s != nil {
		if e, ok := s.get("files"); ok {
			c.o.comment("[include] files = " + e.value + ": read and merged into this file")
		}
	}
	if s := c.find("rpcinterface:supervisor"); s != nil {
		c.o.comment("[rpcinterface:supervisor]: not needed; gosup ctl talks to the daemon's own API")
	}
	for _, s := range c.sections {
		if strings.HasPrefix(s.name, "rpcinterface:") && s.name != "rpcinterface:supervisor" {
			c.other(s, "an XML-RPC extension; gosup has no XML-RPC interface")
		}
	}
}

// shutdownTimeout writes [supervisor] shutdown_timeout when stopping every
// program may take longer than gosup's default 30s: supervisord stops
// them priority by priority, each with its full stopwaitsecs, and has no
// overall limit.
func (c *conv) shutdownTimeout() {
	levels := map[int]int{} // priority → longest stopwaitsecs
	for _, p := range c.progs {
		prio, wait := 999, 10
		if e, ok := p.sec.get("priority"); ok {
			prio, _ = parseInt(e.value)
		}
		if p.group.name != "" {
			prio = 999
			if p.group.priority != nil {
				prio, _ = parseInt(p.group.priority.value)
			}
		}
		if e, ok := p.sec.get("stopwaitsecs"); ok {
			wait, _ = parseInt(e.value)
		}
		levels[prio] = max(levels[prio], wait)
	}
	total := 0
	for _, w := range levels {
		total += w
	}
	if total+10 > 30 {
		c.o.kv("shutdown_timeout", tomlString(fmt.Sprintf("%ds", total+10)), "the stopwaitsecs of every priority level, one after the other, + 10s: supervisord has no overall limit, gosup's default is 30s")
	}
}

// groupInfo is a program's [group:x].
type groupInfo struct {
	name     string
	priority *entry
	sec      *section
}

// groups maps each program to the groups that list it.
func (c *conv) groups() map[string][]groupInfo {
	out := map[string][]groupInfo{}
	programs := map[string]bool{}
	for _, s := range c.sections {
		if name, ok := strings.CutPrefix(s.name, "program:"); ok {
			programs[strings.TrimSpace(name)] = true
		}
	}
	for _, s := range c.sections {
		name, ok := strings.CutPrefix(s.name, "group:")
		if !ok {
			continue
		}
		g := groupInfo{name: name, sec: s}
		g.priority, _ = s.get("priority")
		for _, e := range s.keys {
			if e.key != "programs" && e.key != "priority" {
				c.warn(e, "[%s] %s: not imported: no such setting", s.name, e.key)
			}
		}
		if e, ok := s.get("programs"); ok {
			for _, p := range strings.Split(e.value, ",") {
				if p = strings.TrimSpace(p); p == "" {
					continue
				}
				if !programs[p] {
					c.warn(e, "[%s] programs: no [program:%s] (supervisord refuses to start with this)", s.name, p)
					continue
				}
				out[p] = append(out[p], g)
			}
		}
	}
	return out
}

// defaults are [supervisord]'s environment, umask and directory, which
// supervisord's children inherit.
type defaults struct {
	env      map[string]string
	envOrder []string
	umask    string
	dir      string
	user     string
}

func (c *conv) programDefaults() defaults {
	var d defaults
	s := c.find("supervisord")
	if s == nil {
		return d
	}
	if e, ok := s.get("environment"); ok {
		env, order, err := parseEnvironment(e.value)
		if err != nil {
			c.warn(e, "[supervisord] environment: not imported: %v", err)
		} else {
			d.env, d.envOrder = env, order
		}
	}
	if e, ok := s.get("umask"); ok {
		d.umask = e.value
	}
	if e, ok := s.get("directory"); ok {
		d.dir = e.value
	}
	if e, ok := s.get("user"); ok {
		d.user = e.value
	}
	return d
}

// program keys gosup does not have, and why.
var unsupported = map[string]string{
	"stdout_capture_maxbytes": "gosup has no capture mode (it serves supervisord's event listeners, which gosup does not have)",
	"stderr_capture_maxbytes": "gosup has no capture mode (it serves supervisord's event listeners, which gosup does not have)",
	"stdout_events_enabled":   "gosup has no event listeners",
	"stderr_events_enabled":   "gosup has no event listeners",
	"serverurl":               "children reach gosup through its socket; there is no XML-RPC URL to pass them",
}

var (
	intKeys    = []string{"numprocs", "numprocs_start", "priority", "startsecs", "startretries", "stopwaitsecs", "stdout_logfile_backups", "stderr_logfile_backups"}
	boolKeys   = []string{"autostart", "stopasgroup", "killasgroup", "redirect_stderr"}
	stringKeys = []string{"user", "umask"}
	sizeKeys   = []string{"stdout_logfile_maxbytes", "stderr_logfile_maxbytes"}
)

// typedKey reports whether typedValue converts key.
func typedKey(key string) bool {
	return slices.Contains(intKeys, key) || slices.Contains(boolKeys, key) || slices.Contains(stringKeys, key) ||
		slices.Contains(sizeKeys, key) || key == "autorestart" || key == "exitcodes" || key == "stopsignal"
}

// typedValue reads a [program:x] value the way supervisord reads that key
// and returns it as a gosup TOML value.
func typedValue(key, v string) (string, error) {
	switch {
	case slices.Contains(intKeys, key):
		n, err := parseInt(v)
		return tomlInt(n), err
	case slices.Contains(boolKeys, key):
		b, err := parseBool(v)
		return tomlBool(b), err
	case slices.Contains(stringKeys, key):
		return tomlString(v), nil
	case slices.Contains(sizeKeys, key):
		size, err := parseSize(v)
		return tomlString(size), err
	case key == "autorestart":
		if strings.EqualFold(v, "unexpected") {
			return tomlString("unexpected"), nil
		}
		b, err := parseBool(v)
		if err != nil {
			return "", errors.New("want true, false or unexpected")
		}
		return tomlBool(b), nil
	case key == "exitcodes":
		codes, err := parseExitCodes(v)
		return tomlInts(codes), err
	case key == "stopsignal":
		sig := signalName(v)
		_, err := procgroup.ParseSignal(sig)
		return tomlString(sig), err
	}
	return "", fmt.Errorf("no type for %s", key)
}

// expandKnown replaces the %(NAME)s expansions vars knows, leaving the
// others (and %%) for gosup to expand. supervisord expands every value
// with its program's names, the environment of supervisord and the
// program's own environment; gosup expands only some keys, and ENV_X only
// from its own environment.
func expandKnown(v string, vars map[string]string) string {
	return expansionRE().ReplaceAllStringFunc(v, func(m string) string {
		if m == "%%" {
			return m
		}
		if val, ok := vars[m[2:len(m)-2]]; ok {
			return strings.ReplaceAll(val, "%", "%%")
		}
		return m
	})
}

var expansionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`%%|%\(([A-Za-z0-9_]+)\)s`) })

// envVars makes ENV_X expansions of an environment.
func envVars(env map[string]string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		out["ENV_"+k] = v
	}
	return out
}

// collectPrograms reads every [program:x] once before anything is
// written: names, groups, process names, and the changes gosup check needs
// (process names unique across programs, a log file per process).
func (c *conv) collectPrograms(groups map[string][]groupInfo) {
	c.progBySection = map[*section]*prog{}
	host, _ := os.Hostname()
	for _, s := range c.sections {
		raw, ok := strings.CutPrefix(s.name, "program:")
		if !ok {
			continue
		}
		p := &prog{sec: s, name: cleanName(strings.TrimSpace(raw)), numprocs: 1, logs: map[string]string{}}
		if p.name != strings.TrimSpace(raw) {
			c.warnings = append(c.warnings, Warning{File: s.file, Line: s.line, Msg: fmt.Sprintf("[%s]: gosup names may only contain letters, digits, '_', '.' and '-': imported as program.%s", s.name, p.name)})
		}
		if gs := groups[strings.TrimSpace(raw)]; len(gs) > 0 {
			p.group = gs[0]
			for _, g := range gs[1:] {
				c.warnings = append(c.warnings, Warning{File: g.sec.file, Line: g.sec.line, Msg: fmt.Sprintf("[group:%s] also lists %s, which is imported in group %s only: a gosup program belongs to one group", g.name, raw, gs[0].name)})
			}
		}
		group := p.name
		if p.group.name != "" {
			group = p.group.name
		}
		if e, ok := s.get("environment"); ok {
			env, order, err := parseEnvironment(e.value)
			if err == nil {
				p.env, p.envOrder = env, order
			}
		}
		// ENV_X from the environments gosup does not see at run time.
		all := map[string]string{}
		maps.Copy(all, c.defaults.env)
		maps.Copy(all, p.env)
		p.vars = envVars(all)
		known := map[string]string{"program_name": raw, "group_name": group, "host_node_name": host}
		maps.Copy(known, envVars(c.osEnv))
		maps.Copy(known, p.vars)
		if e, ok := s.get("numprocs"); ok {
			if n, err := parseInt(expandKnown(e.value, known)); err == nil && n > 0 {
				p.numprocs = n
			}
		}
		if e, ok := s.get("numprocs_start"); ok {
			if n, err := parseInt(expandKnown(e.value, known)); err == nil {
				p.start = n
			}
		}
		pattern := "%(program_name)s"
		if e, ok := s.get("process_name"); ok {
			pattern = expandKnown(e.value, p.vars)
		}
		for n := p.start; n < p.start+p.numprocs; n++ {
			name, err := procgroup.Expand(pattern, map[string]any{"program_name": raw, "group_name": group, "process_num": n, "numprocs": p.numprocs, "host_node_name": host})
			if err != nil {
				break
			}
			p.procs = append(p.procs, name)
		}
		c.progs = append(c.progs, p)
		c.progBySection[s] = p
	}
	c.priorities()
	// gosup wants process names unique across programs (supervisord, per
	// group): the later program's get its name in front.
	seen := map[string]string{}
	for _, p := range c.progs {
		clash := ""
		for _, n := range p.procs {
			if other, ok := seen[n]; ok {
				clash = other
			}
		}
		if clash != "" {
			e, ok := p.sec.get("process_name")
			pattern := "%(program_name)s"
			if ok {
				pattern = e.value
			}
			p.rename = "%(program_name)s_" + pattern
			at := Warning{File: p.sec.file, Line: p.sec.line}
			if ok {
				at = Warning{File: e.file, Line: e.line}
			}
			at.Msg = fmt.Sprintf("[%s] process_name %s gives names that program %s's processes have too; gosup wants them unique across programs: imported as %s", p.sec.name, pattern, clash, p.rename)
			c.warnings = append(c.warnings, at)
			for i, n := range p.procs {
				p.procs[i] = p.name + "_" + n
			}
		}
		for _, n := range p.procs {
			seen[n] = p.name
		}
	}
	// A log file written by several processes (supervisord lets them
	// interleave, and rotates it under all of them) becomes one per
	// process; a device such as /dev/stdout stays shared.
	writers := map[string]int{}
	for _, p := range c.progs {
		for _, key := range []string{"stdout_logfile", "stderr_logfile"} {
			if path := p.fixedLog(key); path != "" {
				writers[path] += p.numprocs
			}
		}
	}
	for _, p := range c.progs {
		for _, key := range []string{"stdout_logfile", "stderr_logfile"} {
			path := p.fixedLog(key)
			if path == "" || writers[path] < 2 {
				continue
			}
			ext := filepath.Ext(path)
			p.logs[key] = strings.TrimSuffix(path, ext) + ".%(program_name)s-%(process_num)d" + ext
			e, _ := p.sec.get(key)
			c.warn(e, "[%s] %s: %s is written by %d processes; gosup gives each its own file (%s) so that rotation stays safe", p.sec.name, key, path, writers[path], p.logs[key])
		}
	}
}

// priorities gives programs in a [group:x] the place supervisord starts
// them in: groups in the order of their priority (999 when unset), then
// programs by their own priority inside a group. gosup has one priority
// per program, so when groups change the order the programs get ranks.
func (c *conv) priorities() {
	type key struct{ group, own int }
	keys := map[*prog]key{}
	reorder := false
	for _, p := range c.progs {
		own := 999
		if e, ok := p.sec.get("priority"); ok {
			if n, err := parseInt(e.value); err == nil {
				own = n
			}
		}
		k := key{own, own}
		if p.group.name != "" {
			k.group = 999
			if p.group.priority != nil {
				if n, err := parseInt(p.group.priority.value); err == nil {
					k.group = n
				}
			}
			reorder = reorder || k.group != own
		}
		keys[p] = k
	}
	if !reorder {
		return
	}
	distinct := slices.SortedFunc(maps.Values(keys), func(a, b key) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.own, b.own))
	})
	distinct = slices.Compact(distinct)
	for _, p := range c.progs {
		k := keys[p]
		p.prio = 10 * (slices.Index(distinct, k) + 1)
		if p.group.name != "" {
			p.prioNote = fmt.Sprintf("supervisord's order: group %s at priority %d, then this program's own %d inside it", p.group.name, k.group, k.own)
		} else {
			p.prioNote = fmt.Sprintf("supervisord's order: priority %d, among groups", k.own)
		}
	}
}

// fixedLog is a log path that names no process (the same for all), "" for
// anything else.
func (p *prog) fixedLog(key string) string {
	e, ok := p.sec.get(key)
	if !ok {
		return ""
	}
	v := expandTilde(e.value)
	switch strings.ToLower(v) {
	case "auto", "none", "off", "syslog":
		return ""
	}
	if strings.HasPrefix(v, "/dev/") || strings.Contains(v, "%(process_num)") {
		return ""
	}
	return v
}

var invalidNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9_.-]`) })

func cleanName(s string) string { return invalidNameRE().ReplaceAllString(s, "_") }

// expandTilde does what supervisord's expanduser does to paths.
func expandTilde(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return home + p[1:]
		}
	}
	return p
}

func (c *conv) program(p *prog) {
	s := p.sec
	sec := s.name
	c.o.blank()
	c.o.line("[program.%s]", tomlKey(p.name))
	c.o.comment(fmt.Sprintf("from %s:%d [%s]", s.file, s.line, s.name))
	g := p.group
	if g.name != "" {
		c.o.kv("group", tomlString(g.name), fmt.Sprintf("[group:%s] programs= (%s:%d): processes are %s:NAME", g.name, g.sec.file, g.sec.line, g.name))
	}
	if p.prioNote != "" {
		c.o.kv("priority", tomlInt(p.prio), p.prioNote)
	}
	// Keys gosup expands itself keep their expansions, but not the ENV_X
	// of environments gosup does not see; the others are expanded here.
	host, _ := os.Hostname()
	group := p.name
	if g.name != "" {
		group = g.name
	}
	known := map[string]string{"program_name": strings.TrimPrefix(s.name, "program:"), "group_name": group, "host_node_name": host}
	maps.Copy(known, envVars(c.osEnv))
	maps.Copy(known, p.vars)
	syslog := map[string]*entry{}
	logVal := map[string]string{}
	for _, e := range s.keys {
		v := e.value
		switch e.key {
		case "command", "process_name", "directory", "stdout_logfile", "stderr_logfile", "environment":
			v = expandKnown(v, p.vars)
		default:
			v = expandKnown(v, known)
		}
		switch {
		case e.key == "priority" && p.prioNote != "":
			// written above
		case e.key == "command":
			c.o.kv("command", tomlString(v), "")
		case e.key == "process_name":
			if p.rename != "" {
				c.o.kv(e.key, tomlString(p.rename), "renamed: see the import's warning")
			} else {
				c.o.kv(e.key, tomlString(v), "")
			}
		case e.key == "directory":
			v = expandTilde(v)
			c.o.kv(e.key, tomlString(v), relNote(v))
		case typedKey(e.key):
			val, err := typedValue(e.key, v)
			if err != nil {
				c.dropped(sec, e, err.Error())
				continue
			}
			c.o.kv(e.key, val, "")
		case e.key == "stdout_logfile" || e.key == "stderr_logfile":
			logVal[e.key] = v // written below, once syslog is known
		case e.key == "stdout_syslog" || e.key == "stderr_syslog":
			b, err := parseBool(v)
			if err != nil {
				c.dropped(sec, e, err.Error())
				continue
			}
			if b {
				syslog[strings.TrimSuffix(e.key, "_syslog")+"_logfile"] = e
			}
		case e.key == "environment":
			if p.env == nil && strings.TrimSpace(v) != "" {
				_, _, err := parseEnvironment(v)
				c.dropped(sec, e, err.Error())
			}
		case unsupported[e.key] != "":
			c.dropped(sec, e, unsupported[e.key])
		default:
			c.dropped(sec, e, "not a [program:x] setting of supervisord or gosup")
		}
	}
	for _, key := range []string{"stdout_logfile", "stderr_logfile"} {
		raw, set := logVal[key]
		val, note := logValue(raw)
		if p.logs[key] != "" {
			val, note = p.logs[key], "one file per process: see the import's warning"
		}
		if e := syslog[key]; e != nil {
			if !set || val == "none" {
				val, set, note = "syslog", true, strings.TrimSuffix(key, "_logfile")+"_syslog = true with no file: to syslog"
			} else {
				stream := strings.TrimSuffix(key, "_logfile")
				c.warn(e, "[%s] %s_syslog = true: gosup sends a stream to a file or to syslog, not both; kept the file (set %s = \"syslog\" to switch)", sec, stream, key)
				c.o.comment(fmt.Sprintf("%s_syslog = true: not imported: gosup logs a stream to a file or to syslog, not both", stream))
			}
		}
		if set {
			c.o.kv(key, tomlString(val), note)
		}
	}
	d := c.defaults
	if _, ok := s.get("umask"); !ok && d.umask != "" {
		c.o.kv("umask", tomlString(d.umask), "from [supervisord] umask, which supervisord's children inherit")
	}
	if _, ok := s.get("directory"); !ok && d.dir != "" {
		c.o.kv("directory", tomlString(expandTilde(d.dir)), "from [supervisord] directory, which supervisord's children inherit")
	}
	if _, ok := s.get("user"); !ok && d.user != "" {
		c.o.kv("user", tomlString(d.user), "from [supervisord] user: supervisord ran, and so ran its children, as this user")
	}
	c.port(p)
	if len(d.env) > 0 || len(p.env) > 0 {
		c.o.line("[program.%s.environment]", tomlKey(p.name))
		for _, k := range d.envOrder {
			if _, own := p.env[k]; !own {
				c.o.kv(k, tomlString(expandKnown(d.env[k], p.vars)), "from [supervisord] environment")
			}
		}
		for _, k := range p.envOrder {
			c.o.kv(k, tomlString(expandKnown(p.env[k], p.vars)), "")
		}
	}
}

func relNote(p string) string {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "%(") {
		return ""
	}
	return "relative: gosup resolves it against this file's directory; supervisord used its own working directory"
}

// logValue maps supervisord's stdout_logfile value.
func logValue(v string) (string, string) {
	switch strings.ToUpper(v) {
	case "AUTO":
		return "AUTO", ""
	case "NONE", "OFF":
		return "none", ""
	case "SYSLOG":
		return "syslog", ""
	}
	v = expandTilde(v)
	return v, relNote(v)
}

// A port in a command: %(process_num) at the end of host:port
// (127.0.0.1:90%(process_num)02d, localhost:…, :…, also as
// --socket=host:port), of --port=…, or as the whole argument after a port
// flag (-p, -s, -b, --port, --bind, --socket, --listen, --http…).
var (
	hostPortRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?:|localhost|[A-Za-z0-9-]*\.[A-Za-z0-9.-]*|\[[0-9a-fA-F:]+\]):(\d*%\(process_num\)[-#0 +]*\d*[ds])$`)
	})
	flagPortRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^--?[a-z-]*(?:port|bind|listen|socket|http)[a-z-]*=(\d*%\(process_num\)[-#0 +]*\d*[ds])$`)
	})
	bareRE     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(\d*%\(process_num\)[-#0 +]*\d*[ds])$`) })
	portFlagRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^--?([a-z-]*(port|bind|listen|socket|http)[a-z-]*|p|s|b)$`)
	})
)

// port records port_start when the command puts a plain sequence of ports
// in an argument through %(process_num): the command stays as it is
// (gosup expands it) and the port feeds $PORT, readiness and nginx. Such a
// program is also written as the server of an nginx upstream of its own
// name (see nginx).
func (c *conv) port(p *prog) {
	s := p.sec
	cmdE, ok := s.get("command")
	if !ok {
		return
	}
	argv, err := procgroup.SplitCommand(cmdE.value)
	if err != nil {
		return
	}
	numprocs, start := 1, 0
	if e, ok := s.get("numprocs"); ok {
		numprocs, _ = parseInt(e.value)
	}
	if e, ok := s.get("numprocs_start"); ok {
		start, _ = parseInt(e.value)
	}
	if numprocs < 1 {
		return
	}
	for i, arg := range argv {
		var tok, flag string
		if m := hostPortRE().FindStringSubmatch(arg); m != nil {
			tok = m[1]
			if i > 0 && portFlagRE().MatchString(argv[i-1]) {
				flag = argv[i-1]
			}
		} else if m := flagPortRE().FindStringSubmatch(arg); m != nil {
			tok = m[1]
			flag, _, _ = strings.Cut(arg, "=")
		} else if f, v, ok := strings.Cut(arg, "="); ok && portFlagRE().MatchString(f) && hostPortRE().MatchString(v) {
			tok, flag = hostPortRE().FindStringSubmatch(v)[1], f
		} else if m := bareRE().FindStringSubmatch(arg); m != nil && i > 0 && portFlagRE().MatchString(argv[i-1]) {
			tok, flag = m[1], argv[i-1]
		} else {
			continue
		}
		var ports []int
		for n := start; n < start+numprocs; n++ {
			v, err := procgroup.Expand(tok, map[string]any{"process_num": n})
			if err != nil {
				return
			}
			p, err := strconv.Atoi(v)
			if err != nil {
				return
			}
			ports = append(ports, p)
		}
		if ports[0] < 1024 {
			return // not a port: a shard or worker number
		}
		for j, p := range ports {
			if p != ports[0]+j || p > 65535 {
				c.o.comment(fmt.Sprintf("%s in the command gives %d…%d, not a plain sequence of ports: no port_start (gosup runs the command as it is)", tok, ports[0], ports[len(ports)-1]))
				return
			}
		}
		c.o.kv("port_start", tomlInt(ports[0]), fmt.Sprintf("the port in the command (%s), %d-%d; gosup sets $PORT, can render an nginx upstream from it, and holds a process in STARTING until the port accepts connections (ready = \"tcp\"; ready = \"startsecs\" is supervisord's rule alone)", tok, ports[0], ports[len(ports)-1]))
		u := upstream{name: p.name, first: ports[0], last: ports[len(ports)-1]}
		u.protocol, u.why = listenProtocol(argv, i, flag)
		c.o.kv("upstream", tomlString(u.name), fmt.Sprintf("its processes are the servers of [nginx.upstream.%s] below: see them with gosup render", u.name))
		c.upstreams = append(c.upstreams, u)
		return
	}
}

// uwsgiSocketFlags are uwsgi's options for a socket that speaks the uwsgi
// protocol (nginx's uwsgi_pass); --http and --http-socket speak HTTP.
var uwsgiSocketFlags = []string{"-s", "--socket", "--uwsgi-socket"}

// isUwsgi reports whether a word of a command runs uwsgi: uwsgi itself
// (/usr/bin/uwsgi, a virtualenv's bin/uwsgi, python -m uwsgi), Debian's
// uwsgi-core and its plugins' uwsgi_python3, uwsgi_python311, ..., and
// pip's pyuwsgi (also python -m pyuwsgi).
func isUwsgi(word string) bool {
	switch b := path.Base(word); {
	case b == "uwsgi", b == "uwsgi-core", b == "pyuwsgi":
		return true
	default:
		return strings.HasPrefix(b, "uwsgi_")
	}
}

// uwsgiProtocol is the value of uwsgi's --protocol in argv ("" when not
// set): it makes a -s/--socket speak HTTP with --protocol=http.
func uwsgiProtocol(argv []string) string {
	v := ""
	for i, a := range argv {
		if p, ok := strings.CutPrefix(a, "--protocol="); ok {
			v = p
		} else if a == "--protocol" && i+1 < len(argv) {
			v = argv[i+1]
		}
	}
	return v
}

// listenProtocol is how nginx talks to a command (argv) that listens
// where flag says, on its word at: uwsgi for uwsgi's -s/--socket (unless
// --protocol says http), http for anything else (--http, gunicorn -b,
// --port).
func listenProtocol(argv []string, at int, flag string) (protocol, why string) {
	uwsgi := slices.IndexFunc(argv[:at], isUwsgi)
	switch {
	case uwsgi >= 0 && slices.Contains(uwsgiSocketFlags, flag) && uwsgiProtocol(argv) == "http":
		return "http", path.Base(argv[uwsgi]) + " " + flag + " with --protocol http speaks HTTP (nginx's proxy_pass)"
	case uwsgi >= 0 && slices.Contains(uwsgiSocketFlags, flag):
		return "uwsgi", path.Base(argv[uwsgi]) + " " + flag + " speaks the uwsgi protocol (nginx's uwsgi_pass)"
	case flag != "":
		return "http", "the command listens with " + flag + ": HTTP (nginx's proxy_pass); protocol = \"uwsgi\" if it speaks uwsgi"
	default:
		return "http", "HTTP (nginx's proxy_pass); protocol = \"uwsgi\" if the command speaks uwsgi"
	}
}

// nginx writes the [nginx] table for the programs port found listening:
// live, so that gosup render prints their upstreams with no edit and
// gosup check passes, but with output commented out, so that the daemon
// neither writes into nginx's configuration nor reloads nginx until the
// operator says where.
func (c *conv) nginx() {
	if len(c.upstreams) == 0 {
		return
	}
	c.o.blank()
	c.o.comment("nginx: each program above that listens on a sequence of ports is the upstream of its name.")
	c.o.comment("`gosup render -c FILE` prints them now. To have gosup write them and reload nginx whenever a")
	c.o.comment("process comes or goes (drained before a restart), set output to a file nginx includes in http { }")
	c.o.comment("and remove the hand-written upstream blocks of the same names from nginx's configuration.")
	c.o.line("[nginx]")
	c.o.comment(`output = "/etc/nginx/conf.d/gosup.conf"  # Debian's nginx includes conf.d/*.conf in http { }`)
	c.o.comment(`test_command = "nginx -t"  # the default: a file nginx refuses is not kept`)
	c.o.comment(`reload_command = "nginx -s reload"  # the default`)
	for _, u := range c.upstreams {
		c.o.blank()
		c.o.line("[nginx.upstream.%s]", tomlKey(u.name))
		c.o.comment(fmt.Sprintf("program.%s's processes, 127.0.0.1:%d-%d", u.name, u.first, u.last))
		c.o.kv("protocol", tomlString(u.protocol), u.why)
		c.o.kv("balance", tomlString("least_conn"), "a request goes to the process with the fewest in flight")
		c.o.comment(`listen = "80"  # also writes a server { } that passes every request to this upstream`)
		c.o.comment(`server_name = "example.com"`)
	}
}

// isMemmon reports whether an event listener runs superlance's memmon.
func isMemmon(s *section) bool {
	e, ok := s.get("command")
	if !ok {
		return false
	}
	argv, err := procgroup.SplitCommand(e.value)
	if err != nil || len(argv) == 0 {
		return false
	}
	return slices.ContainsFunc(argv, isMemmonArg)
}

// isMemmonArg: memmon, /usr/local/bin/memmon.py (run by python) or
// -m superlance.memmon.
func isMemmonArg(a string) bool {
	base := path.Base(a)
	return base == "memmon" || base == "memmon.py" || a == "superlance.memmon"
}

// memmon translates superlance's memmon command line and TICK events into
// [memmon] and [email].
func (c *conv) memmon(s *section) {
	cmdE, _ := s.get("command")
	argv, _ := procgroup.SplitCommand(cmdE.value)
	if i := slices.IndexFunc(argv, isMemmonArg); i >= 0 {
		argv = argv[i+1:]
	}
	c.o.blank()
	c.o.line("[memmon]")
	c.o.comment(fmt.Sprintf("from %s:%d [%s] command = %s", s.file, s.line, s.name, cmdE.value))
	interval := 0
	if e, ok := s.get("events"); ok {
		for _, ev := range strings.Split(e.value, ",") {
			if n, ok := strings.CutPrefix(strings.TrimSpace(ev), "TICK_"); ok {
				if t, err := strconv.Atoi(n); err == nil && (interval == 0 || t < interval) {
					interval = t
				}
			}
		}
	}
	if interval > 0 {
		c.o.kv("interval", tomlString(fmt.Sprintf("%ds", interval)), fmt.Sprintf("memmon checked at every TICK_%d event", interval))
	} else {
		c.warn(cmdE, "[%s] events has no TICK_N: memmon would never check; gosup uses its default interval", s.name)
		c.o.comment("events has no TICK_N: memmon never checked; gosup checks every 5s")
	}
	c.o.kv("samples", "1", "memmon restarts on the first sample over the limit; samples = 3 with a shorter interval ignores short spikes")
	c.o.comment("max_restarting = 1 (gosup's default): at most one process of a program is restarted for memory at a time; memmon had no such limit")
	c.o.comment("max_restarts = 3 within restart_window = \"10m\" (gosup's default): then memmon stops restarting that process and mails once;")
	c.o.comment("memmon restarted it for ever (max_restarts = 0 does that)")
	flags, err := getopt(argv)
	if err != nil {
		c.warn(cmdE, "[%s] command: %v", s.name, err)
		c.o.comment("not understood, not imported: " + err.Error())
	}
	// memmon's single-valued options: the last one wins, as with getopt.
	single := map[string]string{}
	var emails []string
	programs, groups := map[string]string{}, map[string]string{}
	long := map[string]string{"program": "p", "group": "g", "any": "a", "cumulative": "c", "uptime": "u", "name": "n", "email": "m", "sendmail_program": "s"}
	for _, f := range flags {
		name := f.name
		if l, ok := long[name]; ok {
			name = l
		}
		switch name {
		case "p", "g":
			n, size, ok := strings.Cut(f.value, "=")
			sz, err := parseSize(size)
			if !ok || err != nil {
				c.warn(cmdE, "[%s] memmon -%s %s: want NAME=SIZE", s.name, name, f.value)
				continue
			}
			if name == "p" {
				programs[n] = sz
			} else {
				groups[n] = sz
			}
		case "m":
			emails = append(emails, f.value)
		case "a", "c", "u", "n", "s":
			single[name] = f.value
		default:
			c.warn(cmdE, "[%s] memmon option -%s not imported", s.name, f.name)
			c.o.comment(fmt.Sprintf("memmon option -%s %s: not imported", f.name, f.value))
		}
	}
	if v, ok := single["a"]; ok {
		if sz, err := parseSize(v); err != nil {
			c.warn(cmdE, "[%s] memmon -a %s: %v", s.name, v, err)
		} else {
			c.o.kv("any", tomlString(sz), "memmon -a")
		}
	}
	if _, ok := single["c"]; ok {
		c.o.kv("cumulative", "true", "memmon -c: a process with all its descendants")
	}
	if v, ok := single["u"]; ok {
		if secs, err := memmonSeconds(v); err != nil {
			c.warn(cmdE, "[%s] memmon -u %s: %v", s.name, v, err)
		} else {
			c.o.kv("alert_max_uptime", tomlString(fmt.Sprintf("%ds", secs)), "memmon -u: no mail for a process up longer than this (it is restarted all the same)")
		}
	}
	if v, ok := single["n"]; ok {
		c.o.kv("name", tomlString(v), "memmon -n")
	}
	// Names must be processes (or group:process) and groups that exist:
	// memmon ignored the others, gosup check refuses them.
	procNames, groupNames := map[string]bool{}, map[string]bool{}
	for _, p := range c.progs {
		group := p.name
		if p.group.name != "" {
			group = p.group.name
		}
		groupNames[group] = true
		for _, n := range p.procs {
			procNames[n], procNames[group+":"+n] = true, true
		}
	}
	for n := range programs {
		if !procNames[n] {
			c.warn(cmdE, "[%s] memmon -p %s: no process has that name, so memmon never matched it; not imported", s.name, n)
			delete(programs, n)
		}
	}
	for n := range groups {
		if !groupNames[n] {
			c.warn(cmdE, "[%s] memmon -g %s: no group has that name, so memmon never matched it; not imported", s.name, n)
			delete(groups, n)
		}
	}
	// memmon restarts at the smallest limit that applies; gosup applies
	// the most specific one.
	general := slices.Collect(maps.Values(groups))
	if a := single["a"]; a != "" {
		general = append(general, a)
	}
	for _, n := range slices.Sorted(maps.Keys(programs)) {
		for _, g := range general {
			if larger(programs[n], g) {
				c.warn(cmdE, "[%s] memmon -p %s=%s is larger than the general limit %s: memmon restarted at the smallest limit that applies, gosup uses the most specific one (%s)", s.name, n, programs[n], g, programs[n])
				break
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(groups)) {
		if larger(groups[n], single["a"]) {
			c.warn(cmdE, "[%s] memmon -g %s=%s is larger than -a %s: memmon restarted at the smaller, gosup uses the group's", s.name, n, groups[n], single["a"])
		}
	}
	to := emails
	if len(emails) > 1 {
		to = emails[len(emails)-1:]
		c.warn(cmdE, "[%s] memmon -m given %d times: memmon mailed only the last, %s; add the others to email.to if they should get alerts", s.name, len(emails), to[0])
	}
	sendmail := single["s"]
	for _, t := range []struct {
		table string
		m     map[string]string
		flag  string
	}{{"program", programs, "-p"}, {"group", groups, "-g"}} {
		if len(t.m) == 0 {
			continue
		}
		c.o.line("[memmon.%s]", t.table)
		for _, k := range slices.Sorted(maps.Keys(t.m)) {
			c.o.kv(k, tomlString(t.m[k]), "memmon "+t.flag)
		}
	}
	if len(to) > 0 {
		c.o.blank()
		c.o.line("[email]")
		c.o.kv("to", tomlStrings(to), "memmon -m")
		if sendmail == "" {
			sendmail = "/usr/sbin/sendmail -t -i"
		}
		c.o.kv("sendmail", tomlString(sendmail), "memmon mails through sendmail (-s); smtp = \"host:port\" talks to a server directly")
	}
	for _, e := range s.keys {
		if e.key != "command" && e.key != "events" {
			c.o.comment(fmt.Sprintf("[%s] %s = %s: not needed, memmon is built into gosup", s.name, e.key, oneLine(e.value)))
		}
	}
}

type flag struct{ name, value string }

// getopt reads memmon's options: hcp:g:a:s:m:n:u: and their long forms.
func getopt(args []string) ([]flag, error) {
	withArg := map[string]bool{"p": true, "g": true, "a": true, "s": true, "m": true, "n": true, "u": true,
		"program": true, "group": true, "any": true, "sendmail_program": true, "email": true, "name": true, "uptime": true}
	noArg := map[string]bool{"c": true, "h": true, "cumulative": true, "help": true}
	var out []flag
	for i := 0; i < len(args); i++ {
		a := args[i]
		var name, val string
		hasVal := false
		switch {
		case strings.HasPrefix(a, "--"):
			name, val, hasVal = strings.Cut(a[2:], "=")
		case strings.HasPrefix(a, "-") && len(a) >= 2:
			name = a[1:2]
			if len(a) > 2 {
				val, hasVal = a[2:], true
			}
		default:
			return out, fmt.Errorf("unexpected argument %q", a)
		}
		switch {
		case withArg[name] && !hasVal:
			if i+1 >= len(args) {
				return out, fmt.Errorf("option %s needs a value", a)
			}
			i++
			val = args[i]
		case noArg[name] && hasVal && len(name) == 1:
			// -cp x: a bundled flag; only -c matters
			out = append(out, flag{name: name})
			args = append(args[:i+1], append([]string{"-" + val}, args[i+1:]...)...)
			continue
		case !withArg[name] && !noArg[name]:
			return out, fmt.Errorf("unknown option %s", a)
		}
		out = append(out, flag{name: name, value: val})
	}
	return out, nil
}

// memmonSeconds reads memmon's -u: seconds, or a number with s, m, h or d.
func memmonSeconds(v string) (int, error) {
	mult := map[byte]int{'s': 1, 'm': 60, 'h': 3600, 'd': 86400}
	t := strings.ToLower(strings.TrimSpace(v))
	k := 1
	if t != "" {
		if m, ok := mult[t[len(t)-1]]; ok {
			k, t = m, t[:len(t)-1]
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a time such as 3600, 60m or 1h", v)
	}
	return n * k, nil
}

// larger reports whether size a is larger than b (false when b is unset).
func larger(a, b string) bool {
	if b == "" {
		return false
	}
	x, errX := procgroup.ParseSize(a)
	y, errY := procgroup.ParseSize(b)
	if errX != nil || errY != nil {
		return false
	}
	return x > y
}
