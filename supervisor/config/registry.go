package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gosup/gosup/internal/hostaddr"
)

// Registry is the validated [registry] table: the etcd cluster this
// daemon publishes its upstream members to (and, later, reads other
// hosts' members from).
type Registry struct {
	// Endpoints are etcd's client URLs (http:// or https://).
	Endpoints []string
	// Prefix is where gosup's keys live ("/gosup"): members go under
	// PREFIX/upstreams/NAME/HOST:PORT. No trailing slash.
	Prefix string
	// Host is the address other hosts reach this host's ports on; ""
	// publishes nothing (a host that only reads the registry).
	Host string
	// TTL is the lease's: a daemon that stops renewing it (killed, cut
	// off) loses its members after TTL. Renewed every TTL/3.
	TTL time.Duration
	// CAFile, CertFile and KeyFile are the TLS client settings (absolute,
	// "" when unset); CA, Cert and Key their PEM contents, read at each
	// load. Key is read as a credential file (the [http] token_file's
	// checks).
	CAFile, CertFile, KeyFile string
	CA, Cert, Key             []byte `json:"-"`
	// Username and PasswordFile authenticate to etcd; Password is the
	// file's first line, read at each load with the [http] credential
	// files' checks.
	Username     string
	PasswordFile string
	Password     string `json:"-"`
}

// Registry defaults and bounds.
const (
	DefaultRegistryPrefix = "/gosup"
	DefaultRegistryTTL    = 10 * time.Second
	// MinRegistryTTL: a lease renewed every TTL/3 over a shared network
	// needs room for one slow round trip.
	MinRegistryTTL = 3 * time.Second
	maxRegistryTTL = time.Hour
)

// TLS is the TLS client configuration r's CA, Cert and Key make; nil
// when none is set.
func (r *Registry) TLS() (*tls.Config, error) {
	if r.CA == nil && r.Cert == nil {
		return nil, nil
	}
	return registryTLS(r.CA, r.Cert, r.Key)
}

func registryTLS(ca, cert, key []byte) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != nil {
		pool, err := certPool(ca)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if cert != nil {
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// checkRegistry validates the [registry] table and reads its credential
// and certificate files.
func checkRegistry(cfg *Config, main *source, raw *rawRegistry, insecure bool) []error {
	if raw == nil {
		return nil
	}
	var errs []error
	r := &Registry{Prefix: raw.Prefix, Host: strings.TrimSpace(raw.Host), TTL: time.Duration(raw.TTL), Username: raw.Username}
	if len(raw.Etcd) == 0 {
		errs = append(errs, main.cerr("registry.etcd", "missing: list etcd's client URLs, such as etcd = [\"http://10.0.0.10:2379\"]"))
	}
	for _, ep := range raw.Etcd {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			errs = append(errs, main.cerr("registry.etcd", "endpoint %q: want http://HOST:PORT or https://HOST:PORT", ep))
			continue
		}
		r.Endpoints = append(r.Endpoints, strings.TrimRight(ep, "/"))
	}
	if !main.md.IsDefined("registry", "prefix") {
		r.Prefix = DefaultRegistryPrefix
	}
	r.Prefix = strings.TrimRight(r.Prefix, "/")
	if !strings.HasPrefix(raw.Prefix, "/") && main.md.IsDefined("registry", "prefix") || r.Prefix == "" || strings.ContainsAny(r.Prefix, " \t\n\x00") {
		errs = append(errs, main.cerr("registry.prefix", "%q: want a key path such as \"/gosup\" (starting with /, not / alone, no spaces)", raw.Prefix))
	}
	if r.Host != "" {
		if err := hostaddr.Check(r.Host); err != nil {
			errs = append(errs, main.cerr("registry.host", "%v", err))
		}
	} else if main.md.IsDefined("registry", "host") {
		errs = append(errs, main.cerr("registry.host", "is empty: want the address other hosts reach this host's ports on, such as \"10.0.0.5\"; leave it out on a host that publishes nothing"))
	}
	if !main.md.IsDefined("registry", "ttl") {
		r.TTL = DefaultRegistryTTL
	}
	if r.TTL < MinRegistryTTL || r.TTL > maxRegistryTTL || r.TTL%time.Second != 0 {
		errs = append(errs, main.cerr("registry.ttl", "must be whole seconds from %s to %s, have %s", MinRegistryTTL, maxRegistryTTL, r.TTL))
	}
	// What needs the host: a program that joins an upstream.
	if r.Host == "" {
		for _, p := range cfg.Programs {
			if p.Spec.Upstream != "" {
				errs = append(errs, main.cerr("registry.host", "missing: program %q has upstream = %q, and publishing its processes needs the address other hosts reach this host's ports on (host = \"10.0.0.5\")", p.Name, p.Spec.Upstream))
				break
			}
		}
	}
	if f := raw.CA; f != "" {
		r.CAFile = absTo(main.dir, f)
		if data, err := readPublic(r.CAFile); err != nil {
			errs = append(errs, main.cerr("registry.ca", "%v", err))
		} else if _, err := certPool(data); err != nil {
			errs = append(errs, main.cerr("registry.ca", "%s: %v", r.CAFile, err))
		} else {
			r.CA = data
		}
	}
	switch {
	case (raw.Cert == "") != (raw.Key == ""):
		key := "registry.cert"
		if raw.Cert != "" {
			key = "registry.key"
		}
		errs = append(errs, main.cerr(key, "missing: cert and key go together (a client certificate and its private key)"))
	case raw.Cert != "":
		r.CertFile, r.KeyFile = absTo(main.dir, raw.Cert), absTo(main.dir, raw.Key)
		cert, cerr := readPublic(r.CertFile)
		if cerr != nil {
			errs = append(errs, main.cerr("registry.cert", "%v", cerr))
		}
		key, kerr := readSecret(r.KeyFile, insecure)
		if kerr != nil {
			errs = append(errs, credError(main, "registry.key", kerr))
		}
		if cerr == nil && kerr == nil {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				errs = append(errs, main.cerr("registry.cert", "%s with %s: %v", r.CertFile, r.KeyFile, err))
			} else {
				r.Cert, r.Key = cert, key
			}
		}
	}
	if (raw.Username == "") != (raw.PasswordFile == "") {
		key := "registry.username"
		if raw.Username != "" {
			key = "registry.password_file"
		}
		errs = append(errs, main.cerr(key, "missing: username and password_file go together"))
	} else if raw.PasswordFile != "" {
		r.PasswordFile = absTo(main.dir, raw.PasswordFile)
		pw, err := readPassword(r.PasswordFile, insecure)
		if err != nil {
			errs = append(errs, credError(main, "registry.password_file", err))
		}
		r.Password = pw
	}
	if len(errs) > 0 {
		return errs
	}
	for _, ep := range r.Endpoints {
		if strings.HasPrefix(ep, "http://") && r.Password != "" && !loopbackURL(ep) {
			cfg.Warnings = append(cfg.Warnings, main.cerr("registry.etcd", "%s is plain http beyond loopback: the etcd password crosses the network readable; use https:// with ca", ep))
			break
		}
	}
	cfg.Registry = r
	// A process the balancers reach at host is ready once it answers
	// there, if not on loopback.
	for _, p := range cfg.Programs {
		if p.Spec.Upstream != "" {
			for i := range p.Procs {
				p.Procs[i].ReadyHost = r.Host
			}
		}
	}
	return nil
}

// readPublic reads a certificate file (ca, cert): public material, read
// at each load like the credential files and bounded like a
// configuration file, with no trust check (the key is what is secret).
func readPublic(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readBounded(path, f)
}

// certPool is the pool of the PEM certificates in data.
func certPool(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}

func loopbackURL(ep string) bool {
	u, err := url.Parse(ep)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(u.Hostname())
	return err == nil && ip.IsLoopback()
}

// readPassword reads a password file (readSecret's checks): its first
// line that is not blank or a comment.
func readPassword(path string, insecure bool) (string, error) {
	data, err := readSecret(path, insecure)
	if err != nil {
		return "", err
	}
	pw := ""
	err = secretLines(data, func(n int, line string) error {
		if pw == "" {
			pw = line
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if pw == "" {
		return "", fmt.Errorf("%s holds no password", path)
	}
	return pw, nil
}
