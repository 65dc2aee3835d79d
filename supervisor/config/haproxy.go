package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/templates"
)

// HAProxy is the validated [haproxy] table, with its defaults: the
// balancer tier's counterpart of [nginx]. Its backends take their servers
// from the registry (every host's published members).
type HAProxy struct {
	Output       string              // the file written, absolute
	Template     *templates.Template // what renders it
	TemplateFile string              // the user's template, absolute; "" for the built-in one
	// TestCommand and ReloadCommand are operator command lines ("" skips
	// the step), with %(output)s replaced by Output, killed after
	// CommandTimeout.
	TestCommand    string
	ReloadCommand  string
	CommandTimeout time.Duration
	// Socket is HAProxy's runtime API (a stats socket at level admin):
	// a change of member states alone goes through it instead of a
	// reload. "": every change reloads.
	Socket  string
	Backend map[string]Backend
}

// Backend is one [haproxy.backend.NAME] table, with its defaults: NAME is
// the upstream whose members it balances.
type Backend struct {
	Bind          string // "": no frontend
	Mode          string // http or tcp
	Balance       string
	CheckPath     string // http mode's health check path
	CheckInterval time.Duration
	Rise, Fall    int
}

// HAProxy defaults.
const (
	defaultHAProxyTest   = "haproxy -c -f /etc/haproxy/haproxy.cfg -f %(output)s"
	defaultHAProxyReload = "systemctl reload haproxy"
)

// haproxyBalances are HAProxy's balance algorithms that take no argument;
// uri, url_param NAME, hdr(NAME), rdp-cookie(NAME), hash EXPR and random
// [DRAWS] are checked by haproxyBalanceRE.
var haproxyBalances = []string{"leastconn", "roundrobin", "static-rr", "first", "source", "uri", "random"}

var haproxyBalanceRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(url_param [A-Za-z0-9_.-]+|hdr\([A-Za-z0-9_-]+\)|rdp-cookie(\([A-Za-z0-9_-]+\))?|random\([0-9]+\)|hash [a-z0-9_.,()-]+)$`)
})

// haproxyWordRE is what a bind address or check path may look like in
// HAProxy's configuration: no spaces, quotes, backslashes or '#'.
var haproxyWordRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[^\s\p{Cc}"'\\#]+$`) })

// checkHAProxy fills in defaults and validates the [haproxy] table, and
// renders once so that a template that cannot execute is a configuration
// error.
func checkHAProxy(cfg *Config, md toml.MetaData, raw *rawHAProxy, here string, cerr func(key, format string, args ...any) *Error, read func(string) ([]byte, error)) []error {
	if raw == nil {
		return nil
	}
	h := &HAProxy{
		Output: raw.Output, TestCommand: raw.TestCommand, ReloadCommand: raw.ReloadCommand, Socket: raw.Socket,
		CommandTimeout: time.Duration(raw.CommandTimeout), TemplateFile: raw.Template, Backend: map[string]Backend{},
	}
	var errs []error
	if h.Output == "" {
		errs = append(errs, cerr("haproxy.output", "missing: the file gosup writes the backends to (one HAProxy reads with -f, such as /etc/haproxy/conf.d/gosup.cfg)"))
	} else {
		h.Output = absTo(here, h.Output)
	}
	if h.Socket != "" {
		h.Socket = absTo(here, h.Socket)
		// sockaddr_un's sun_path: 108 bytes with the final NUL.
		if len(h.Socket) > 107 {
			errs = append(errs, cerr("haproxy.socket", "%s is %d bytes: a unix socket's path takes at most 107", h.Socket, len(h.Socket)))
		}
	}
	if !md.IsDefined("haproxy", "test_command") {
		h.TestCommand = defaultHAProxyTest
	}
	if !md.IsDefined("haproxy", "reload_command") {
		h.ReloadCommand = defaultHAProxyReload
	}
	if !md.IsDefined("haproxy", "command_timeout") {
		h.CommandTimeout = 10 * time.Second
	}
	for _, c := range []struct {
		key string
		cmd *string
	}{{"test_command", &h.TestCommand}, {"reload_command", &h.ReloadCommand}} {
		*c.cmd = strings.ReplaceAll(strings.ReplaceAll(*c.cmd, "%(here)s", here), "%(output)s", h.Output)
		*c.cmd = programRelTo(here, *c.cmd)
		if _, err := procgroup.CommandArgv(*c.cmd); *c.cmd != "" && err != nil {
			errs = append(errs, cerr("haproxy."+c.key, "%v", err))
		}
	}
	if h.TemplateFile != "" {
		h.TemplateFile = absTo(here, h.TemplateFile)
	}
	tmpl, terrs := loadTemplate(h.TemplateFile, func(string) (*templates.Template, error) { return templates.HAProxy() }, "haproxy.template", cerr, read)
	errs = append(errs, terrs...)
	if len(raw.Backend) == 0 {
		errs = append(errs, cerr("haproxy", "no backend: add [haproxy.backend.NAME] for each upstream NAME the hosts publish"))
	}
	for _, name := range slices.Sorted(maps.Keys(raw.Backend)) {
		rb := raw.Backend[name]
		key := "haproxy.backend." + name
		b := Backend{Bind: rb.Bind, Mode: rb.Mode, Balance: rb.Balance, CheckPath: rb.CheckPath,
			CheckInterval: time.Duration(rb.CheckInterval), Rise: rb.Rise, Fall: rb.Fall}
		if !procgroup.ValidName(name) {
			errs = append(errs, cerr(key, "backend name %q may only contain letters, digits, '_', '.' and '-'", name))
		}
		errs = append(errs, checkRegistrySource(cfg, key, cerr)...)
		if b.Mode == "" {
			b.Mode = "http"
		}
		if b.Mode != "http" && b.Mode != "tcp" {
			errs = append(errs, cerr(key+".mode", "invalid mode %q: want http or tcp", b.Mode))
		}
		if b.Balance == "" {
			b.Balance = "leastconn"
		}
		if !slices.Contains(haproxyBalances, b.Balance) && !haproxyBalanceRE().MatchString(b.Balance) {
			errs = append(errs, cerr(key+".balance", "invalid balance %q: want one of %s, or url_param NAME, hdr(NAME), rdp-cookie(NAME), random(N), hash EXPR", b.Balance, strings.Join(haproxyBalances, ", ")))
		}
		if !md.IsDefined("haproxy", "backend", name, "check_path") {
			b.CheckPath = "/"
		}
		if b.Mode == "http" && (!strings.HasPrefix(b.CheckPath, "/") || !haproxyWordRE().MatchString(b.CheckPath)) {
			errs = append(errs, cerr(key+".check_path", "%q: want a path from /, without spaces, quotes, backslashes or '#'", b.CheckPath))
		}
		if b.Bind != "" && !haproxyWordRE().MatchString(b.Bind) {
			errs = append(errs, cerr(key+".bind", "%q cannot go into HAProxy's configuration: no spaces, control characters, quotes, backslashes or '#'", b.Bind))
		}
		if !md.IsDefined("haproxy", "backend", name, "check_interval") {
			b.CheckInterval = 2 * time.Second
		}
		if b.CheckInterval < 100*time.Millisecond || b.CheckInterval%time.Millisecond != 0 {
			errs = append(errs, cerr(key+".check_interval", "must be whole milliseconds, at least 100ms, have %s", b.CheckInterval))
		}
		for _, c := range []struct {
			key string
			v   *int
		}{{"rise", &b.Rise}, {"fall", &b.Fall}} {
			if !md.IsDefined("haproxy", "backend", name, c.key) {
				*c.v = 2
			}
			if *c.v < 1 || *c.v > 100 {
				errs = append(errs, cerr(key+"."+c.key, "must be from 1 to 100, have %d", *c.v))
			}
		}
		h.Backend[name] = b
	}
	if len(errs) > 0 || tmpl == nil {
		return errs
	}
	if n := cfg.renderedNginx(); n != nil && n.Output == h.Output {
		return []error{cerr("haproxy.output", "%s is [nginx] output too: each balancer needs a file of its own", h.Output)}
	}
	h.Template = tmpl
	cfg.HAProxy = h
	if _, err := tmpl.Render(cfg.HAProxyData(sampleRemote(h.Backend, func(Backend) string { return SourceRegistry }))); err != nil {
		errs = append(errs, cerr("haproxy.template", "%v", err))
	}
	return errs
}

// HAProxyData builds what the HAProxy template sees: each backend with its
// servers from remote.
func (cfg *Config) HAProxyData(remote Remote) templates.Data {
	d := cfg.NginxData(nil, nil)
	d.Upstreams = nil
	h := cfg.HAProxy
	if h == nil {
		return d
	}
	for _, name := range slices.Sorted(maps.Keys(h.Backend)) {
		b := h.Backend[name]
		d.Upstreams = append(d.Upstreams, templates.Upstream{
			Name: name, Balance: b.Balance, Listen: b.Bind, Source: SourceRegistry, Mode: b.Mode,
			CheckPath: b.CheckPath, CheckInterval: fmt.Sprintf("%dms", b.CheckInterval.Milliseconds()),
			Rise: b.Rise, Fall: b.Fall, Servers: remote[name],
		})
	}
	return d
}

// RenderHAProxy renders the HAProxy configuration for cfg with remote's
// servers; nil without an [haproxy] table.
func (cfg *Config) RenderHAProxy(remote Remote) ([]byte, error) {
	if cfg.HAProxy == nil {
		return nil, nil
	}
	return cfg.HAProxy.Template.Render(cfg.HAProxyData(remote))
}

// NginxRegistryUpstreams names the registry-sourced [nginx.upstream.NAME],
// sorted.
func (cfg *Config) NginxRegistryUpstreams() []string {
	var names []string
	if n := cfg.renderedNginx(); n != nil {
		for name, u := range n.Upstream {
			if u.Source == SourceRegistry {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// RegistryUpstreams names the upstreams whose servers come from the
// registry: the registry-sourced [nginx.upstream.NAME] and every
// [haproxy.backend.NAME], sorted, once each.
func (cfg *Config) RegistryUpstreams() []string {
	names := cfg.NginxRegistryUpstreams()
	if cfg.HAProxy != nil {
		names = slices.AppendSeq(names, maps.Keys(cfg.HAProxy.Backend))
	}
	slices.Sort(names)
	return slices.Compact(names)
}
