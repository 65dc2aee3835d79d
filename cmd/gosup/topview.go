package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/gosup/gosup/internal/safetext"
	"github.com/gosup/gosup/supervisor/api"
)

// The view of gosup ctl top: a pure function of what the daemon said last,
// the sort, the terminal's size and the scroll offset (topScreen.render),
// so that it is unit tested without a terminal. top.go drives it.
//
// Widths are counted by wcwidth, rune by rune (ansi.StringWidthWc,
// TruncateWc), as Bubble Tea's renderer counts them in a terminal that
// does not answer mode 2027 (grapheme clusters), tmux 3.3 among them: an
// emoji with a skin tone is then 4 cells, not 2, and a line measured by
// graphemes would wrap.

// topSort is the order of ctl top's rows.
type topSort int

const (
	sortCPU  topSort = iota // CPU% descending, then MEM, then name
	sortMem                 // MEM descending, then CPU%, then name
	sortName                // name ascending
)

func (s topSort) String() string {
	switch s {
	case sortMem:
		return "mem"
	case sortName:
		return "name"
	}
	return "cpu"
}

// parseTopSort reads --sort.
func parseTopSort(s string) (topSort, error) {
	for _, o := range []topSort{sortCPU, sortMem, sortName} {
		if s == o.String() {
			return o, nil
		}
	}
	return 0, fmt.Errorf("--sort %q: want cpu, mem or name", s)
}

// topSnapshot is one answer of the daemon: its info and its processes.
type topSnapshot struct {
	Info  api.Info
	Procs []api.ProcStatus
	// Warnings are the daemon's, as ctl status prints them: nginx
	// failing, a failed reload, logs failing, a guard's panic, tree RSS
	// leaving descendants out.
	Warnings []string
}

// topScreen is all that the screen shows.
type topScreen struct {
	Snap topSnapshot // the last answer (shown, stale, while Err is set)
	// Err is why the last poll failed (nil when it was answered), since
	// ErrSince; the view says so and that it retries every Interval.
	Err      error
	ErrSince time.Time
	// Refused is the daemon's answer when it refused the status (Err is
	// then nil): a 404 when no process matches Patterns (a reload removed
	// them), a 503 while it starts or stops.
	Refused  *api.Error
	Patterns []string
	Socket   string
	Interval time.Duration
	Sort     topSort
	Width    int
	Height   int
	Scroll   int // index of the first row shown
}

// The screen's lines besides the rows: two of header, one of column
// headings, one of help at the bottom.
const topChrome = 4

// topBodyRows is how many process rows fit in height lines (at least one).
func topBodyRows(height int) int {
	return max(1, height-topChrome)
}

// clampScroll keeps scroll within the rows: the last page is full when
// there are more rows than fit.
func clampScroll(rows, height, scroll int) int {
	return max(0, min(scroll, rows-topBodyRows(height)))
}

// memOf is what MEM shows and sorts by: the process's tree when it has
// descendants, else its own RSS.
func memOf(p api.ProcStatus) int64 {
	return max(p.TreeRSSBytes, p.RSSBytes)
}

// sortProcs returns procs in the order s, ties by name.
func sortProcs(procs []api.ProcStatus, s topSort) []api.ProcStatus {
	out := slices.Clone(procs)
	slices.SortStableFunc(out, func(a, b api.ProcStatus) int {
		var c int
		switch s {
		case sortCPU:
			c = cmp.Or(cmp.Compare(b.CPUPercent, a.CPUPercent), cmp.Compare(memOf(b), memOf(a)))
		case sortMem:
			c = cmp.Or(cmp.Compare(memOf(b), memOf(a)), cmp.Compare(b.CPUPercent, a.CPUPercent))
		}
		return cmp.Or(c, strings.Compare(a.Name, b.Name))
	})
	return out
}

// Column widths (NAME takes the rest, at least topMinName).
const (
	colState    = 9 // STOPPING and a mark (topMark)
	colPid      = 7
	colPort     = 5
	colCPU      = 6 // 1234.5
	colMem      = 8 // 1023.9M+
	colRestarts = 8 // the heading
	colUptime   = 9 // 23:59:59, 12d 03:04
	topMinName  = 8
	// The fixed columns and the space before each.
	topFixed = colState + colPid + colPort + colCPU + colMem + colRestarts + colUptime + 7
)

// stateOrder is the order of the per-state counts in the header.
var stateOrder = []string{"RUNNING", "STARTING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "STOPPED"}

// topStyles are ctl top's colours, made the first time a screen is
// drawn: every other command would build them for nothing at start-up.
type topStyles struct {
	heading, alert, stale ansi.Style
	state                 map[string]ansi.Style
}

var styles = sync.OnceValue(func() topStyles {
	return topStyles{
		heading: ansi.NewStyle().Reverse(true),
		alert:   ansi.NewStyle().Bold().ForegroundColor(ansi.Red),
		stale:   ansi.NewStyle().Faint(),
		state: map[string]ansi.Style{
			"RUNNING":  ansi.NewStyle().ForegroundColor(ansi.Green),
			"STARTING": ansi.NewStyle().ForegroundColor(ansi.Yellow),
			"STOPPING": ansi.NewStyle().ForegroundColor(ansi.Yellow),
			"BACKOFF":  ansi.NewStyle().ForegroundColor(ansi.Red),
			"FATAL":    ansi.NewStyle().Bold().ForegroundColor(ansi.Red),
			"EXITED":   ansi.NewStyle().ForegroundColor(ansi.Red),
		},
	}
})

// render draws the screen: exactly Height lines, none wider than Width
// cells (escape sequences aside).
func (s topScreen) render() string {
	w, h := max(s.Width, 1), max(s.Height, 1)
	procs := sortProcs(s.Snap.Procs, s.Sort)
	body := topBodyRows(h)
	scroll := clampScroll(len(procs), h, s.Scroll)
	nameW := max(topMinName, w-topFixed-1)
	if longest := longestName(procs); longest < nameW {
		// Wide terminals: the numbers stay near the names.
		nameW = max(topMinName, longest)
	}

	lines := make([]string, 0, h)
	lines = append(lines, fit(s.daemonLine(procs), w))
	stale := s.Err != nil || s.Refused != nil
	switch {
	case s.Err != nil:
		lines = append(lines, styles().alert.Styled(fit(s.errLine(), w)))
	case s.Refused != nil && s.Refused.Code == http.StatusNotFound:
		stale = false
		lines = append(lines, fit(s.noMatchLine(), w))
	case s.Refused != nil:
		lines = append(lines, styles().alert.Styled(fit(fmt.Sprintf("the daemon answers: %s (asking again every %s)", printable(s.Refused.Msg), s.Interval), w)))
	default:
		line := countsLine(procs, scroll, body)
		if n := len(s.Snap.Warnings); n > 0 {
			// The first warning, cut first when narrow; ctl status
			// prints them all.
			line += " | " + styles().alert.Styled(countsPlural(n, "warning", "warnings")+": "+printable(s.Snap.Warnings[0]))
		}
		lines = append(lines, fit(line, w))
	}
	heading := fmt.Sprintf("%-*s %-*s %*s %*s %*s %*s %*s %*s", nameW, "NAME", colState, "STATE", colPid, "PID",
		colPort, "PORT", colCPU, "CPU%", colMem, "MEM", colRestarts, "RESTARTS", colUptime, "UPTIME")
	lines = append(lines, styles().heading.Styled(pad(fit(heading, w), w)))
	end := min(len(procs), scroll+body)
	for _, p := range procs[scroll:end] {
		row := s.row(p, nameW, w)
		if stale {
			row = styles().stale.Styled(ansi.Strip(row))
		}
		lines = append(lines, row)
	}
	if len(procs) == 0 {
		lines = append(lines, fit("no processes", w))
	}
	for len(lines) < h-1 {
		lines = append(lines, "")
	}
	lines = lines[:h-1]
	lines = append(lines, fit(s.helpLine(procs), w))
	return strings.Join(lines, "\n")
}

// daemonLine: the daemon's pid, uptime, the processes' total CPU and
// memory, the sort, and its version last (cut first when narrow).
func (s topScreen) daemonLine(procs []api.ProcStatus) string {
	in := s.Snap.Info
	if in.Pid == 0 {
		return "gosup: waiting for the daemon"
	}
	var cpu float64
	var mem int64
	for _, p := range procs {
		cpu += p.CPUPercent
		mem += memOf(p)
	}
	up := time.Duration(in.UptimeS * float64(time.Second))
	return fmt.Sprintf("gosup pid %d up %s | CPU %.1f%% MEM %s | sort: %s | %s",
		in.Pid, compactUptime(up), cpu, formatMem(mem, false), s.Sort, printable(in.Version))
}

// countsLine: how many processes in each state, and which rows show.
func countsLine(procs []api.ProcStatus, scroll, body int) string {
	n := map[string]int{}
	for _, p := range procs {
		n[printable(p.State)]++
	}
	var parts []string
	for _, st := range stateOrder {
		if n[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[st], st))
			delete(n, st)
		}
	}
	for _, st := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%d %s", n[st], st))
	}
	line := countsPlural(len(procs), "process", "processes")
	if len(parts) > 0 {
		line += ": " + strings.Join(parts, ", ")
	}
	if len(procs) > body {
		line += fmt.Sprintf(" | rows %d-%d of %d", scroll+1, min(len(procs), scroll+body), len(procs))
	}
	return line
}

func countsPlural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// topMark marks, after its state, a process that needs a look: ! it lost
// output (a log refused it) or a log fails now, M memmon gave up
// restarting it, * it still runs the spec a rollout under way replaces.
func topMark(p api.ProcStatus) string {
	switch {
	case p.LogDroppedBytes > 0 || len(p.LogFailing) > 0:
		return "!"
	case p.MemmonGaveUp != "":
		return "M"
	case p.OldSpec:
		return "*"
	}
	return ""
}

// topMarks is the legend of the marks procs show, in topMark's order.
func topMarks(procs []api.ProcStatus) string {
	seen := map[string]bool{}
	for _, p := range procs {
		seen[topMark(p)] = true
	}
	var out []string
	for _, m := range []struct{ mark, what string }{{"!", "output lost"}, {"M", "memmon gave up"}, {"*", "old spec"}} {
		if seen[m.mark] {
			out = append(out, m.mark+" "+m.what)
		}
	}
	return strings.Join(out, ", ")
}

// errLine says that the daemon does not answer, since when, and that the
// view retries (an in-place upgrade is a short gap): Interval after each
// try, which takes up to topPollTimeout when the daemon hangs.
func (s topScreen) errLine() string {
	why := s.Err.Error()
	switch {
	case errors.Is(s.Err, api.ErrNotRunning):
		why = "no daemon listens on " + s.Socket
	case errors.Is(s.Err, context.DeadlineExceeded):
		why = fmt.Sprintf("no answer in %s", topPollTimeout(s.Interval))
	}
	// Why first: a narrow terminal cuts the end.
	return fmt.Sprintf("DAEMON GONE since %s: %s; retrying %s after each try", s.ErrSince.Format(time.TimeOnly), printable(why), s.Interval)
}

// noMatchLine: the daemon knows no process matching the patterns (a
// reload removed them); the view shows them again when they come back.
func (s topScreen) noMatchLine() string {
	return "no process matches " + printable(strings.Join(s.Patterns, " "))
}

// helpLine: the keys, and the legend of the marks shown (before the
// scroll keys, which a narrow terminal cuts first).
func (s topScreen) helpLine(procs []api.ProcStatus) string {
	line := fmt.Sprintf("q quit | sort c cpu, m mem, n name: %s | ", s.Sort)
	if marks := topMarks(procs); marks != "" {
		line += marks + " | "
	}
	return line + "scroll j/k up/down PgUp/PgDn"
}

func (s topScreen) row(p api.ProcStatus, nameW, w int) string {
	pid, port, cpu, mem, up := "-", "-", "-", "-", "-"
	if p.Pid > 0 {
		pid = strconv.Itoa(p.Pid)
		if p.Sampled && p.CPUWindowS > 0 {
			cpu = strconv.FormatFloat(p.CPUPercent, 'f', 1, 64)
		}
		up = compactUptime(time.Duration(p.UptimeS * float64(time.Second)))
		if p.Sampled {
			mem = formatMem(memOf(p), p.TreeRSSBytes > p.RSSBytes)
		}
	}
	if p.Port > 0 {
		port = strconv.Itoa(p.Port)
	}
	mark := topMark(p)
	state := ansi.TruncateWc(printable(p.State), colState-len(mark), "")
	styled := state
	if st, ok := styles().state[p.State]; ok {
		styled = st.Styled(state)
	}
	state += mark
	styled += styles().alert.Styled(mark)
	name := pad(ansi.TruncateWc(printable(p.Name), nameW, "~"), nameW)
	rest := fmt.Sprintf(" %*s %*s %*s %*s %*d %*s", colPid, pid, colPort, port, colCPU, cpu, colMem, mem, colRestarts, p.Restarts, colUptime, up)
	plain := name + " " + pad(state, colState) + rest
	if ansi.StringWidthWc(plain) > w {
		// Narrower than the columns: cut, unstyled.
		return ansi.TruncateWc(plain, w, "")
	}
	return name + " " + styled + strings.Repeat(" ", colState-ansi.StringWidthWc(state)) + rest
}

func longestName(procs []api.ProcStatus) int {
	n := 0
	for _, p := range procs {
		n = max(n, ansi.StringWidthWc(printable(p.Name)))
	}
	return n
}

// printable replaces control characters (an escape sequence would drive
// the terminal) and format characters (a bidi override reverses the rest
// of the line) with '?': what the daemon says is shown, never obeyed.
func printable(s string) string {
	return safetext.Printable(s, '?')
}

// fit cuts s to w cells.
func fit(s string, w int) string {
	return ansi.TruncateWc(s, w, "")
}

// pad fills s with spaces to w cells.
func pad(s string, w int) string {
	if n := ansi.StringWidthWc(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

// formatMem: 512K, 123.4M, 12.34G; tree marks memory counting the
// process's descendants.
func formatMem(b int64, tree bool) string {
	s := api.FormatMem(b)
	if b < 1<<20 {
		s = fmt.Sprintf("%dK", b>>10)
	}
	if tree {
		s += "+"
	}
	return s
}

// compactUptime: 0:04:05 under a day, 12d 03:04 from then on.
func compactUptime(d time.Duration) string {
	secs := int64(d.Seconds())
	if secs < 86400 {
		return fmt.Sprintf("%d:%02d:%02d", secs/3600, secs%3600/60, secs%60)
	}
	return fmt.Sprintf("%dd %02d:%02d", secs/86400, secs%86400/3600, secs%3600/60)
}
