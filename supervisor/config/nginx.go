package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gosup/gosup/internal/safetext"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/templates"
)

// Nginx is the validated [nginx] table, with its defaults. It is plain
// data: the daemon hands Output, Template and the commands to its nginx
// manager (supervisor/nginx, which config does not import).
type Nginx struct {
	Output       string              // the file written, absolute
	Template     *templates.Template // what renders it
	TemplateFile string              // the user's template, absolute; "" for the built-in one
	// TestCommand and ReloadCommand are operator command lines ("" skips
	// the step), killed after CommandTimeout.
	TestCommand    string
	ReloadCommand  string
	CommandTimeout time.Duration
	Upstream       map[string]Upstream
}

// Upstream is one [nginx.upstream.NAME] table, with its defaults.
type Upstream struct {
	Balance    string
	Protocol   string
	Keepalive  int
	Host       string
	Listen     string
	ServerName string
	Location   string
	// Source is where the servers come from: SourceLocal (this host's
	// programs with upstream = NAME) or SourceRegistry (every host's
	// members in etcd, watched).
	Source string
}

// Nginx defaults.
const (
	defaultTestCommand   = "nginx -t"
	defaultReloadCommand = "nginx -s reload"
)

// checkNginx fills in defaults, validates the [nginx] table and the
// programs' upstream keys against it, and renders once so that a template
// that cannot execute is a configuration error.
func checkNginx(cfg *Config, md toml.MetaData, raw *rawNginx, here string, cerr func(key, format string, args ...any) *Error, read func(string) ([]byte, error)) []error {
	var errs []error
	if raw == nil {
		for _, p := range cfg.Programs {
			// With [registry], an upstream is published to etcd: this
			// host need not run nginx itself.
			if p.Spec.Upstream != "" && cfg.Registry == nil {
				errs = append(errs, cerr("program."+p.Name+".upstream", "upstream %q needs an [nginx] table with [nginx.upstream.%s]", p.Spec.Upstream, p.Spec.Upstream))
			}
		}
		return errs
	}
	n := &Nginx{
		Output: raw.Output, TestCommand: raw.TestCommand, ReloadCommand: raw.ReloadCommand,
		CommandTimeout: time.Duration(raw.CommandTimeout),
		TemplateFile:   raw.Template, Upstream: map[string]Upstream{},
	}
	for name, ru := range raw.Upstream {
		var u Upstream
		convert(&u, &ru)
		n.Upstream[name] = u
	}
	if !md.IsDefined("nginx", "test_command") {
		n.TestCommand = defaultTestCommand
	}
	if !md.IsDefined("nginx", "reload_command") {
		n.ReloadCommand = defaultReloadCommand
	}
	if !md.IsDefined("nginx", "command_timeout") {
		n.CommandTimeout = 10 * time.Second
	}
	// Without output the table is for gosup render alone (see
	// Config.NginxRenderOnly).
	if n.Output != "" {
		n.Output = absTo(here, n.Output)
	}
	// %(here)s is the directory of the file, as in a program's command,
	// and a relative path as their program is relative to it.
	n.TestCommand = programRelTo(here, strings.ReplaceAll(n.TestCommand, "%(here)s", here))
	n.ReloadCommand = programRelTo(here, strings.ReplaceAll(n.ReloadCommand, "%(here)s", here))
	for _, c := range []struct{ key, cmd string }{{"test_command", n.TestCommand}, {"reload_command", n.ReloadCommand}} {
		if _, err := procgroup.CommandArgv(c.cmd); c.cmd != "" && err != nil {
			errs = append(errs, cerr("nginx."+c.key, "%v", err))
		}
	}
	if n.TemplateFile != "" {
		n.TemplateFile = absTo(here, n.TemplateFile)
	}
	tmpl, terrs := loadTemplate(n.TemplateFile, templates.Load, "nginx.template", cerr, read)
	errs = append(errs, terrs...)
	used := map[string]bool{}
	for _, p := range cfg.Programs {
		if u := p.Spec.Upstream; u != "" {
			used[u] = true
			if _, ok := n.Upstream[u]; !ok && cfg.Registry == nil {
				errs = append(errs, cerr("program."+p.Name+".upstream", "upstream %q is not defined; add [nginx.upstream.%s]", u, u))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(n.Upstream)) {
		u := n.Upstream[name]
		key := "nginx.upstream." + name
		if !procgroup.ValidName(name) {
			errs = append(errs, cerr(key, "upstream name %q may only contain letters, digits, '_', '.' and '-'", name))
		}
		switch u.Source {
		case "", SourceLocal:
			u.Source = SourceLocal
			if !used[name] {
				errs = append(errs, cerr(key, "no program has upstream = %q; nginx refuses an upstream without servers", name))
			}
		case SourceRegistry:
			errs = append(errs, checkRegistrySource(cfg, key, cerr)...)
			if md.IsDefined("nginx", "upstream", name, "host") {
				errs = append(errs, cerr(key+".host", "a registry-sourced upstream's servers are at the addresses their hosts publish: remove host"))
			}
		default:
			errs = append(errs, cerr(key+".source", "invalid source %q: want local (this host's programs) or registry (every host's members in etcd)", u.Source))
		}
		if !md.IsDefined("nginx", "upstream", name, "balance") {
			u.Balance = "least_conn"
		}
		if !templates.ValidBalance(u.Balance) {
			errs = append(errs, cerr(key+".balance", "invalid balance %q: want least_conn, round_robin, ip_hash or \"hash $variable [consistent]\"", u.Balance))
		}
		if u.Protocol == "" {
			u.Protocol = "uwsgi"
		}
		if u.Protocol != "uwsgi" && u.Protocol != "http" {
			errs = append(errs, cerr(key+".protocol", "invalid protocol %q: want uwsgi or http", u.Protocol))
		}
		if u.Keepalive < 0 {
			errs = append(errs, cerr(key+".keepalive", "must not be negative, have %d", u.Keepalive))
		}
		if u.Host == "" {
			u.Host = "127.0.0.1"
		}
		if u.Location == "" {
			u.Location = "/"
		}
		for _, f := range []struct{ key, v string }{{"host", u.Host}, {"listen", u.Listen}, {"server_name", u.ServerName}, {"location", u.Location}} {
			if f.v != "" && !templates.ValidToken(f.v) {
				errs = append(errs, cerr(key+"."+f.key, "%q cannot go into nginx's configuration: no spaces, control characters, quotes, '#', ';', '{' or '}'", f.v))
			}
		}
		n.Upstream[name] = u
	}
	if len(errs) > 0 || tmpl == nil {
		return errs
	}
	n.Template = tmpl
	if n.Output == "" {
		cfg.NginxRenderOnly = n
	} else {
		cfg.Nginx = n
	}
	if _, err := tmpl.Render(cfg.NginxData(nil, sampleRemote(n.Upstream, func(u Upstream) string { return u.Source }))); err != nil {
		errs = append(errs, cerr("nginx.template", "%v", err))
	}
	return errs
}

// Sources of an upstream's servers.
const (
	SourceLocal    = "local"    // this host's programs
	SourceRegistry = "registry" // every host's members, published in etcd
)

// checkRegistrySource checks what a registry-sourced upstream (or HAProxy
// backend), at key, needs: a [registry] table to read. (A program of this
// host in it is published only with [registry] host, which checkRegistry
// requires of every program with an upstream.)
func checkRegistrySource(cfg *Config, key string, cerr func(key, format string, args ...any) *Error) []error {
	if cfg.Registry == nil {
		return []error{cerr(key, "its servers come from the registry: add a [registry] table with etcd = [...] endpoints")}
	}
	return nil
}

// loadTemplate reads and parses the template file ("": the default def
// gives), the value of key.
func loadTemplate(file string, def func(string) (*templates.Template, error), key string, cerr func(key, format string, args ...any) *Error, read func(string) ([]byte, error)) (*templates.Template, []error) {
	var errs []error
	var tmpl *templates.Template
	var err error
	if file == "" {
		tmpl, err = def("")
	} else if text, rerr := read(file); rerr != nil {
		// A refused file is its own error, naming it; key says which key
		// named it.
		var ce *Error
		if errors.As(rerr, &ce) {
			errs = append(errs, ce)
			rerr = errors.New("refused (see above)")
		}
		err = fmt.Errorf("read template: %w", rerr)
	} else {
		tmpl, err = templates.Parse(file, string(text))
	}
	if err != nil {
		errs = append(errs, cerr(key, "%v", err))
	}
	return tmpl, errs
}

// Remote is the members of registry-sourced upstreams, by upstream name,
// as the templates see them (sorted by host, then port).
type Remote map[string][]templates.Server

// NginxData builds what the nginx template sees. down, when set, names
// the processes (group:process) to render as down; remote holds the
// servers of registry-sourced upstreams.
func (cfg *Config) NginxData(down map[string]bool, remote Remote) templates.Data {
	host, _ := os.Hostname()
	// Neither comes from a checked value: a control character in the
	// file's name or the host name could end the template's comment line.
	d := templates.Data{Source: printable(cfg.File), Hostname: printable(host), Time: time.Now()}
	n := cfg.renderedNginx()
	programs := slices.Clone(cfg.Programs)
	slices.SortFunc(programs, func(a, b *Program) int { return strings.Compare(a.Name, b.Name) })
	servers := map[string][]templates.Server{}
	for _, p := range programs {
		tp := templates.Program{Name: p.Name, NumProcs: p.Spec.NumProcs, PortStart: p.Spec.PortStart, Upstream: p.Spec.Upstream}
		for _, ps := range p.Procs {
			// The command's words may hold a line break (sh -c with a
			// script of several lines) the program needs: it runs as
			// written, and the template sees '?' in its place.
			command := make([]string, len(ps.Argv))
			for i, arg := range ps.Argv {
				command[i] = printable(arg)
			}
			tp.Processes = append(tp.Processes, templates.Process{Name: ps.FullName(), Process: ps.Name, Port: ps.Port, Command: command})
			if n == nil {
				continue
			}
			up := ps.Program.Upstream
			if u, ok := n.Upstream[up]; !ok || u.Source == SourceRegistry {
				continue
			}
			state := "up"
			if down[ps.FullName()] {
				state = "down"
			}
			servers[up] = append(servers[up], templates.Server{
				Host: n.Upstream[up].Host, Port: ps.Port, Name: ps.FullName(),
				Program: p.Name, Process: ps.Name, Weight: ps.Program.Weight, State: state,
			})
		}
		d.Programs = append(d.Programs, tp)
	}
	if n != nil {
		for _, name := range slices.Sorted(maps.Keys(n.Upstream)) {
			u := n.Upstream[name]
			sv := servers[name]
			if u.Source == SourceRegistry {
				sv = remote[name]
			}
			d.Upstreams = append(d.Upstreams, templates.Upstream{
				Name: name, Balance: u.Balance, Protocol: u.Protocol, Keepalive: u.Keepalive,
				Listen: u.Listen, ServerName: u.ServerName, Location: u.Location, Source: u.Source, Servers: sv,
			})
		}
	}
	return d
}

// printable replaces each control or format character of s with '?'.
func printable(s string) string {
	return safetext.Printable(s, '?')
}

// FromRegistry reports whether an upstream of n takes its servers from
// the registry (false for a nil n).
func (n *Nginx) FromRegistry() bool {
	if n == nil {
		return false
	}
	for _, u := range n.Upstream {
		if u.Source == SourceRegistry {
			return true
		}
	}
	return false
}

// renderedNginx is the [nginx] table gosup render prints: the daemon's,
// or the one without output; nil without an [nginx] table.
func (cfg *Config) renderedNginx() *Nginx {
	if cfg.Nginx != nil {
		return cfg.Nginx
	}
	return cfg.NginxRenderOnly
}

// RenderNginx renders the nginx configuration for cfg as the daemon would
// write it at start (every server up), also for an [nginx] table without
// output. It returns nil when cfg has no [nginx]. remote holds the
// servers of registry-sourced upstreams.
func (cfg *Config) RenderNginx(remote Remote) ([]byte, error) {
	n := cfg.renderedNginx()
	if n == nil || n.Template == nil {
		return nil, nil
	}
	return n.Template.Render(cfg.NginxData(nil, remote))
}

// sampleRemote gives each upstream of ups whose source is the registry
// one server up and one down: a template that cannot render them is a
// configuration error, found before any member is read.
func sampleRemote[U any](ups map[string]U, source func(U) string) Remote {
	r := Remote{}
	for name, u := range ups {
		if source(u) == SourceRegistry {
			r[name] = []templates.Server{
				{Host: "192.0.2.1", Port: 9000, Name: "web:web_00", Program: "web", Process: "web:web_00", Weight: 1, State: "up"},
				{Host: "192.0.2.2", Port: 9000, Name: "web:web_00", Program: "web", Process: "web:web_00", Weight: 1, State: "down"},
			}
		}
	}
	return r
}
