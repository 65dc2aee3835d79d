package supervisor

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/statuspage"
)

// pageRow is one process row of the status page's DOM.
type pageRow struct {
	Name  string   `json:"name"`
	Class string   `json:"class"`
	Cells []string `json:"cells"`
}

// readRows reads the process rows of the page open in tab, and the
// page's refresh line.
const readRows = `({
	live: document.getElementById("live").textContent,
	asof: document.getElementById("asof").textContent,
	updates: document.body.getAttribute("data-updates") || "",
	rows: Array.from(document.querySelectorAll("#procs tr.proc")).map(tr => ({
		name: tr.getAttribute("data-name"), class: tr.className,
		cells: Array.from(tr.cells).map(td => td.textContent)})),
})`

type pageDOM struct {
	Live    string    `json:"live"`
	AsOf    string    `json:"asof"`
	Updates string    `json:"updates"`
	Rows    []pageRow `json:"rows"`
}

// rowDiffs says how the page's process rows differ from st, as gosup ctl
// status shows it (NAME STATE PID PORT RESTARTS INFO: the columns that do
// not move while nothing happens): every process listed, in order, and
// nothing else.
func rowDiffs(dom pageDOM, st []api.ProcStatus) []string {
	var diffs []string
	if len(dom.Rows) != len(st) {
		diffs = append(diffs, fmt.Sprintf("page lists %d processes, want %d: %+v", len(dom.Rows), len(st), dom.Rows))
	}
	for i, p := range st {
		if i >= len(dom.Rows) {
			break
		}
		c := api.FormatColumns(p)
		if c.Info == "" && p.Pid > 0 && p.LastExit != "" {
			// the page says what a running process was restarted after
			c.Info = "last exit " + p.LastExitAt.Format(time.DateTime) + ", " + p.LastExit
		}
		want := []string{p.Name, p.State, c.Pid, c.Port, c.Restarts, c.Info}
		r := dom.Rows[i]
		if len(r.Cells) != 9 {
			diffs = append(diffs, fmt.Sprintf("row %d has %d cells, want 9: %q", i, len(r.Cells), r.Cells))
			continue
		}
		have := []string{r.Cells[0], r.Cells[1], r.Cells[2], r.Cells[3], r.Cells[5], r.Cells[8]}
		if r.Name != p.Name || fmt.Sprint(have) != fmt.Sprint(want) {
			diffs = append(diffs, fmt.Sprintf("row %d (%s): have %q, want %q", i, r.Name, have, want))
		}
	}
	return diffs
}

// wantRows fails the test where rowDiffs finds a difference.
func wantRows(t *testing.T, dom pageDOM, st []api.ProcStatus) {
	t.Helper()
	for _, d := range rowDiffs(dom, st) {
		t.Error(d)
	}
}

// The status page in a real headless Chromium, from a daemon running real
// children: it lists every process, server-rendered with JavaScript off;
// with it on, a process stopped with ctl stop shows STOPPED in the page
// without the page being loaded again.
func TestStatusPageInChromium(t *testing.T) {
	base, port := freePortRange(t, 2), freePort(t)
	file := writeConfig(t, fmt.Sprintf(`
[http]
listen = "127.0.0.1:%d"

[program.web]
command = "@HELPER@ http"
numprocs = 2
process_name = "web_%%(process_num)d"
port_start = %d
startsecs = 0
%s

[program.worker]
command = "@HELPER@ sleep"
numprocs = 3
process_name = "worker_%%(process_num)d"
startsecs = 0
%s
`, port, base, helperEnv, helperEnv))
	browser := startChromium(t)
	_, cl, stopDaemon := startSupervisorStop(t, file)
	waitAll(t, cl, "RUNNING")
	waitHTTPListening(t, cl)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// JavaScript off: the page as the server rendered it.
	static := newTab(t, browser)
	if _, err := chromedp.Call(static, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(static, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s with JavaScript off: %v", url, err)
	}
	dom, err := chromedp.Run(static, chromedp.Evaluate[pageDOM](readRows))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dom.Live, "static page") || dom.Updates != "" {
		t.Errorf("with JavaScript off the page's script ran: live %q, updates %q", dom.Live, dom.Updates)
	}
	wantRows(t, dom, mustStatus(t, cl))
	wantAsOf(t, dom.AsOf)
	// On a phone's width the table is cards: one grid a process, and
	// nothing wider than the screen.
	if err := chromedp.Do(static, chromedp.EmulateViewport(400, 800, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	phone, err := chromedp.Run(static, chromedp.Evaluate[[]string](`[
		getComputedStyle(document.querySelector("#procs tr.proc")).display,
		getComputedStyle(document.querySelector("#procs thead")).position,
		String(document.documentElement.scrollWidth)]`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"grid", "absolute", "400"}; fmt.Sprint(phone) != fmt.Sprint(want) {
		t.Errorf("at 400px wide: row display, thead position, page width = %q, want %q", phone, want)
	}

	// JavaScript on: the page refreshes itself from status.json.
	live := newTab(t, browser)
	if err := chromedp.Do(live, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	// A mark on the window: a reload of the page would lose it.
	if _, err := chromedp.Run(live, chromedp.Evaluate[bool](`window.gosupTestMark = true`)); err != nil {
		t.Fatal(err)
	}
	read := func() pageDOM {
		t.Helper()
		dom, err := chromedp.Run(live, chromedp.Evaluate[pageDOM](readRows))
		if err != nil {
			t.Fatal(err)
		}
		return dom
	}
	waitDOM := func(what string, ok func(pageDOM) bool) pageDOM {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			dom := read()
			if ok(dom) {
				return dom
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page never showed %s within 60s: %+v", what, dom)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	dom = waitDOM("a refresh", func(d pageDOM) bool { return d.Updates != "" })
	if !strings.HasPrefix(dom.Live, "live") {
		t.Errorf("refresh line: %q", dom.Live)
	}
	wantRows(t, dom, mustStatus(t, cl))
	wantAsOf(t, dom.AsOf)

	// A refresh changes only what changed: an operator's selection (a
	// name, an error in INFO, to copy) and the rows' elements stay.
	const selectName = `(() => {
		const tr = document.querySelector('#procs tr.proc[data-name="worker:worker_2"]');
		tr.gosupTestMark = true;
		const r = document.createRange();
		r.selectNodeContents(tr.cells[0]);
		getSelection().removeAllRanges();
		getSelection().addRange(r);
		return getSelection().toString();
	})()`
	if sel, err := chromedp.Run(live, chromedp.Evaluate[string](selectName)); err != nil || sel != "worker:worker_2" {
		t.Fatalf("selecting a name: %q, %v", sel, err)
	}
	n, _ := strconv.Atoi(dom.Updates)
	waitDOM("two more refreshes", func(d pageDOM) bool { u, _ := strconv.Atoi(d.Updates); return u >= n+2 })
	kept, err := chromedp.Run(live, chromedp.Evaluate[[]string](`[getSelection().toString(),
		String(document.querySelector('#procs tr.proc[data-name="worker:worker_2"]').gosupTestMark === true)]`))
	if err != nil || fmt.Sprint(kept) != fmt.Sprint([]string{"worker:worker_2", "true"}) {
		t.Errorf("after refreshes: selection, same row element = %q (%v), want the name still selected in the same row", kept, err)
	}
	// Rows that are not the daemon's processes (as after a reload added
	// or removed some) are drawn anew.
	if _, err := chromedp.Run(live, chromedp.Evaluate[bool](`document.querySelector("#procs tr.proc").remove(); true`)); err != nil {
		t.Fatal(err)
	}
	st0 := mustStatus(t, cl)
	waitDOM("the removed row drawn again", func(d pageDOM) bool { return rowDiffs(d, st0) == nil })

	const victim = "web:web_1"
	if _, err := cl.Action(ctx, "stop", api.ActionRequest{Patterns: []string{victim}}); err != nil {
		t.Fatal(err)
	}
	dom = waitDOM(victim+" STOPPED", func(d pageDOM) bool {
		for _, r := range d.Rows {
			if r.Name == victim {
				return r.Cells[1] == "STOPPED" && r.Class == "proc state-stopped"
			}
		}
		return false
	})
	if mark, err := chromedp.Run(live, chromedp.Evaluate[bool](`window.gosupTestMark === true`)); err != nil || !mark {
		t.Errorf("the page was loaded again (mark %v, %v): it must refresh in place", mark, err)
	}
	// Once the stop has settled (ctl stop's INFO), every row is as gosup
	// ctl status has it.
	st := mustStatus(t, cl)
	waitDOM("every row as gosup ctl status", func(d pageDOM) bool {
		return rowDiffs(d, st) == nil
	})

	// A crash: the process runs again, and the page says after what.
	const crashed = "worker:worker_0"
	before := mustStatus(t, cl, crashed)[0]
	crashAt := time.Now()
	if err := syscall.Kill(before.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	after := waitStatus(t, cl, crashed, "restarted", func(p api.ProcStatus) bool {
		return p.State == "RUNNING" && p.Restarts == before.Restarts+1 && p.Pid != before.Pid
	})
	if !strings.Contains(after.LastExit, "SIGKILL") || after.LastExitAt.Before(crashAt) || after.LastExitAt.After(time.Now()) {
		t.Errorf("%s's last exit: %q at %v, want the SIGKILL, after %v", crashed, after.LastExit, after.LastExitAt, crashAt)
	}
	st = mustStatus(t, cl)
	waitDOM("the crash and the restart", func(d pageDOM) bool {
		return rowDiffs(d, st) == nil
	})

	// A hidden tab pauses (headless Chromium's tabs are never hidden:
	// the test hides it as the browser would, and shows it again), and
	// one shown again refreshes at once.
	setHidden := func(hidden bool) {
		t.Helper()
		js := fmt.Sprintf(`Object.defineProperty(document, "hidden", {configurable: true, get: () => %t});
			Object.defineProperty(document, "visibilityState", {configurable: true, get: () => %t ? "hidden" : "visible"});
			document.dispatchEvent(new Event("visibilitychange")); true`, hidden, hidden)
		if _, err := chromedp.Run(live, chromedp.Evaluate[bool](js)); err != nil {
			t.Fatal(err)
		}
	}
	setHidden(true)
	dom = waitDOM("that it paused", func(d pageDOM) bool { return d.Live == "paused while the tab is hidden" })
	paused, _ := strconv.Atoi(dom.Updates)
	setHidden(false)
	waitDOM("a refresh once shown", func(d pageDOM) bool {
		n, _ := strconv.Atoi(d.Updates)
		return n > paused && strings.HasPrefix(d.Live, "live")
	})

	// The daemon gone, the page says its figures are stale, and keeps
	// what it last had.
	if err := stopDaemon(); err != nil {
		t.Fatal(err)
	}
	dom = waitDOM("that it is stale", func(d pageDOM) bool { return strings.HasPrefix(d.Live, "not refreshed since ") })
	if !strings.HasSuffix(dom.Live, "(retrying)") || len(dom.Rows) != len(st) {
		t.Errorf("stale page: %q, %d rows", dom.Live, len(dom.Rows))
	}
}

// waitHTTPListening waits until ctl info says the HTTP listener listens.
func waitHTTPListening(t *testing.T, cl *api.Client) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info := mustInfo(t, cl)
		if info.HTTP != nil && info.HTTP.State == "listening" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the HTTP listener does not listen within 30s: %+v", info.HTTP)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantAsOf checks the page's "as of" is now in the daemon's time zone (the
// zone of the times in INFO), named, whatever the browser's zone.
func wantAsOf(t *testing.T, asof string) {
	t.Helper()
	now := time.Now()
	zone := now.Format("MST")
	clock, ok := strings.CutSuffix(asof, " "+zone)
	if !ok {
		t.Errorf("as of %q: want the daemon's time zone, %s, named", asof, zone)
		return
	}
	at, err := time.ParseInLocation(time.DateTime, clock, time.Local)
	if err != nil || at.Sub(now).Abs() > 5*time.Minute {
		t.Errorf("as of %q: not the daemon's time now, %s (%v)", asof, now.Format(time.DateTime), err)
	}
}

// What a config and children's exits put on the page never becomes markup
// when the page's script writes it (the server's escaping is
// TestEscapesEverything's): refreshed in place, then drawn anew, the page
// in a real Chromium has no element but its own, and shows the strings as
// text. The page is served from a Source standing for the daemon: the
// strings are ones no config here would pass.
func TestStatusPageScriptEscapesInChromium(t *testing.T) {
	const (
		markup = `<img src=x onerror="window.pwned=1"><b>bold</b>`
		name   = `evil:"><img src=x>`
	)
	var phase atomic.Int64
	src := func() statuspage.Input {
		in := statuspage.Input{Daemon: statuspage.Daemon{Host: "h", Pid: 1, Version: "v1", State: "running"}}
		for i := range 2 {
			in.Processes = append(in.Processes, api.ProcStatus{Name: fmt.Sprintf("web:web_%d", i), Group: "web", Program: "web",
				Process: fmt.Sprintf("web_%d", i), State: "FATAL", Description: "exited too quickly"})
		}
		if phase.Load() >= 1 { // the same processes: the rows change in place
			in.Daemon.Host, in.Daemon.Version = "host "+markup, "v "+markup
			in.Warnings = []string{"warning " + markup}
			in.Processes[0].Description = "exit " + markup
		}
		if phase.Load() >= 2 { // another process: the rows are drawn anew
			in.Processes = append(in.Processes, api.ProcStatus{Name: name, Group: "evil", Program: `evil</th>` + markup,
				Process: `"><img src=x>`, State: "BACKOFF", Description: "spawn " + markup})
		}
		return in
	}
	srv := httptest.NewServer(statuspage.New(src))
	defer srv.Close()
	tab := newTab(t, startChromium(t))
	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Foreign int      `json:"foreign"` // elements that are not the page's own
		Updates string   `json:"updates"`
		Texts   []string `json:"texts"`
	}
	read := `({
		foreign: document.querySelectorAll("img, b, [onerror], [src]").length,
		updates: document.body.getAttribute("data-updates") || "",
		texts: [document.getElementById("host").textContent, document.getElementById("version").textContent,
			...Array.from(document.querySelectorAll("#warnings li, #procs th, #procs td.name, #procs td.info"), e => e.textContent)],
	})`
	for _, p := range []int64{1, 2} {
		phase.Store(p)
		var pg page
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var err error
			if pg, err = chromedp.Run(tab, chromedp.Evaluate[page](read)); err != nil {
				t.Fatal(err)
			}
			if pg.Foreign != 0 {
				t.Fatalf("phase %d: the script made %d elements of the strings it wrote: %q", p, pg.Foreign, pg.Texts)
			}
			if slices.Contains(pg.Texts, "exit "+markup) && (p == 1 || slices.Contains(pg.Texts, "spawn "+markup)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("phase %d: the page never showed the new strings within 60s: %+v", p, pg)
			}
		}
		want := []string{"host " + markup, "v " + markup, "warning " + markup}
		if p == 2 {
			want = append(want, name, `evil</th>`+markup+" 0/1 running")
		}
		for _, w := range want {
			if !slices.Contains(pg.Texts, w) {
				t.Errorf("phase %d: no element has the text %q: %q", p, w, pg.Texts)
			}
		}
	}
}
