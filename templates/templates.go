// Package templates renders the nginx (or HAProxy) configuration for
// gosup's upstreams: an embedded default template, or a user's, executed
// with text/template and slim-sprig's functions (sprig's, less those that
// need libraries outside Go's standard library) over the data model below.
package templates

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	sprig "github.com/go-task/slim-sprig/v3"
)

//go:embed nginx.conf.tmpl
var defaultTemplate string

//go:embed haproxy.cfg.tmpl
var haproxyTemplate string

// Data is what a template sees. Everything in it is sorted, so the same
// configuration renders the same bytes (unless a template prints .Time).
type Data struct {
	// Source is the gosup configuration file the data comes from.
	Source string
	// Hostname is the machine's host name.
	Hostname string
	// Time is when the rendering happens. The default template does not
	// use it: a file that changes at every render would reload nginx every time.
	Time time.Time
	// Upstreams, sorted by name.
	Upstreams []Upstream
	// Programs, sorted by name: every program, with or without an upstream.
	Programs []Program
}

// Upstream is one [nginx.upstream.NAME] table and its servers, or one
// [haproxy.backend.NAME] table and its servers.
type Upstream struct {
	Name string
	// Balance is nginx's least_conn, round_robin, ip_hash or "hash $key
	// [consistent]"; HAProxy's balance algorithm (leastconn, ...).
	Balance   string
	Protocol  string // nginx: uwsgi or http
	Keepalive int    // nginx: 0, no keepalive directive
	// Listen is where the balancer takes requests for the upstream: nginx's
	// listen, HAProxy's bind; "": no server block (frontend).
	Listen     string
	ServerName string // nginx
	Location   string // nginx
	// Source is where the servers come from: "local" (this host's
	// programs) or "registry" (every host's members published in etcd).
	Source string
	// HAProxy only: mode (http or tcp), the health check's path (http
	// mode), its interval ("2s") and its rise and fall counts.
	Mode          string
	CheckPath     string
	CheckInterval string
	Rise, Fall    int
	// Servers in program then process order (from the registry: by host,
	// then port).
	Servers []Server
}

// Directive is the balancing directive for the upstream block, "" for
// round robin (nginx's default).
func (u Upstream) Directive() string {
	if u.Balance == "round_robin" || u.Balance == "" {
		return ""
	}
	return u.Balance + ";"
}

// Server is one process behind an upstream.
type Server struct {
	Host    string
	Port    int
	Name    string // group:process
	Program string
	Process string
	Weight  int    // 0 or 1: no weight parameter
	State   string // "up", or "down" while the process is drained
}

// ID is a name for the server unique in its upstream, fit for HAProxy's
// server names: host:port, without brackets.
func (s Server) ID() string { return fmt.Sprintf("%s:%d", s.Host, s.Port) }

// Address is host:port, with brackets for an IPv6 host.
func (s Server) Address() string {
	if bytes.ContainsRune([]byte(s.Host), ':') {
		return fmt.Sprintf("[%s]:%d", s.Host, s.Port)
	}
	return fmt.Sprintf("%s:%d", s.Host, s.Port)
}

// Program is one program, for templates that want more than upstreams.
type Program struct {
	Name      string
	NumProcs  int
	PortStart int
	Upstream  string
	Processes []Process
}

// Process is one process of a program.
type Process struct {
	Name    string // group:process
	Process string
	Port    int
	Command []string
}

// Template is a parsed template.
type Template struct {
	Name string // "default" or the file's path
	t    *template.Template
}

// Load parses the template at path, or the embedded default when path is "".
func Load(path string) (*Template, error) {
	if path == "" {
		return Parse("default", defaultTemplate)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read template: %w", err)
	}
	return Parse(path, string(b))
}

// HAProxy is the embedded default HAProxy template.
func HAProxy() (*Template, error) { return Parse("default", haproxyTemplate) }

// Parse parses text, a template read from the file name (the config
// package reads it, checking who may change it).
func Parse(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(sprig.TxtFuncMap()).Parse(text)
	if err != nil {
		if f := undefinedFunc(err); slices.Contains(notProvided, f) {
			return nil, fmt.Errorf("parse template: %w (%s is one of sprig's functions gosup does not provide: see docs/nginx.md)", err, f)
		}
		return nil, fmt.Errorf("parse template: %w", err)
	}
	return &Template{Name: name, t: t}, nil
}

// notProvided are sprig v3.3.0's functions that slim-sprig leaves out: they
// need libraries outside the standard library (semver, decimal, mergo,
// x/crypto, uuid, ...) whose package initialisation every gosup command
// would pay at start-up.
var notProvided = []string{
	"abbrev", "abbrevboth", "add1f", "addf", "bcrypt", "buildCustomCert", "camelcase",
	"decryptAES", "deepCopy", "derivePassword", "divf", "encryptAES", "genCA", "genCAWithKey",
	"genPrivateKey", "genSelfSignedCert", "genSelfSignedCertWithKey", "genSignedCert",
	"genSignedCertWithKey", "htpasswd", "initials", "kebabcase", "merge", "mergeOverwrite",
	"mulf", "mustDeepCopy", "mustMerge", "mustMergeOverwrite", "nospace", "randAlpha",
	"randAlphaNum", "randAscii", "randBytes", "randNumeric", "semver", "semverCompare",
	"sha512sum", "shuffle", "snakecase", "subf", "swapcase", "untitle", "uuidv4", "wrap", "wrapWith",
}

// undefinedFunc returns the name in text/template's `function "NAME" not
// defined` parse error, or "".
func undefinedFunc(err error) string {
	_, rest, ok := strings.Cut(err.Error(), `function "`)
	if !ok {
		return ""
	}
	name, _, ok := strings.Cut(rest, `" not defined`)
	if !ok {
		return ""
	}
	return name
}

// Render executes the template. It returns the whole output or an error,
// never part of a file.
func (t *Template) Render(d Data) ([]byte, error) {
	var b bytes.Buffer
	if err := t.t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("render template %s: %w", t.Name, err)
	}
	return b.Bytes(), nil
}

// tokenRE is what a name, host or directive argument may look like when it
// reaches nginx's configuration: no whitespace, control characters (\p{Cc}:
// C0 with \v, DEL, C1), ';', '{', '}', quotes, backslashes or '#', so no
// value can end a directive or open a block.
var tokenRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[^\s\p{Cc};{}"'\\#]+$`) })

// ValidToken reports whether s can be written into an nginx directive as is.
func ValidToken(s string) bool { return tokenRE().MatchString(s) }

var hashRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^hash [^\s\p{Cc};{}"'\\#]+( consistent)?$`) })

// ValidBalance reports whether b is a balancing method gosup renders.
func ValidBalance(b string) bool {
	switch b {
	case "least_conn", "round_robin", "ip_hash":
		return true
	}
	return hashRE().MatchString(b)
}
