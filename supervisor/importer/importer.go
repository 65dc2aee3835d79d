// Package importer translates a supervisord.conf (and its memmon event
// listener) into an equivalent gosup TOML file: supervisord's INI dialect
// read as supervisord reads it, every key gosup has written with the same
// name and meaning, comments where the meaning shifts, and everything else
// kept as a comment with a warning, never dropped silently.
package importer

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

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
}

type conv struct {
	o        out
	warnings []Warning
	sections []*section
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
	sections, files, err := readConfig(file)
	if err != nil {
		return nil, err
	}
	c := &conv{sections: sections}
	c.o.comment(fmt.Sprintf("Imported by `gosup import` from %s.", files[0]))
	c.o.comment("Comments mark where gosup's meaning differs from supervisord's, and what was not imported.")
	c.o.comment("Check it with `gosup check -c FILE`; run it with `gosup start -c FILE`.")
	c.supervisorTable()
	groups := c.groups()
	defaults := c.programDefaults()
	var memmonSec *section
	for _, s := range sections {
		kind, name, _ := strings.Cut(s.name, ":")
		switch kind {
		case "program":
			c.program(s, name, groups[name], defaults)
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
	if memmonSec != nil {
		c.memmon(memmonSec)
	}
	return &Result{TOML: []byte(c.o.b.String()), Warnings: c.warnings, Files: files}, nil
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
				c.o.kv("socket", tomlString(e.value), "from [unix_http_server] file; gosup's control socket (gosup ctl finds it through -c)")
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
					c.o.kv("socket", tomlString(strings.TrimPrefix(e.value, "unix://")), "from [supervisorctl] serverurl")
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
				c.o.kv("logdir", tomlString(e.value), "from [supervisord] childlogdir; AUTO logs are named PROCESS.stdout.log there, not supervisord's random names")
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
				c.dropped("supervisord", e, "run gosup as that user with the unit's User=")
			case "nocleanup":
				c.dropped("supervisord", e, "gosup keeps each process's log across restarts and cleans nothing up")
			default:
				c.dropped("supervisord", e, "no such setting in gosup")
			}
		}
	}
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

// groupInfo is a program's [group:x].
type groupInfo struct {
	name     string
	priority *entry
	sec      *section
}

func (c *conv) groups() map[string]groupInfo {
	out := map[string]groupInfo{}
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
				if p = strings.TrimSpace(p); p != "" {
					out[p] = g
				}
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

var intKeys = []string{"numprocs", "numprocs_start", "priority", "startsecs", "startretries", "stopwaitsecs", "stdout_logfile_backups", "stderr_logfile_backups"}

func (c *conv) program(s *section, name string, g groupInfo, d defaults) {
	sec := s.name
	c.o.blank()
	c.o.line("[program.%s]", tomlKey(name))
	c.o.comment(fmt.Sprintf("from %s:%d [%s]", s.file, s.line, s.name))
	if g.name != "" {
		c.o.kv("group", tomlString(g.name), fmt.Sprintf("[group:%s] programs= (%s:%d): processes are %s:NAME", g.name, g.sec.file, g.sec.line, g.name))
		if _, own := s.get("priority"); !own && g.priority != nil {
			if n, err := parseInt(g.priority.value); err == nil {
				c.o.kv("priority", tomlInt(n), fmt.Sprintf("from [group:%s] priority", g.name))
			}
		}
	}
	var env map[string]string
	var envOrder []string
	syslog := map[string]bool{}
	logSet := map[string]string{}
	for _, e := range s.keys {
		v := e.value
		switch {
		case e.key == "command":
			c.o.kv("command", tomlString(v), "")
		case e.key == "process_name" || e.key == "user":
			c.o.kv(e.key, tomlString(v), "")
		case e.key == "directory":
			c.o.kv(e.key, tomlString(v), relNote(v))
		case e.key == "umask":
			c.o.kv(e.key, tomlString(v), "")
		case slices.Contains(intKeys, e.key):
			n, err := parseInt(v)
			if err != nil {
				c.dropped(sec, e, err.Error())
				continue
			}
			c.o.kv(e.key, tomlInt(n), "")
		case e.key == "autostart" || e.key == "stopasgroup" || e.key == "killasgroup" || e.key == "redirect_stderr":
			b, err := parseBool(v)
			if err != nil {
				c.dropped(sec, e, err.Error())
				continue
			}
			c.o.kv(e.key, tomlBool(b), "")
		case e.key == "autorestart":
			switch strings.ToLower(v) {
			case "unexpected":
				c.o.kv(e.key, tomlString("unexpected"), "")
			default:
				b, err := parseBool(v)
				if err != nil {
					c.dropped(sec, e, "want true, false or unexpected")
					continue
				}
				c.o.kv(e.key, tomlBool(b), "")
			}
		case e.key == "exitcodes":
			codes, err := parseExitCodes(v)
			if err != nil {
				c.dropped(sec, e, err.Error())
				continue
			}
			c.o.kv(e.key, tomlInts(codes), "")
		case e.key == "stopsignal":
			sig := signalName(v)
			if _, err := procgroup.ParseSignal(sig); err != nil {
				c.dropped(sec, e, err.Error())
				continue
			}
			c.o.kv(e.key, tomlString(sig), "")
		case e.key == "stdout_logfile_maxbytes" || e.key == "stderr_logfile_maxbytes":
			size, err := parseSize(v)
			if err != nil {
				c.dropped(sec, e, err.Error())
				continue
			}
			c.o.kv(e.key, tomlString(size), "")
		case e.key == "stdout_logfile" || e.key == "stderr_logfile":
			val, note := logValue(v)
			logSet[e.key] = val
			c.o.kv(e.key, tomlString(val), note)
		case e.key == "stdout_syslog" || e.key == "stderr_syslog":
			b, err := parseBool(v)
			if err != nil {
				c.dropped(sec, e, err.Error())
				continue
			}
			syslog[strings.TrimSuffix(e.key, "_syslog")] = b
		case e.key == "environment":
			var err error
			if env, envOrder, err = parseEnvironment(v); err != nil {
				c.dropped(sec, e, err.Error())
			}
		case unsupported[e.key] != "":
			c.dropped(sec, e, unsupported[e.key])
		default:
			c.dropped(sec, e, "not a [program:x] setting of supervisord or gosup")
		}
	}
	for _, stream := range []string{"stdout", "stderr"} {
		if !syslog[stream] {
			continue
		}
		e, _ := s.get(stream + "_syslog")
		switch logSet[stream+"_logfile"] {
		case "none":
			c.o.kv(stream+"_logfile", tomlString("syslog"), stream+"_syslog = true with no file: to syslog")
		default:
			c.warn(e, "[%s] %s_syslog = true: gosup sends a stream to a file or to syslog, not both; kept the file (set %s_logfile = \"syslog\" to switch)", sec, stream, stream)
			c.o.comment(fmt.Sprintf("%s_syslog = true: not imported: gosup logs a stream to a file or to syslog, not both; set %s_logfile = \"syslog\" for syslog", stream, stream))
		}
	}
	if _, ok := s.get("umask"); !ok && d.umask != "" {
		c.o.kv("umask", tomlString(d.umask), "from [supervisord] umask, which supervisord's children inherit")
	}
	if _, ok := s.get("directory"); !ok && d.dir != "" {
		c.o.kv("directory", tomlString(d.dir), "from [supervisord] directory, which supervisord's children inherit")
	}
	c.port(s)
	if len(d.env) > 0 || len(env) > 0 {
		c.o.line("[program.%s.environment]", tomlKey(name))
		for _, k := range d.envOrder {
			if _, own := env[k]; !own {
				c.o.kv(k, tomlString(d.env[k]), "from [supervisord] environment")
			}
		}
		for _, k := range envOrder {
			c.o.kv(k, tomlString(env[k]), "")
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
	case "NONE":
		return "none", ""
	case "SYSLOG":
		return "syslog", ""
	}
	return v, relNote(v)
}

// portArgRE finds %(process_num) used as (the end of) a port: after ':'
// (host:port) or '=' (--port=N), or as a whole argument after a port flag.
var portArgRE = regexp.MustCompile(`(^|[:=])(\d*%\(process_num\)[-#0 +]*\d*[ds])$`)

var portFlagRE = regexp.MustCompile(`^--?([a-z-]*(port|bind|listen|socket|http)[a-z-]*|p|s|b)$`)

// port records port_start when the command puts a plain sequence of ports
// in an argument through %(process_num): the command stays as it is
// (gosup expands it) and the port feeds $PORT, readiness and nginx.
func (c *conv) port(s *section) {
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
		m := portArgRE.FindStringSubmatch(arg)
		if m == nil || (m[1] == "" && (i == 0 || !portFlagRE.MatchString(argv[i-1]))) {
			continue
		}
		tok := m[2]
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
		for j, p := range ports {
			if p != ports[0]+j || p < 1 || p > 65535 {
				c.o.comment(fmt.Sprintf("%s in the command gives ports %d…%d, not a plain sequence: no port_start (gosup runs the command as it is)", tok, ports[0], ports[len(ports)-1]))
				return
			}
		}
		c.o.kv("port_start", tomlInt(ports[0]), fmt.Sprintf("the port in the command (%s), %d-%d; gosup sets $PORT, can render an nginx upstream from it, and holds a process in STARTING until the port accepts connections (ready = \"tcp\"; ready = \"startsecs\" is supervisord's rule alone)", tok, ports[0], ports[len(ports)-1]))
		return
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
	base := path.Base(argv[0])
	return base == "memmon" || base == "memmon.py" || slices.Contains(argv, "superlance.memmon")
}

// memmon translates superlance's memmon command line and TICK events into
// [memmon] and [email].
func (c *conv) memmon(s *section) {
	cmdE, _ := s.get("command")
	argv, _ := procgroup.SplitCommand(cmdE.value)
	for i, a := range argv {
		if a == "superlance.memmon" || path.Base(a) == "memmon" || path.Base(a) == "memmon.py" {
			argv = argv[i+1:]
			break
		}
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
	flags, err := getopt(argv)
	if err != nil {
		c.warn(cmdE, "[%s] command: %v", s.name, err)
		c.o.comment("not understood, not imported: " + err.Error())
	}
	var to []string
	sendmail := ""
	programs, groups := map[string]string{}, map[string]string{}
	for _, f := range flags {
		switch f.name {
		case "p", "program", "g", "group":
			name, size, ok := strings.Cut(f.value, "=")
			sz, err := parseSize(size)
			if !ok || err != nil {
				c.warn(cmdE, "[%s] memmon -%s %s: want NAME=SIZE", s.name, f.name, f.value)
				continue
			}
			if f.name[0] == 'p' {
				programs[name] = sz
			} else {
				groups[name] = sz
			}
		case "a", "any":
			sz, err := parseSize(f.value)
			if err != nil {
				c.warn(cmdE, "[%s] memmon -a %s: %v", s.name, f.value, err)
				continue
			}
			c.o.kv("any", tomlString(sz), "memmon -a")
		case "c", "cumulative":
			c.o.kv("cumulative", "true", "memmon -c: a process with all its descendants")
		case "u", "uptime":
			n, err := parseInt(f.value)
			if err != nil {
				c.warn(cmdE, "[%s] memmon -u %s: %v", s.name, f.value, err)
				continue
			}
			c.o.kv("alert_max_uptime", tomlString(fmt.Sprintf("%ds", n)), "memmon -u: no mail for a process up longer than this (it is restarted all the same)")
		case "n", "name":
			c.o.kv("name", tomlString(f.value), "memmon -n")
		case "m", "email":
			to = append(to, f.value)
		case "s", "sendmail_program":
			sendmail = f.value
		default:
			c.warn(cmdE, "[%s] memmon option -%s not imported", s.name, f.name)
			c.o.comment(fmt.Sprintf("memmon option -%s %s: not imported", f.name, f.value))
		}
	}
	for _, t := range []struct {
		table string
		m     map[string]string
		flag  string
	}{{"program", programs, "-p"}, {"group", groups, "-g"}} {
		if len(t.m) == 0 {
			continue
		}
		c.o.line("[memmon.%s]", t.table)
		for _, k := range slices.Sorted(mapsKeys(t.m)) {
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

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
