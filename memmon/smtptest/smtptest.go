// Package smtptest runs real SMTP servers for tests: one that keeps what it
// receives (emersion/go-smtp), with STARTTLS and AUTH PLAIN if asked, one
// that refuses every connection, one that accepts connections and never
// answers, and one that never stops answering.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one mail the server accepted.
type Message struct {
	From    string
	To      []string
	Subject string
	Body    string
	Header  mail.Header
	// Raw is the message as the server received it (DATA, its dots
	// undone); TLS says whether it came over STARTTLS, User who
	// authenticated ("": nobody), Helo is the client's EHLO name.
	Raw  []byte
	TLS  bool
	User string
	Helo string
}

// Config says what a Server offers besides plain SMTP.
type Config struct {
	// TLS: the server offers STARTTLS, with a certificate for 127.0.0.1,
	// ::1 and localhost made for the test (Server.Roots trusts it).
	TLS bool
	// Username: the server offers AUTH PLAIN, and takes only Username
	// with Password (535 otherwise).
	Username, Password string
}

// Server is a real SMTP server (emersion/go-smtp) on 127.0.0.1 that
// keeps what it receives.
type Server struct {
	Addr string
	// Roots trusts the server's certificate (Config.TLS); nil without.
	Roots      *x509.CertPool
	cfg        Config
	mu         sync.Mutex
	authFailed int // AUTH attempts refused
	msgs       []Message
	got        chan struct{}
	refuse     int // the next MAIL commands refused
	refused    int // MAIL commands refused so far
}

// RefuseNext makes the server refuse the next n mails (451 to MAIL FROM,
// a temporary failure), then accept again.
func (s *Server) RefuseNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = n
}

// Refused counts the mails refused so far.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// AuthFailed counts the AUTH attempts refused so far.
func (s *Server) AuthFailed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFailed
}

// Start runs a Server until the test ends.
func Start(t testing.TB) *Server { t.Helper(); return StartWith(t, Config{}) }

// StartWith runs a Server offering what cfg says until the test ends.
func StartWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), cfg: cfg, got: make(chan struct{}, 100)}
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	if cfg.TLS {
		cert, roots := testCert(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.Roots = roots
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// testCert makes a self-signed certificate for 127.0.0.1, ::1 and
// localhost, and a pool that trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "smtptest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}

func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{srv: s, conn: c}, nil
}

// Wait returns the first n messages, failing after timeout.
func (s *Server) Wait(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			out := append([]Message(nil), s.msgs...)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-s.got:
		case <-deadline:
			t.Fatalf("want %d mails within %s, have %d", n, timeout, s.Count())
		}
	}
}

func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

type session struct {
	srv  *Server
	conn *smtp.Conn
	user string
	from string
	to   []string
}

// AuthMechanisms offers PLAIN when the server has a Username.
func (s *session) AuthMechanisms() []string {
	if s.srv.cfg.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != s.srv.cfg.Username || password != s.srv.cfg.Password {
			s.srv.mu.Lock()
			s.srv.authFailed++
			s.srv.mu.Unlock()
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.refuse > 0 {
		s.srv.refuse--
		s.srv.refused++
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(m.Body)
	_, isTLS := s.conn.TLSConnectionState()
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		subject = m.Header.Get("Subject")
	}
	s.srv.mu.Lock()
	s.srv.msgs = append(s.srv.msgs, Message{From: s.from, To: s.to, Subject: subject, Body: decodeBody(m.Header, body), Header: m.Header, Raw: raw, TLS: isTLS, User: s.user, Helo: s.conn.Hostname()})
	s.srv.mu.Unlock()
	s.srv.got <- struct{}{}
	return nil
}

// decodeBody undoes quoted-printable, which memmon uses over SMTP.
func decodeBody(h mail.Header, body []byte) string {
	if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "quoted-printable") {
		b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(string(body))))
		if err == nil {
			return string(b)
		}
	}
	return string(body)
}

// Refusing starts a server that answers every connection with 554 and hangs up.
func Refusing(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("554 5.7.1 no service for you\r\n"))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// Silent starts a server that accepts connections and never says a word.
func Silent(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// Chatty starts a server that greets every connection with a reply that
// never ends ("220-" lines, then one line without an end) and returns
// its address and a func giving the bytes it has written so far.
func Chatty(t testing.TB) (string, func() int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	lines := []byte(strings.Repeat("220-chatty.test says more\r\n", 1000))
	endless := []byte("220 " + strings.Repeat("x", 32<<10))
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// Until the client hangs up, or for a minute at most.
				_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
				for i := 0; ; i++ {
					b := lines
					if i >= 100 {
						b = endless
					}
					n, err := c.Write(b)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), written.Load
}
