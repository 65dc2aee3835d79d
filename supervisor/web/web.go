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
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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
	// LocalOnly, when it returns true, makes the handler answer only
	// requests whose Host is an IP address or localhost (421 otherwise):
	// set for a listener on loopback or a unix socket without credentials,
	// against DNS rebinding. Asked at each request (a reload changes it).
	LocalOnly func() bool
	// HealthTimeout bounds Health (default 10s).
	HealthTimeout time.Duration
	// HealthMaxAge is how long a check's answer serves /healthz after it
	// (0: none; requests that arrive while a check runs share it anyway).
	HealthMaxAge time.Duration
	Logger       *slog.Logger
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

	// The last health check's answer, and the check under way (running
	// is closed when it ends): /healthz needs no credentials, and a check
	// pings the daemon's loops and its control socket, so requests share
	// them.
	healthMu      sync.Mutex
	healthAt      time.Time
	healthOK      bool
	healthReasons []string
	healthRunning chan struct{}
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
	if h.o.LocalOnly != nil && h.o.LocalOnly() && !localHost(r.Host) {
		http.Error(w, fmt.Sprintf("421 misdirected request: Host %q is not an IP address or localhost. "+
			"This listener is on loopback or a unix socket without authentication, so it answers only requests for an IP address or localhost: "+
			"a web page whose name came to resolve to 127.0.0.1 (DNS rebinding) could otherwise read it from your browser. "+
			"Ask for http://127.0.0.1:PORT/ or http://localhost:PORT/, have a proxy send Host: localhost, or set basic_auth_file or token_file in [http].",
			oneLine(r.Host, 256)), http.StatusMisdirectedRequest)
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

// localHost reports whether host, a request's Host (with or without a
// port), is an IP address, localhost or a name under .localhost (which
// browsers resolve to loopback themselves), or empty (HTTP/1.0): no
// name a web page can be served from and then point at this host.
func localHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
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
		ok, reasons = h.checkHealth(r.Context())
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

// checkHealth is Health's answer: the last one if younger than
// HealthMaxAge, else that of the check under way, else of a new one. A
// check runs to its end (HealthTimeout) even if the request that began it
// goes away: the others wait for it.
func (h *handler) checkHealth(ctx context.Context) (bool, []string) {
	h.healthMu.Lock()
	for {
		if h.o.HealthMaxAge > 0 && !h.healthAt.IsZero() && time.Since(h.healthAt) < h.o.HealthMaxAge {
			ok, reasons := h.healthOK, h.healthReasons
			h.healthMu.Unlock()
			return ok, reasons
		}
		running := h.healthRunning
		if running == nil {
			break
		}
		h.healthMu.Unlock()
		select {
		case <-running:
		case <-ctx.Done():
			return false, []string{fmt.Sprintf("health check: %v", ctx.Err())}
		}
		h.healthMu.Lock()
		if h.o.HealthMaxAge <= 0 {
			// Nothing reused: the answer of the check waited for.
			ok, reasons := h.healthOK, h.healthReasons
			h.healthMu.Unlock()
			return ok, reasons
		}
	}
	done := make(chan struct{})
	h.healthRunning = done
	h.healthMu.Unlock()
	ok, reasons := false, []string{"health check panicked"}
	defer func() {
		h.healthMu.Lock()
		h.healthAt, h.healthOK, h.healthReasons, h.healthRunning = time.Now(), ok, reasons, nil
		h.healthMu.Unlock()
		close(done)
	}()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.o.HealthTimeout)
	defer cancel()
	ok, reasons = h.o.Health(cctx)
	return ok, reasons
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

	// compare is bcrypt.CompareHashAndPassword (tests count its calls);
	// waiting counts the checks waiting for a turn at it.
	compare func(hash, password []byte) error
	waiting atomic.Int64
	// slots bounds the bcrypts under way (bcryptSlots): no credentials are
	// needed to send a password, so a flood of wrong ones would otherwise
	// take every CPU.
	slots chan struct{}
	// dummy is compared against when the user is unknown, so that the
	// answer takes as long as for a known user: the file's costliest hash.
	dummy []byte
}

// bcryptSlots is how many bcrypts run at once: at most half the CPUs.
func bcryptSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// maxVerified bounds Credentials' cache of accepted passwords.
const maxVerified = 64

// NewCredentials makes credentials of users' bcrypt hashes and tokens.
func NewCredentials(users map[string][]byte, tokens [][]byte) *Credentials {
	c := &Credentials{users: users, verified: map[[32]byte]bool{}, compare: bcrypt.CompareHashAndPassword,
		slots: make(chan struct{}, bcryptSlots())}
	most := -1
	for _, h := range users {
		if cost, err := bcrypt.Cost(h); err == nil && (cost > most || cost == most && string(h) < string(c.dummy)) {
			most, c.dummy = cost, h
		}
	}
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
	key := verifiedKey(user, pass)
	c.mu.Lock()
	known := c.verified[key]
	c.mu.Unlock()
	if known {
		return true
	}
	hash, exists := c.users[user]
	if !exists {
		hash = c.dummy // the same cost, and a result thrown away
	}
	c.waiting.Add(1)
	select {
	case c.slots <- struct{}{}:
		c.waiting.Add(-1)
	case <-r.Context().Done():
		c.waiting.Add(-1)
		return false
	}
	err := c.compare(hash, []byte(pass))
	<-c.slots
	if err != nil || !exists {
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

// verifiedKey is the cache's key of a user and password: the SHA-256 of
// both, the user's length first (a user "a\x00b" with password "c" is not
// user "a" with password "b\x00c").
func verifiedKey(user, pass string) [32]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(user)))
	h.Write(n[:])
	h.Write([]byte(user))
	h.Write([]byte(pass))
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// cutPrefixFold is strings.CutPrefix ignoring the prefix's case (the
// auth scheme is case-insensitive).
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}
