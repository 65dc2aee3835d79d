package memmon

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gosup/gosup/internal/safetext"
)

// deliver mails one message, over SMTP or to the sendmail command, within
// ctx. The error names the server or the command.
func (a *Alerter) deliver(ctx context.Context, subject, body string) error {
	from := a.cfg.From
	if from == "" {
		host, _ := os.Hostname()
		from = defaultFrom(host)
	}
	// The config package refuses control characters in addresses; they
	// are refused here as well, so that nothing can start a header or an
	// SMTP command of its own.
	for _, addr := range append([]string{from}, a.cfg.To...) {
		if strings.ContainsFunc(addr, unicode.IsControl) {
			return fmt.Errorf("address %q contains a control character", addr)
		}
	}
	sender, err := mail.ParseAddress(from)
	if err != nil {
		return fmt.Errorf("from %q: %w", from, err)
	}
	if len(a.cfg.To) == 0 {
		return errors.New("no recipient ([email] to)")
	}
	rcpts := make([]*mail.Address, 0, len(a.cfg.To))
	for _, to := range a.cfg.To {
		addr, err := mail.ParseAddress(to)
		if err != nil {
			return fmt.Errorf("to %q: %w", to, err)
		}
		rcpts = append(rcpts, addr)
	}
	host, _ := os.Hostname()
	if a.cfg.Sendmail != "" {
		// To a local command, the body goes as it is when it can (8bit):
		// the quick start's mbox, or a mail source, reads as written.
		// Over SMTP it is quoted-printable, which every server takes
		// (8bit needs one that offers 8BITMIME).
		msg := message(sender, rcpts, subject, body, plain8bit(body), time.Now(), domainPart(host))
		if err := a.sendmail(ctx, a.cfg.Sendmail, msg); err != nil {
			return fmt.Errorf("sendmail: %w", a.cut(ctx, err))
		}
		return nil
	}
	msg := message(sender, rcpts, subject, body, false, time.Now(), domainPart(host))
	if err := a.smtpSend(ctx, domainPart(host), sender.Address, rcpts, msg); err != nil {
		return fmt.Errorf("smtp %s: %w", a.cfg.SMTP, a.cut(ctx, err))
	}
	return nil
}

// smtpSend has one SMTP conversation with [email] smtp, within ctx: its
// deadline is the connection's, and its end (the deadline, the daemon's
// shutdown) closes the connection, so that a server that stops answering
// mid-conversation cannot hold a send past it. helo is the EHLO name.
//
// STARTTLS as [email] starttls says: unset, when the server offers it;
// true, always (an error when the server does not offer it); false,
// never. A failed STARTTLS (a certificate not trusted, for one) fails the
// mail: it does not go on in clear. With [email] username, AUTH PLAIN,
// only over TLS or to a server on a loopback address: the password is
// never sent in clear over a network.
func (a *Alerter) smtpSend(ctx context.Context, helo, from string, to []*mail.Address, msg []byte) error {
	host, portStr, err := net.SplitHostPort(a.cfg.SMTP)
	if err != nil {
		return err
	}
	if host == "" {
		return errors.New("no host name")
	}
	if port, err := strconv.Atoi(portStr); err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("invalid port %q", portStr)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", a.cfg.SMTP)
	if err != nil {
		return err // net's error names the address
	}
	defer conn.Close()
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return err
		}
	}
	c, err := smtp.NewClient(&boundedConn{Conn: conn, left: maxServerBytes}, host)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if err := c.Hello(helo); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	offered, _ := c.Extension("STARTTLS")
	switch {
	case a.cfg.StartTLS != nil && !*a.cfg.StartTLS:
	case offered:
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, RootCAs: a.roots}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	case a.cfg.StartTLS != nil:
		return errors.New("[email] starttls = true, but the server does not offer STARTTLS")
	}
	if a.cfg.Username != "" {
		_, encrypted := c.TLSConnectionState()
		if err := plainAuthAllowed(encrypted, conn.RemoteAddr()); err != nil {
			return err
		}
		ok, mechs := c.Extension("AUTH")
		if !ok {
			return errors.New("[email] username is set, but the server does not offer AUTH")
		}
		if !hasWord(mechs, "PLAIN") {
			return fmt.Errorf("[email] username is set, but the server does not offer AUTH PLAIN (it offers %s)", mechs)
		}
		if err := c.Auth(plainAuth{a.cfg.Username, a.cfg.Password}); err != nil {
			return fmt.Errorf("AUTH PLAIN as [email] username %q: %w", a.cfg.Username, err)
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL FROM:<%s>: %w", from, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r.Address); err != nil {
			return fmt.Errorf("RCPT TO:<%s>: %w", r.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil { // the server's answer to the message
		return fmt.Errorf("DATA: %w", err)
	}
	// The server took the mail: a QUIT that fails does not undo that,
	// and trying again would mail it twice.
	_ = c.Quit()
	return nil
}

// plainAuthAllowed refuses AUTH PLAIN in clear but to a server on a
// loopback address (net/smtp's PlainAuth rule, going by the address
// connected to rather than the name).
func plainAuthAllowed(encrypted bool, remote net.Addr) error {
	if encrypted {
		return nil
	}
	if ta, ok := remote.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("[email] username is set, but the connection to %s is not encrypted (no STARTTLS: not offered, or starttls = false): the password is not sent in clear to another host", remote)
}

// plainAuth is SASL PLAIN (RFC 4616): whether it may be used is
// plainAuthAllowed's call.
type plainAuth struct{ username, password string }

func (p plainAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return "PLAIN", []byte("\x00" + p.username + "\x00" + p.password), nil
}

func (p plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge after AUTH PLAIN")
	}
	return nil, nil
}

// hasWord says whether the space-separated list has w (any case).
func hasWord(list, w string) bool {
	for f := range strings.FieldsSeq(list) {
		if strings.EqualFold(f, w) {
			return true
		}
	}
	return false
}

// domainPart is host as a name for EHLO and Message-ID: its letters,
// digits, dots and dashes; "localhost" if none.
func domainPart(host string) string {
	h := strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '.' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return -1
	}, host)
	if h = strings.Trim(h, ".-"); h == "" || len(h) > 255 {
		return "localhost"
	}
	return h
}

// maxHeaderLine is where a header line is folded (RFC 5322's 78).
const maxHeaderLine = 78

// message is the mail, with CRLF line ends: From, To, Subject, Date,
// Message-ID (at idHost), MIME-Version, and a text/plain UTF-8 body, 8bit
// (as it is, eightBit) or quoted-printable. Nothing from subject or the
// addresses can start a header of its own: the subject's control
// characters are spaces, and an address is written by net/mail (the
// caller refused control characters in it).
func message(from *mail.Address, to []*mail.Address, subject, body string, eightBit bool, now time.Time, idHost string) []byte {
	var b bytes.Buffer
	b.Grow(len(body)*11/10 + 512)
	b.WriteString("From: " + from.String() + "\r\n")
	line := len("To:")
	b.WriteString("To:")
	for i, r := range to {
		s := r.String()
		if i > 0 {
			b.WriteByte(',')
			line++
		}
		if i > 0 && line+1+len(s) > maxHeaderLine {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteString(" " + s)
		line += 1 + len(s)
	}
	b.WriteString("\r\n")
	b.WriteString(subjectHeader(subject))
	b.WriteString("Date: " + now.Format(time.RFC1123Z) + "\r\n")
	b.WriteString("Message-ID: <" + rand.Text() + "@" + idHost + ">\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n")
	if eightBit {
		b.WriteString("Content-Transfer-Encoding: 8bit\r\n\r\n")
		b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
		return b.Bytes()
	}
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(body)) // a bytes.Buffer does not fail
	_ = qp.Close()
	return b.Bytes()
}

// subjectHeader is the Subject header of subject, its control characters
// made spaces, CRLF ended and folded: as it is when it is printable ASCII
// in words short enough to fold, else as RFC 2047 encoded-words (UTF-8,
// Q), one per line.
func subjectHeader(subject string) string {
	s := safetext.Printable(subject, ' ')
	plain := !strings.Contains(s, "=?")
	for i := 0; plain && i < len(s); i++ {
		plain = s[i] >= ' ' && s[i] < 0x7f
	}
	words := strings.Split(s, " ")
	for _, w := range words {
		plain = plain && len(w) < maxHeaderLine-1
	}
	var b strings.Builder
	b.WriteString("Subject:")
	line := len("Subject:")
	if plain {
		for _, w := range words {
			if w != "" && line+1+len(w) > maxHeaderLine {
				b.WriteString("\r\n")
				line = 0
			}
			b.WriteString(" " + w)
			line += 1 + len(w)
		}
		return b.String() + "\r\n"
	}
	for i, w := range qWords(s) {
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString(" " + w)
	}
	return b.String() + "\r\n"
}

// qWords encodes s as RFC 2047 encoded-words (UTF-8, Q) of at most 75
// characters, none splitting a character.
func qWords(s string) []string {
	const prefix, suffix, maxWord = "=?UTF-8?q?", "?=", 75
	var words []string
	var w strings.Builder
	for _, r := range s {
		var enc string
		switch {
		case r == ' ':
			enc = "_"
		case r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("!*+-/", r)):
			enc = string(r)
		default:
			var e strings.Builder
			for _, c := range []byte(string(r)) {
				fmt.Fprintf(&e, "=%02X", c)
			}
			enc = e.String()
		}
		if w.Len() > 0 && len(prefix)+w.Len()+len(enc)+len(suffix) > maxWord {
			words = append(words, prefix+w.String()+suffix)
			w.Reset()
		}
		w.WriteString(enc)
	}
	if w.Len() > 0 || len(words) == 0 {
		words = append(words, prefix+w.String()+suffix)
	}
	return words
}
