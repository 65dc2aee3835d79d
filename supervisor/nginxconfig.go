package supervisor

import (
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/nginx"
	"github.com/gosup/gosup/templates"
)

// NginxSettings is the [nginx] table.
type NginxSettings struct {
	Output         string                      `toml:"output"`
	Template       string                      `toml:"template"`
	TestCommand    string                      `toml:"test_command"`
	ReloadCommand  string                      `toml:"reload_command"`
	CommandTimeout procgroup.Duration          `toml:"command_timeout"`
	Upstream       map[string]UpstreamSettings `toml:"upstream"`

	// tmpl is the parsed template, set by validation.
	tmpl *templates.Template
}

// UpstreamSettings is one [nginx.upstream.NAME] table.
type UpstreamSettings struct {
	Balance    string `toml:"balance"`
	Protocol   string `toml:"protocol"`
	Keepalive  int    `toml:"keepalive"`
	Host       string `toml:"host"`
	Listen     string `toml:"listen"`
	ServerName string `toml:"server_name"`
	Location   string `toml:"location"`
}

// managerSettings is what the nginx manager needs of the table.
func (n *NginxSettings) managerSettings() nginx.Settings {
	return nginx.Settings{
		Output: n.Output, Template: n.tmpl, TestCommand: n.TestCommand, ReloadCommand: n.ReloadCommand,
		CommandTimeout: time.Duration(n.CommandTimeout),
	}
}

// Nginx defaults.
const (
	defaultTestCommand   = "nginx -t"
	defaultReloadCommand = "nginx -s reload"
)

// checkNginx fills in defaults, validates the [nginx] table and the
// programs' upstream keys against it, and renders once so that a template
// that cannot execute is a configuration error.
func checkNginx(cfg *Config, md toml.MetaData, here string, cerr func(key, format string, args ...any) *ConfigError) []error {
	var errs []error
	n := cfg.Nginx
	if n == nil {
		for _, p := range cfg.Programs {
			if p.Spec.Upstream != "" {
				errs = append(errs, cerr("program."+p.Name+".upstream", "upstream %q needs an [nginx] table with [nginx.upstream.%s]", p.Spec.Upstream, p.Spec.Upstream))
			}
		}
		return errs
	}
	if !md.IsDefined("nginx", "test_command") {
		n.TestCommand = defaultTestCommand
	}
	if !md.IsDefined("nginx", "reload_command") {
		n.ReloadCommand = defaultReloadCommand
	}
	if !md.IsDefined("nginx", "command_timeout") {
		n.CommandTimeout = procgroup.Duration(10 * time.Second)
	}
	if n.Output == "" {
		errs = append(errs, cerr("nginx.output", "is required: the file gosup writes, such as /etc/nginx/conf.d/gosup.conf"))
	} else {
		n.Output = absTo(here, n.Output)
	}
	for _, c := range []struct{ key, cmd string }{{"test_command", n.TestCommand}, {"reload_command", n.ReloadCommand}} {
		if _, err := procgroup.CommandArgv(c.cmd); c.cmd != "" && err != nil {
			errs = append(errs, cerr("nginx."+c.key, "%v", err))
		}
	}
	if n.Template != "" {
		n.Template = absTo(here, n.Template)
	}
	tmpl, err := templates.Load(n.Template)
	if err != nil {
		errs = append(errs, cerr("nginx.template", "%v", err))
	}
	used := map[string]bool{}
	for _, p := range cfg.Programs {
		if u := p.Spec.Upstream; u != "" {
			used[u] = true
			if _, ok := n.Upstream[u]; !ok {
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
		if !used[name] {
			errs = append(errs, cerr(key, "no program has upstream = %q; nginx refuses an upstream without servers", name))
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
				errs = append(errs, cerr(key+"."+f.key, "%q cannot go into nginx's configuration: no spaces, quotes, '#', ';', '{' or '}'", f.v))
			}
		}
		n.Upstream[name] = u
	}
	if len(errs) > 0 || tmpl == nil {
		return errs
	}
	n.tmpl = tmpl
	if _, err := tmpl.Render(nginxData(cfg, nil)); err != nil {
		errs = append(errs, cerr("nginx.template", "%v", err))
	}
	return errs
}

// nginxData builds what the template sees. down, when set, names the
// processes (group:process) to render as down.
func nginxData(cfg *Config, down map[string]bool) templates.Data {
	host, _ := os.Hostname()
	d := templates.Data{Source: cfg.File, Hostname: host, Time: time.Now()}
	n := cfg.Nginx
	programs := slices.Clone(cfg.Programs)
	slices.SortFunc(programs, func(a, b *Program) int { return strings.Compare(a.Name, b.Name) })
	servers := map[string][]templates.Server{}
	for _, p := range programs {
		tp := templates.Program{Name: p.Name, NumProcs: p.Spec.NumProcs, PortStart: p.Spec.PortStart, Upstream: p.Spec.Upstream}
		for _, ps := range p.Procs {
			tp.Processes = append(tp.Processes, templates.Process{Name: ps.FullName(), Process: ps.Name, Port: ps.Port, Command: ps.Argv})
			if n == nil {
				continue
			}
			up := ps.Program.Upstream
			if _, ok := n.Upstream[up]; !ok {
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
			d.Upstreams = append(d.Upstreams, templates.Upstream{
				Name: name, Balance: u.Balance, Protocol: u.Protocol, Keepalive: u.Keepalive,
				Listen: u.Listen, ServerName: u.ServerName, Location: u.Location, Servers: servers[name],
			})
		}
	}
	return d
}

// RenderNginx renders the nginx configuration for cfg as the daemon would
// write it at start (every server up). It returns nil when cfg has no [nginx].
func RenderNginx(cfg *Config) ([]byte, error) {
	if cfg.Nginx == nil || cfg.Nginx.tmpl == nil {
		return nil, nil
	}
	return cfg.Nginx.tmpl.Render(nginxData(cfg, nil))
}
