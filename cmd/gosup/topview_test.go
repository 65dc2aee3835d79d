package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/gosup/gosup/supervisor/api"
)

// topProcs makes n processes web:web_00 … with distinct CPU and memory:
// CPU grows with the index, memory shrinks.
func topProcs(n int) []api.ProcStatus {
	var out []api.ProcStatus
	for i := range n {
		out = append(out, api.ProcStatus{
			Name: fmt.Sprintf("web:web_%02d", i), State: "RUNNING", Pid: 1000 + i, Port: 9000 + i,
			UptimeS: 3661, Restarts: i % 3, Sampled: true, CPUWindowS: 2, CPUPercent: float64(i) * 1.5, RSSBytes: int64(n-i) << 20,
		})
	}
	return out
}

func topTestScreen(procs []api.ProcStatus, w, h int) topScreen {
	return topScreen{
		Snap:   topSnapshot{Info: api.Info{Pid: 42, Version: "v1.2.3", UptimeS: 90061}, Procs: procs},
		Socket: "/run/gosup.sock", Interval: time.Second, Width: w, Height: h,
	}
}

// screenLines renders s and checks the frame: exactly Height lines, none
// wider than Width cells, counted as Bubble Tea's renderer counts them in
// a terminal without mode 2027 (tmux 3.3): by wcwidth, rune by rune.
func screenLines(t *testing.T, s topScreen) []string {
	t.Helper()
	lines := strings.Split(s.render(), "\n")
	if len(lines) != s.Height {
		t.Fatalf("%dx%d: %d lines, want %d:\n%s", s.Width, s.Height, len(lines), s.Height, strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		if n := ansi.StringWidthWc(l); n > s.Width {
			t.Errorf("%dx%d: line %d is %d cells wide: %q", s.Width, s.Height, i, n, ansi.Strip(l))
		}
	}
	for i := range lines {
		lines[i] = ansi.Strip(lines[i])
	}
	return lines
}

// rowNames are the names in the rows shown, in order.
func rowNames(lines []string) []string {
	var out []string
	for _, l := range lines[3 : len(lines)-1] {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(f[0], ":") {
			out = append(out, f[0])
		}
	}
	return out
}

func TestTopRenderFits(t *testing.T) {
	long := topProcs(30)
	long[0].Name = "a-very-long-group-name:a-very-long-process-name_with_more"
	long[1].Name = "日本語のグループ:プロセス名前が長い_01"
	long[2].CPUPercent, long[2].RSSBytes, long[2].TreeRSSBytes = 1234.5, 900<<30, 1000<<30
	long[3].UptimeS = 400 * 86400
	long[4].Restarts = 123456789
	long[5].State, long[5].Pid = "STOPPED", 0
	long[6].Pid = 4194304
	long[7].Name = "web:\x1b[2J\x1b]0;pwned\x07\r\nweb"
	// 2 cells a grapheme, 4 by wcwidth (an emoji and its skin tone).
	long[8].Name = "web:" + strings.Repeat("\U0001F44D\U0001F3FD", 30)
	gone := topTestScreen(long, 80, 24)
	gone.Err, gone.ErrSince = fmt.Errorf("talk to gosup: %w", api.ErrNotRunning), time.Now()
	gone.Snap.Info.Version = strings.Repeat("v0.0.0-20261130075125-fc9e448abcde", 3)
	for _, s := range []topScreen{topTestScreen(long, 80, 24), gone, topTestScreen(nil, 80, 24)} {
		for _, size := range [][2]int{{80, 24}, {20, 5}, {1, 1}, {40, 10}, {60, 24}, {79, 24}, {120, 40}, {250, 60}} {
			s.Width, s.Height = size[0], size[1]
			for _, scroll := range []int{-5, 0, 7, 100} {
				s.Scroll = scroll
				screenLines(t, s)
			}
		}
	}
	byName := topTestScreen(long, 80, 24)
	byName.Sort = sortName
	lines := screenLines(t, byName)
	// Control characters show as ?, never reach the terminal.
	if !slices.Contains(rowNames(lines), "web:?[2J?]0;pwned??~") || strings.Contains(byName.render(), "\x1b[2J") {
		t.Errorf("an escape sequence in a name reached the screen: %q", rowNames(lines))
	}
	// Names are cut with a ~, the columns stay.
	if !slices.ContainsFunc(lines, func(l string) bool {
		return regexp.MustCompile(`^a-very-long-group-n~ RUNNING +1000 +9000 +0\.0 +30\.0M +0 +1:01:01$`).MatchString(l)
	}) {
		t.Errorf("no cut row for the long name:\n%s", strings.Join(lines, "\n"))
	}
}

func TestTopRender80x24(t *testing.T) {
	procs := topProcs(3)
	procs[1].TreeRSSBytes = 5 << 30
	procs[2].State, procs[2].Pid, procs[2].CPUPercent, procs[2].RSSBytes, procs[2].UptimeS = "BACKOFF", 0, 0, 0, 0
	procs[2].Port = 0
	lines := screenLines(t, topTestScreen(procs, 80, 24))
	want := []string{
		`^gosup pid 42 up 1d 01:01 \| CPU 1\.5% MEM 5\.00G \| sort: cpu \| v1\.2\.3$`,
		`^3 processes: 2 RUNNING, 1 BACKOFF$`,
		`^NAME +STATE +PID +PORT +CPU% +MEM +RESTARTS +UPTIME *$`,
		`^web:web_01 +RUNNING +1001 +9001 +1\.5 +5\.00G\+ +1 +1:01:01$`,
		`^web:web_00 +RUNNING +1000 +9000 +0\.0 +3\.0M +0 +1:01:01$`,
		`^web:web_02 +BACKOFF +- +- +- +- +2 +-$`,
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d: %q does not match %s", i, lines[i], re)
		}
	}
	if l := lines[23]; !strings.HasPrefix(l, "q quit | sort c cpu, m mem, n name: cpu |") {
		t.Errorf("help line: %q", l)
	}
	for _, l := range lines[6:23] {
		if l != "" {
			t.Errorf("want blank lines under the rows, got %q", l)
		}
	}
}

func TestTopSort(t *testing.T) {
	procs := topProcs(4) // CPU 0, 1.5, 3, 4.5; memory 4M, 3M, 2M, 1M
	procs[0].Name, procs[3].Name = "z:z", "a:a"
	procs = append(procs, api.ProcStatus{Name: "m:stopped", State: "STOPPED"}, api.ProcStatus{Name: "b:stopped", State: "STOPPED"})
	for _, tc := range []struct {
		sort topSort
		want []string
	}{
		{sortCPU, []string{"a:a", "web:web_02", "web:web_01", "z:z", "b:stopped", "m:stopped"}},
		{sortMem, []string{"z:z", "web:web_01", "web:web_02", "a:a", "b:stopped", "m:stopped"}},
		{sortName, []string{"a:a", "b:stopped", "m:stopped", "web:web_01", "web:web_02", "z:z"}},
	} {
		s := topTestScreen(procs, 80, 24)
		s.Sort = tc.sort
		lines := screenLines(t, s)
		if got := rowNames(lines); !slices.Equal(got, tc.want) {
			t.Errorf("sort %s: rows %v, want %v", tc.sort, got, tc.want)
		}
		if !strings.Contains(lines[0], "| sort: "+tc.sort.String()+" |") || !strings.HasSuffix(strings.Split(lines[23], " | ")[1], ": "+tc.sort.String()) {
			t.Errorf("sort %s: header %q, help %q", tc.sort, lines[0], lines[23])
		}
	}
	// Memory is the tree's when the process has descendants.
	procs[3].TreeRSSBytes = 10 << 20
	if got := sortProcs(procs, sortMem)[0].Name; got != "a:a" {
		t.Errorf("tree memory: %s first, want a:a", got)
	}
}

func TestTopScroll(t *testing.T) {
	procs := topProcs(45)
	for _, tc := range []struct {
		scroll      int
		first, last string
		rows        string
	}{
		{0, "web:web_00", "web:web_19", "rows 1-20 of 45"},
		{-3, "web:web_00", "web:web_19", "rows 1-20 of 45"},
		{7, "web:web_07", "web:web_26", "rows 8-27 of 45"},
		{25, "web:web_25", "web:web_44", "rows 26-45 of 45"},
		{100, "web:web_25", "web:web_44", "rows 26-45 of 45"}, // the last page stays full
	} {
		s := topTestScreen(procs, 80, 24)
		s.Sort, s.Scroll = sortName, tc.scroll
		lines := screenLines(t, s)
		names := rowNames(lines)
		if len(names) != 20 || names[0] != tc.first || names[19] != tc.last || !strings.HasSuffix(lines[1], "| "+tc.rows) {
			t.Errorf("scroll %d: %d rows %s…%s, %q; want 20 rows %s…%s, %s", tc.scroll, len(names), names[0], names[len(names)-1], lines[1], tc.first, tc.last, tc.rows)
		}
	}
	// All fit: no scrolling, no row range.
	lines := screenLines(t, topTestScreen(topProcs(20), 80, 24))
	if n := len(rowNames(lines)); n != 20 || strings.Contains(lines[1], "rows") {
		t.Errorf("20 processes in 24 lines: %d rows, %q", n, lines[1])
	}
}

// The keys move the model's sort and scroll; the scroll stays in range.
func TestTopKeys(t *testing.T) {
	m := &topModel{screen: topTestScreen(topProcs(45), 80, 24)}
	press := func(k tea.KeyPressMsg) {
		t.Helper()
		if _, cmd := m.Update(k); cmd != nil {
			t.Fatalf("key %s: a command", k)
		}
	}
	char := func(r rune) tea.KeyPressMsg { return tea.KeyPressMsg{Code: r, Text: string(r)} }
	for _, tc := range []struct {
		key    tea.KeyPressMsg
		sort   topSort
		scroll int
	}{
		{char('m'), sortMem, 0},
		{char('j'), sortMem, 1},
		{tea.KeyPressMsg{Code: tea.KeyDown}, sortMem, 2},
		{tea.KeyPressMsg{Code: tea.KeyPgDown}, sortMem, 22},
		{tea.KeyPressMsg{Code: tea.KeyPgDown}, sortMem, 25},
		{char('k'), sortMem, 24},
		{tea.KeyPressMsg{Code: tea.KeyPgUp}, sortMem, 4},
		{char('n'), sortName, 4},
		{char('g'), sortName, 0},
		{tea.KeyPressMsg{Code: tea.KeyUp}, sortName, 0},
		{char('G'), sortName, 25},
		{char('c'), sortCPU, 25},
		{tea.KeyPressMsg{Code: tea.KeyHome}, sortCPU, 0},
	} {
		press(tc.key)
		if m.screen.Sort != tc.sort || m.screen.Scroll != tc.scroll {
			t.Fatalf("after %s: sort %s scroll %d, want %s %d", tc.key, m.screen.Sort, m.screen.Scroll, tc.sort, tc.scroll)
		}
	}
	// A taller window keeps the last page full: 45 rows, 40 shown.
	press(char('G'))
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 44})
	if m.screen.Scroll != 5 {
		t.Errorf("after growing to 44 lines: scroll %d, want 5", m.screen.Scroll)
	}
	for _, tc := range []struct {
		key  tea.KeyPressMsg
		want tea.Msg
	}{
		{char('q'), tea.QuitMsg{}},
		{tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}, tea.QuitMsg{}},
		{tea.KeyPressMsg{Code: tea.KeyEscape}, tea.QuitMsg{}},
		{tea.KeyPressMsg{Code: 'z', Mod: tea.ModCtrl}, tea.SuspendMsg{}},
	} {
		if _, cmd := m.Update(tc.key); cmd == nil {
			t.Errorf("%s: no command", tc.key)
		} else if got := cmd(); got != tc.want {
			t.Errorf("%s: %T, want %T", tc.key, got, tc.want)
		}
	}
}

// A failed poll keeps the last rows, says the daemon is gone and since
// when; the next answer clears it.
func TestTopDaemonGone(t *testing.T) {
	m := &topModel{screen: topTestScreen(topProcs(2), 80, 24)}
	m.screen.Socket = "/run/x.sock"
	m.Update(topFetchedMsg{err: fmt.Errorf("talk: %w", api.ErrNotRunning)})
	since := m.screen.ErrSince
	m.Update(topFetchedMsg{err: errors.New("connection reset")})
	if m.screen.ErrSince != since {
		t.Errorf("ErrSince moved on a second failure")
	}
	lines := screenLines(t, m.screen)
	if want := `^DAEMON GONE since [0-9:]{8}: connection reset; retrying 1s after each try$`; !regexp.MustCompile(want).MatchString(lines[1]) {
		t.Errorf("line 1: %q, want %s", lines[1], want)
	}
	// A daemon that hangs: each try waits out the timeout.
	m.screen.Err = fmt.Errorf("talk to gosup: %w", context.DeadlineExceeded)
	if l := screenLines(t, m.screen)[1]; !strings.HasSuffix(l, ": no answer in 3s; retrying 1s after each try") {
		t.Errorf("hung: %q", l)
	}
	if got := rowNames(lines); len(got) != 2 {
		t.Errorf("rows while gone: %v", got)
	}
	m.screen.Err = fmt.Errorf("talk: %w", api.ErrNotRunning)
	if l := screenLines(t, m.screen)[1]; !strings.Contains(l, ": no daemon listens on /run/x.sock; retrying") {
		t.Errorf("not running: %q", l)
	}
	procs := topProcs(3)
	m.Update(topFetchedMsg{snap: topSnapshot{Info: api.Info{Pid: 43, Version: "v2"}, Procs: procs}})
	lines = screenLines(t, m.screen)
	if m.screen.Err != nil || !strings.HasPrefix(lines[0], "gosup pid 43 ") || lines[1] != "3 processes: 3 RUNNING" {
		t.Errorf("after the daemon answered again: %q %q", lines[0], lines[1])
	}
}

// An error the daemon answers with is an answer, not a daemon gone: a
// reload that removed the pattern's processes (404) shows that nothing
// matches, with no rows and the header of the answer; the daemon starting
// or stopping (503) says so. The next answer with processes clears it.
func TestTopDaemonAnswers(t *testing.T) {
	m := &topModel{patterns: []string{"web:*"}, screen: topTestScreen(topProcs(2), 80, 24)}
	m.screen.Patterns = m.patterns
	m.Update(topFetchedMsg{snap: topSnapshot{Info: api.Info{Pid: 43, Version: "v2"}}, err: &api.Error{Code: 404, Msg: "no such process: web:*"}})
	lines := screenLines(t, m.screen)
	if lines[1] != "no process matches web:*" || !strings.HasPrefix(lines[0], "gosup pid 43 ") || len(rowNames(lines)) != 0 || strings.Contains(strings.Join(lines, "\n"), "DAEMON GONE") {
		t.Errorf("after a 404:\n%s", strings.Join(lines, "\n"))
	}
	m.Update(topFetchedMsg{snap: topSnapshot{Info: api.Info{Pid: 43, Version: "v2"}}, err: &api.Error{Code: 503, Msg: "gosup is stopping"}})
	lines = screenLines(t, m.screen)
	if want := `^the daemon answers: gosup is stopping \(asking again every 1s\)$`; !regexp.MustCompile(want).MatchString(lines[1]) {
		t.Errorf("after a 503: line 1 %q, want %s", lines[1], want)
	}
	m.Update(topFetchedMsg{snap: topSnapshot{Info: api.Info{Pid: 43, Version: "v2"}, Procs: topProcs(3)}})
	if lines = screenLines(t, m.screen); lines[1] != "3 processes: 3 RUNNING" || len(rowNames(lines)) != 3 {
		t.Errorf("after the processes came back:\n%s", strings.Join(lines, "\n"))
	}
}

// The daemon's warnings show on header line 2 (how many, the first); a
// process that lost output, that memmon gave up on or on the old spec of
// a rollout is marked after its state, with a legend in the help line.
func TestTopWarningsAndMarks(t *testing.T) {
	procs := topProcs(5)
	procs[0].OldSpec = true
	procs[1].LogDroppedBytes, procs[1].OldSpec = 512, true
	procs[2].LogFailing = []api.LogFailure{{Stream: "stdout", Path: "/var/log/x", Error: "no space left on device"}}
	procs[3].MemmonGaveUp = "3 restarts in 1h"
	procs[4].State = "STOPPING"
	procs[4].OldSpec = true
	s := topTestScreen(procs, 120, 24)
	s.Sort = sortName
	s.Snap.Warnings = []string{"reload at 2026-11-30 08:00:00 failed: gosup.toml:3: bad\x1b[2J", "nginx: down"}
	lines := screenLines(t, s)
	want := []string{
		`^5 processes: 4 RUNNING, 1 STOPPING \| 2 warnings: reload at 2026-11-30 08:00:00 failed: gosup\.toml:3: bad\?\[2J$`,
		`^NAME +STATE +PID `,
		`^web:web_00 +RUNNING\* +1000 `,
		`^web:web_01 +RUNNING! +1001 `,
		`^web:web_02 +RUNNING! +1002 `,
		`^web:web_03 +RUNNINGM +1003 `,
		`^web:web_04 +STOPPING\* +1004 `,
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i+1]) {
			t.Errorf("line %d: %q does not match %s", i+1, lines[i+1], re)
		}
	}
	if want := "q quit | sort c cpu, m mem, n name: name | ! output lost, M memmon gave up, * old spec | scroll j/k up/down PgUp/PgDn"; lines[23] != want {
		t.Errorf("help line %q, want %q", lines[23], want)
	}
	// No marks, no legend; one warning.
	s = topTestScreen(topProcs(2), 80, 24)
	s.Snap.Warnings = []string{"nginx: down"}
	lines = screenLines(t, s)
	if lines[1] != "2 processes: 2 RUNNING | 1 warning: nginx: down" || strings.Contains(lines[23], "old spec") {
		t.Errorf("one warning: %q, help %q", lines[1], lines[23])
	}
}

// A poll asks for the daemon's info only every topInfoEvery polls and
// after one that failed or was refused; the others are one status each.
func TestTopInfoPolls(t *testing.T) {
	m := &topModel{screen: topTestScreen(topProcs(2), 80, 24)}
	if !m.wantInfo() {
		t.Fatalf("no info yet, and not asked for")
	}
	ok := func(info bool) topFetchedMsg {
		return topFetchedMsg{snap: topSnapshot{Info: api.Info{Pid: 42}, Procs: topProcs(2)}, info: info, infoAt: time.Now()}
	}
	m.Update(ok(true))
	var asked []int
	for i := range 3 * topInfoEvery {
		want := m.wantInfo()
		if want {
			asked = append(asked, i)
		}
		m.Update(ok(want))
	}
	if want := []int{topInfoEvery - 1, 2*topInfoEvery - 1, 3*topInfoEvery - 1}; !slices.Equal(asked, want) {
		t.Errorf("info asked at polls %v, want %v", asked, want)
	}
	m.Update(topFetchedMsg{err: errors.New("connection reset")})
	if !m.wantInfo() {
		t.Errorf("after a failed poll, the info is not asked for")
	}
	m.Update(ok(true))
	m.Update(topFetchedMsg{snap: topSnapshot{Info: api.Info{Pid: 42}}, err: &api.Error{Code: 503, Msg: "gosup is stopping"}})
	if !m.wantInfo() {
		t.Errorf("after a refused poll, the info is not asked for")
	}
}

// What the daemon says is shown, never obeyed: control characters in the
// state, and format characters (a bidi override turns the rest of the
// line around) in a name, show as ?.
func TestTopPrintable(t *testing.T) {
	procs := topProcs(2)
	procs[0].Name = "web:\u202eevil\u200b"
	procs[1].State = "\x1b[2JX"
	s := topTestScreen(procs, 80, 24)
	s.Sort = sortName
	out := s.render()
	lines := screenLines(t, s)
	if strings.ContainsAny(out, "\u202e\u200b") || strings.Contains(out, "\x1b[2J") {
		t.Errorf("a format or control character reached the screen: %q", out)
	}
	if want := []string{"web:web_01", "web:?evil?"}; !slices.Equal(rowNames(lines), want) {
		t.Errorf("rows %q, want %q", rowNames(lines), want)
	}
	if !regexp.MustCompile(`^web:web_01 +\?\[2JX +1001 `).MatchString(lines[3]) || !strings.HasSuffix(lines[1], ", 1 ?[2JX") {
		t.Errorf("state: %q, counts %q", lines[3], lines[1])
	}
}

// The view never sets the terminal's title: Bubble Tea sets it back to ""
// when the program ends, which wiped the operator's own title.
func TestTopViewLeavesTitle(t *testing.T) {
	m := &topModel{screen: topTestScreen(topProcs(2), 80, 24)}
	if v := m.View(); v.WindowTitle != "" || !v.AltScreen {
		t.Errorf("view: title %q, alt screen %v; want no title, the alt screen", v.WindowTitle, v.AltScreen)
	}
}
