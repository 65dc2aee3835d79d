package memmon

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Alert describes one memmon restart, or memmon giving up on a process.
//
// In JSON (an upgrade's handover carries the alerts not mailed yet), Err
// is its text: the error an Alert decoded from JSON has has only that.
type Alert struct {
	Host      string        `json:"host"`
	Name      string        `json:"name"` // group:process
	Port      int           `json:"port,omitempty"`
	Pid       int           `json:"pid"`
	RSS       int64         `json:"rss"`
	Rule      Rule          `json:"rule"`
	Uptime    time.Duration `json:"uptime"`
	Restarts  int           `json:"restarts"` // memmon restarts of this process in the last hour, this one included
	StderrLog string        `json:"stderr_log,omitempty"`
	Tail      string        `json:"tail,omitempty"` // last lines of the stderr log, read before the stop
	// Samples are the samples over the limit that made memmon act (the
	// last 10 at most), Over how many there were in a row.
	Samples []RSSSample `json:"samples,omitempty"`
	Over    int         `json:"over,omitempty"`
	At      time.Time   `json:"at"`
	Err     error       `json:"-"` // the restart failed
	// GaveUp: memmon did not restart the process, and will not: it was
	// restarted Restarts (max_restarts) times within Window and is over
	// its limit again.
	GaveUp bool          `json:"gave_up,omitempty"`
	Window time.Duration `json:"window,omitempty"`
}

// alertJSON is an Alert in JSON: its fields, and its error's text.
type alertJSON struct {
	alertFields
	Err string `json:"err,omitempty"`
}

// alertFields is Alert without its JSON methods.
type alertFields Alert

// MarshalJSON encodes the alert with its error's text.
func (al Alert) MarshalJSON() ([]byte, error) {
	j := alertJSON{alertFields: alertFields(al)}
	if al.Err != nil {
		j.Err = al.Err.Error()
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encodes; the error, if any, is
// one with the text of the encoded one.
func (al *Alert) UnmarshalJSON(b []byte) error {
	var j alertJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*al = Alert(j.alertFields)
	if j.Err != "" {
		al.Err = errors.New(j.Err)
	}
	return nil
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
	if len(a.Samples) > 0 {
		if a.Over > len(a.Samples) {
			fmt.Fprintf(&b, "\nsamples over the limit: %d in a row, the last %d:\n", a.Over, len(a.Samples))
		} else {
			b.WriteString("\nsamples over the limit:\n")
		}
		for _, s := range a.Samples {
			fmt.Fprintf(&b, "  %s  %s\n", s.At.Format("15:04:05.000"), fmtBytes(s.RSS))
		}
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
// A mail that fails (the SMTP server refuses or does not answer, the
// sendmail command fails) is tried again: its alerts are held again, with
// those that come in meanwhile, and go out RetryFirst after the failure,
// then after twice as long each time, RetryMax at most, whatever the rate
// limit. An alert still not mailed RetryFor after it came in is given up
// at the next failure, and counted (GivenUp).
//
// What it holds is bounded (maxPending alerts, maxHeldBytes of them); an
// alert dropped, like a failed attempt, is counted.
type Alerter struct {
	cfg      Email
	maxUp    time.Duration
	sendmail SendmailFunc
	log      *slog.Logger
	queue    chan []Alert
	coalesce time.Duration
	// retryFirst is RetryFirst; tests in real time make it shorter.
	retryFirst time.Duration
	// roots verifies the SMTP server's certificate after STARTTLS; nil:
	// the host's roots. Tests trust their server's.
	roots *x509.CertPool

	// What Run holds for the next mail, and the times the rate limiting
	// goes by: kept here, not in Run, so that a Run the guard starts again
	// after a panic, or the alerter of a new image of the daemon (State,
	// Restore), carries on with them.
	mu       sync.Mutex
	held     held
	sentAt   time.Time // the last mail
	gaveUpAt time.Time // the last mail that carried a give-up
	retry    retry     // the failed attempts since the last mail sent
	sending  int       // the alerts in the mail being sent
	// The counters (AlerterStats), changed under mu together with what
	// they count, so that Stats is a state that was.
	sent, mailed, failed, dropped, filtered, givenUp int64
	// retried counts the attempts made after a failed one.
	retried int64

	// next is the alerter this one handed what it held to (HandTo):
	// Enqueue passes alerts on to it.
	fwd  sync.Mutex
	next *Alerter
}

// HandTo makes this alerter, stopped and its State restored into next,
// pass on to next what is enqueued from now on (the alerts of restarts
// that were in flight when a reload replaced it), and what its queue took
// since State.
func (a *Alerter) HandTo(next *Alerter) {
	a.fwd.Lock()
	defer a.fwd.Unlock()
	a.next = next
	for {
		select {
		case batch := <-a.queue:
			next.Enqueue(batch...)
		default:
			return
		}
	}
}

// AlerterStats is what ctl info shows of an alerter: one state of it.
// Every alert taken from the queue, or dropped on the way in, is Mailed,
// Held, GivenUp, Filtered or Dropped, once.
type AlerterStats struct {
	// Sent counts the mails sent, Mailed the alerts in them, Failed the
	// attempts that failed.
	Sent, Mailed, Failed int64
	// Held is how many alerts wait for a mail now (the coalescing delay,
	// rate_limit or a retry), or are in the mail being sent; Retrying is
	// how many of them are held for another attempt after a failed one
	// (the mail under way included), RetryAt when it is: zero exactly when
	// Retrying is.
	Held, Retrying int64
	RetryAt        time.Time
	// GivenUp counts the alerts not mailed after retrying for RetryFor,
	// Filtered those not mailed for alert_max_uptime, Dropped those lost
	// to a bound or to a last attempt that failed.
	GivenUp, Filtered, Dropped int64
	// Retries counts the attempts made again after a failed one (each
	// is among Sent or Failed too).
	Retries int64
}

// Stats returns the alerter's counters, and what it holds, as they are at
// one moment.
func (a *Alerter) Stats() AlerterStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := AlerterStats{
		Sent: a.sent, Mailed: a.mailed, Failed: a.failed,
		Held:    int64(len(a.held.alerts) + a.sending),
		GivenUp: a.givenUp, Filtered: a.filtered, Dropped: a.dropped, Retries: a.retried,
	}
	if !a.retry.at.IsZero() {
		st.Retrying, st.RetryAt = st.Held, a.retry.at
	}
	return st
}

// retry is when the held alerts, of which a mail failed, are tried again.
type retry struct {
	attempts int       // failed in a row
	at       time.Time // the next attempt; zero: no mail failed
}

// Retrying: the first attempt again RetryFirst after a failure, then
// twice as long each time, at most RetryMax; an alert not mailed RetryFor
// after it came in is given up at the next failure.
const (
	RetryFirst = 10 * time.Second
	RetryMax   = 5 * time.Minute
	RetryFor   = time.Hour
)

// retryDelay is the wait after the n-th failed attempt in a row, the
// first being first (RetryFirst).
func retryDelay(first time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < RetryMax; i++ {
		d *= 2
	}
	return min(d, RetryMax)
}

// AlerterState is what an Alerter hands to its successor in the daemon's
// new image across an in-place upgrade, or in the same image across a
// reload that changes [memmon] or [email] (State, then Restore): plain
// values, so that it goes through encoding/json unchanged. It is bounded
// as the alerter is: at most maxPending (256) alerts held, and the queue's
// 64 batches of at most 1024 alerts.
type AlerterState struct {
	// The counters.
	Sent     int64 `json:"sent"`
	Mailed   int64 `json:"mailed,omitempty"`
	Failed   int64 `json:"failed"`
	Dropped  int64 `json:"dropped"`
	Filtered int64 `json:"filtered"`
	GivenUp  int64 `json:"given_up,omitempty"`
	Retries  int64 `json:"retries,omitempty"`
	// RetryAttempts failed in a row; the held alerts are tried again at
	// RetryAt (zero: no mail failed).
	RetryAttempts int       `json:"retry_attempts,omitempty"`
	RetryAt       time.Time `json:"retry_at"`
	// Held are the alerts held for the next mail, in the order they came
	// in; First is when the first of them came in, Urgent when the first
	// give-up among them did (zero: none).
	Held   []Alert   `json:"held,omitempty"`
	First  time.Time `json:"first"`
	Urgent time.Time `json:"urgent"`
	// SentAt is the time of the last mail, GaveUpAt of the last that
	// carried a give-up: the rate limiting goes by them.
	SentAt   time.Time `json:"sent_at"`
	GaveUpAt time.Time `json:"gave_up_at"`
	// Queue holds the batches enqueued that Run had not taken yet.
	Queue [][]Alert `json:"queue,omitempty"`
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

// maxBatch bounds the alerts of one batch, maxPending and maxHeldBytes
// those held back for the next mail (an alert's size is alertBytes); the
// rest are dropped and counted.
const (
	maxBatch     = 1024
	maxPending   = 256
	maxHeldBytes = 512 << 10
)

// alertBytes is about what an alert holds in memory.
func alertBytes(al Alert) int {
	return 256 + len(al.Host) + len(al.Name) + len(al.StderrLog) + len(al.Tail) + len(al.Samples)*32
}

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
	return &Alerter{cfg: cfg, maxUp: maxUptime, sendmail: sendmail, log: log, queue: make(chan []Alert, queueSize), coalesce: Coalesce, retryFirst: RetryFirst}
}

// Enqueue hands alerts to the mail goroutine without waiting. Dropped
// counts each alert lost.
func (a *Alerter) Enqueue(batch ...Alert) {
	if len(batch) == 0 {
		return
	}
	a.fwd.Lock()
	defer a.fwd.Unlock()
	if a.next != nil {
		a.next.Enqueue(batch...)
		return
	}
	if len(batch) > maxBatch {
		a.drop(len(batch) - maxBatch)
		a.log.Error("alert batch too large; alerts dropped", "dropped", len(batch)-maxBatch)
		batch = batch[:maxBatch]
	}
	select {
	case a.queue <- batch:
	default:
		a.drop(len(batch))
		a.log.Error("alert queue full; alerts dropped", "process", batch[0].Name, "alerts", len(batch))
	}
}

// drop counts n alerts dropped.
func (a *Alerter) drop(n int) {
	a.mu.Lock()
	a.dropped += int64(n)
	a.mu.Unlock()
}

// State returns what an alerter in a new image of the daemon needs to
// carry on where this one stopped, and takes the batches waiting in the
// queue out of it. Call it after Run returned, once: while Run runs,
// alerts come and go.
func (a *Alerter) State() AlerterState {
	a.mu.Lock()
	st := AlerterState{
		Sent: a.sent, Mailed: a.mailed, Failed: a.failed, Dropped: a.dropped, Filtered: a.filtered,
		GivenUp: a.givenUp, Retries: a.retried, RetryAttempts: a.retry.attempts, RetryAt: a.retry.at,
		Held: slices.Clone(a.held.alerts), First: a.held.first, Urgent: a.held.urgent,
		SentAt: a.sentAt, GaveUpAt: a.gaveUpAt,
	}
	a.mu.Unlock()
	for {
		select {
		case batch := <-a.queue:
			st.Queue = append(st.Queue, batch)
		default:
			return st
		}
	}
}

// Restore makes a new alerter carry on from st, the State of the alerter
// it replaces: the counters continue, the held alerts go out in one mail
// when they would have, with those of the queue (which Run takes first),
// and the rate limiting goes by the last mails. Call it after NewAlerter,
// before Run. What is past the alerter's bounds is dropped and counted.
func (a *Alerter) Restore(st AlerterState) {
	a.mu.Lock()
	a.sent, a.mailed, a.failed, a.dropped, a.filtered, a.givenUp = st.Sent, st.Mailed, st.Failed, st.Dropped, st.Filtered, st.GivenUp
	a.retried = st.Retries
	alerts := st.Held
	if over := len(alerts) - maxPending; over > 0 {
		a.dropped += int64(over)
		a.log.Error("too many alerts handed over for the next mail; the oldest dropped", "dropped", over, "held", maxPending)
		alerts = alerts[over:]
	}
	a.held = held{}
	if len(alerts) > 0 {
		a.held = held{first: st.First, urgent: st.Urgent}
		for _, al := range alerts {
			a.add(&a.held, al, st.First)
		}
	}
	a.sentAt, a.gaveUpAt = st.SentAt, st.GaveUpAt
	a.retry = retry{}
	if len(a.held.alerts) > 0 && !st.RetryAt.IsZero() {
		a.retry = retry{attempts: st.RetryAttempts, at: st.RetryAt}
	}
	a.mu.Unlock()
	for _, batch := range st.Queue {
		a.Enqueue(batch...)
	}
}

// held is what the alerter holds for its next mail.
type held struct {
	alerts []Alert
	bytes  int       // their alertBytes
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

// add holds al; when maxPending are held, or maxHeldBytes, the oldest
// restart alerts (a give-up only if there is no other) are dropped and
// counted. Called with a.mu held.
func (a *Alerter) add(h *held, al Alert, now time.Time) {
	size := alertBytes(al)
	for len(h.alerts) > 0 && (len(h.alerts) >= maxPending || h.bytes+size > maxHeldBytes) {
		i := max(slices.IndexFunc(h.alerts, func(al Alert) bool { return !al.GaveUp }), 0)
		a.dropped++
		a.log.Error("too many alerts held back for the next mail; the oldest dropped", "process", h.alerts[i].Name, "held", len(h.alerts), "held_bytes", h.bytes)
		h.bytes -= alertBytes(h.alerts[i])
		h.alerts = slices.Delete(h.alerts, i, i+1)
	}
	h.bytes += size
	if len(h.alerts) == 0 {
		h.first = now
	}
	if al.GaveUp && h.urgent.IsZero() {
		h.urgent = now
	}
	h.alerts = append(h.alerts, al)
}

// Run sends until ctx ends. The alerts it holds for the next mail stay
// in the alerter when it returns (for State, Flush, or Run again after a
// panic), and it says so in the log; those of a send that panicked are
// counted as dropped.
func (a *Alerter) Run(ctx context.Context) {
	rate := time.Duration(a.cfg.RateLimit)
	defer func() {
		a.mu.Lock()
		sending, n := a.sending, len(a.held.alerts)
		a.dropped += int64(sending) // a send that panicked
		a.sending = 0
		a.mu.Unlock()
		if sending > 0 {
			a.log.Error("alerts not mailed", "count", sending)
		}
		if n > 0 {
			a.log.Info("alerts held when the alerter stopped: for its next run after a panic, the alerter an upgrade or a reload hands them to, or the last attempt at shutdown", "count", n)
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// arm sets the timer for the next mail. Called with a.mu held.
	arm := func() {
		timer.Stop()
		if at := a.due(rate); !at.IsZero() {
			timer.Reset(time.Until(at))
		}
	}
	a.mu.Lock()
	arm() // what a previous run, or Restore, left
	a.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-a.queue:
			now := time.Now()
			a.mu.Lock()
			a.take(batch, now)
			arm()
			a.mu.Unlock()
		case <-timer.C:
			now := time.Now()
			a.mu.Lock()
			if at := a.due(rate); at.IsZero() || now.Before(at) {
				arm()
				a.mu.Unlock()
				continue
			}
			mail, was, gaveUpAt := a.held.alerts, a.held, a.gaveUpAt
			if !a.held.urgent.IsZero() {
				a.gaveUpAt = now
			}
			if a.retry.attempts > 0 {
				a.retried++
			}
			a.held = held{}
			a.sending = len(mail)
			a.mu.Unlock()
			subject, body := compose(mail)
			res := a.send(ctx, subject, body)
			a.mu.Lock()
			a.sending = 0
			switch res {
			case mailCut:
				// Cut short by the alerter's stop (an upgrade, a
				// reload): the alerts are held again, not lost, for
				// State (or the next run) to mail.
				for _, al := range a.held.alerts {
					a.add(&was, al, now)
				}
				a.held, a.gaveUpAt = was, gaveUpAt
				a.mu.Unlock()
				return
			case mailSent:
				a.sent++
				a.mailed += int64(len(mail))
				a.sentAt, a.retry = now, retry{}
			case mailFailed:
				a.failed++
				a.retryLater(was, gaveUpAt, now)
			}
			arm()
			a.mu.Unlock()
		}
	}
}

// take holds the alerts of batch, but those alert_max_uptime filters out.
// Called with a.mu held.
func (a *Alerter) take(batch []Alert, now time.Time) {
	for _, al := range batch {
		if a.maxUp > 0 && al.Uptime > a.maxUp && al.Err == nil && !al.GaveUp {
			a.filtered++
			a.log.Info("no mail: the process had been up longer than alert_max_uptime", "process", al.Name, "uptime", al.Uptime.Round(time.Second))
			continue
		}
		a.add(&a.held, al, now)
	}
}

// Flush is the alerter's last act when the daemon stops, or when a reload
// removes [memmon] or [email] (not when an upgrade or a reload hands it
// over), why says which: after Run returned, and once nothing enqueues any
// more (memmon's restarts in flight ended), it mails at once
// what it holds and what its queue took, whatever the coalescing delay,
// rate_limit or a retry's time say, in one attempt bounded by [email]
// timeout (ctx may cut it shorter). The alerts of a mail that fails are
// counted as dropped, and the log says how many, at ERROR.
func (a *Alerter) Flush(ctx context.Context, why string) {
	now := time.Now()
	a.mu.Lock()
	for drained := false; !drained; {
		select {
		case batch := <-a.queue:
			a.take(batch, now)
		default:
			drained = true
		}
	}
	mail := a.held.alerts
	a.held, a.retry = held{}, retry{}
	a.sending = len(mail)
	a.mu.Unlock()
	if len(mail) == 0 {
		return
	}
	subject, body := compose(mail)
	a.log.Info("mailing the alerts held now: "+why, "alerts", len(mail), "via", a.Via())
	res := a.send(ctx, subject, body)
	a.mu.Lock()
	a.sending = 0
	switch res {
	case mailSent:
		a.sent++
		a.mailed += int64(len(mail))
	case mailFailed:
		a.failed++
		a.dropped += int64(len(mail))
	case mailCut:
		a.dropped += int64(len(mail))
	}
	a.mu.Unlock()
	if res == mailSent {
		return
	}
	a.log.Error("alerts not mailed: "+why, "alerts", len(mail), "via", a.Via(), "subject", subject)
}

// due is when the held alerts go out: at the retry after a failed mail,
// else as held.due says; zero if none are held. Called with a.mu held.
func (a *Alerter) due(rate time.Duration) time.Time {
	if len(a.held.alerts) > 0 && !a.retry.at.IsZero() {
		return a.retry.at
	}
	return a.held.due(a.sentAt, a.gaveUpAt, rate, a.coalesce)
}

// retryLater holds again the alerts of a mail that failed (was, with
// gaveUpAt the give-up time before it), with those that came in
// meanwhile, for another attempt; those that came in RetryFor ago or more
// are given up and counted. Called with a.mu held.
func (a *Alerter) retryLater(was held, gaveUpAt, now time.Time) {
	kept := was.alerts[:0]
	given := 0
	for _, al := range was.alerts {
		if now.Sub(al.At) >= RetryFor {
			given++
			continue
		}
		kept = append(kept, al)
	}
	next := held{}
	for _, al := range kept {
		a.add(&next, al, now)
	}
	if len(kept) > 0 {
		next.first, next.urgent = was.first, was.urgent
	}
	for _, al := range a.held.alerts {
		a.add(&next, al, now)
	}
	a.held, a.gaveUpAt = next, gaveUpAt
	if given > 0 {
		a.givenUp += int64(given)
		a.log.Error("alerts given up: not mailed after retrying for "+RetryFor.String(), "alerts", given, "attempts", a.retry.attempts+1, "via", a.Via())
	}
	if len(a.held.alerts) == 0 {
		a.retry = retry{}
		return
	}
	a.retry.attempts++
	a.retry.at = now.Add(retryDelay(a.retryFirst, a.retry.attempts))
	a.log.Warn("alert mail held for another attempt", "alerts", len(a.held.alerts), "attempt", a.retry.attempts+1, "at", a.retry.at.Format(time.TimeOnly), "via", a.Via())
}

// compose makes one mail of alerts, sorted in place in the order the
// restarts began (those of one tick by name), not the order they ended
// in: one alert is mailed as itself, several of one process as a digest,
// several processes with a section each.
func compose(alerts []Alert) (subject, body string) {
	slices.SortStableFunc(alerts, func(x, y Alert) int {
		return cmp.Or(x.At.Compare(y.At), strings.Compare(x.Name, y.Name))
	})
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

// boundedConn fails reads once the server has sent left bytes: net/smtp
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

// outcome is how a send ended.
type outcome int

const (
	mailSent   outcome = iota
	mailFailed         // the server or the command failed, or timeout passed
	mailCut            // cut short by the end of send's parent context
)

// send mails one message within [email] timeout, logs how it went and
// says so; the caller counts it, under a.mu, as it changes what it holds.
func (a *Alerter) send(parent context.Context, subject, body string) outcome {
	ctx, cancel := a.attempt(parent)
	defer cancel()
	if err := a.deliver(ctx, subject, body); err != nil {
		if parent.Err() != nil {
			a.log.Warn("alert mail cut short by the alerter's stop", "subject", subject, "via", a.Via(), "err", err)
			return mailCut
		}
		a.log.Error("alert mail failed", "subject", subject, "err", err)
		return mailFailed
	}
	a.log.Info("alert mailed", "subject", subject, "to", strings.Join(a.cfg.To, ","))
	return mailSent
}

// attempt bounds one attempt to mail by [email] timeout; when that is
// what ends it, the context's cause is a timeoutError.
func (a *Alerter) attempt(parent context.Context) (context.Context, context.CancelFunc) {
	d := time.Duration(a.cfg.Timeout)
	return context.WithTimeoutCause(parent, d, timeoutError{d})
}

// timeoutError: [email] timeout passed before the attempt ended.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string {
	return fmt.Sprintf("no answer within the [email] timeout (%s)", e.d)
}

// Is makes it a context.DeadlineExceeded, as a timeout's error is.
func (e timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// cut says, of an attempt's error, why it ended when a deadline ended
// it: ctx's cause, when ctx ended (what the server's connection, closed
// at that end, or the killed command says is the consequence: "use of
// closed network connection", "signal: killed"); [email] timeout, when
// the connection's own deadline passed (which is ctx's deadline, and may
// pass just before ctx ends).
func (a *Alerter) cut(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", context.Cause(ctx), err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: %w", timeoutError{time.Duration(a.cfg.Timeout)}, err)
	}
	return err
}

// maxLineBytes is RFC 5322's bound on a line of a message, CRLF left out.
const maxLineBytes = 998

// plain8bit says whether body may go as it is, as 8bit (RFC 2045): valid
// UTF-8, no control character but tab and the line breaks, no line longer
// than maxLineBytes. A line of a log excerpt may be longer (excerptBytes),
// or hold anything the process wrote: such a body is quoted-printable.
func plain8bit(body string) bool {
	if !utf8.ValidString(body) {
		return false
	}
	for line := range strings.Lines(body) {
		line = strings.TrimSuffix(line, "\n")
		if len(line) > maxLineBytes || strings.ContainsFunc(line, func(r rune) bool { return r != '\t' && unicode.IsControl(r) }) {
			return false
		}
	}
	return true
}

// Via says where the alerter's mail goes: its SMTP server, or its
// sendmail command.
func (a *Alerter) Via() string {
	if a.cfg.Sendmail != "" {
		return fmt.Sprintf("sendmail command %q", a.cfg.Sendmail)
	}
	return "SMTP server " + a.cfg.SMTP
}

// Test mails a test message now, the way alerts go (the same server or
// command, sender and recipients), past the queue, the rate limit and the
// retries: what `gosup ctl test-alert` asks for. It is not counted among
// the alerts' mails. The error names the server or the command.
func (a *Alerter) Test(ctx context.Context, host, asker string) error {
	ctx, cancel := a.attempt(ctx)
	defer cancel()
	subject := "gosup: test alert from " + host
	body := fmt.Sprintf("This is a test mail from gosup on %s, asked for by %s at %s (gosup ctl test-alert).\n\n"+
		"It went through the %s, to %s, as memmon's alerts do.\n", host, asker, time.Now().Format(time.RFC3339), a.Via(), strings.Join(a.cfg.To, ", "))
	if err := a.deliver(ctx, subject, body); err != nil {
		a.log.Warn("test alert not mailed", "via", a.Via(), "err", err)
		return fmt.Errorf("test alert not mailed through the %s: %w", a.Via(), err)
	}
	a.log.Info("test alert mailed", "via", a.Via(), "to", strings.Join(a.cfg.To, ","))
	return nil
}

// To is who the alerts go to.
func (a *Alerter) To() []string { return slices.Clone(a.cfg.To) }
