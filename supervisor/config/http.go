package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// HTTP is the validated [http] table: the daemon's read-only HTTP
// listener (metrics, the status page, /healthz). It never serves control.
type HTTP struct {
	// Listen is a TCP address (host:port, the host an IP address,
	// "localhost" or empty for every address) or, when Unix, the absolute
	// path of a unix socket.
	Listen string
	Unix   bool
	// SocketMode (octal) and SocketGroup are the unix socket's permissions
	// and group, as [supervisor] socket_mode and socket_group are the
	// control socket's.
	SocketMode  string
	SocketGroup string
	// BasicAuthFile and TokenFile are the credential files, absolute ("":
	// none). Users are the bcrypt hashes of BasicAuthFile by user name,
	// Tokens the bearer tokens of TokenFile: read at each load (start,
	// reload), never handed over in Config.Sources.
	BasicAuthFile string
	TokenFile     string
	Users         map[string][]byte
	Tokens        [][]byte
	// MaxConnections bounds the connections served at once; one more is
	// refused (answered 503 and closed) and counted.
	MaxConnections int
	// Local: the listener is on loopback or a unix socket, where only
	// this host's clients (a browser among them) reach it.
	Local bool
}

// AuthText names the credentials h asks for: "none", "basic", "bearer" or
// "basic, bearer", as gosup check and ctl info show them.
func (h *HTTP) AuthText() string {
	var a []string
	if h.BasicAuthFile != "" {
		a = append(a, "basic")
	}
	if h.TokenFile != "" {
		a = append(a, "bearer")
	}
	if len(a) == 0 {
		return "none"
	}
	return strings.Join(a, ", ")
}

// HostCheck reports whether the listener answers only requests whose
// Host is an IP address or localhost: on loopback or a unix socket
// without credentials, against DNS rebinding (a web page whose name
// comes to resolve to 127.0.0.1 could otherwise read it from an
// operator's browser).
func (h *HTTP) HostCheck() bool { return h.Local && !h.Auth() }

// SocketPerm is SocketMode as permission bits.
func (h *HTTP) SocketPerm() os.FileMode {
	m, _ := parseMode(h.SocketMode) // validated by Load
	return os.FileMode(m)
}

// Auth reports whether the listener asks for credentials.
func (h *HTTP) Auth() bool { return h.BasicAuthFile != "" || h.TokenFile != "" }

// DefaultHTTPMaxConnections is [http] max_connections' default.
const DefaultHTTPMaxConnections = 32

// maxHTTPConnections bounds max_connections: each is a goroutine and a
// descriptor of the daemon's.
const maxHTTPConnections = 4096

// checkHTTP validates the [http] table and reads its credential files.
// Without the table, or without listen, the listener is off.
func checkHTTP(cfg *Config, main *source, raw *rawHTTP, insecure bool) []error {
	if raw == nil {
		return nil
	}
	var errs []error
	h := &HTTP{
		Listen: strings.TrimSpace(raw.Listen), SocketMode: raw.SocketMode, SocketGroup: raw.SocketGroup,
		MaxConnections: raw.MaxConnections,
	}
	if !main.md.IsDefined("http", "max_connections") {
		h.MaxConnections = DefaultHTTPMaxConnections
	}
	if h.MaxConnections < 1 || h.MaxConnections > maxHTTPConnections {
		errs = append(errs, main.cerr("http.max_connections", "must be between 1 and %d, have %d", maxHTTPConnections, h.MaxConnections))
	}
	if h.Listen == "" {
		if main.md.IsDefined("http", "listen") {
			errs = append(errs, main.cerr("http.listen", "is empty: want an address such as \"127.0.0.1:9180\" or a unix socket path; leave it out to turn the listener off"))
		}
		return errs // no listen: off
	}
	loopback := true
	switch {
	case strings.HasPrefix(h.Listen, "/"):
		h.Unix, h.Local = true, true
		h.Listen = filepath.Clean(h.Listen)
		if len(h.Listen) > maxSocketPath {
			errs = append(errs, main.cerr("http.listen", "path %q is %d bytes; a unix socket path may have at most %d", h.Listen, len(h.Listen), maxSocketPath))
		}
		if h.Listen == cfg.Supervisor.Socket {
			errs = append(errs, main.cerr("http.listen", "%s is the control socket ([supervisor] socket): the HTTP listener needs a path of its own", h.Listen))
		}
		if h.SocketMode == "" {
			h.SocketMode = "0600"
			if h.SocketGroup != "" {
				h.SocketMode = "0660"
			}
		}
		if m, err := parseMode(h.SocketMode); err != nil {
			errs = append(errs, main.cerr("http.socket_mode", "%v", err))
		} else if m&0o006 != 0 {
			loopback = false // every local user may connect
		}
	default:
		var err error
		if loopback, err = checkTCPListen(h.Listen); err != nil {
			errs = append(errs, main.cerr("http.listen", "%v", err))
		}
		h.Local = loopback
		for _, k := range []string{"socket_mode", "socket_group"} {
			if main.md.IsDefined("http", k) {
				errs = append(errs, main.cerr("http."+k, "applies to a unix socket only; listen = %q is a TCP address", h.Listen))
			}
		}
	}
	if f := raw.BasicAuthFile; f != "" {
		h.BasicAuthFile = absTo(main.dir, f)
		users, err := readHtpasswd(h.BasicAuthFile, insecure)
		if err != nil {
			errs = append(errs, credError(main, "http.basic_auth_file", err))
		}
		h.Users = users
	}
	if f := raw.TokenFile; f != "" {
		h.TokenFile = absTo(main.dir, f)
		tokens, err := readTokens(h.TokenFile, insecure)
		if err != nil {
			errs = append(errs, credError(main, "http.token_file", err))
		}
		h.Tokens = tokens
	}
	if len(errs) > 0 {
		return errs
	}
	if !loopback && !h.Auth() {
		what := fmt.Sprintf("%s listens beyond loopback", h.Listen)
		if h.Unix {
			what = fmt.Sprintf("socket_mode %s lets every local user connect to %s", h.SocketMode, h.Listen)
		}
		cfg.Warnings = append(cfg.Warnings, main.cerr("http.listen", "%s without authentication: anyone who reaches it reads the processes' names, states and metrics; set basic_auth_file or token_file, or listen on 127.0.0.1", what))
	}
	cfg.HTTP = h
	return nil
}

// checkTCPListen checks a host:port listen address and reports whether it
// is on loopback only.
func checkTCPListen(addr string) (loopback bool, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("want host:port such as \"127.0.0.1:9180\" or \"[::1]:9180\", or an absolute unix socket path, have %q", addr)
	}
	if p, err := parsePort(port); err != nil {
		return false, err
	} else if p == 0 {
		return false, fmt.Errorf("port 0 in %q: pick a fixed port, Prometheus must know where to scrape", addr)
	}
	switch host {
	case "":
		return false, nil
	case "localhost":
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" && !ip.Is6() {
		return false, fmt.Errorf("host %q in %q is not an IP address: write the address to listen on (such as 127.0.0.1, ::1, or 0.0.0.0 for every address)", host, addr)
	}
	return ip.IsLoopback(), nil
}

// parsePort parses a TCP port number.
func parsePort(s string) (int, error) {
	var p int
	if _, err := fmt.Sscanf(s, "%d", &p); err != nil || fmt.Sprint(p) != s || p < 0 || p > 65535 {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", s)
	}
	return p, nil
}
