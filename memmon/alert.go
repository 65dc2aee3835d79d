package memmon

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	mail "github.com/wneessen/go-mail"
)

// Alert describes one memmon restart, or memmon giving up on a process.
type Alert struct {
	Host      string
	Name      string // group:process
	Port      int
	Pid       int
	RSS       int64
	Rule      Rule
	Uptime    time.Duration
	Restarts  int // memmon restarts of this process in the last hour, this one included
	StderrLog string
	Tail      string // last lines of the stderr log
	At        time.Time
	Err       error // the restart failed
	// GaveUp: memmon did not restart the process, and will not: it was
	// restarted Restarts (max_restarts) times within Window and is over
	// its limit again.
	GaveUp bool
	Window time.Duration
}

func (a Alert) subject() string {
	if a.GaveUp {
		return fmt.Sprintf("memmon: %s on %s stays over its limit (RSS %s over %s); no more restarts after %d within %s",
			a.Name, a.Host, fmtBytes(a.RSS), fmtBytes(int64(a.Rule.Limit)), a.Restarts, a.Window)
	}
	return fmt.Sprintf("memmon: %s restarted on %s (RSS %s over %s)", a.Name, a.Host, fmtBytes(a.RSS), fmtBytes(int64(a.Rule.Limit)))
}

// line is the alert in one line, for a digest.
func (a Alert) line() string {
	what := "restarted"
	switch {
	case a.GaveUp:
		what = fmt.Sprintf("NOT restarted: gave up after %d restarts within %s", a.Restarts, a.Window)
	case a.Err != nil:
		what = "restart FAILED"
	}
	return fmt.Sprintf("- %s %s pid %d, RSS %s over %s (%s), up %s: %s", a.At.Format(time.RFC3339), a.Name, a.Pid, fmtBytes(a.RSS), fmtBytes(int64(a.Rule.Limit)), a.Rule.Name, a.Uptime.Round(time.Second), what)
}

func (a Alert) body() string {
	var b strings.Builder
	if a.GaveUp {
		fmt.Fprintf(&b, "gosup's memmon restarted %s on %s %d times within %s (max_restarts), and it is over its limit again at %s.\n", a.Name, a.Host, a.Restarts, a.Window, a.At.Format(time.RFC3339))
		fmt.Fprintf(&b, "memmon does not restart it any more: it keeps running as pid %d. memmon watches it again once it is\nstarted by other means (gosup ctl restart %s, a crash, a reload that restarts it).\n\n", a.Pid, a.Name)
	} else {
		fmt.Fprintf(&b, "gosup's memmon restarted %s on %s at %s.\n\n", a.Name, a.Host, a.At.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "process:   %s\n", a.Name)
	if a.Port > 0 {
		fmt.Fprintf(&b, "port:      %d\n", a.Port)
	}
	fmt.Fprintf(&b, "pid:       %d\n", a.Pid)
	fmt.Fprintf(&b, "rss:       %s (%d bytes)\n", fmtBytes(a.RSS), a.RSS)
	fmt.Fprintf(&b, "limit:     %s, rule: %s\n", fmtBytes(int64(a.Rule.Limit)), a.Rule.Name)
	fmt.Fprintf(&b, "uptime:    %s\n", a.Uptime.Round(time.Second))
	if a.GaveUp {
		fmt.Fprintf(&b, "restarts:  %d by memmon within %s: memmon gave up\n", a.Restarts, a.Window)
	} else {
		fmt.Fprintf(&b, "restarts:  %d by memmon in the last hour\n", a.Restarts)
	}
	if a.Err != nil {
		fmt.Fprintf(&b, "restart:   FAILED: %v\n", a.Err)
	}
	if a.Tail != "" {
		fmt.Fprintf(&b, "\nlast lines of %s:\n%s\n", a.StderrLog, a.Tail)
	}
	return b.String()
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return strconv.FormatFloat(float64(n)/(1<<30), 'f', 1, 64) + "GB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + "MB"
	}
	return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + "KB"
}

// SendmailFunc runs a sendmail command with msg on its stdin (the daemon
// supplies one that spawns through its reaper).
type SendmailFunc func(ctx context.Context, command string, msg []byte) error

// Alerter mails alerts from its own goroutine: Enqueue never blocks (a full
// queue drops and counts), and every send has a deadline. Mail is rate
// limited per host, not per process, so that a wave of restarts is a few
// mails however many processes it hits:
//
//   - an alert after a quiet spell is held for the coalescing delay
//     (Coalesce), and everything that comes in meanwhile (the other
//     restarts of that tick, which end one by one) goes out with it, as one
//     mail;
//   - within rate_limit of a mail, further alerts wait, and all of them,
//     whatever the process, go out as one digest when the window ends;
//   - an alert that memmon gave up on a process is not held back by the
//     window: it goes out after the coalescing delay, with everything the
//     window held back, but at most one such mail per GiveUpGap (or
//     rate_limit, if shorter) after the last mail that carried a give-up,
//     so give-ups a tick or two apart share one. A mail of restarts only
//     does not hold a give-up back.
//
// What it holds is bounded (maxPending); an alert dropped, like a mail
// that fails, is counted.
type Alerter struct {
	cfg      Email
	maxUp    time.Duration
	sendmail SendmailFunc
	log      *slog.Logger
	queue    chan []Alert
	coalesce time.Duration

	Sent, Failed, Dropped, Filtered atomic.Int64
}

// Coalesce is how long an alert after a quiet spell waits for others to
// go out with it: the restarts one tick begins side by side end within
// seconds of each other.
const Coalesce = 5 * time.Second

// GiveUpGap is the least time between two mails that carry a give-up: a
// give-up is held back by the last mail that carried one, not by a mail of
// restarts.
const GiveUpGap = time.Minute

// queueSize bounds the batches waiting for the mail goroutine.
const queueSize = 64

// maxBatch bounds the alerts of one batch, maxPending those held back for
// the next mail; the rest are dropped and counted.
const (
	maxBatch   = 1024
	maxPending = 256
)

// An alert quotes the end of the process's stderr log: excerptLines lines,
// at most excerptBytes of them. One mail quotes at most mailExcerptBytes in
// all: the sections past that say they left theirs out.
const (
	excerptLines     = 20
	excerptBytes     = 4 << 10
	mailExcerptBytes = 64 << 10
)

// maxServerBytes bounds what one SMTP conversation may read from the
// server (its replies are a few lines each): a server that talks on is cut
// off, not buffered.
const maxServerBytes = 1 << 20

// NewAlerter makes an alerter; Run sends.
func NewAlerter(cfg Email, maxUptime time.Duration, sendmail SendmailFunc, log *slog.Logger) *Alerter {
	return &Alerter{cfg: cfg, maxUp: maxUptime, sendmail: sendmail, log: log, queue: make(chan []Alert, queueSize), coalesce: Coalesce}
}

// Enqueue hands alerts to the mail goroutine without waiting. Dropped
// counts each alert lost.
func (a *Alerter) Enqueue(batch ...Alert) {
	if len(batch) == 0 {
		return
	}
	if len(batch) > maxBatch {
		a.Dropped.Add(int64(len(batch) - maxBatch))
		a.log.Error("alert batch too large; alerts dropped", "dropped", len(batch)-maxBatch)
		batch = batch[:maxBatch]
	}
	select {
	case a.queue <- batch:
	default:
		a.Dropped.Add(int64(len(batch)))
		a.log.Error("alert queue full; alerts dropped", "process", batch[0].Name, "alerts", len(batch))
	}
}

// held is what the alerter holds for its next mail.
type held struct {
	alerts []Alert
	first  time.Time // when the oldest of alerts came in
	urgent time.Time // when the oldest give-up came in; zero: none
}

// due is when the held alerts go out, given the last mail's time, the last
// mail with a give-up's time and rate_limit; zero if there are none.
func (h *held) due(sentAt, gaveUpAt time.Time, rate, coalesce time.Duration) time.Time {
	if len(h.alerts) == 0 {
		return time.Time{}
	}
	at := h.first.Add(coalesce)
	if rate > 0 && !sentAt.IsZero() && sentAt.Add(rate).After(at) {
		at = sentAt.Add(rate)
	}
	if h.urgent.IsZero() {
		return at
	}
	urgent := h.urgent.Add(coalesce)
	if rate > 0 && !gaveUpAt.IsZero() {
		if gap := gaveUpAt.Add(min(rate, GiveUpGap)); gap.After(urgent) {
			urgent = gap
		}
	}
	if urgent.Before(at) {
		at = urgent
	}
	return at
}

// add holds al; when maxPending are held, the oldest restart alert (a
// give-up only if there is no other) is dropped and counted.
func (a *Alerter) add(h *held, al Alert, now time.Time) {
	if len(h.alerts) == maxPending {
		i := max(slices.IndexFunc(h.alerts, func(al Alert) bool { return !al.GaveUp }), 0)
		a.Dropped.Add(1)
		a.log.Error("too many alerts held back for the next mail; the oldest dropped", "process", h.alerts[i].Name, "held", maxPending)
		h.alerts = slices.Delete(h.alerts, i, i+1)
	}
	if len(h.alerts) == 0 {
		h.first = now
	}
	if al.GaveUp && h.urgent.IsZero() {
		h.urgent = now
	}
	h.alerts = append(h.alerts, al)
}

// Run sends until ctx ends. Alerts it holds when it returns (waiting for
// their mail, or in a send that panicked) are counted as dropped.
func (a *Alerter) Run(ctx context.Context) {
	rate := time.Duration(a.cfg.RateLimit)
	var (
		pending  held
		sentAt   time.Time // the last mail
		gaveUpAt time.Time // the last mail that carried a give-up
		sending  int       // alerts in the send under way
	)
	defer func() {
		if lost := sending + len(pending.alerts); lost > 0 {
			a.Dropped.Add(int64(lost))
			a.log.Error("alerts not mailed", "count", lost)
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	arm := func() {
		timer.Stop()
		if at := pending.due(sentAt, gaveUpAt, rate, a.coalesce); !at.IsZero() {
			timer.Reset(time.Until(at))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-a.queue:
			now := time.Now()
			for _, al := range batch {
				if a.maxUp > 0 && al.Uptime > a.maxUp && al.Err == nil && !al.GaveUp {
					a.Filtered.Add(1)
					a.log.Info("no mail: the process had been up longer than alert_max_uptime", "process", al.Name, "uptime", al.Uptime.Round(time.Second))
					continue
				}
				a.add(&pending, al, now)
			}
			arm()
		case <-timer.C:
			now := time.Now()
			if at := pending.due(sentAt, gaveUpAt, rate, a.coalesce); at.IsZero() || now.Before(at) {
				arm()
				continue
			}
			// In the order the restarts began (those of one tick by
			// name), not the order they ended in.
			mail := pending.alerts
			if !pending.urgent.IsZero() {
				gaveUpAt = now
			}
			slices.SortStableFunc(mail, func(x, y Alert) int {
				return cmp.Or(x.At.Compare(y.At), strings.Compare(x.Name, y.Name))
			})
			pending = held{}
			subject, body := compose(mail)
			sending = len(mail)
			a.send(ctx, subject, body)
			sending = 0
			sentAt = now
			arm()
		}
	}
}

// compose makes one mail of alerts, in order: one alert is mailed as
// itself, several of one process as a digest, several processes with a
// section each.
func compose(alerts []Alert) (subject, body string) {
	var names []string
	byName := map[string][]Alert{}
	for _, al := range alerts {
		if byName[al.Name] == nil {
			names = append(names, al.Name)
		}
		byName[al.Name] = append(byName[al.Name], al)
	}
	if len(names) == 1 {
		return section(byName[names[0]])
	}
	host := alerts[0].Host
	restarts, gaveUp := 0, 0
	for _, al := range alerts {
		if al.GaveUp {
			gaveUp++
		} else {
			restarts++
		}
	}
	what := fmt.Sprintf("%d restarts of %d processes", restarts, len(names))
	if gaveUp > 0 {
		what += fmt.Sprintf(", gave up on %d", gaveUp)
	}
	list := names
	if len(list) > 5 {
		list = append(slices.Clip(list[:5]), fmt.Sprintf("%d more", len(names)-5))
	}
	subject = fmt.Sprintf("memmon: %s on %s (%s)", what, host, strings.Join(list, ", "))
	var b strings.Builder
	fmt.Fprintf(&b, "memmon on %s: %s, in one mail.\n\n", host, what)
	for _, al := range alerts {
		b.WriteString(al.line() + "\n")
	}
	quoted := 0
	for _, name := range names {
		last := &byName[name][len(byName[name])-1] // a copy: the one whose body is in full
		if quoted += len(last.Tail); quoted > mailExcerptBytes {
			last.Tail = fmt.Sprintf("[gosup: left out: this mail quotes %s of logs already]", fmtBytes(mailExcerptBytes))
		}
		_, body := section(byName[name])
		fmt.Fprintf(&b, "\n==== %s ====\n\n%s", name, body)
	}
	return subject, b.String()
}

// section is the mail about one process: its alert, or a digest of several.
func section(alerts []Alert) (subject, body string) {
	last := alerts[len(alerts)-1]
	if len(alerts) == 1 {
		return last.subject(), last.body()
	}
	restarts := len(alerts)
	if last.GaveUp {
		restarts--
	}
	times := "times"
	if restarts == 1 {
		times = "time"
	}
	subject = fmt.Sprintf("memmon: %s restarted %d %s on %s (digest)", last.Name, restarts, times, last.Host)
	if last.GaveUp {
		subject = fmt.Sprintf("memmon: %s restarted %d %s on %s, then no more (digest)", last.Name, restarts, times, last.Host)
	}
	var b strings.Builder
	if last.GaveUp {
		fmt.Fprintf(&b, "%d restarts of %s in this mail (rate_limit held back those after the last mail), then memmon gave up on it:\n\n", restarts, last.Name)
	} else {
		fmt.Fprintf(&b, "%d restarts of %s in this mail (rate_limit held back those after the last mail):\n\n", restarts, last.Name)
	}
	for _, al := range alerts {
		b.WriteString(al.line() + "\n")
	}
	b.WriteString("\nThe latest one in full:\n\n")
	b.WriteString(last.body())
	return subject, b.String()
}

// dialClosingOnCancel dials connections that are closed when send ends
// (its deadline, or the daemon's shutdown), so that a server that stops
// answering mid-conversation cannot hold a send past it. The dial's own
// context is go-mail's connect timeout, which ends once connected.
func dialClosingOnCancel(send context.Context) mail.DialContextFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err // net's error names the address
		}
		context.AfterFunc(send, func() { c.Close() })
		return &boundedConn{Conn: c, left: maxServerBytes}, nil
	}
}

// defaultFrom is the sender without [email] from: gosup@ the host name,
// without its control characters and spaces.
func defaultFrom(host string) string {
	return "gosup@" + strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return -1
		}
		return r
	}, host)
}

// boundedConn fails reads once the server has sent left bytes: go-mail
// (net/textproto) buffers a reply line, and all the lines of a reply,
// whatever their length.
type boundedConn struct {
	net.Conn
	left int64
}

func (c *boundedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("the server sent more than %s in one conversation; an SMTP server's replies are a few lines", fmtBytes(maxServerBytes))
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}

// send mails one message with a deadline; failures are logged and counted.
func (a *Alerter) send(ctx context.Context, subject, body string) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(a.cfg.Timeout))
	defer cancel()
	if err := a.deliver(ctx, subject, body); err != nil {
		a.Failed.Add(1)
		a.log.Error("alert mail failed", "subject", subject, "err", err)
		return
	}
	a.Sent.Add(1)
	a.log.Info("alert mailed", "subject", subject, "to", strings.Join(a.cfg.To, ","))
}

func (a *Alerter) deliver(ctx context.Context, subject, body string) error {
	m := mail.NewMsg()
	from := a.cfg.From
	if from == "" {
		host, _ := os.Hostname()
		from = defaultFrom(host)
	}
	// The config package refuses control characters in addresses; they
	// are refused here as well, whatever go-mail makes of them, so that
	// nothing can start a header or an SMTP command of its own.
	for _, addr := range append([]string{from}, a.cfg.To...) {
		if strings.ContainsFunc(addr, unicode.IsControl) {
			return fmt.Errorf("address %q contains a control character", addr)
		}
	}
	if err := m.From(from); err != nil {
		return fmt.Errorf("from %q: %w", from, err)
	}
	if err := m.To(a.cfg.To...); err != nil {
		return fmt.Errorf("to %v: %w", a.cfg.To, err)
	}
	// Header values are encoded by go-mail; control characters (of the
	// host name, a process name) are made spaces here as well.
	m.Subject(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, subject))
	m.SetDate()
	m.SetMessageID()
	m.SetBodyString(mail.TypeTextPlain, body)
	if a.cfg.Sendmail != "" {
		var buf bytes.Buffer
		if _, err := m.WriteTo(&buf); err != nil {
			return fmt.Errorf("compose mail: %w", err)
		}
		if err := a.sendmail(ctx, a.cfg.Sendmail, buf.Bytes()); err != nil {
			return fmt.Errorf("sendmail: %w", err)
		}
		return nil
	}
	host, portStr, _ := net.SplitHostPort(a.cfg.SMTP)
	port, _ := strconv.Atoi(portStr)
	policy := mail.TLSOpportunistic
	if a.cfg.StartTLS != nil {
		policy = mail.NoTLS
		if *a.cfg.StartTLS {
			policy = mail.TLSMandatory
		}
	}
	opts := []mail.Option{
		mail.WithPort(port), mail.WithTimeout(time.Duration(a.cfg.Timeout)), mail.WithTLSPolicy(policy),
		mail.WithDialContextFunc(dialClosingOnCancel(ctx)),
	}
	if a.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(a.cfg.Username), mail.WithPassword(a.cfg.Password))
	}
	c, err := mail.NewClient(host, opts...)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", a.cfg.SMTP, err)
	}
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("smtp %s: %w", a.cfg.SMTP, err)
	}
	return nil
}
