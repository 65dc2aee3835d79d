package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gosup/gosup/memmon/smtptest"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/procgroup/guard/guardtest"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// memmonConfig writes a daemon config whose programs run helper modes,
// with a fast watchdog (interval 200ms, samples 3) and the given limits.
func memmonConfig(t *testing.T, programs, limits string) string {
	t.Helper()
	return writeConfig(t, memmonConfigBody(programs, limits))
}

// memmonConfigBody is memmonConfig's text.
func memmonConfigBody(programs, limits string) string {
	return programs + `
[memmon]
interval = "200ms"
samples = 3
` + limits
}

func program(name, mode string, numprocs int, extra string) string {
	return fmt.Sprintf(`
[program.%s]
command = "@HELPER@ %s"
numprocs = %d
process_name = "%s_%%(process_num)d"
startsecs = 0
stopwaitsecs = 1
stopasgroup = true
%s
%s
`, name, mode, numprocs, name, helperEnv, extra)
}

// waitNewPid waits until name runs again with a pid other than old.
func waitNewPid(t *testing.T, cl *api.Client, name string, old int) api.ProcStatus {
	t.Helper()
	return waitStatus(t, cl, name, fmt.Sprintf("RUNNING with a new pid (was %d)", old), func(p api.ProcStatus) bool {
		return p.State == "RUNNING" && p.Pid != old && p.Pid != 0
	})
}

// waitMemmonRestart is waitNewPid that also waits for status to say why
// memmon restarted it (recorded once the restart is done).
func waitMemmonRestart(t *testing.T, cl *api.Client, name string, old int) api.ProcStatus {
	t.Helper()
	return waitStatus(t, cl, name, fmt.Sprintf("restarted by memmon (pid was %d)", old), func(p api.ProcStatus) bool {
		return p.State == "RUNNING" && p.Pid != old && p.Pid != 0 && p.MemmonReason != ""
	})
}

// memmonTicks is how many samples the daemon's watchdog has taken.
func memmonTicks(s *Supervisor) int64 {
	s.mu.RLock()
	w := s.watchdog
	s.mu.RUnlock()
	if w == nil {
		return 0
	}
	return w.Ticks.Load()
}

// waitTicks waits until the watchdog has taken n more samples: the
// positive sign that memmon looked, and did nothing.
func waitTicks(t *testing.T, s *Supervisor, n int64) {
	t.Helper()
	want := memmonTicks(s) + n
	for deadline := time.Now().Add(30 * time.Second); memmonTicks(s) < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("memmon took %d samples in 30s, want %d", memmonTicks(s)-want+n, n)
		}
	}
}

// A child over its limit is restarted within interval × samples +
// stopwaitsecs and runs again with a new pid; a child under its limit is
// never touched; status shows the RSS and why memmon restarted it.
func TestMemmonRestartsOverLimit(t *testing.T) {
	file := memmonConfig(t, program("hog", "hog 128", 1, "")+program("small", "sleep", 1, ""), `any = "80MB"`)
	s, cl, _ := startSupervisor(t, file)
	before := waitAll(t, cl, "RUNNING")
	pids := map[string]int{}
	for _, p := range before {
		pids[p.Name] = p.Pid
	}
	after := waitMemmonRestart(t, cl, "hog:hog_0", pids["hog:hog_0"])
	if !strings.Contains(after.MemmonReason, "over 80.0MB (any) for 3 samples") || after.MemmonRestartAt.IsZero() {
		t.Errorf("status does not say why: %+v", after)
	}
	waitTicks(t, s, 4) // more than samples: small had its chances
	st := mustStatus(t, cl, "small")
	if st[0].Pid != pids["small:small_0"] || st[0].Restarts != 0 {
		t.Errorf("the small process was touched: %+v", st[0])
	}
	if st[0].RSSBytes <= 0 || st[0].RSSBytes > 80<<20 {
		t.Errorf("small's RSS in status: %d", st[0].RSSBytes)
	}
	if info := mustInfo(t, cl); info.MemmonRestarts < 1 {
		t.Errorf("memmon restarts not counted: %+v", info)
	}
}

// A spike shorter than samples × interval is left alone. The spike lasts
// 250 ms plus however long the child takes to touch 128 MB (a loaded
// machine is slow at it): samples = 10 at 200 ms leaves it 2 s.
func TestMemmonIgnoresSpike(t *testing.T) {
	file := writeConfig(t, program("spiky", "spike 128 250ms", 1, "")+`
[memmon]
interval = "200ms"
samples = 10
any = "80MB"
`)
	s, cl, _ := startSupervisor(t, file)
	before := waitAll(t, cl, "RUNNING")
	// memmon sees the spike, then it ends, then memmon samples more than
	// samples times: it had every chance to act.
	waitStatus(t, cl, "spiky:spiky_0", "sampled over 80MB", func(p api.ProcStatus) bool { return p.RSSBytes > 80<<20 })
	waitStatus(t, cl, "spiky:spiky_0", "sampled under 80MB again", func(p api.ProcStatus) bool { return p.RSSBytes > 0 && p.RSSBytes < 80<<20 })
	waitTicks(t, s, 11)
	st := mustStatus(t, cl)
	if st[0].Pid != before[0].Pid || st[0].Restarts != 0 || st[0].MemmonReason != "" {
		t.Errorf("a one-sample spike caused a restart: %+v", st[0])
	}
}

// With cumulative, a child whose own RSS is small but whose grandchild is
// large is restarted, and the grandchild goes with it.
func TestMemmonCumulativeTree(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "gc.pid")
	file := memmonConfig(t, program("tree", "fork-hog 128 "+pidfile, 1, ""), `any = "100MB"
cumulative = true`)
	cl, _ := startDaemon(t, file)
	before := waitAll(t, cl, "RUNNING")
	gc := readPidfile(t, pidfile)
	after := waitMemmonRestart(t, cl, "tree:tree_0", before[0].Pid)
	if !strings.Contains(after.MemmonReason, "(any)") {
		t.Errorf("reason: %q", after.MemmonReason)
	}
	deadline := time.Now().Add(30 * time.Second)
	for alive(gc) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(gc) {
		t.Errorf("grandchild %d survived the restart", gc)
	}
}

// process > group > any: g_0 has its own low limit and is restarted; g_1
// falls under the group's high limit and is not, though both are over any.
func TestMemmonPrecedence(t *testing.T) {
	file := memmonConfig(t, program("g", "hog 128", 2, ""), `any = "64MB"
group = { g = "1GB" }
program = { g_0 = "64MB" }`)
	cl, _ := startDaemon(t, file)
	before := waitAll(t, cl, "RUNNING")
	waitMemmonRestart(t, cl, "g:g_0", before[0].Pid)
	st := mustStatus(t, cl, "g:g_1")
	if st[0].Pid != before[1].Pid || st[0].Restarts != 0 {
		t.Errorf("g_1 restarted under its group's 1GB limit: %+v", st[0])
	}
}

// Every process of a program overruns at once: never more than
// max_restarting (1) of them is out at a time, and all get restarted.
func TestMemmonMaxRestarting(t *testing.T) {
	file := memmonConfig(t, program("pool", "hog 128", 3, ""), `any = "64MB"
max_restarting = 1`)
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING")
	deadline := time.Now().Add(30 * time.Second)
	maxOut := 0
	for time.Now().Before(deadline) {
		st, err := cl.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out, restarted := 0, 0
		for _, p := range st {
			if p.State != "RUNNING" {
				out++
			}
			if p.Restarts > 0 {
				restarted++
			}
		}
		maxOut = max(maxOut, out)
		if restarted == 3 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	for _, p := range mustStatus(t, cl) {
		if p.Restarts == 0 {
			t.Errorf("%s never restarted", p.Name)
		}
	}
	if maxOut > 1 {
		t.Errorf("%d processes were out at once; max_restarting = 1", maxOut)
	}
}

// The watchdog's restart names a pid: once that pid is gone the process's
// successor is not touched.
func TestMemmonRestartChecksPid(t *testing.T) {
	s, cl, _ := startSupervisor(t, writeConfig(t, program("p", "sleep", 1, "")))
	st := waitAll(t, cl, "RUNNING")
	err := memmonHost{s}.Restart(context.Background(), "p:p_0", st[0].Pid+1, "test", nil)
	if err == nil || !strings.Contains(err.Error(), "no longer runs as pid") {
		t.Errorf("restart with a stale pid: %v", err)
	}
	if now := mustStatus(t, cl); now[0].Pid != st[0].Pid || now[0].Restarts != 0 {
		t.Errorf("the process was restarted anyway: %+v", now[0])
	}
	if err := (memmonHost{s}).Restart(context.Background(), "p:p_0", st[0].Pid, "test", nil); err != nil {
		t.Errorf("restart with the current pid: %v", err)
	}
	if now := mustStatus(t, cl); now[0].Pid == st[0].Pid || now[0].State != "RUNNING" {
		t.Errorf("not restarted with the current pid: %+v", now[0])
	}
}

// A child that overruns again and again is restarted max_restarts times,
// then given up on. The first restart is mailed within seconds; the next
// ones, if they came after that mail, are held back by rate_limit (an hour:
// however slow the machine, they fall in the window) and go out with the
// mail that memmon gave up on it. Restarts that came before the first mail
// (a fast machine) are in it: either way two mails at most, and every
// restart in one of them.
func TestMemmonMailsAndDigests(t *testing.T) {
	srv := smtptest.Start(t)
	file := memmonConfig(t, program("hog", "hog 128", 1, "port_start = "+strconv.Itoa(freePort(t))+"\nready = \"startsecs\""), fmt.Sprintf(`any = "80MB"
name = "web-3.test"

[email]
to = ["ops@example.com"]
from = "gosup@web-3.test"
smtp = %q
rate_limit = "1h"
`, srv.Addr))
	cl, _ := startDaemon(t, file)
	first := srv.Wait(t, 1, 30*time.Second)[0]
	if !strings.HasPrefix(first.Subject, "memmon: hog:hog_0 restarted ") || !strings.Contains(first.Subject, " on web-3.test") || first.From != "gosup@web-3.test" {
		t.Errorf("first mail: from %q subject %q", first.From, first.Subject)
	}
	for _, want := range []string{"process:   hog:hog_0", "port:      ", "limit:     80.0MB, rule: any", " by memmon ", "hog pid ", "holding 128 MB"} {
		if !strings.Contains(first.Body, want) {
			t.Errorf("first mail lacks %q:\n%s", want, first.Body)
		}
	}
	mails := waitGiveUpMail(t, srv)
	if len(mails) > 2 || mailedRestarts(t, mails) != 3 {
		t.Errorf("want at most 2 mails with the 3 restarts, have %d", len(mails))
	}
	var info api.Info
	for deadline := time.Now().Add(30 * time.Second); info.AlertsSent < int64(len(mails)) && time.Now().Before(deadline); {
		info = mustInfo(t, cl) // the server has the mail before the client has its reply
		time.Sleep(10 * time.Millisecond)
	}
	st := mustStatus(t, cl)
	if st[0].Restarts < 2 || info.AlertsSent != int64(len(mails)) || info.MemmonRestarts < 2 {
		t.Errorf("restarts %d, memmon restarts %d, alerts sent %d", st[0].Restarts, info.MemmonRestarts, info.AlertsSent)
	}
}

// The SMTP password comes from [email] password_file: the daemon logs in
// with it (AUTH PLAIN, in clear to a server on loopback), and a reload
// reads the file again.
func TestMemmonMailsWithPasswordFile(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "smtp.pass")
	body := func(srv *smtptest.Server, pass string) string {
		if err := os.WriteFile(secret, []byte("# the relay's\n"+pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return memmonConfigBody(program("p", "sleep", 1, ""), fmt.Sprintf(`any = "1GB"

[email]
to = ["ops@example.com"]
smtp = %q
username = "gosup"
password_file = %q
`, srv.Addr, secret))
	}
	first := smtptest.StartWith(t, smtptest.Config{Username: "gosup", Password: "first-pass"})
	file := writeConfig(t, body(first, "first-pass"))
	cl, _ := startDaemon(t, file)
	mailed := func(srv *smtptest.Server) {
		t.Helper()
		if _, err := cl.TestAlert(context.Background()); err != nil {
			t.Fatal(err)
		}
		if m := srv.Wait(t, 1, 30*time.Second)[0]; m.User != "gosup" || srv.AuthFailed() != 0 {
			t.Errorf("mailed as %q, %d AUTH refused; want as gosup, none refused", m.User, srv.AuthFailed())
		}
	}
	mailed(first)
	second := smtptest.StartWith(t, smtptest.Config{Username: "gosup", Password: "second-pass"})
	rewriteConfig(t, file, body(second, "second-pass"))
	if _, err := cl.Reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	mailed(second)
}

// waitGiveUpMail waits for the mail that memmon gave up on hog:hog_0,
// which must be the last, and returns every mail.
func waitGiveUpMail(t *testing.T, srv *smtptest.Server) []smtptest.Message {
	t.Helper()
	for n := 1; ; n++ {
		mails := srv.Wait(t, n, 30*time.Second)
		last := mails[len(mails)-1]
		if strings.Contains(last.Body, "memmon does not restart it any more") {
			if !strings.Contains(last.Subject, "hog:hog_0") || !(strings.Contains(last.Subject, "then no more") || strings.Contains(last.Subject, "no more restarts")) {
				t.Errorf("give-up mail: %q", last.Subject)
			}
			return mails
		}
	}
}

// mailedRestarts counts the restarts of the alerts mails carry, from their
// subjects.
func mailedRestarts(t *testing.T, mails []smtptest.Message) int {
	t.Helper()
	n := 0
	for _, m := range mails {
		var k int
		switch {
		case strings.Contains(m.Subject, " stays over its limit "): // a give-up alone
		case strings.Contains(m.Subject, " restarted on "):
			n++
		default:
			i := strings.Index(m.Subject, " restarted ")
			if i < 0 {
				t.Fatalf("a mail of no restart: %q", m.Subject)
			}
			if _, err := fmt.Sscanf(m.Subject[i:], " restarted %d ", &k); err != nil {
				t.Fatalf("subject %q: %v", m.Subject, err)
			}
			n += k
		}
	}
	return n
}

// An SMTP server that accepts and never answers delays no restart.
func TestMemmonRestartsOnTimeWhenMailHangs(t *testing.T) {
	file := memmonConfig(t, program("hog", "hog 128", 1, ""), fmt.Sprintf(`any = "80MB"

[email]
to = ["ops@example.com"]
smtp = %q
timeout = "30s"
rate_limit = "0s"
`, smtptest.Silent(t)))
	cl, _ := startDaemon(t, file)
	st := waitAll(t, cl, "RUNNING")
	pid := st[0].Pid
	// Each restart takes interval × samples + stopwaitsecs + the hog's
	// start, about 2 s; the hung mail holds each send 30 s.
	last := time.Now()
	for i := range 3 {
		next := waitMemmonRestart(t, cl, "hog:hog_0", pid)
		if took := time.Since(last); took > 20*time.Second {
			t.Fatalf("restart %d took %s: it waited for the hung mail server", i+1, took)
		}
		t.Logf("restart %d: pid %d → %d, %s after the previous pid was RUNNING", i+1, pid, next.Pid, time.Since(last).Round(time.Millisecond))
		pid, last = next.Pid, time.Now()
	}
	if info := mustInfo(t, cl); info.AlertsSent != 0 || info.MemmonRestarts < 3 {
		t.Errorf("info: %+v", info)
	}
}

// The sendmail path in the daemon: the command runs through the reaper
// with the message on its stdin.
func TestMemmonSendmail(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "mail.txt")
	script := filepath.Join(dir, "sendmail")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"args: $*\" > "+out+".tmp\ncat >> "+out+".tmp\nmv "+out+".tmp "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := memmonConfig(t, program("hog", "hog 128", 1, ""), fmt.Sprintf(`any = "80MB"

[email]
to = ["ops@example.com"]
sendmail = "%s -t -i"
`, script))
	startDaemon(t, file)
	var b []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, _ = os.ReadFile(out); len(b) > 0 {
			break
		}
	}
	for _, want := range []string{"args: -t -i", "To: <ops@example.com>", "Subject: memmon: hog:hog_0 restarted"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("sendmail's stdin lacks %q:\n%s", want, b)
		}
	}
}

// Four processes of one program stay over the limit; memmon acts on one
// sample (what gosup import writes) and restarts one at a time. Each gets
// its turn: the process over its limit longest goes first, not the first
// in config order.
func TestMemmonRestartsFairly(t *testing.T) {
	file := writeConfig(t, program("pool", "hog 128", 4, "")+`
[memmon]
interval = "200ms"
samples = 1
max_restarting = 1
any = "64MB"
`)
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING")
	restarts := map[string]int{}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		all := true
		for _, p := range mustStatus(t, cl) {
			restarts[p.Name] = p.Restarts
			all = all && p.Restarts > 0
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 30s memmon did not restart every process over the limit: restarts %v", restarts)
		}
	}
	// In turn: by the time the last one had its first restart, none had
	// more than two (one, when the turns go exactly round).
	for name, n := range restarts {
		if n > 2 {
			t.Errorf("%s restarted %d times before every process had its turn: %v", name, n, restarts)
		}
	}
}

// A process that is over its limit again after every restart is restarted
// max_restarts (3) times within restart_window (10m), then left running:
// status says memmon gave up, one mail says so (with the restarts that
// rate_limit held back, or that came in with the first), and nothing more happens however long it stays
// over. A ctl restart gives it a new budget.
func TestMemmonGivesUp(t *testing.T) {
	srv := smtptest.Start(t)
	file := memmonConfig(t, program("hog", "hog 128", 1, ""), fmt.Sprintf(`any = "64MB"

[email]
to = ["ops@example.com"]
smtp = %q
`, srv.Addr))
	s, cl, _ := startSupervisor(t, file)
	waitAll(t, cl, "RUNNING")
	last := waitStatus(t, cl, "hog:hog_0", "given up on by memmon", func(p api.ProcStatus) bool { return p.MemmonGaveUp != "" })
	if last.Restarts != 3 || last.State != "RUNNING" || !strings.HasPrefix(last.MemmonGaveUp, "3 restarts within 10m0s (max_restarts), still over 64.0MB (any)") ||
		!strings.Contains(last.Description, "; memmon gave up at ") {
		t.Errorf("status: %+v", last)
	}
	// The first restart's mail may hold the others (a fast machine); if it
	// went out before the give-up, the give-up's mail follows 5 s after the
	// give-up (a mail of restarts does not hold it back for GiveUpGap).
	mails := waitGiveUpMail(t, srv)
	if len(mails) > 2 || mailedRestarts(t, mails) != 3 {
		t.Errorf("want at most 2 mails with the 3 restarts, have %d", len(mails))
	}
	// Ten more samples over the limit: no restart, no mail.
	waitTicks(t, s, 10)
	if now := mustStatus(t, cl)[0]; now.Restarts != 3 || now.Pid != last.Pid {
		t.Fatalf("restarted again past max_restarts = 3: %d restarts, pid %d then %d", now.Restarts, last.Pid, now.Pid)
	}
	if n := srv.Count(); n != len(mails) {
		t.Errorf("want %d mails, have %d", len(mails), n)
	}
	// gosup ctl restart: memmon watches it again, with a new budget.
	if _, err := cl.Action(context.Background(), "restart", api.ActionRequest{Patterns: []string{"hog:hog_0"}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, cl, "hog:hog_0", "restarted by memmon again", func(p api.ProcStatus) bool {
		return p.MemmonRestartAt.After(last.MemmonRestartAt) && p.MemmonGaveUp == ""
	})
}

// A reload that changes [memmon] while memmon's restart of a process is
// stuck in its stop (SIGTERM ignored, stopwaitsecs = 600) completes, and
// restarts the other program it changes, while the stop goes on.
func TestReloadMemmonDoesNotWaitForItsRestarts(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "stuck.pid")
	// memmon stops stuck as soon as it is RUNNING: RUNNING must mean the
	// child ignores SIGTERM, so it waits for its port (listened on after
	// the Ignore). With startsecs = 0 alone, a slow machine let memmon's
	// SIGTERM land before the Ignore, three times, and memmon gave up.
	port := freePort(t)
	body := func(other, limits string) string {
		return fmt.Sprintf(`
[program.stuck]
command = "@HELPER@ ignore-term %s"
startsecs = 0
stopwaitsecs = 600
port_start = %d
ready = "tcp"
%s
`, pidfile, port, helperEnv) + program("other", other, 1, "") + `
[memmon]
interval = "200ms"
samples = 1
` + limits
	}
	file := writeConfig(t, body("sleep", `program = { stuck = "1KB" }`))
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING", "other")
	// stuck may be RUNNING only for memmon's first sample: its restart is
	// the state to wait for (and stays, SIGTERM being ignored).
	waitState(t, cl, "stuck:stuck", "STOPPING") // memmon's restart
	stuckPid := readPidfile(t, pidfile)
	before := mustStatus(t, cl, "other")[0]
	rewriteConfig(t, file, body("sleep x", `any = "1GB"`))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	plan, err := cl.Reload(ctx, false)
	if err != nil {
		t.Fatalf("reload while memmon's restart of stuck is stopping: %v", err)
	}
	for _, r := range plan.Results {
		if !r.OK {
			t.Errorf("reload: %+v", r)
		}
	}
	if now := mustStatus(t, cl, "other")[0]; now.State != "RUNNING" || now.Pid == before.Pid {
		t.Errorf("other was not restarted by the reload: %+v", now)
	}
	stillStopping(t, cl, "stuck:stuck", "the reload")
	if err := unix.Kill(stuckPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitState(t, cl, "stuck:stuck", "RUNNING") // memmon's restart ends
}

// A 12 MB stderr line without a newline (each spawn adds 12 MB more to
// it) makes an alert mail of a few KiB: the excerpt is the end of the
// line, after a marker saying how much was cut.
func TestMemmonMailExcerptIsBounded(t *testing.T) {
	srv := smtptest.Start(t)
	file := memmonConfig(t, program("hog", "shout-hog 12582912 128", 1, ""), fmt.Sprintf(`any = "80MB"

[email]
to = ["ops@example.com"]
smtp = %q
rate_limit = "1h"
`, srv.Addr))
	startDaemon(t, file)
	m := srv.Wait(t, 1, 60*time.Second)[0]
	if len(m.Body) > 8<<10 {
		t.Fatalf("alert mail body is %d bytes, want at most 8 KiB", len(m.Body))
	}
	if !regexp.MustCompile(`\n\[gosup: [0-9.]+MB cut\]\r?\nx+ and its end\r?\n`).MatchString(m.Body) {
		t.Errorf("the excerpt does not say it was cut, or lacks the line's end:\n%s", m.Body)
	}
}

// The alert quotes the killed process's own last lines, read before the
// kill, not the start-up banner of the process that replaced it; and it
// lists the samples over the limit that made memmon act, with their times.
// The replacement says its banner before it is ready (ready = "tcp"), so
// the banner is in the log by the time the restart has ended.
func TestMemmonAlertQuotesTheKilledProcess(t *testing.T) {
	srv := smtptest.Start(t)
	flag := filepath.Join(t.TempDir(), "flag")
	file := memmonConfig(t, program("hog", "banner-hog 128 "+flag, 1, "port_start = "+strconv.Itoa(freePort(t))+"\nready = \"tcp\""), fmt.Sprintf(`any = "80MB"

[email]
to = ["ops@example.com"]
smtp = %q
`, srv.Addr))
	cl, _ := startDaemon(t, file)
	first := waitAll(t, cl, "RUNNING")[0]
	after := waitMemmonRestart(t, cl, "hog:hog_0", first.Pid)
	m := srv.Wait(t, 1, 60*time.Second)[0]
	if want := fmt.Sprintf("pid %d: last words before the kill", first.Pid); !strings.Contains(m.Body, want) {
		t.Errorf("the alert lacks the killed process's last line %q:\n%s", want, m.Body)
	}
	if banner := fmt.Sprintf("banner: pid %d starting", after.Pid); strings.Contains(m.Body, banner) {
		t.Errorf("the alert quotes the replacement's banner %q:\n%s", banner, m.Body)
	}
	samples := regexp.MustCompile(`(?m)^  [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}  +[0-9.]+MB\r?$`).FindAllString(m.Body, -1)
	if !strings.Contains(m.Body, "samples over the limit:") || len(samples) != 3 {
		t.Errorf("want the 3 samples over the limit with their times, have %q:\n%s", samples, m.Body)
	}
}

// A mail the SMTP server refuses is tried again, RetryFirst later, and
// arrives; ctl info counts the failed attempt, and nothing is retrying
// once it went.
func TestMemmonMailIsRetried(t *testing.T) {
	srv := smtptest.Start(t)
	srv.RefuseNext(1)
	dir := t.TempDir()
	file := memmonConfig(t, program("hog", "hog-once 128 "+filepath.Join(dir, "flag")+" "+filepath.Join(dir, "pid"), 1, ""), fmt.Sprintf(`any = "80MB"

[email]
to = ["ops@example.com"]
smtp = %q
`, srv.Addr))
	cl, _ := startDaemon(t, file)
	m := srv.Wait(t, 1, 90*time.Second)[0]
	if !strings.Contains(m.Subject, "hog:hog_0 restarted") || srv.Refused() != 1 {
		t.Errorf("mail %q after %d refused", m.Subject, srv.Refused())
	}
	var info api.Info
	for deadline := time.Now().Add(30 * time.Second); info.AlertsSent < 1 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		info = mustInfo(t, cl) // the server has the mail before the client has its reply
	}
	if info.AlertsSent != 1 || info.AlertsMailed != 1 || info.AlertsHeld != 0 || info.AlertFailures != 1 || info.AlertsRetrying != 0 || info.AlertsGivenUp != 0 || !info.AlertRetryAt.IsZero() {
		t.Errorf("info: sent %d, mailed %d, held %d, failures %d, retrying %d, given up %d, retry at %s",
			info.AlertsSent, info.AlertsMailed, info.AlertsHeld, info.AlertFailures, info.AlertsRetrying, info.AlertsGivenUp, info.AlertRetryAt)
	}
}

// ctl test-alert's mail goes through the real SMTP server of [email], at
// once (no coalescing delay, no rate limit), and is not counted among the
// alerts; one the server refuses is an error naming the server.
func TestTestAlertOverSMTP(t *testing.T) {
	srv := smtptest.Start(t)
	file := memmonConfig(t, program("p", "sleep", 1, ""), fmt.Sprintf(`any = "1GB"
name = "web-3.test"

[email]
to = ["ops@example.com"]
smtp = %q
rate_limit = "1h"
`, srv.Addr))
	cl, _ := startDaemon(t, file)
	for i := range 2 {
		reply, err := cl.TestAlert(context.Background())
		if err != nil || reply.Via != "SMTP server "+srv.Addr || strings.Join(reply.To, ",") != "ops@example.com" {
			t.Fatalf("test alert %d: %+v, %v", i+1, reply, err)
		}
		m := srv.Wait(t, i+1, 30*time.Second)[i]
		if m.Subject != "gosup: test alert from web-3.test" || !strings.Contains(m.Body, "SMTP server "+srv.Addr) {
			t.Errorf("mail: %q\n%s", m.Subject, m.Body)
		}
	}
	srv.RefuseNext(1)
	_, err := cl.TestAlert(context.Background())
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != 502 || !strings.Contains(err.Error(), "smtp "+srv.Addr+": ") || !strings.Contains(err.Error(), "try again later") {
		t.Errorf("refused test alert: %v", err)
	}
	if info := mustInfo(t, cl); info.AlertsSent != 0 || info.AlertFailures != 0 {
		t.Errorf("test alerts counted as alerts: sent %d, failures %d", info.AlertsSent, info.AlertFailures)
	}
}

// The alerts of a mail that failed are held for a retry; fixing [email]
// and reloading mails them through the new settings (the retry is handed
// to the new alerter, with the counters), at the retry's time.
func TestMemmonReloadFixedEmailMailsTheRetry(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "mail.txt")
	failing, good := filepath.Join(dir, "failing"), filepath.Join(dir, "good")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\ncat > /dev/null\necho 'no route to the mail hub' >&2\nexit 75\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("#!/bin/sh\ncat > "+out+".tmp\nmv "+out+".tmp "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	body := func(sendmail string) string {
		return program("hog", "hog-once 128 "+filepath.Join(dir, "flag")+" "+filepath.Join(dir, "pid"), 1, "") + fmt.Sprintf(`
[memmon]
interval = "200ms"
samples = 3
any = "80MB"

[email]
to = ["ops@example.com"]
sendmail = "%s -t -i"
`, sendmail)
	}
	file := writeConfig(t, body(failing))
	cl, _ := startDaemon(t, file)
	var info api.Info
	for deadline := time.Now().Add(60 * time.Second); info.AlertsRetrying < 1; time.Sleep(20 * time.Millisecond) {
		if info = mustInfo(t, cl); time.Now().After(deadline) {
			t.Fatalf("no alert held for a retry within 60s: %+v", info)
		}
	}
	if info.AlertFailures != 1 || info.AlertRetryAt.IsZero() {
		t.Errorf("after the failed mail: failures %d, retry at %s", info.AlertFailures, info.AlertRetryAt)
	}
	rewriteConfig(t, file, body(good))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for deadline := time.Now().Add(60 * time.Second); len(b) == 0; time.Sleep(20 * time.Millisecond) {
		if b, _ = os.ReadFile(out); time.Now().After(deadline) {
			t.Fatal("the held alert was not mailed within 60s of the reload that fixed [email]")
		}
	}
	if !strings.Contains(string(b), "Subject: memmon: hog:hog_0 restarted") {
		t.Errorf("mail:\n%s", b)
	}
	for deadline := time.Now().Add(30 * time.Second); info.AlertsSent < 1 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		info = mustInfo(t, cl)
	}
	if info.AlertsSent != 1 || info.AlertFailures != 1 || info.AlertsRetrying != 0 {
		t.Errorf("after the reload: sent %d, failures %d (carried over), retrying %d", info.AlertsSent, info.AlertFailures, info.AlertsRetrying)
	}
}

// startHeldAlert runs a daemon whose hog is restarted by memmon once and
// whose SMTP server refuses the first refuse mails, and returns once that
// restart's alert is held for a retry (the first attempt refused).
func startHeldAlert(t *testing.T, srv *smtptest.Server, refuse int) (*Supervisor, *api.Client, string, *guardtest.LogBuffer, func() error) {
	t.Helper()
	srv.RefuseNext(refuse)
	dir := t.TempDir()
	file := memmonConfig(t, program("hog", "hog-once 128 "+filepath.Join(dir, "flag")+" "+filepath.Join(dir, "pid"), 1, ""), fmt.Sprintf(`any = "80MB"

[email]
to = ["ops@example.com"]
smtp = %q
timeout = "5s"
`, srv.Addr))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	s, cl, logs, stop := loggedDaemon(t, cfg, nil)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info := mustInfo(t, cl)
		if info.AlertsRetrying == 1 && info.AlertFailures == 1 && info.AlertsHeld == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert held for a retry within 60s: %+v", info)
		}
	}
	return s, cl, file, logs, stop
}

// An alert held for a retry when gosup stops gets one last attempt at the
// shutdown: it is mailed, not lost with the daemon.
func TestMemmonShutdownMailsTheHeldAlert(t *testing.T) {
	srv := smtptest.Start(t)
	s, _, _, _, stop := startHeldAlert(t, srv, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	m := srv.Wait(t, 1, 30*time.Second)[0]
	if !strings.Contains(m.Subject, "hog:hog_0 restarted") {
		t.Errorf("mail: %q", m.Subject)
	}
	s.mu.RLock()
	a := s.alerter
	s.mu.RUnlock()
	if st := a.Stats(); st.Sent != 1 || st.Dropped != 0 {
		t.Errorf("sent %d, dropped %d", st.Sent, st.Dropped)
	}
}

// An alert that cannot be mailed at the shutdown either is counted as
// dropped, and the log says, at ERROR, how many and through what.
func TestMemmonShutdownCountsTheAlertsNotMailed(t *testing.T) {
	srv := smtptest.Start(t)
	s, _, _, logs, stop := startHeldAlert(t, srv, 1000)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	a := s.alerter
	s.mu.RUnlock()
	if st := a.Stats(); st.Dropped != 1 || st.Sent != 0 {
		t.Errorf("dropped %d, sent %d", st.Dropped, st.Sent)
	}
	if !regexp.MustCompile(`level=WARN msg="alert mail held for another attempt" .*via="SMTP server ` + regexp.QuoteMeta(srv.Addr) + `"`).MatchString(logs.String()) {
		t.Errorf("the retry's log line does not name the server:\n%s", logs.String())
	}
	if want := "level=ERROR msg=\"alerts not mailed: gosup stopped\""; !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "via=\"SMTP server "+srv.Addr+"\"") {
		t.Errorf("the log lacks %q naming the server:\n%s", want, logs.String())
	}
}

// A reload that removes [email] has the alerter it stops mail what it held
// for a retry, at once, rather than drop it.
func TestMemmonReloadRemovingEmailMailsTheHeldAlert(t *testing.T) {
	srv := smtptest.Start(t)
	_, cl, file, _, _ := startHeldAlert(t, srv, 1)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cut := strings.Index(string(b), "[email]")
	if err := os.WriteFile(file, b[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cl.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	m := srv.Wait(t, 1, 30*time.Second)[0]
	if !strings.Contains(m.Subject, "hog:hog_0 restarted") {
		t.Errorf("mail: %q", m.Subject)
	}
}

// The alert quotes the log file a process's stderr goes to, or its stdout
// log when stderr goes to no file: none, syslog, or a device such as
// /dev/null (stderr_logfile = /dev/null is common in supervisord configs),
// which holds nothing to quote.
func TestStderrPathSkipsDevices(t *testing.T) {
	file := func(p string) procgroup.LogSpec { return procgroup.LogSpec{Kind: procgroup.LogFile, Path: p} }
	for _, c := range []struct {
		stdout, stderr procgroup.LogSpec
		redirect       bool
		want           string
	}{
		{file("/l/out.log"), file("/l/err.log"), false, "/l/err.log"},
		{file("/l/out.log"), procgroup.LogSpec{Kind: procgroup.LogNone}, true, "/l/out.log"},
		{file("/l/out.log"), procgroup.LogSpec{Kind: procgroup.LogSyslog}, false, "/l/out.log"},
		{file("/l/out.log"), file("/dev/null"), false, "/l/out.log"},
		{file("/dev/stdout"), file("/l/err.log"), false, "/l/err.log"},
		{file("/dev/null"), file("/dev/null"), false, ""},
		{file("/dev/stdout"), procgroup.LogSpec{Kind: procgroup.LogNone}, true, ""},
	} {
		spec := &procgroup.ProcSpec{Stdout: c.stdout, Stderr: c.stderr, Program: &procgroup.Spec{RedirectStderr: c.redirect}}
		if got := stderrPath(spec); got != c.want {
			t.Errorf("stdout %s, stderr %s, redirect_stderr %t: quotes %q, want %q", c.stdout, c.stderr, c.redirect, got, c.want)
		}
	}
}

// ctl test-alert mails one test at a time: one asked for while another is
// under way (a slow sendmail, a silent SMTP server, a loop in a script) is
// refused at once, saying so, rather than run beside it.
func TestTestAlertOneAtATime(t *testing.T) {
	dir := t.TempDir()
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "go")
	script := filepath.Join(dir, "slow-sendmail")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat > /dev/null\necho x >> "+started+"\nwhile [ ! -e "+release+" ]; do sleep 0.05; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, program("p", "sleep", 1, "")+fmt.Sprintf(`
[email]
to = ["ops@example.com"]
sendmail = %q
timeout = "60s"
`, script))
	cl, _ := startDaemon(t, file)
	runs := func() int {
		b, _ := os.ReadFile(started)
		return strings.Count(string(b), "x")
	}
	first := make(chan error, 1)
	go func() { _, err := cl.TestAlert(context.Background()); first <- err }()
	for deadline := time.Now().Add(30 * time.Second); runs() < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first test alert's sendmail did not run within 30s")
		}
	}
	second := make(chan error, 1)
	go func() { _, err := cl.TestAlert(context.Background()); second <- err }()
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		select {
		case err = <-second:
		default:
			if runs() > 1 {
				os.WriteFile(release, nil, 0o644)
				t.Fatal("a second test alert ran its sendmail beside the first")
			}
			if time.Now().After(deadline) {
				t.Fatal("the second test alert neither returned nor ran within 30s")
			}
			continue
		}
		break
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != 503 || !strings.Contains(err.Error(), "a test alert is being mailed already") {
		t.Errorf("second test alert: %v", err)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Errorf("first test alert: %v", err)
	}
	if _, err := cl.TestAlert(context.Background()); err != nil {
		t.Errorf("a test alert after the first ended: %v", err)
	}
}
