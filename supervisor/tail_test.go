package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gosup/gosup/logtail"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// tailConfig runs one quiet program whose stdout log is returned; the test
// writes into it.
func tailConfig(t *testing.T) (file, log string) {
	t.Helper()
	log = filepath.Join(t.TempDir(), "quiet.log")
	return writeConfig(t, `
[program.quiet]
command = "@HELPER@ sleep"
startsecs = 0
stdout_logfile = "`+log+`"
`+helperEnv), log
}

// rawTail is GET /v1/tail with query q on the daemon's socket.
func rawTail(t *testing.T, ctx context.Context, socket, q string) *http.Response {
	t.Helper()
	hc := socketHTTPClient(socket)
	t.Cleanup(hc.CloseIdleConnections)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://gosup/v1/tail?"+q, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func appendLog(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

var cutMarker = regexp.MustCompile(`\[gosup: [0-9.]+[KMG]?B cut\]\n`)

// ctl tail -f sends at most its byte limit per read: a 1 MB line appended
// at once comes as a marker and the line's end; a short line after it
// comes whole.
func TestTailFollowIsBoundedPerRead(t *testing.T) {
	file, log := tailConfig(t)
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp := rawTail(t, ctx, cl.Socket, "name=quiet&n=0&follow=1&bytes=4096")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tail: %s", resp.Status)
	}
	body := bufio.NewReader(resp.Body)
	appendLog(t, log, "first\n"+strings.Repeat("x", 1<<20)+" end\n")
	got := readUntil(t, body, " end\n")
	pieces := cutMarker.Split(got, -1)
	if len(pieces) < 2 {
		t.Fatalf("no cut marker in %d bytes: %.80q", len(got), got)
	}
	for _, p := range pieces {
		if len(p) > 4096 {
			t.Fatalf("%d bytes in one read, want at most 4096 (bytes=4096)", len(p))
		}
	}
	appendLog(t, log, "second line\n")
	if got := readUntil(t, body, "\n"); got != "second line\n" {
		t.Errorf("after the cut: %q", got)
	}
}

// readUntil reads r until what it read ends with end.
func readUntil(t *testing.T, br *bufio.Reader, end string) string {
	t.Helper()
	var sb strings.Builder
	for !strings.HasSuffix(sb.String(), end) {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("after %d bytes (%.80q): %v", sb.Len(), sb.String(), err)
		}
		sb.WriteByte(b)
	}
	return sb.String()
}

// ctl tail -f across rotation: what was appended to the old file before
// the new one appeared, then the new file from its start; after a
// truncation (copytruncate), the file from its start.
func TestTailFollowRotation(t *testing.T) {
	file, log := tailConfig(t)
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING")
	appendLog(t, log, "old\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc, _, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"quiet"}, Lines: 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	body := bufio.NewReader(rc)
	if got := readUntil(t, body, "\n"); got != "old\n" {
		t.Fatalf("tail: %q", got)
	}
	appendLog(t, log, "a\n")
	if got := readUntil(t, body, "\n"); got != "a\n" {
		t.Fatalf("follow: %q", got)
	}
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	appendLog(t, log+".1", "b\n")
	appendLog(t, log, "c\n")
	if got := readUntil(t, body, "c\n"); got != "b\nc\n" {
		t.Fatalf("across rotation: %q", got)
	}
	appendLog(t, log, "some more\n")
	if got := readUntil(t, body, "more\n"); got != "some more\n" {
		t.Fatalf("after rotation: %q", got)
	}
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	appendLog(t, log, "d\n")
	if got := readUntil(t, body, "\n"); got != "d\n" {
		t.Fatalf("after truncation: %q", got)
	}
}

// ctl tail caps what it returns (64 KiB by default, bytes= up to 4 MiB)
// and refuses a cap outside 1..4 MiB.
func TestTailBytes(t *testing.T) {
	file, log := tailConfig(t)
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING")
	appendLog(t, log, "first\n"+strings.Repeat("x", 1<<20)+" end\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct {
		bytes int
		want  string
	}{
		{0, "[gosup: 960.0KB cut]\n" + strings.Repeat("x", 64<<10-5) + " end\n"},
		{100, "[gosup: 1023.9KB cut]\n" + strings.Repeat("x", 95) + " end\n"},
		{2 << 20, "first\n" + strings.Repeat("x", 1<<20) + " end\n"},
	} {
		rc, _, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"quiet"}, Lines: 10, MaxBytes: tc.bytes})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != tc.want {
			t.Errorf("bytes %d: %d bytes %.40q, want %d bytes %.40q (%v)", tc.bytes, len(got), got, len(tc.want), tc.want, err)
		}
	}
	for _, q := range []string{"bytes=0", "bytes=4194305", "bytes=5MB", "bytes=lots"} {
		resp := rawTail(t, ctx, cl.Socket, "name=quiet&"+q)
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), ": want 1 to 4MB: a number of bytes, or one with KB or MB") {
			t.Errorf("%s: %s %s", q, resp.Status, msg)
		}
	}
}

// A tail of several logs (p=, prefix) follows each across rotation and
// truncation as one log's tail does, line by line (lineSplitter's tests
// show a line read in pieces comes whole): a line without its newline
// comes once it has waited partialWait; a line over MaxLineBytes is cut,
// and says how much.
func TestTailManyFollowRotation(t *testing.T) {
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	file := writeConfig(t, `
[program.a]
command = "@HELPER@ sleep"
startsecs = 0
stdout_logfile = "`+logA+`"

[program.bb]
command = "@HELPER@ sleep"
startsecs = 0
stdout_logfile = "`+logB+`"
`+helperEnv)
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING")
	appendLog(t, logA, "old a\n")
	appendLog(t, logB, "old b\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc, notes, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"all"}, Lines: 1, Follow: true})
	if err != nil || len(notes) > 0 {
		t.Fatal(err, notes)
	}
	defer rc.Close()
	body := bufio.NewReader(rc)
	if got := readUntil(t, body, "old b\n"); got != "a:a   | old a\nbb:bb | old b\n" {
		t.Fatalf("tail: %q", got)
	}
	appendLog(t, logB, "b1\n")
	if got := readUntil(t, body, "\n"); got != "bb:bb | b1\n" {
		t.Fatalf("follow: %q", got)
	}
	if err := os.Rename(logA, logA+".1"); err != nil {
		t.Fatal(err)
	}
	// A line the old file leaves unfinished is a line of its own: never
	// the start of the new file's first.
	appendLog(t, logA+".1", "last of the old\nheld ")
	appendLog(t, logA, "first of the new\n")
	if got := readUntil(t, body, "new\n"); got != "a:a   | last of the old\na:a   | held \na:a   | first of the new\n" {
		t.Fatalf("across rotation: %q", got)
	}
	// The same across a truncation: "half " is read (a line from a,
	// written after it, has come: the poll that read it read bb too) and
	// held, then bb is truncated.
	appendLog(t, logB, "half ")
	appendLog(t, logA, "mark\n")
	if got := readUntil(t, body, "mark\n"); !strings.HasSuffix(got, "a:a   | mark\n") {
		t.Fatalf("mark: %q", got)
	}
	if err := os.Truncate(logB, 0); err != nil {
		t.Fatal(err)
	}
	// Shorter than what was read: a truncation shows as a file smaller
	// than the offset read (as for tail -F).
	appendLog(t, logB, "t\n")
	if got := readUntil(t, body, "| t\n"); got != "bb:bb | half \nbb:bb | t\n" && got != "a:a   | mark\nbb:bb | half \nbb:bb | t\n" {
		t.Fatalf("after truncation: %q", got)
	}
	appendLog(t, logB, "a prompt> ")
	if got := readUntil(t, body, "\n"); got != "bb:bb | a prompt> \n" {
		t.Fatalf("a line without its newline: %q", got)
	}
	appendLog(t, logA, strings.Repeat("x", api.MaxLineBytes+1000)+"\n")
	if got := readUntil(t, body, "\n"); got != "a:a   | "+strings.Repeat("x", api.MaxLineBytes)+" [gosup: 1000B of this line cut]\n" {
		t.Fatalf("a long line: %.60q…%q", got, got[max(len(got)-60, 0):])
	}
}

// Of the processes a pattern names, those whose stream goes to no file are
// named in a note and left out; a stream name is checked.
func TestTailManyNotes(t *testing.T) {
	log := filepath.Join(t.TempDir(), "a.log")
	file := writeConfig(t, `
[program.a]
command = "@HELPER@ sleep"
startsecs = 0
stdout_logfile = "`+log+`"

[program.quiet]
command = "@HELPER@ sleep"
startsecs = 0
stdout_logfile = "none"

[program.dev]
command = "@HELPER@ sleep"
startsecs = 0
stdout_logfile = "/dev/null"
`+helperEnv)
	cl, _ := startDaemon(t, file)
	waitAll(t, cl, "RUNNING")
	appendLog(t, log, "x\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc, notes, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"all"}, Lines: 1})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	// A device is never opened by the daemon (root): opening
	// /dev/watchdog arms it, a tty raises DTR.
	if err != nil || string(got) != "x\n" || len(notes) != 2 ||
		notes[0] != "dev:dev sends stdout to /dev/null, not to a file; not tailed" ||
		notes[1] != "quiet:quiet sends stdout to none, not to a file; not tailed" {
		t.Fatalf("all: %q %v, notes %q", got, err, notes)
	}
	if _, _, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"dev"}, Follow: true}); err == nil || !strings.Contains(err.Error(), "dev:dev sends stdout to /dev/null, not to a file") {
		t.Fatalf("dev: %v", err)
	}
	_, _, err = cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"quiet"}})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != http.StatusBadRequest || !strings.Contains(err.Error(), "quiet:quiet sends stdout to none") {
		t.Fatalf("quiet: %v", err)
	}
	if _, _, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"all"}, Stream: "stdin"}); err == nil || !strings.Contains(err.Error(), `unknown stream "stdin"`) {
		t.Fatalf("stdin: %v", err)
	}
}

// stampRE is a line's stamp of ctl tail -t: RFC 3339 with milliseconds.
const stampRE = `[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}(Z|[+-][0-9]{2}:[0-9]{2})`

// -t stamps a line with a time it is known for: a line read live with the
// time the daemon read it, a record of the daemon's log with its own time.
// A log file keeps no times, so the lines from before the tail began
// (-n) have "-" in its place, never the request's time for them all.
// A ring that overwrote records says so, over the socket.
func TestTailManyTimestamps(t *testing.T) {
	file, log := tailConfig(t)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	ring := logtail.NewRing(400)
	_, cl, _ := runDaemon(t, cfg, Options{DaemonLog: ring})
	waitAll(t, cl, "RUNNING")
	appendLog(t, log, "old 1\nold 2\n")
	for i := range 20 {
		fmt.Fprintf(ring, "time=2020-01-02T03:04:05.%03dZ level=INFO msg=record%d\n", i, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc, _, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"quiet"}, Daemon: true, Lines: -1, Timestamps: true, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	body := bufio.NewReader(rc)
	at := func(ms int) string {
		return time.Date(2020, 1, 2, 3, 4, 5, ms*1e6, time.UTC).Local().Format(logtail.TimeFormat)
	}
	got := readUntil(t, body, "msg=record19\n")
	want := regexp.MustCompile(`\Aquiet:quiet \| -` + ` +old 1\nquiet:quiet \| - +old 2\n` +
		`gosup       \| - +\[gosup: [0-9]+ earlier records \([0-9]+B\) of the daemon's log were overwritten in memory\]\n` +
		`(gosup       \| ([^ ]+) time=\S+ level=INFO msg=record[0-9]+\n)+\z`)
	if !want.MatchString(got) {
		t.Fatalf("history:\n%s", got)
	}
	for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		i := strings.Index(l, "msg=record")
		if i < 0 {
			continue
		}
		var ms int
		if _, err := fmt.Sscanf(l[i:], "msg=record%d", &ms); err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(l); f[2] != at(ms) {
			t.Fatalf("record %d stamped %s, want its own time %s: %q", ms, f[2], at(ms), l)
		}
	}
	// The stamp's width is kept: the text starts in one column.
	lines := strings.Split(got, "\n")
	if strings.Index(lines[0], "old 1") != len("quiet:quiet | ")+len(at(0))+1 {
		t.Fatalf("history line not aligned with stamped ones:\n%s", got)
	}
	before := time.Now().Add(-time.Millisecond)
	appendLog(t, log, "live\n")
	l := readUntil(t, body, "live\n")
	m := regexp.MustCompile(`\Aquiet:quiet \| (` + stampRE + `) live\n\z`).FindStringSubmatch(l)
	if m == nil {
		t.Fatalf("live line %q", l)
	}
	if read, err := time.Parse(logtail.TimeFormat, m[1]); err != nil || read.Before(before.Truncate(time.Millisecond)) {
		t.Fatalf("live line stamped %s, before it was written (%s): %v", m[1], before, err)
	}
}

// The log files open for tails are bounded across every request (each
// ctl tail -f all holds one a log): past the bound a tail is refused, 503,
// saying how many are open and for how many tails, and ctl info counts
// them; the children's spawns keep their descriptors.
func TestTailFilesBounded(t *testing.T) {
	dir := t.TempDir()
	file := writeConfig(t, `
[program.a]
command = "@HELPER@ sleep"
startsecs = 0
stdout_logfile = "`+filepath.Join(dir, "a.log")+`"

[program.b]
command = "@HELPER@ sleep"
startsecs = 0
stdout_logfile = "`+filepath.Join(dir, "b.log")+`"
`+helperEnv)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	_, cl, _ := runDaemonWith(t, cfg, Options{}, func(s *Supervisor) { s.hooks.tailFiles = 3 })
	waitAll(t, cl, "RUNNING")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	follow, cancelFollow := context.WithCancel(ctx)
	rc, _, err := cl.TailLogs(follow, api.TailRequest{Patterns: []string{"all"}, Lines: 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	info, err := cl.Info(ctx)
	if err != nil || info.TailFiles != 2 || info.Tails != 1 || info.TailFilesMax != 3 {
		t.Fatalf("info: %d files for %d tails (at most %d), %v; want 2 for 1 (3)", info.TailFiles, info.Tails, info.TailFilesMax, err)
	}
	_, _, err = cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"all"}, Lines: 1, Follow: true})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != http.StatusServiceUnavailable ||
		!strings.Contains(err.Error(), "2 log files are open for 1 tail already, and this one needs 2: at most 3 at once") {
		t.Fatalf("a tail past the bound: %v", err)
	}
	// One file still fits.
	one, _, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"a"}, Lines: 1})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, one)
	one.Close()
	if info, err = cl.Info(ctx); err != nil || info.TailsRefused != 1 {
		t.Fatalf("info: %d refused, %v; want 1", info.TailsRefused, err)
	}
	// Once the first tail ends, its files are given back.
	cancelFollow()
	for {
		if info, err = cl.Info(ctx); err != nil {
			t.Fatal(err)
		}
		if info.TailFiles == 0 && info.Tails == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after the tail ended: %d files for %d tails", info.TailFiles, info.Tails)
		}
		time.Sleep(20 * time.Millisecond)
	}
	again, _, err := cl.TailLogs(ctx, api.TailRequest{Patterns: []string{"all"}, Lines: 1})
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
}
