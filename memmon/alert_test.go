package memmon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode"

	"github.com/gosup/gosup/memmon/smtptest"
	"github.com/gosup/gosup/procgroup/guard"
	"github.com/gosup/gosup/procgroup/guard/guardtest"
)

func testAlert(name string, uptime time.Duration) Alert {
	return Alert{
		Host: "web-3.example.com", Name: name, Port: 9001, Pid: 4242, RSS: 420 << 20,
		Rule: Rule{Limit: 400 << 20, Name: "any"}, Uptime: uptime, Restarts: 2,
		StderrLog: "/var/log/gosup/web_01.stderr.log", Tail: "Traceback (most recent call last):\nMemoryError", At: time.Now(),
	}
}

// runAlerter runs an alerter until the test ends. Outside a synctest
// bubble (real time, a real SMTP server), it mails at once: the coalescing
// delay is tested in bubbles.
func runAlerter(t *testing.T, cfg Email, maxUp time.Duration, sendmail SendmailFunc) *Alerter {
	t.Helper()
	a := NewAlerter(cfg, maxUp, sendmail, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !inBubble() {
		a.coalesce = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// inBubble says whether the caller runs in a synctest bubble.
func inBubble() (in bool) {
	defer func() {
		if recover() != nil {
			in = false
		}
	}()
	synctest.Wait() // panics outside a bubble
	return true
}

// waitSent waits for n mails sent: the server has a mail before the client
// has its reply.
func waitSent(t *testing.T, a *Alerter, n int64) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); a.Stats().Sent < n; {
		if time.Now().After(deadline) {
			t.Fatalf("want %d mails sent within 30s, have %d (failed %d)", n, a.Stats().Sent, a.Stats().Failed)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func smtpConfig(addr string) Email {
	e := DefaultEmail()
	e.To = []string{"ops@example.com", "oncall@example.com"}
	e.From = "gosup@web-3.example.com"
	e.SMTP = addr
	e.Timeout = 2 * time.Second
	return e
}

func TestAlertMailOverSMTP(t *testing.T) {
	srv := smtptest.Start(t)
	a := runAlerter(t, smtpConfig(srv.Addr), 0, nil)
	a.Enqueue(testAlert("web:web_01", 90*time.Minute))
	m := srv.Wait(t, 1, 30*time.Second)[0]
	if m.From != "gosup@web-3.example.com" || strings.Join(m.To, ",") != "ops@example.com,oncall@example.com" {
		t.Errorf("envelope: from %q to %q", m.From, m.To)
	}
	if want := "memmon: web:web_01 restarted on web-3.example.com (RSS 420.0MB over 400.0MB)"; m.Subject != want {
		t.Errorf("subject: want %q, have %q", want, m.Subject)
	}
	for _, want := range []string{"process:   web:web_01", "port:      9001", "pid:       4242", "rss:       420.0MB", "limit:     400.0MB, rule: any", "uptime:    1h30m0s", "restarts:  2 by memmon in the last hour", "MemoryError"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Body)
		}
	}
	waitSent(t, a, 1)
	if a.Stats().Sent != 1 || a.Stats().Failed != 0 {
		t.Errorf("counters: sent %d failed %d", a.Stats().Sent, a.Stats().Failed)
	}
}

// mailbox is a SendmailFunc that keeps the subjects it is handed, in
// order; the first panics calls panic instead.
type mailbox struct {
	mu       sync.Mutex
	subjects []string
	msgs     []string // "Subject: " and the decoded subject, a blank line, the decoded body
	panics   int
}

func (m *mailbox) sendmail(_ context.Context, _ string, msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.panics > 0 {
		m.panics--
		panic("sendmail bug")
	}
	parsed, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return err
	}
	m.subjects = append(m.subjects, parsed.Header.Get("Subject"))
	subject, err := new(mime.WordDecoder).DecodeHeader(parsed.Header.Get("Subject"))
	if err != nil {
		return err
	}
	var body io.Reader = parsed.Body
	if strings.EqualFold(parsed.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	m.msgs = append(m.msgs, "Subject: "+subject+"\n\n"+string(b))
	return nil
}

// all returns the messages, decoded.
func (m *mailbox) all() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.msgs)
}

func (m *mailbox) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.subjects)
}

func sendmailConfig() Email {
	e := DefaultEmail()
	e.To = []string{"ops@example.com"}
	e.Sendmail = "sendmail -t"
	return e
}

// Alerts that come in together are one mail, after Coalesce. Within
// rate_limit of a mail, further alerts (of any process) wait and go out as
// one digest when the window ends, and nothing more after it. The clock is
// synctest's: the window is an hour and the test takes none.
func TestAlertRateLimitAndDigest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := sendmailConfig()
		cfg.RateLimit = time.Hour
		box := &mailbox{}
		a := runAlerter(t, cfg, 0, box.sendmail)
		a.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(Coalesce - time.Second)
		a.Enqueue(testAlert("web:web_02", time.Minute)) // comes in before the first is mailed
		synctest.Wait()
		if got := box.got(); len(got) != 0 {
			t.Fatalf("within the coalescing delay: want no mail, have %q", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got := box.got()
		if len(got) != 1 || !strings.Contains(got[0], "2 restarts of 2 processes") {
			t.Fatalf("after the coalescing delay: want one mail of both, have %q", got)
		}
		for range 3 {
			a.Enqueue(testAlert("web:web_01", time.Minute))
		}
		a.Enqueue(testAlert("web:web_03", time.Minute)) // a process not mailed yet waits too
		time.Sleep(time.Hour - time.Nanosecond)         // the first mail went out at Coalesce
		synctest.Wait()
		if got := box.got(); len(got) != 1 {
			t.Fatalf("within the window: want 1 mail, have %q", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		got = box.got()
		if len(got) != 2 {
			t.Fatalf("when the window ends: want the digest as a second mail, have %q", got)
		}
		if d := got[1]; !strings.Contains(d, "4 restarts of 2 processes") {
			t.Errorf("digest subject: %q", d)
		}
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if got := box.got(); len(got) != 2 || a.Stats().Sent != 2 {
			t.Errorf("a day later: want exactly 2 mails, have %q (sent %d)", got, a.Stats().Sent)
		}
	})
}

// An alerter that panics while sending is caught by the guard: the alert
// in hand is counted as dropped, the alerter restarts after a second and
// mails the next one.
func TestAlerterPanicIsContained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs guardtest.LogBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		g := guard.New(log)
		box := &mailbox{panics: 1}
		a := NewAlerter(sendmailConfig(), 0, box.sendmail, log)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); g.Run(ctx, "alerter", a.Run) }()
		a.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(Coalesce)
		synctest.Wait()
		if g.Panics("alerter") != 1 || a.Stats().Dropped != 1 || a.Stats().Sent != 0 {
			t.Fatalf("after the panic: panics %d, dropped %d, sent %d", g.Panics("alerter"), a.Stats().Dropped, a.Stats().Sent)
		}
		a.Enqueue(testAlert("web:web_02", time.Minute)) // queued while the alerter is down
		time.Sleep(time.Second + Coalesce)
		synctest.Wait()
		if got := box.got(); len(got) != 1 || !strings.Contains(got[0], "web:web_02") || a.Stats().Sent != 1 {
			t.Errorf("after the restart: mails %q, sent %d", got, a.Stats().Sent)
		}
		if out := logs.String(); !strings.Contains(out, `component=alerter panic="sendmail bug"`) || !strings.Contains(out, "memmon.(*mailbox).sendmail") {
			t.Errorf("log:\n%s", out)
		}
		cancel()
		<-done
	})
}

func TestAlertMaxUptimeFilters(t *testing.T) {
	srv := smtptest.Start(t)
	a := runAlerter(t, smtpConfig(srv.Addr), 10*time.Minute, nil)
	a.Enqueue(testAlert("web:old", time.Hour))
	a.Enqueue(testAlert("web:young", time.Minute))
	// One goroutine takes the queue in order: once young is mailed, old
	// has been dealt with.
	m := srv.Wait(t, 1, 30*time.Second)
	if srv.Count() != 1 || !strings.Contains(m[0].Subject, "web:young") {
		t.Errorf("want only web:young mailed, have %d mails: %q", srv.Count(), m[0].Subject)
	}
	if a.Stats().Filtered != 1 {
		t.Errorf("filtered: %d", a.Stats().Filtered)
	}
}

// A server that refuses, or one that never answers, is a failed attempt,
// counted, and the alert is held for another attempt, with those that come
// in meanwhile. The silent server's attempt is cut by [email] timeout,
// and its error says so.
func TestAlertFailingServers(t *testing.T) {
	for name, addr := range map[string]string{"refusing": smtptest.Refusing(t), "silent": smtptest.Silent(t)} {
		t.Run(name, func(t *testing.T) {
			cfg := smtpConfig(addr)
			cfg.Timeout = 500 * time.Millisecond
			cfg.RateLimit = 0
			errs := &errLog{msg: "alert mail failed"}
			a := NewAlerter(cfg, 0, nil, slog.New(errs))
			a.coalesce = 0
			ctx, cancel := context.WithCancel(t.Context())
			ran := make(chan struct{})
			go func() { defer close(ran); a.Run(ctx) }()
			defer func() { cancel(); <-ran }()
			a.Enqueue(testAlert("web:a", time.Minute))
			for deadline := time.Now().Add(30 * time.Second); a.Stats().Failed < 1; {
				if time.Now().After(deadline) {
					t.Fatalf("mail not failed within 30s")
				}
				time.Sleep(10 * time.Millisecond)
			}
			err := errs.first()
			timedOut := errors.Is(err, context.DeadlineExceeded) && strings.Contains(fmt.Sprint(err), "no answer within the [email] timeout (500ms)")
			if err == nil || !strings.HasPrefix(err.Error(), "smtp "+addr+": ") || timedOut != (name == "silent") {
				t.Errorf("the failed attempt's error: %v", err)
			}
			a.Enqueue(testAlert("web:b", time.Minute))
			for deadline := time.Now().Add(30 * time.Second); a.Stats().Retrying < 2; {
				if time.Now().After(deadline) {
					t.Fatalf("want both alerts held for the retry, have %d", a.Stats().Retrying)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if st := a.Stats(); st.Sent != 0 || st.GivenUp != 0 || st.Dropped != 0 {
				t.Errorf("sent %d, given up %d, dropped %d", st.Sent, st.GivenUp, st.Dropped)
			}
		})
	}
}

// errLog is a slog.Handler that keeps the err attribute of the records
// logged with message msg.
type errLog struct {
	msg  string
	mu   sync.Mutex
	errs []error
}

func (h *errLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *errLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *errLog) WithGroup(string) slog.Handler            { return h }
func (h *errLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != h.msg {
		return nil
	}
	r.Attrs(func(at slog.Attr) bool {
		if err, ok := at.Value.Any().(error); ok && at.Key == "err" {
			h.mu.Lock()
			h.errs = append(h.errs, err)
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

// first is the first err kept; nil if none.
func (h *errLog) first() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.errs) == 0 {
		return nil
	}
	return h.errs[0]
}

// flakyMail is a SendmailFunc that fails its first fail calls, and
// records when each call came.
type flakyMail struct {
	mailbox
	fail  int
	calls []time.Time
}

func (f *flakyMail) sendmail(ctx context.Context, cmd string, msg []byte) error {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	failing := len(f.calls) <= f.fail
	f.mu.Unlock()
	if failing {
		return errors.New("exit status 75")
	}
	return f.mailbox.sendmail(ctx, cmd, msg)
}

func (f *flakyMail) times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// A mail that keeps failing is tried again RetryFirst (10 s) after the
// failure, then after twice as long each time, RetryMax (5 min) at most,
// until an attempt an hour (RetryFor) after the alert came in: then the
// alert is given up, and counted. Nothing more is tried after that.
func TestAlertRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flakyMail{fail: 1 << 30}
		a := runAlerter(t, sendmailConfig(), 0, f.sendmail)
		start := time.Now()
		a.Enqueue(testAlert("web:web_01", time.Minute))
		synctest.Wait()
		time.Sleep(Coalesce + time.Second)
		synctest.Wait()
		if a.Stats().Failed != 1 || a.Stats().Retrying != 1 {
			t.Fatalf("after the first attempt: failed %d, retrying %d", a.Stats().Failed, a.Stats().Retrying)
		}
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		var want []time.Duration // since the alert came in
		at, wait := Coalesce, RetryFirst
		for {
			want = append(want, at)
			if at >= RetryFor {
				break
			}
			at += wait
			wait = min(2*wait, RetryMax)
		}
		var got []time.Duration
		for _, c := range f.times() {
			got = append(got, c.Sub(start))
		}
		if !slices.Equal(got, want) {
			t.Errorf("attempts at\n%v, want\n%v", got, want)
		}
		if got[1]-got[0] != 10*time.Second || got[len(got)-1] < time.Hour {
			t.Errorf("first retry %s after the failure, last attempt %s after the alert", got[1]-got[0], got[len(got)-1])
		}
		if a.Stats().GivenUp != 1 || a.Stats().Retrying != 0 || a.Stats().Sent != 0 || a.Stats().Failed != int64(len(want)) || a.Stats().Retries != int64(len(want)-1) {
			t.Errorf("given up %d, retrying %d, sent %d, failed %d, retries %d", a.Stats().GivenUp, a.Stats().Retrying, a.Stats().Sent, a.Stats().Failed, a.Stats().Retries)
		}
	})
}

// Alerts that come in while a failed mail waits for its retry go out with
// it, at the retry, in one mail; once it went, nothing is retrying.
func TestAlertRetryCarriesLaterAlerts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flakyMail{fail: 2}
		a := runAlerter(t, sendmailConfig(), 0, f.sendmail)
		a.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(Coalesce + time.Second) // the first attempt fails
		a.Enqueue(testAlert("web:web_02", time.Minute))
		synctest.Wait()
		if a.Stats().Retrying != 2 || len(f.got()) != 0 {
			t.Fatalf("retrying %d, mails %q", a.Stats().Retrying, f.got())
		}
		time.Sleep(RetryFirst + 2*RetryFirst) // the second fails, the third goes
		synctest.Wait()
		got := f.got()
		if len(got) != 1 || !strings.Contains(got[0], "2 restarts of 2 processes") {
			t.Fatalf("want one mail of both, have %q", got)
		}
		if st := a.Stats(); st.Sent != 1 || st.Failed != 2 || st.Retrying != 0 || st.GivenUp != 0 || st.Retries != 2 {
			t.Errorf("sent %d, failed %d, retrying %d, given up %d, retries %d", st.Sent, st.Failed, st.Retrying, st.GivenUp, st.Retries)
		}
	})
}

// The alerts held are bounded in bytes as well as in number: alerts with
// large excerpts held back by rate_limit past maxHeldBytes drop the
// oldest, counted.
func TestAlertHeldBytesAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		box := &mailbox{}
		a := runAlerter(t, sendmailConfig(), 0, box.sendmail)
		a.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(Coalesce)
		synctest.Wait()
		big := testAlert("web:web_01", time.Minute)
		big.Tail = strings.Repeat("x", excerptBytes)
		n := 2 * maxHeldBytes / excerptBytes
		for range n {
			a.Enqueue(big)
			synctest.Wait()
		}
		a.mu.Lock()
		held, bytes := len(a.held.alerts), a.held.bytes
		a.mu.Unlock()
		if bytes > maxHeldBytes || a.Stats().Dropped == 0 || int64(held)+a.Stats().Dropped != int64(n) {
			t.Errorf("held %d alerts (%d bytes, bound %d), dropped %d of %d", held, bytes, maxHeldBytes, a.Stats().Dropped, n)
		}
	})
}

// Enqueue never blocks: a full queue drops and counts.
func TestAlertQueueIsBounded(t *testing.T) {
	cfg := smtpConfig(smtptest.Silent(t))
	cfg.Timeout = 5 * time.Second
	a := NewAlerter(cfg, 0, nil, slog.New(slog.NewTextHandler(io.Discard, nil))) // not running: nothing drains
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range queueSize + 10 {
			a.Enqueue(testAlert("web:a", time.Minute))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Enqueue blocked on a full queue")
	}
	if a.Stats().Dropped != 10 {
		t.Errorf("enqueued %d into a queue of %d, dropped %d", queueSize+10, queueSize, a.Stats().Dropped)
	}
}

// The sendmail path: a script records the message it reads on stdin.
func TestAlertSendmail(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "mail.txt")
	script := filepath.Join(dir, "sendmail")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"args: $*\" > "+out+"\ncat >> "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultEmail()
	cfg.To = []string{"ops@example.com"}
	cfg.Sendmail = script + " -t -i"
	// The daemon runs sendmail through its reaper; this test has no reaper
	// and no other waiter, so os/exec is the runner here.
	run := func(ctx context.Context, command string, msg []byte) error {
		argv := strings.Fields(command)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = strings.NewReader(string(msg))
		return cmd.Run()
	}
	a := runAlerter(t, cfg, 0, run)
	a.Enqueue(testAlert("web:web_01", time.Minute))
	deadline := time.Now().Add(30 * time.Second)
	var b []byte
	for time.Now().Before(deadline) {
		if b, _ = os.ReadFile(out); strings.Contains(string(b), "MemoryError") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := string(b)
	for _, want := range []string{"args: -t -i", "To: <ops@example.com>", "Subject: memmon: web:web_01 restarted", "pid:       4242"} {
		if !strings.Contains(s, want) {
			t.Errorf("sendmail input lacks %q:\n%s", want, s)
		}
	}
}

// A name or host name with a line break cannot add a header.
func TestAlertHeaderInjection(t *testing.T) {
	srv := smtptest.Start(t)
	a := runAlerter(t, smtpConfig(srv.Addr), 0, nil)
	al := testAlert("web:evil\r\nBcc: victim@example.com", time.Minute)
	al.Host = "web-3\nX-Injected: 1\x00\x85"
	a.Enqueue(al)
	m := srv.Wait(t, 1, 30*time.Second)[0]
	if m.Header.Get("Bcc") != "" || m.Header.Get("X-Injected") != "" || len(m.To) != 2 {
		t.Errorf("header injected: Bcc %q, X-Injected %q, rcpt %v", m.Header.Get("Bcc"), m.Header.Get("X-Injected"), m.To)
	}
	if strings.ContainsFunc(m.Subject, unicode.IsControl) {
		t.Errorf("subject %q has a control character", m.Subject)
	}
}

// An address with a control character (which the config package refuses)
// is not sent, and the failure is counted.
func TestAlertAddressControlCharacter(t *testing.T) {
	for _, bad := range []func(*Email){
		func(e *Email) { e.From = "gosup@web-3\r\nBcc: victim@example.com" },
		func(e *Email) { e.To = append(e.To, "victim@example.com\x00") },
	} {
		srv := smtptest.Start(t)
		cfg := smtpConfig(srv.Addr)
		bad(&cfg)
		a := runAlerter(t, cfg, 0, nil)
		a.Enqueue(testAlert("web:web_01", time.Minute))
		for deadline := time.Now().Add(30 * time.Second); a.Stats().Failed == 0; {
			if time.Now().After(deadline) {
				t.Fatalf("from %q to %q: no failure counted within 30s (sent %d)", cfg.From, cfg.To, a.Stats().Sent)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if n := srv.Count(); n != 0 || a.Stats().Sent != 0 {
			t.Errorf("from %q to %q: %d mails received, %d sent", cfg.From, cfg.To, n, a.Stats().Sent)
		}
	}
}

func TestDefaultFromHost(t *testing.T) {
	if got := defaultFrom("web-3\r\nBcc: x@y\x00"); got != "gosup@web-3Bcc:x@y" {
		t.Errorf("defaultFrom = %q", got)
	}
}

// A batch is one mail, over a real SMTP conversation.
func TestAlertBatchIsOneMail(t *testing.T) {
	srv := smtptest.Start(t)
	a := runAlerter(t, smtpConfig(srv.Addr), 0, nil)
	a.Enqueue(testAlert("web:web_01", time.Minute), testAlert("web:web_02", time.Minute), testAlert("worker:w_0", time.Minute))
	m := srv.Wait(t, 1, 30*time.Second)[0]
	if want := "memmon: 3 restarts of 3 processes on web-3.example.com (web:web_01, web:web_02, worker:w_0)"; m.Subject != want {
		t.Errorf("subject: want %q, have %q", want, m.Subject)
	}
	for _, want := range []string{"==== web:web_01 ====", "==== worker:w_0 ====", "process:   web:web_02"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Body)
		}
	}
	waitSent(t, a, 1)
	if a.Stats().Sent != 1 || srv.Count() != 1 {
		t.Errorf("sent %d, server has %d mails", a.Stats().Sent, srv.Count())
	}
}

// The give-up alert is neither held back by rate_limit nor filtered by
// alert_max_uptime: it goes out after the coalescing delay, with what the
// window held back.
func TestAlertGiveUpGoesOutAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		box := &mailbox{}
		cfg := DefaultEmail()
		cfg.To = []string{"ops@example.com"}
		cfg.Sendmail = "sendmail -t -i"
		a := NewAlerter(cfg, time.Hour, box.sendmail, quiet())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go a.Run(ctx)
		a.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(time.Minute)
		a.Enqueue(testAlert("web:web_01", time.Minute)) // held back
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(box.all()); n != 1 {
			t.Fatalf("within rate_limit: want 1 mail, have %d", n)
		}
		gave := testAlert("web:web_01", 2*time.Hour)
		gave.GaveUp, gave.Restarts, gave.Window = true, 3, 10*time.Minute
		a.Enqueue(gave)
		time.Sleep(Coalesce)
		synctest.Wait()
		mails := box.all()
		if len(mails) != 2 || !strings.Contains(mails[1], "restarted 1 time on web-3.example.com, then no more (digest)") ||
			!strings.Contains(mails[1], "NOT restarted: gave up after 3 restarts within 10m0s") {
			t.Fatalf("want the give-up mailed at once with the held-back restart: %q", mails)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(box.all()); n != 2 || a.Stats().Filtered != 0 {
			t.Errorf("later: %d mails, filtered %d", n, a.Stats().Filtered)
		}
	})
}

// What rate_limit holds back is bounded; the excess is
// dropped and counted.
func TestAlertHeldBackIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		box := &mailbox{}
		cfg := DefaultEmail()
		cfg.To = []string{"ops@example.com"}
		cfg.Sendmail = "sendmail -t -i"
		a := NewAlerter(cfg, 0, box.sendmail, quiet())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go a.Run(ctx)
		a.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(Coalesce)
		for range maxPending + 5 {
			a.Enqueue(testAlert("web:web_01", time.Minute))
			synctest.Wait()
		}
		time.Sleep(time.Duration(cfg.RateLimit))
		synctest.Wait()
		mails := box.all()
		if a.Stats().Dropped != 5 || len(mails) != 2 || !strings.Contains(mails[1], fmt.Sprintf("restarted %d times", maxPending)) {
			t.Errorf("dropped %d, %d mails", a.Stats().Dropped, len(mails))
		}
	})
}

// A failed mail's error says which way it went.
func TestDeliverErrorsSayWhere(t *testing.T) {
	addr := smtptest.Refusing(t)
	a := NewAlerter(smtpConfig(addr), 0, nil, quiet())
	if err := a.deliver(t.Context(), "s", "b"); err == nil || !strings.HasPrefix(err.Error(), "smtp "+addr+": ") {
		t.Errorf("smtp: %v", err)
	}
	failing := func(context.Context, string, []byte) error { return errors.New("exit status 75") }
	a = NewAlerter(sendmailConfig(), 0, failing, quiet())
	if err := a.deliver(t.Context(), "s", "b"); err == nil || err.Error() != "sendmail: exit status 75" {
		t.Errorf("sendmail: %v", err)
	}
}

// A server whose reply never ends is cut off after maxServerBytes, with an
// error that says so, not buffered until the send's timeout.
func TestDeliverBoundsServerReplies(t *testing.T) {
	addr, written := smtptest.Chatty(t)
	cfg := smtpConfig(addr)
	cfg.Timeout = 5 * time.Minute // only the bound can end it early
	a := NewAlerter(cfg, 0, nil, quiet())
	err := a.deliver(t.Context(), "s", "b")
	if err == nil || !strings.Contains(err.Error(), "the server sent more than 1.0MB in one conversation") {
		t.Fatalf("want the reply bound, have %v", err)
	}
	t.Logf("the server wrote %s before the client hung up", fmtBytes(written()))
}

// A stderr line of any length is quoted by its last excerptBytes; a mail
// about many processes quotes at most mailExcerptBytes in all.
func TestAlertExcerptsAreBounded(t *testing.T) {
	var alerts []Alert
	for i := range maxPending {
		al := testAlert(fmt.Sprintf("web:web_%03d", i), time.Minute)
		al.Tail = strings.Repeat("e", excerptBytes)
		alerts = append(alerts, al)
	}
	_, body := compose(alerts)
	if len(body) > mailExcerptBytes+maxPending*1024 {
		t.Errorf("a mail about %d processes is %s", maxPending, fmtBytes(int64(len(body))))
	}
	if n := strings.Count(body, "[gosup: left out: this mail quotes 64.0KB of logs already]"); n != maxPending-mailExcerptBytes/excerptBytes {
		t.Errorf("%d excerpts left out, want %d", n, maxPending-mailExcerptBytes/excerptBytes)
	}
	if n := strings.Count(body, strings.Repeat("e", excerptBytes)); n != mailExcerptBytes/excerptBytes {
		t.Errorf("%d excerpts quoted, want %d", n, mailExcerptBytes/excerptBytes)
	}
}

// A give-up that comes in soon after a restart's mail is not held for
// GiveUpGap after that mail: the gap is between two mails that give-ups
// hasten, so the give-up goes out after the coalescing delay. A second
// give-up within GiveUpGap of the first one's mail waits for the gap.
func TestAlertGiveUpSoonAfterARestartMail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		box := &mailbox{}
		cfg := sendmailConfig()
		cfg.RateLimit = 10 * time.Minute
		a := runAlerter(t, cfg, 0, box.sendmail)
		gaveUp := func(name string) Alert {
			al := testAlert(name, time.Minute)
			al.GaveUp, al.Restarts, al.Window = true, 3, 10*time.Minute
			return al
		}
		a.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(Coalesce)
		synctest.Wait()
		if n := len(box.all()); n != 1 {
			t.Fatalf("the first restart: want 1 mail, have %d", n)
		}
		time.Sleep(10 * time.Second)
		a.Enqueue(testAlert("web:web_01", time.Minute)) // held back by rate_limit
		a.Enqueue(gaveUp("web:web_01"))
		time.Sleep(Coalesce)
		synctest.Wait()
		mails := box.all()
		if len(mails) != 2 || !strings.Contains(mails[1], "then no more (digest)") {
			t.Fatalf("a give-up %s after a restart's mail: want it mailed %s after it came in, have %d mails", 10*time.Second, Coalesce, len(mails))
		}
		a.Enqueue(gaveUp("web:web_02"))
		time.Sleep(GiveUpGap - time.Second)
		synctest.Wait()
		if n := len(box.all()); n != 2 {
			t.Fatalf("a second give-up within %s of the first one's mail: want it held, have %d mails", GiveUpGap, n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if mails := box.all(); len(mails) != 3 || !strings.Contains(mails[2], "web:web_02 on web-3.example.com stays over its limit") {
			t.Fatalf("the second give-up %s after the first one's mail: want it mailed, have %q", GiveUpGap, mails)
		}
	})
}

// handOver returns a's State, through JSON as the daemon's handover does.
func handOver(t *testing.T, a *Alerter) AlerterState {
	t.Helper()
	b, err := json.Marshal(a.State())
	if err != nil {
		t.Fatal(err)
	}
	var st AlerterState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// An alerter stopped while alerts wait (two held back by rate_limit, one
// in the queue) hands them, through JSON, to a new alerter, which mails
// them to a real SMTP server in one mail when the first would have gone
// out (the end of the window after the last mail), and nothing more; the
// counters carry on. The server runs outside the synctest bubble: the
// clock waits for the conversation.
func TestAlerterStateRoundTrip(t *testing.T) {
	srv := smtptest.Start(t)
	synctest.Test(t, func(t *testing.T) {
		cfg := smtpConfig(srv.Addr)
		cfg.RateLimit = 10 * time.Minute
		start := time.Now()
		a := NewAlerter(cfg, 0, nil, quiet())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); a.Run(ctx) }()
		a.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(Coalesce)
		synctest.Wait()
		if srv.Count() != 1 || a.Stats().Sent != 1 {
			t.Fatalf("first alert: %d mails, sent %d", srv.Count(), a.Stats().Sent)
		}
		time.Sleep(time.Minute)
		a.Enqueue(testAlert("web:web_02", time.Minute))
		time.Sleep(time.Minute)
		failed := testAlert("web:web_03", time.Minute)
		failed.Err = errors.New("stop timed out")
		a.Enqueue(failed)
		synctest.Wait()
		cancel()
		<-done
		a.Enqueue(testAlert("web:web_04", time.Minute)) // after Run returned: stays in the queue
		st := handOver(t, a)
		if len(st.Held) != 2 || len(st.Queue) != 1 || st.Sent != 1 || !st.SentAt.Equal(start.Add(Coalesce)) || !st.First.Equal(start.Add(Coalesce+time.Minute)) ||
			st.Held[1].Err == nil || st.Held[1].Err.Error() != "stop timed out" {
			t.Fatalf("state: %+v", st)
		}

		b := NewAlerter(cfg, 0, nil, quiet())
		b.Restore(st)
		ctx, cancel = context.WithCancel(t.Context())
		defer cancel()
		go b.Run(ctx)
		due := start.Add(Coalesce + 10*time.Minute) // rate_limit after the first mail
		time.Sleep(time.Until(due) - time.Nanosecond)
		synctest.Wait()
		if srv.Count() != 1 {
			t.Fatalf("%d mails before the window's end", srv.Count())
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if srv.Count() != 2 || b.Stats().Sent != 2 || b.Stats().Failed != 0 {
			t.Fatalf("at the window's end: %d mails, sent %d, failed %d", srv.Count(), b.Stats().Sent, b.Stats().Failed)
		}
		m := srv.Wait(t, 2, time.Second)[1]
		if !strings.HasPrefix(m.Subject, "memmon: 3 restarts of 3 processes on web-3.example.com (web:web_02, web:web_03, web:web_04)") {
			t.Errorf("subject: %q", m.Subject)
		}
		for _, want := range []string{"restart FAILED", "restart:   FAILED: stop timed out"} {
			if !strings.Contains(m.Body, want) {
				t.Errorf("body lacks %q:\n%s", want, m.Body)
			}
		}
		if strings.Contains(m.Body, "web:web_01") {
			t.Errorf("the first alert mailed again:\n%s", m.Body)
		}
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if srv.Count() != 2 || b.Stats().Sent != 2 {
			t.Errorf("a day later: %d mails, sent %d", srv.Count(), b.Stats().Sent)
		}
	})
}

// Restore keeps an alerter's bounds: at most maxPending held, the rest
// (the oldest) dropped and counted.
func TestAlerterRestoreIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		box := &mailbox{}
		st := AlerterState{Dropped: 3, First: time.Now()}
		for i := range maxPending + 5 {
			st.Held = append(st.Held, testAlert(fmt.Sprintf("web:web_%03d", i), time.Minute))
		}
		b := NewAlerter(sendmailConfig(), 0, box.sendmail, quiet())
		b.Restore(st)
		if b.Stats().Dropped != 8 {
			t.Errorf("dropped: want 3+5, have %d", b.Stats().Dropped)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go b.Run(ctx)
		time.Sleep(Coalesce)
		synctest.Wait()
		mails := box.all()
		if len(mails) != 1 || !strings.Contains(mails[0], fmt.Sprintf("%d restarts of %d processes", maxPending, maxPending)) || strings.Contains(mails[0], "web:web_004 ") || !strings.Contains(mails[0], "web:web_005 ") {
			t.Errorf("want one mail of the %d newest, have %d:\n%s", maxPending, len(mails), strings.Join(mails, "\n----\n"))
		}
	})
}

// An alerter stopped while a mail is on its way (an upgrade stops it)
// holds that mail's alerts again instead of counting a failure: the next
// alerter, restored from its state, mails them.
func TestAlerterStoppedMidSendHandsTheMailOver(t *testing.T) {
	cfg := smtpConfig(smtptest.Silent(t))
	cfg.Timeout = time.Hour // the silent server would hold the send for ever
	a := NewAlerter(cfg, 0, nil, quiet())
	a.coalesce = time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	a.Enqueue(testAlert("web:web_01", time.Minute))
	// The mail is on its way once the alert has left the held ones.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		a.mu.Lock()
		n := len(a.held.alerts)
		a.mu.Unlock()
		if n == 0 && len(a.queue) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the alert was never taken for a mail")
		}
	}
	cancel()
	<-done
	st := handOver(t, a)
	if len(st.Held) != 1 || st.Held[0].Name != "web:web_01" || st.Failed != 0 || st.Dropped != 0 || st.Sent != 0 {
		t.Fatalf("state after a stop mid-send: %+v", st)
	}
	srv := smtptest.Start(t)
	b := NewAlerter(smtpConfig(srv.Addr), 0, nil, quiet())
	b.coalesce = 0
	b.Restore(st)
	bctx, bcancel := context.WithCancel(t.Context())
	bdone := make(chan struct{})
	go func() { defer close(bdone); b.Run(bctx) }()
	t.Cleanup(func() { bcancel(); <-bdone })
	if m := srv.Wait(t, 1, time.Minute)[0]; !strings.Contains(m.Subject, "web:web_01") {
		t.Errorf("mailed: %q", m.Subject)
	}
}

// An alert lists the samples over the limit that made memmon act, at most
// maxAlertSamples of them (the last), and says when it left some out.
func TestAlertListsItsSamples(t *testing.T) {
	var samples []RSSSample
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	for i := range 30 {
		samples = addSample(samples, RSSSample{At: at.Add(time.Duration(i) * 5 * time.Second), RSS: int64(400+i) << 20})
	}
	if len(samples) != maxAlertSamples || samples[0].RSS != 420<<20 {
		t.Fatalf("want the last %d samples, have %d from %d", maxAlertSamples, len(samples), samples[0].RSS)
	}
	al := testAlert("web:web_01", time.Minute)
	al.Samples, al.Over = samples, 30
	body := al.body()
	for _, want := range []string{"samples over the limit: 30 in a row, the last 10:\n  03:05:45.000  420.0MB\n", "  03:06:30.000  429.0MB\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "419.0MB") {
		t.Errorf("body lists more than %d samples:\n%s", maxAlertSamples, body)
	}
}

// An upgrade hands over a mail waiting for its retry: the new alerter
// tries it when the old one would have, and the counters carry on.
func TestAlerterHandsOverItsRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flakyMail{fail: 1}
		old := NewAlerter(sendmailConfig(), 0, f.sendmail, quiet())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); old.Run(ctx) }()
		old.Enqueue(testAlert("web:web_01", time.Minute))
		time.Sleep(Coalesce + time.Second)
		synctest.Wait()
		cancel()
		<-done
		st := handOver(t, old)
		if st.RetryAttempts != 1 || len(st.Held) != 1 || st.Failed != 1 {
			t.Fatalf("state: %+v", st)
		}
		next := NewAlerter(sendmailConfig(), 0, f.sendmail, quiet())
		next.Restore(st) // before Run, as the daemon does
		ctx, cancel = context.WithCancel(t.Context())
		defer cancel()
		go next.Run(ctx)
		if next.Stats().Retrying != 1 || !next.Stats().RetryAt.Equal(st.RetryAt) {
			t.Fatalf("restored: retrying %d at %s, want at %s", next.Stats().Retrying, next.Stats().RetryAt, st.RetryAt)
		}
		time.Sleep(RetryFirst - 2*time.Second) // not yet
		synctest.Wait()
		if len(f.got()) != 0 {
			t.Fatalf("mailed before the retry was due: %q", f.got())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := f.got(); len(got) != 1 || next.Stats().Sent != 1 || next.Stats().Failed != 1 || next.Stats().Retrying != 0 {
			t.Errorf("mails %q, sent %d, failed %d, retrying %d", got, next.Stats().Sent, next.Stats().Failed, next.Stats().Retrying)
		}
	})
}

// An alerter handed over (a reload) passes on what is enqueued to it
// afterwards, and what its queue took since State, to the next one.
func TestAlerterHandToForwards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		box := &mailbox{}
		old := NewAlerter(sendmailConfig(), 0, box.sendmail, quiet()) // stopped: not running
		old.Enqueue(testAlert("web:web_01", time.Minute))             // in its queue, after State
		next := runAlerter(t, sendmailConfig(), 0, box.sendmail)
		old.HandTo(next)
		old.Enqueue(testAlert("web:web_02", time.Minute)) // a restart that was in flight
		time.Sleep(Coalesce)
		synctest.Wait()
		if got := box.got(); len(got) != 1 || !strings.Contains(got[0], "2 restarts of 2 processes") || next.Stats().Sent != 1 {
			t.Errorf("mails %q, sent %d", got, next.Stats().Sent)
		}
	})
}

// The counters add up: every alert enqueued is mailed (Mailed counts the
// alerts, Sent the mails), held for a mail (Held), filtered, given up or
// dropped. A digest of three alerts is one mail and three alerts mailed.
func TestAlertCountersAddUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flakyMail{fail: 1}
		a := runAlerter(t, sendmailConfig(), time.Hour, f.sendmail)
		a.Enqueue(testAlert("web:web_01", time.Minute), testAlert("web:web_02", time.Minute), testAlert("web:web_03", 2*time.Hour))
		synctest.Wait()
		if a.Stats().Held != 2 || a.Stats().Filtered != 1 {
			t.Fatalf("held %d, filtered %d, want 2 and 1", a.Stats().Held, a.Stats().Filtered)
		}
		time.Sleep(Coalesce + time.Second) // the first attempt fails
		a.Enqueue(testAlert("web:web_04", time.Minute))
		synctest.Wait()
		if a.Stats().Held != 3 || a.Stats().Retrying != 3 || a.Stats().Mailed != 0 {
			t.Fatalf("held %d, retrying %d, mailed %d", a.Stats().Held, a.Stats().Retrying, a.Stats().Mailed)
		}
		time.Sleep(RetryFirst)
		synctest.Wait()
		if a.Stats().Sent != 1 || a.Stats().Mailed != 3 || a.Stats().Held != 0 || a.Stats().Filtered != 1 || a.Stats().GivenUp != 0 || a.Stats().Dropped != 0 {
			t.Errorf("sent %d mails, mailed %d alerts, held %d, filtered %d, given up %d, dropped %d; want 1, 3, 0, 1, 0, 0",
				a.Stats().Sent, a.Stats().Mailed, a.Stats().Held, a.Stats().Filtered, a.Stats().GivenUp, a.Stats().Dropped)
		}
		st := a.State()
		next := NewAlerter(sendmailConfig(), 0, f.sendmail, quiet())
		next.Restore(st)
		if next.Stats().Mailed != 3 {
			t.Errorf("handed over: mailed %d", next.Stats().Mailed)
		}
	})
}

// Every view of the counters (Stats, what ctl info shows), read while
// alerts flow and mails fail and succeed, is one that was: every alert
// taken is mailed, held (in the mail being sent as well), given up,
// filtered or dropped; alerts are retrying exactly when a retry time is
// set; a mail sent carries at least one alert. ctl info once showed a
// mail sent with its alerts still retrying (TestMemmonMailIsRetried).
func TestAlertStatsAreOneState(t *testing.T) {
	f := &everyThird{}
	cfg := sendmailConfig()
	cfg.RateLimit = 0
	a := NewAlerter(cfg, time.Hour, f.sendmail, quiet())
	a.coalesce, a.retryFirst = 0, time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan struct{})
	go func() { defer close(ran); a.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	const n = 300
	stop := make(chan struct{})
	bad := make(chan string, 1)
	polled := make(chan int)
	go func() {
		last, polls := int64(0), 0
		defer func() { polled <- polls }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			polls++
			st := a.Stats()
			sent, mailed, held, failed, retrying, givenUp, filtered, dropped, retryAt := st.Sent, st.Mailed, st.Held, st.Failed, st.Retrying, st.GivenUp, st.Filtered, st.Dropped, st.RetryAt
			sum := mailed + held + givenUp + filtered + dropped
			var why string
			switch {
			case sum < last || sum > n:
				why = fmt.Sprintf("alerts counted %d after %d, %d enqueued in all", sum, last, n)
			case (retrying == 0) != retryAt.IsZero():
				why = fmt.Sprintf("retrying %d, retry at %s", retrying, retryAt)
			case retrying > held:
				why = fmt.Sprintf("retrying %d of %d held", retrying, held)
			case sent > mailed:
				why = fmt.Sprintf("%d mails sent with %d alerts in them", sent, mailed)
			}
			if why != "" {
				select {
				case bad <- fmt.Sprintf("%s (sent %d, mailed %d, held %d, failed %d, retrying %d, given up %d, filtered %d, dropped %d)",
					why, sent, mailed, held, failed, retrying, givenUp, filtered, dropped):
				default:
				}
				return
			}
			last = sum
		}
	}()
	for i := range n {
		up := time.Minute
		if i%7 == 0 {
			up = 2 * time.Hour // filtered by alert_max_uptime
		}
		a.Enqueue(testAlert(fmt.Sprintf("web:web_%03d", i), up))
		if i%10 == 9 {
			for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Millisecond) {
				if st := a.Stats(); st.Mailed+st.Filtered == int64(i+1) {
					break
				} else if time.Now().After(deadline) {
					t.Fatalf("alerts not mailed within 60s: %d of %d (%+v)", st.Mailed+st.Filtered, i+1, st)
				}
			}
		}
	}
	close(stop)
	polls := <-polled
	select {
	case why := <-bad:
		t.Fatalf("a view that never was: %s", why)
	default:
	}
	if st := a.Stats(); st.Failed == 0 || st.Sent == 0 || st.Held != 0 || polls == 0 {
		t.Errorf("the alerts did not go through what the test means them to: %+v, %d views", st, polls)
	}
	t.Logf("%d views, %+v", polls, a.Stats())
}

// everyThird is a SendmailFunc that fails every third call.
type everyThird struct {
	mailbox
	calls atomic.Int64
}

func (f *everyThird) sendmail(ctx context.Context, cmd string, msg []byte) error {
	if f.calls.Add(1)%3 == 0 {
		return errors.New("exit status 75")
	}
	return f.mailbox.sendmail(ctx, cmd, msg)
}

// To a sendmail command, the body goes as it is (8bit), so that an mbox
// (the quick start's demo-sendmail) reads as written, not
// quoted-printable (soft line breaks, =3D); it is quoted-printable when it
// cannot go as it is: a line over RFC 5322's 998 bytes (a log line in the
// excerpt may be 4 KiB), a control character (one the process wrote).
// Over SMTP it stays quoted-printable (8bit needs a server that offers
// 8BITMIME): the real server decodes it to the body.
func TestAlertBodyAsWritten(t *testing.T) {
	long := testAlert("web:web_01", time.Minute)
	long.Tail = "a=b " + strings.Repeat("x", 998) // with "a=b ", over 998 bytes
	ctrl := testAlert("web:web_01", time.Minute)
	ctrl.Tail = "\x1b[31mred\x1b[0m"
	utf := testAlert("web:web_01", time.Minute)
	utf.Tail = "café = " + strings.Repeat("ü", 300) // 600 bytes, over 76
	for name, c := range map[string]struct {
		al   Alert
		want string
	}{
		"plain": {testAlert("web:web_01", time.Minute), "8bit"},
		"utf-8": {utf, "8bit"},
		"long":  {long, "quoted-printable"},
		"ctrl":  {ctrl, "quoted-printable"},
	} {
		var msg []byte
		a := NewAlerter(sendmailConfig(), 0, func(_ context.Context, _ string, m []byte) error { msg = m; return nil }, quiet())
		subject, body := c.al.subject(), c.al.body()
		if err := a.deliver(t.Context(), subject, body); err != nil {
			t.Fatal(err)
		}
		parsed, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(parsed.Body)
		got := string(raw)
		if cte := parsed.Header.Get("Content-Transfer-Encoding"); cte != c.want {
			t.Errorf("%s: Content-Transfer-Encoding %q, want %q", name, cte, c.want)
		} else if cte == "quoted-printable" {
			dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = string(dec)
		}
		if got = strings.ReplaceAll(got, "\r\n", "\n"); got != body {
			t.Errorf("%s: the body, decoded:\n%q\nwant\n%q", name, got, body)
		}
		if c.want == "8bit" && !strings.Contains(string(msg), strings.ReplaceAll(body, "\n", "\r\n")) {
			t.Errorf("%s: the body is not in the message as it is, with CRLF as the header:\n%q", name, msg)
		}
	}
	srv := smtptest.Start(t)
	a := runAlerter(t, smtpConfig(srv.Addr), 0, nil)
	a.Enqueue(utf)
	m := srv.Wait(t, 1, 30*time.Second)[0]
	if cte := m.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" || strings.ReplaceAll(m.Body, "\r\n", "\n") != utf.body() {
		t.Errorf("over SMTP: Content-Transfer-Encoding %q, body:\n%q\nwant\n%q", cte, m.Body, utf.body())
	}
}
