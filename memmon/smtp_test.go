package memmon

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/internal/safetext"
	"github.com/gosup/gosup/memmon/smtptest"
)

// What a real SMTP server receives is a message net/mail reads, with
// every header an alert has and the body as composed, whatever the
// subject holds (line breaks, non-ASCII, a word longer than a line, an
// encoded-word look-alike) and however many recipients: CRLF lines, none
// over RFC 5322's 998 bytes, 7-bit, no header but those written.
func TestSMTPMessageParses(t *testing.T) {
	srv := smtptest.Start(t)
	cfg := smtpConfig(srv.Addr)
	cfg.From = "Gosup Ü <gosup@web-3.example.com>"
	cfg.To = []string{"ops@example.com", `"On Call" <oncall@example.com>`}
	for i := range 6 {
		cfg.To = append(cfg.To, "Team "+strings.Repeat("x", i*10)+" <team"+string(rune('a'+i))+"@example.com>")
	}
	a := NewAlerter(cfg, 0, nil, quiet())
	utf := testAlert("web:web_01", time.Minute)
	utf.Tail = "café = " + strings.Repeat("ü", 300) + "\n\x1b[31mred\x1b[0m\n. a line with a dot\n.\n"
	host, _ := os.Hostname()
	for i, subject := range []string{
		"memmon: web:web_01 restarted on web-3.example.com (RSS 420.0MB over 400.0MB)",
		"memmon: 12 restarts of 7 processes on web-3.example.com (web:web_01, web:web_02, web:web_03, web:web_04, web:web_05, 2 more)",
		"memmon: wéb:プロセス restarted on wéb-3 (RSS 420.0MB over 400.0MB) " + strings.Repeat("ü", 100),
		"memmon: " + strings.Repeat("x", 2000) + " restarted",
		"memmon: =?utf-8?q?not_encoded?= restarted",
		"memmon: web:evil\r\nBcc: victim@example.com\r\n\r\nbody? restarted\x00\x85",
	} {
		if err := a.deliver(t.Context(), subject, utf.body()); err != nil {
			t.Fatalf("subject %q: %v", subject, err)
		}
		m := srv.Wait(t, i+1, 30*time.Second)[i]
		for n, line := range bytes.SplitAfter(m.Raw, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if !bytes.HasSuffix(line, []byte("\r\n")) || bytes.Count(line, []byte("\r")) != 1 || len(line) > 1000 {
				t.Errorf("subject %q: line %d is not a line of at most 998 bytes and CRLF: %q", subject, n+1, line)
			}
			if i := bytes.IndexFunc(line, func(r rune) bool { return r >= 0x80 }); i >= 0 {
				t.Errorf("subject %q: line %d is not 7-bit: %q", subject, n+1, line)
			}
		}
		msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
		if err != nil {
			t.Fatalf("subject %q: net/mail: %v\n%s", subject, err, m.Raw)
		}
		h := msg.Header
		var names []string
		for k := range h {
			names = append(names, k)
		}
		if want := "Content-Transfer-Encoding Content-Type Date From Message-Id Mime-Version Subject To"; strings.Join(sorted(names), " ") != want {
			t.Errorf("subject %q: headers %v, want %s", subject, sorted(names), want)
		}
		if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Name != "Gosup Ü" || from.Address != "gosup@web-3.example.com" {
			t.Errorf("From %q: %v %v", h.Get("From"), from, err)
		}
		to, err := h.AddressList("To")
		if err != nil || len(to) != len(cfg.To) || to[1].Name != "On Call" || to[1].Address != "oncall@example.com" || to[7].Address != "teamf@example.com" {
			t.Errorf("To %q: %v %v", h.Get("To"), to, err)
		}
		if got, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject")); err != nil || got != safetext.Printable(subject, ' ') {
			t.Errorf("Subject %q decodes to %q (%v), want %q", h.Get("Subject"), got, err, safetext.Printable(subject, ' '))
		}
		if d, err := h.Date(); err != nil || time.Since(d) > time.Minute || time.Since(d) < -time.Minute {
			t.Errorf("Date %q: %v %v", h.Get("Date"), d, err)
		}
		if id := h.Get("Message-Id"); !regexp.MustCompile(`^<[A-Z2-7]{26}@` + regexp.QuoteMeta(domainPart(host)) + `>$`).MatchString(id) {
			t.Errorf("Message-ID %q", id)
		}
		if h.Get("Mime-Version") != "1.0" || h.Get("Content-Type") != "text/plain; charset=UTF-8" || h.Get("Content-Transfer-Encoding") != "quoted-printable" {
			t.Errorf("MIME headers: %q %q %q", h.Get("Mime-Version"), h.Get("Content-Type"), h.Get("Content-Transfer-Encoding"))
		}
		body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
		if err != nil || strings.ReplaceAll(string(body), "\r\n", "\n") != utf.body() {
			t.Errorf("body, decoded (%v):\n%q\nwant\n%q", err, body, utf.body())
		}
		if m.Helo != domainPart(host) || m.From != "gosup@web-3.example.com" || len(m.To) != len(cfg.To) {
			t.Errorf("EHLO %q (host %q), envelope from %q to %q", m.Helo, host, m.From, m.To)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// STARTTLS as [email] starttls says (unset: when offered; true: always;
// false: never), AUTH PLAIN with username and password, against a real
// server with a certificate made for the test; each refusal says why,
// names the key, and no mail goes.
func TestSMTPStartTLSAndAuth(t *testing.T) {
	yes, no := true, false
	type server struct{ tls, auth bool }
	for name, c := range map[string]struct {
		srv      server
		starttls *bool
		trust    bool   // the alerter trusts the server's certificate
		user     string // username; password "secret"
		wantTLS  bool
		wantErr  string // "": mailed
	}{
		"opportunistic, offered":        {srv: server{tls: true, auth: true}, trust: true, user: "alice", wantTLS: true},
		"opportunistic, not offered":    {srv: server{auth: true}, user: "alice"},
		"mandatory":                     {srv: server{tls: true}, starttls: &yes, trust: true, wantTLS: true},
		"mandatory, not offered":        {srv: server{}, starttls: &yes, wantErr: "[email] starttls = true, but the server does not offer STARTTLS"},
		"none, offered":                 {srv: server{tls: true, auth: true}, starttls: &no, user: "alice"},
		"untrusted certificate":         {srv: server{tls: true}, wantErr: "STARTTLS: tls: failed to verify certificate"},
		"wrong password":                {srv: server{tls: true, auth: true}, trust: true, user: "mallory", wantErr: `AUTH PLAIN as [email] username "mallory": 535`},
		"no AUTH offered":               {srv: server{tls: true}, trust: true, user: "alice", wantErr: "[email] username is set, but the server does not offer AUTH"},
		"username with a line break":    {srv: server{tls: true, auth: true}, trust: true, user: "alice\r\nRCPT TO:<victim@example.com>", wantErr: "535"},
		"mandatory, untrusted, no mail": {srv: server{tls: true}, starttls: &yes, wantErr: "STARTTLS: tls: failed to verify certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			sc := smtptest.Config{TLS: c.srv.tls}
			if c.srv.auth {
				sc.Username, sc.Password = "alice", "secret"
			}
			srv := smtptest.StartWith(t, sc)
			cfg := smtpConfig(srv.Addr)
			cfg.StartTLS, cfg.Username = c.starttls, c.user
			if c.user != "" {
				cfg.Password = "secret"
			}
			a := NewAlerter(cfg, 0, nil, quiet())
			if c.trust {
				a.roots = srv.Roots
			}
			err := a.deliver(t.Context(), "s", "b\n")
			if c.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), "smtp "+srv.Addr+": ") || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("want an error naming the server with %q, have %v", c.wantErr, err)
				}
				if srv.Count() != 0 {
					t.Errorf("the server has %d mails", srv.Count())
				}
				if strings.Contains(c.wantErr, "535") && srv.AuthFailed() != 1 {
					t.Errorf("the server refused %d AUTH, want 1", srv.AuthFailed())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := srv.Wait(t, 1, 30*time.Second)[0]
			wantUser := ""
			if c.srv.auth {
				wantUser = c.user
			}
			if m.TLS != c.wantTLS || m.User != wantUser || m.Body != "b\r\n" {
				t.Errorf("mailed with TLS %v as %q, body %q; want TLS %v as %q", m.TLS, m.User, m.Body, c.wantTLS, wantUser)
			}
		})
	}
}

// A failed STARTTLS is a failed attempt, counted and held for a retry, as
// every failure is.
func TestSMTPTLSFailureIsCounted(t *testing.T) {
	yes := true
	srv := smtptest.Start(t)
	cfg := smtpConfig(srv.Addr)
	cfg.StartTLS = &yes
	a := runAlerter(t, cfg, 0, nil)
	a.Enqueue(testAlert("web:web_01", time.Minute))
	for deadline := time.Now().Add(30 * time.Second); a.Stats().Failed < 1 || a.Stats().Retrying < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("no failure counted within 30s: %+v", a.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := a.Stats(); st.Sent != 0 || srv.Count() != 0 {
		t.Errorf("sent %d, the server has %d", st.Sent, srv.Count())
	}
}

// AUTH PLAIN goes over TLS, or in clear to a loopback address only: the
// tests' servers are all on 127.0.0.1, so the rule is tested here on its
// own, with the address a remote server would have.
func TestPlainAuthAllowed(t *testing.T) {
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 587}
	if err := plainAuthAllowed(false, remote); err == nil || !strings.Contains(err.Error(), "[email] username is set, but the connection to 192.0.2.1:587 is not encrypted") {
		t.Errorf("in clear to a remote host: %v", err)
	}
	for _, ok := range []struct {
		enc  bool
		addr net.Addr
	}{{true, remote}, {false, &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}, {false, &net.TCPAddr{IP: net.IPv6loopback}}} {
		if err := plainAuthAllowed(ok.enc, ok.addr); err != nil {
			t.Errorf("encrypted %v to %s: %v", ok.enc, ok.addr, err)
		}
	}
}

// A server that took the mail (250 to its end) and then hangs up on QUIT
// has the mail: the attempt is a mail sent, not a failure to be tried
// again (which would mail it twice). The server is a real conversation,
// written out: go-smtp answers QUIT itself.
func TestSMTPQuitFailureAfterTheMailIsSent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		fmt.Fprint(c, "220 test ESMTP\r\n")
		var data strings.Builder
		for inData := false; ; {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch {
			case inData && line == ".\r\n":
				inData = false
				fmt.Fprint(c, "250 2.0.0 queued\r\n")
				got <- data.String()
			case inData:
				data.WriteString(line)
			case strings.HasPrefix(line, "EHLO"):
				fmt.Fprint(c, "250-test\r\n250 8BITMIME\r\n")
			case strings.HasPrefix(line, "DATA"):
				inData = true
				fmt.Fprint(c, "354 go ahead\r\n")
			case strings.HasPrefix(line, "QUIT"):
				return // hangs up without 221
			default:
				fmt.Fprint(c, "250 ok\r\n")
			}
		}
	}()
	cfg := smtpConfig(ln.Addr().String())
	a := runAlerter(t, cfg, 0, nil)
	a.Enqueue(testAlert("web:web_01", time.Minute))
	select {
	case msg := <-got:
		if !strings.Contains(msg, "Subject: memmon: web:web_01 restarted") {
			t.Errorf("the server got:\n%s", msg)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no mail within 30s")
	}
	waitSent(t, a, 1)
	if st := a.Stats(); st.Failed != 0 || st.Held != 0 {
		t.Errorf("after a mail taken and a failed QUIT: %+v", st)
	}
}
