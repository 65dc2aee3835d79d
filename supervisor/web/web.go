// Package web serves the daemon's read-only HTTP listener: /metrics, the
// status page (/ and /status.json) and /healthz, behind optional basic or
// bearer authentication. Nothing it serves changes anything: only GET and
// HEAD are answered, every other method gets 405, and no route of the
// control API exists here.
package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"
)

// Options are what the handler serves.
type Options struct {
	Metrics http.Handler // GET /metrics
	// Page serves GET / and GET /status.json; it sees the original path.
	Page http.Handler
	// Health says whether the daemon is healthy (GET /healthz): when not,
	// one reason a line.
	Health func(ctx context.Context) (ok bool, reasons []string)
	// Auth returns the credentials in force, asked at each request (a
	// reload replaces them); nil, or a nil result, asks for none.
	Auth func() *Credentials
	// HealthTimeout bounds Health (default 10s).
	HealthTimeout time.Duration
	Logger        *slog.Logger
}

// Allow is the methods the listener answers.
const Allow = "GET, HEAD"

// Health's answer is bounded: at most maxReasons reasons, each at most
// maxReasonBytes.
const (
	maxReasons     = 20
	maxReasonBytes = 512
)

// NewHandler returns the listener's handler. A request with another
// method than GET or HEAD gets 405 whatever its path, before any
// authentication (it could do nothing anyway); then, when credentials are
// set, a request without valid ones gets 401, except /healthz, which
// answers its status code to anyone (load balancers) and its reasons only
// to an authenticated client; unknown paths get 404.
func NewHandler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = 10 * time.Second
	}
	return &handler{o: o}
}

type handler struct {
	o Options
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", Allow)
		http.Error(w, "405 method not allowed: this listener is read-only (GET, HEAD)", http.StatusMethodNotAllowed)
		return
	}
	authed, challenge := h.authorize(r)
	if r.URL.Path == "/healthz" {
		h.health(w, r, authed)
		return
	}
	if !authed {
		for _, c := range challenge {
			hdr.Add("WWW-Authenticate", c)
		}
		http.Error(w, "401 unauthorized", http.StatusUnauthorized)
		return
	}
	var next http.Handler
	switch r.URL.Path {
	case "/metrics":
		next = h.o.Metrics
	case "/", "/status.json":
		next = h.o.Page
	}
	if next == nil {
		http.NotFound(w, r)
		return
	}
	next.ServeHTTP(w, r)
}

// authorize checks r's credentials: it reports whether r may read, and
// when not the challenges to send.
func (h *handler) authorize(r *http.Request) (bool, []string) {
	var c *Credentials
	if h.o.Auth != nil {
		c = h.o.Auth()
	}
	if c == nil || (len(c.users) == 0 && len(c.tokens) == 0) {
		return true, nil
	}
	if c.Check(r) {
		return true, nil
	}
	var ch []string
	if len(c.users) > 0 {
		ch = append(ch, `Basic realm="gosup", charset="UTF-8"`)
	}
	if len(c.tokens) > 0 {
		ch = append(ch, `Bearer realm="gosup"`)
	}
	return false, ch
}

// health answers /healthz: 200 "ok" or 503 with one reason a line (only
// to an authenticated client: the reasons name processes).
func (h *handler) health(w http.ResponseWriter, r *http.Request, authed bool) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	ok, reasons := false, []string{"no health check"}
	if h.o.Health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), h.o.HealthTimeout)
		ok, reasons = h.o.Health(ctx)
		cancel()
	}
	if ok {
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "ok\n")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	if !authed {
		fmt.Fprint(w, "unhealthy (authenticate to read why)\n")
		return
	}
	var b strings.Builder
	for i, why := range reasons {
		if i == maxReasons {
			fmt.Fprintf(&b, "and %d more\n", len(reasons)-maxReasons)
			break
		}
		b.WriteString(oneLine(why, maxReasonBytes))
		b.WriteByte('\n')
	}
	if len(reasons) == 0 {
		b.WriteString("unhealthy\n")
	}
	fmt.Fprint(w, b.String())
}

// oneLine is s with control characters (a line break) as spaces, cut to
// at most n bytes on a rune boundary.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// Credentials are the users (bcrypt hashes, as htpasswd -B writes them)
// and bearer tokens a request may present. Make them with NewCredentials.
type Credentials struct {
	users  map[string][]byte
	tokens [][32]byte // SHA-256 of each token: compared in constant time

	// verified remembers the user:password pairs bcrypt accepted, by their
	// SHA-256, so that a scraper presenting the same ones every second
	// costs one bcrypt, not one a request. Bounded by maxVerified.
	mu       sync.Mutex
	verified map[[32]byte]bool
}

// maxVerified bounds Credentials' cache of accepted passwords.
const maxVerified = 64

// dummyHash is compared against when the user is unknown, so that the
// answer takes as long as for a known user with a wrong password (the
// bcrypt, at the default cost, of a password no one is told).
const dummyHash = "$2a$10$YesmoIlur8PS8Y.hLEiKmOAtio8q/SlPJ2i48INMYlx/KkeGgf6Jm"

// NewCredentials makes credentials of users' bcrypt hashes and tokens.
func NewCredentials(users map[string][]byte, tokens [][]byte) *Credentials {
	c := &Credentials{users: users, verified: map[[32]byte]bool{}}
	for _, t := range tokens {
		c.tokens = append(c.tokens, sha256.Sum256(t))
	}
	return c
}

// Check reports whether r presents valid credentials: a bearer token of
// the token file, or a user and password of the htpasswd file.
func (c *Credentials) Check(r *http.Request) bool {
	authz := r.Header.Get("Authorization")
	if tok, ok := cutPrefixFold(authz, "Bearer "); ok && len(c.tokens) > 0 {
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		match := 0
		for _, t := range c.tokens {
			match |= subtle.ConstantTimeCompare(sum[:], t[:])
		}
		return match == 1
	}
	user, pass, ok := r.BasicAuth()
	if !ok || len(c.users) == 0 {
		return false
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	c.mu.Lock()
	known := c.verified[key]
	c.mu.Unlock()
	if known {
		return true
	}
	hash, exists := c.users[user]
	if !exists {
		hash = []byte(dummyHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil || !exists {
		return false
	}
	c.mu.Lock()
	if len(c.verified) >= maxVerified {
		clear(c.verified)
	}
	c.verified[key] = true
	c.mu.Unlock()
	return true
}

// cutPrefixFold is strings.CutPrefix ignoring the prefix's case (the
// auth scheme is case-insensitive).
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}
