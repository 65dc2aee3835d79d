package memmon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/memmon/smtptest"
)

func testAlert(name string, uptime time.Duration) Alert {
	return Alert{
		Host: "web-3.example.com", Name: name, Port: 9001, Pid: 4242, RSS: 420 << 20,
		Rule: Rule{Limit: 400 << 20, Name: "any"}, Uptime: uptime, Restarts: 2,
		StderrLog: "/var/log/gosup/web_01.stderr.log", Tail: "Traceback (most recent call last):\nMemoryError", At: time.Now(),
	}
}

func runAlerter(t *testing.T, cfg Email, maxUp time.Duration, sendmail SendmailFunc) *Alerter {
	t.Helper()
	a := NewAlerter(cfg, maxUp, sendmail, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
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
	m := srv.Wait(t, 1, 5*time.Second)[0]
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
	for deadline := time.Now().Add(5 * time.Second); a.Sent.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the server has the mail before the client has its reply
	}
	if a.Sent.Load() != 1 || a.Failed.Load() != 0 {
		t.Errorf("counters: sent %d failed %d", a.Sent.Load(), a.Failed.Load())
	}
}

// Within rate_limit a process gets one mail; the rest arrive as one digest
// when the window ends.
func TestAlertRateLimitAndDigest(t *testing.T) {
	srv := smtptest.Start(t)
	cfg := smtpConfig(srv.Addr)
	cfg.RateLimit = time.Second
	a := runAlerter(t, cfg, 0, nil)
	start := time.Now()
	for range 4 {
		a.Enqueue(testAlert("web:web_01", time.Minute))
	}
	a.Enqueue(testAlert("web:web_02", time.Minute)) // another process has its own window
	first := srv.Wait(t, 2, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	if n := srv.Count(); n != 2 || first[0].Subject == first[1].Subject {
		t.Fatalf("within the window: want 2 mails (one per process), have %d", n)
	}
	msgs := srv.Wait(t, 3, 5*time.Second)
	d := msgs[2]
	if time.Since(start) < time.Second {
		t.Errorf("digest came %s after the first mail, before rate_limit", time.Since(start))
	}
	if !strings.Contains(d.Subject, "web:web_01 restarted 3 more times") || !strings.Contains(d.Subject, "(digest)") {
		t.Errorf("digest subject: %q", d.Subject)
	}
	if strings.Count(d.Body, "- ") < 3 || !strings.Contains(d.Body, "The latest one in full") {
		t.Errorf("digest body:\n%s", d.Body)
	}
	time.Sleep(1200 * time.Millisecond)
	if n := srv.Count(); n != 3 {
		t.Errorf("want exactly 3 mails, have %d", n)
	}
}

func TestAlertMaxUptimeFilters(t *testing.T) {
	srv := smtptest.Start(t)
	a := runAlerter(t, smtpConfig(srv.Addr), 10*time.Minute, nil)
	a.Enqueue(testAlert("web:old", time.Hour))
	a.Enqueue(testAlert("web:young", time.Minute))
	m := srv.Wait(t, 1, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	if srv.Count() != 1 || !strings.Contains(m[0].Subject, "web:young") {
		t.Errorf("want only web:young mailed, have %d mails: %q", srv.Count(), m[0].Subject)
	}
	if a.Filtered.Load() != 1 {
		t.Errorf("filtered: %d", a.Filtered.Load())
	}
}

// A server that refuses, or one that never answers, costs at most the
// timeout per mail, is counted, and does not stop later mail.
func TestAlertFailingServers(t *testing.T) {
	for name, addr := range map[string]string{"refusing": smtptest.Refusing(t), "silent": smtptest.Silent(t)} {
		t.Run(name, func(t *testing.T) {
			cfg := smtpConfig(addr)
			cfg.Timeout = 500 * time.Millisecond
			a := runAlerter(t, cfg, 0, nil)
			start := time.Now()
			a.Enqueue(testAlert("web:a", time.Minute))
			a.Enqueue(testAlert("web:b", time.Minute))
			deadline := time.Now().Add(5 * time.Second)
			for a.Failed.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if a.Failed.Load() != 2 || a.Sent.Load() != 0 {
				t.Fatalf("failed %d sent %d", a.Failed.Load(), a.Sent.Load())
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("two failed mails took %s; the timeout is 500ms each", took)
			}
		})
	}
}

// Enqueue never blocks: a full queue drops and counts.
func TestAlertQueueIsBounded(t *testing.T) {
	cfg := smtpConfig(smtptest.Silent(t))
	cfg.Timeout = 5 * time.Second
	a := NewAlerter(cfg, 0, nil, slog.New(slog.NewTextHandler(io.Discard, nil))) // not running: nothing drains
	start := time.Now()
	for range queueSize + 10 {
		a.Enqueue(testAlert("web:a", time.Minute))
	}
	if time.Since(start) > 100*time.Millisecond || a.Dropped.Load() != 10 {
		t.Errorf("enqueue of %d took %s, dropped %d", queueSize+10, time.Since(start), a.Dropped.Load())
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
	deadline := time.Now().Add(5 * time.Second)
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

// A name with a line break cannot add a header.
func TestAlertHeaderInjection(t *testing.T) {
	srv := smtptest.Start(t)
	a := runAlerter(t, smtpConfig(srv.Addr), 0, nil)
	a.Enqueue(testAlert("web:evil\r\nBcc: victim@example.com", time.Minute))
	m := srv.Wait(t, 1, 5*time.Second)[0]
	if m.Header.Get("Bcc") != "" || len(m.To) != 2 {
		t.Errorf("header injected: Bcc %q, rcpt %v", m.Header.Get("Bcc"), m.To)
	}
}
