package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// gosup ctl top: a live full-screen view of the processes, like pm2 monit
// or top, drawn with Bubble Tea. The library's terminal work (raw mode,
// size, color profile) happens in Program.Run, only for this command;
// what it does at package init is measured in docs/performance.md.

func newTopCmd(g *globalFlags) *cobra.Command {
	var interval time.Duration
	var sortBy string
	c := &cobra.Command{
		Use:   "top [PATTERN...]",
		Short: "Live full-screen view of the processes: state, pid, port, CPU, memory, restarts, uptime (q quits)",
		Long: `Live full-screen view of the processes, refreshed every --interval.
Keys: c sort by CPU, m by memory, n by name; j/k or up/down scroll a row,
PgUp/PgDn a page, g/G or Home/End to the top/bottom; q or Ctrl-C quits,
Ctrl-Z suspends.
MEM is the resident memory (RSS), of the process and its descendants when it
has any (marked +). Header line 2 ends with the daemon's warnings (ctl
status prints them all); a mark after STATE: ! output dropped or a log
failing, M memmon gave up, * old spec (a rollout under way). When the daemon goes away (an in-place upgrade is a short
gap), the view says so and keeps retrying. Needs a terminal: in scripts use
gosup ctl status (--json).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval < topMinInterval {
				return usage(fmt.Errorf("--interval %s: want at least %s", interval, topMinInterval))
			}
			order, err := parseTopSort(sortBy)
			if err != nil {
				return usage(err)
			}
			if !isTerminal(os.Stdout) {
				return usage(errors.New("gosup ctl top draws a live full-screen view and needs a terminal on stdout; in scripts and pipes use `gosup ctl status` (or `gosup ctl status --json`)"))
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx := cmd.Context()
			// The first answer decides: no daemon or a bad pattern is an
			// error before the screen is taken.
			snap, err := fetchTop(ctx, cl, args, interval, nil, time.Time{})
			if err != nil {
				return clientErr(err)
			}
			m := &topModel{ctx: ctx, cl: cl, patterns: args, info: snap.Info, infoAt: time.Now(), screen: topScreen{
				Snap: snap, Patterns: args, Socket: cl.Socket, Interval: interval, Sort: order, Width: 80, Height: 24,
			}}
			if _, err := tea.NewProgram(m, tea.WithContext(ctx)).Run(); err != nil && !errors.Is(err, tea.ErrInterrupted) {
				return failed(fmt.Errorf("ctl top: %w", err))
			}
			return nil
		},
	}
	c.Flags().DurationVar(&interval, "interval", time.Second, "time between refreshes (at least 250ms)")
	c.Flags().StringVar(&sortBy, "sort", "cpu", "initial order: cpu, mem or name (keys c, m, n)")
	return c
}

// isTerminal says whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// fetchTop asks the daemon for the processes matching patterns, and for
// its info when info is nil (else *info is shown, its uptime counted on
// from infoAt), within a timeout so that a daemon that hangs shows as one
// that does not answer. When the daemon refuses the status (an
// *api.Error: no process matches, the daemon stopping), the snapshot
// still has the info.
func fetchTop(ctx context.Context, cl *api.Client, patterns []string, interval time.Duration, info *api.Info, infoAt time.Time) (topSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, topPollTimeout(interval))
	defer cancel()
	if info == nil {
		in, err := cl.Info(ctx)
		if err != nil {
			return topSnapshot{}, err
		}
		info = &in
	} else {
		in := *info
		in.UptimeS += time.Since(infoAt).Seconds()
		info = &in
	}
	procs, warnings, err := cl.StatusWarning(ctx, patterns...)
	if err != nil {
		return topSnapshot{Info: *info}, err
	}
	return topSnapshot{Info: *info, Procs: procs, Warnings: warnings}, nil
}

// topPollTimeout is how long a poll waits for the daemon's answer.
func topPollTimeout(interval time.Duration) time.Duration {
	return max(2*interval, 3*time.Second)
}

// topMinInterval bounds --interval: each refresh is a status of every
// process shown, sampled by the daemon (see docs/performance.md).
const topMinInterval = 250 * time.Millisecond

// topInfoEvery: the daemon's info (pid, version, uptime) is asked for
// once in so many refreshes, and after any failed one (a new daemon, an
// upgrade); in between its uptime is counted on here.
const topInfoEvery = 10

// topModel is the Bubble Tea model: the screen, and the daemon it polls.
// One poll at a time: the next is scheduled when the last has answered.
type topModel struct {
	ctx      context.Context
	cl       *api.Client
	patterns []string
	screen   topScreen
	// info is the daemon's last info, asked for at infoAt; sinceInfo
	// counts the polls since.
	info      api.Info
	infoAt    time.Time
	sinceInfo int
}

// wantInfo says whether the next poll asks for the daemon's info too: at
// the topInfoEvery'th, and after a poll that failed or was refused.
func (m *topModel) wantInfo() bool {
	return m.sinceInfo+1 >= topInfoEvery || m.info.Pid == 0 || m.screen.Err != nil || m.screen.Refused != nil
}

type (
	topTickMsg    struct{}
	topFetchedMsg struct {
		snap topSnapshot
		err  error
		// info: the poll asked for the daemon's info, at infoAt.
		info   bool
		infoAt time.Time
	}
)

func (m *topModel) tick() tea.Cmd {
	return tea.Tick(m.screen.Interval, func(time.Time) tea.Msg { return topTickMsg{} })
}

func (m *topModel) fetch() tea.Cmd {
	// What the command needs, read here: it runs on another goroutine.
	ctx, cl, patterns, interval := m.ctx, m.cl, m.patterns, m.screen.Interval
	var info *api.Info
	if !m.wantInfo() {
		in := m.info
		info = &in
	}
	infoAt := m.infoAt
	return func() tea.Msg {
		at := time.Now()
		snap, err := fetchTop(ctx, cl, patterns, interval, info, infoAt)
		return topFetchedMsg{snap: snap, err: err, info: info == nil, infoAt: at}
	}
}

func (m *topModel) Init() tea.Cmd { return m.tick() }

func (m *topModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	s := &m.screen
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		s.Width, s.Height = msg.Width, msg.Height
	case topTickMsg:
		return m, m.fetch()
	case topFetchedMsg:
		m.sinceInfo++
		if msg.info && msg.snap.Info.Pid != 0 {
			m.info, m.infoAt, m.sinceInfo = msg.snap.Info, msg.infoAt, 0
		}
		var refused *api.Error
		switch {
		case msg.err == nil:
			s.Snap, s.Err, s.Refused = msg.snap, nil, nil
		case errors.As(msg.err, &refused):
			// The daemon answered: it is there, and says why it
			// shows no processes (none matches now, after a
			// reload) or no status (it is starting or stopping:
			// the last rows stay, dimmed).
			s.Err, s.Refused = nil, refused
			if refused.Code == http.StatusNotFound {
				s.Snap = msg.snap
			} else if msg.snap.Info.Pid != 0 {
				s.Snap.Info = msg.snap.Info
			}
		default:
			// No answer: no daemon, or one that hangs.
			if s.Err == nil {
				s.ErrSince = time.Now()
			}
			s.Err = msg.err
		}
		s.Scroll = clampScroll(len(s.Snap.Procs), s.Height, s.Scroll)
		return m, m.tick()
	case tea.KeyPressMsg:
		page := topBodyRows(s.Height)
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			return m, tea.Quit
		case "ctrl+z":
			// As top: back to the shell, the screen restored; fg
			// redraws it.
			return m, tea.Suspend
		case "c":
			s.Sort = sortCPU
		case "m":
			s.Sort = sortMem
		case "n":
			s.Sort = sortName
		case "j", "down":
			s.Scroll++
		case "k", "up":
			s.Scroll--
		case "pgdown", "space", "f":
			s.Scroll += page
		case "pgup", "b":
			s.Scroll -= page
		case "g", "home":
			s.Scroll = 0
		case "G", "end":
			s.Scroll = len(s.Snap.Procs)
		}
	}
	s.Scroll = clampScroll(len(s.Snap.Procs), s.Height, s.Scroll)
	return m, nil
}

func (m *topModel) View() tea.View {
	v := tea.NewView(m.screen.render())
	v.AltScreen = true
	return v
}
