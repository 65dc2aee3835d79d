// Package statuspage renders the status page and status.json: the
// daemon's processes as one self-contained HTML page (no file, font or
// script from anywhere else: hosts have no internet), complete as the
// server renders it, then refreshed in place by its script polling
// status.json, and status.json itself for scripts. It reads the daemon
// through a Source and depends on nothing in gosup but package api: it
// changes nothing, and serves no route of the control API.
package statuspage

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosup/gosup/supervisor/api"
)

// Source reads the daemon's state for one page or status.json. It is
// called from the listener's goroutines, at most once per MinInterval
// however many clients ask.
type Source func() Input

// Input is what the page shows, as the daemon reads it.
type Input struct {
	Daemon Daemon
	// Warnings are the lines gosup ctl status prints under its table.
	Warnings []string
	// Processes is what gosup ctl status --json prints: every process,
	// in its order.
	Processes []api.ProcStatus
}

// Daemon is what the page says of the daemon itself.
type Daemon struct {
	Host      string    `json:"host"` // os.Hostname: which machine this page is about
	Pid       int       `json:"pid"`
	Version   string    `json:"version"`
	Revision  string    `json:"revision,omitempty"`
	GoVersion string    `json:"go_version,omitempty"`
	State     string    `json:"state"` // starting, running or stopping
	StartedAt time.Time `json:"started_at"`
	UptimeS   float64   `json:"uptime_s"`
	Upgrades  int       `json:"upgrades"`
}

// Status is status.json: the daemon, the warnings and every process as
// gosup ctl status --json has it, each with its figures formatted as the
// status table shows them (Show).
type Status struct {
	// Time is when the daemon was read; AsOf is that time as the page
	// says it: in the daemon's time zone (that of the times in INFO, as
	// gosup ctl status has them), named, whatever the browser's zone.
	Time     time.Time      `json:"time"`
	AsOf     string         `json:"as_of"`
	Daemon   Daemon         `json:"daemon"`
	Uptime   string         `json:"uptime"` // the daemon's, formatted
	Summary  string         `json:"summary"`
	Warnings []string       `json:"warnings"`
	States   map[string]int `json:"states"` // how many processes are in each state
	// Processes are in gosup ctl status's order.
	Processes []Process `json:"processes"`
}

// Process is one process: gosup ctl status --json's fields, and Show.
type Process struct {
	api.ProcStatus
	Show api.Columns `json:"show"`
}

// MinInterval is the least time between two reads of the Source: every
// page and status.json within it gets the same snapshot, so that many
// clients polling cost the daemon no more than one. The page polls every
// 2 s.
const MinInterval = time.Second

// pollEvery is how often the page's script polls status.json.
const pollEvery = 2 * time.Second

var (
	//go:embed page.html
	pageHTML string
	//go:embed page.css
	pageCSS string
	//go:embed page.js
	pageJS string
)

// handler serves the page and status.json.
type handler struct {
	src  Source
	tmpl *template.Template
	csp  string

	mu   sync.Mutex // held while reading src: one read at a time
	last *snapshot
	at   time.Time
	now  func() time.Time
}

// snapshot is one read of the Source, and the page and status.json
// made of it, each made once, when first asked for: many clients cost
// one read and one rendering a MinInterval.
type snapshot struct {
	st       *Status
	page, js body
}

// body is one response made of a snapshot, plain and gzipped.
type body struct {
	once  sync.Once
	plain []byte
	gz    []byte
	err   error
}

// make fills b with what f returns, once.
func (b *body) make(f func() ([]byte, error)) {
	b.once.Do(func() {
		if b.plain, b.err = f(); b.err != nil {
			return
		}
		var z bytes.Buffer
		// BestSpeed is a valid level, and a bytes.Buffer takes all.
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
		zw.Write(b.plain)
		zw.Close()
		b.gz = z.Bytes()
	})
}

// write sends b as contentType, gzipped if r accepts it.
func (b *body) write(w http.ResponseWriter, r *http.Request, contentType string) {
	if b.err != nil {
		http.Error(w, "status page: "+b.err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("Vary", "Accept-Encoding")
	out := b.plain
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		hd.Set("Content-Encoding", "gzip")
		out = b.gz
	}
	hd.Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
}

// acceptsGzip says whether an Accept-Encoding takes gzip: named with a
// weight above 0 ("gzip;q=0" refuses it; "*" is not taken to name it).
func acceptsGzip(ae string) bool {
	for part := range strings.SplitSeq(ae, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		for param := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(param, "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}

// New serves GET (and HEAD) / as the page and /status.json from src;
// any other path is 404, any other method 405.
func New(src Source) http.Handler {
	h := &handler{src: src, now: time.Now}
	h.tmpl = template.Must(template.New("page").Parse(pageHTML))
	// The page's only script and style are its own, inline, named by
	// their hash: an injected <script> or style= would not run even if
	// something escaped the templates' escaping.
	h.csp = "default-src 'none'; script-src " + hashOf(pageJS) + "; style-src " + hashOf(pageCSS) +
		"; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return h
}

// hashOf is s's hash as a Content-Security-Policy source.
func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "read-only: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	switch r.URL.Path {
	case "/":
		h.page(w, r)
	case "/status.json":
		h.json(w, r)
	default:
		http.NotFound(w, r)
	}
}

// snapshot is the Source's state, read at most once per MinInterval,
// counted from the end of the last read: a read slower than MinInterval
// (many processes, a loaded machine) is shared by the requests that
// waited for it, not followed at once by another, and another.
func (h *handler) snapshot() *snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if h.last != nil && now.Sub(h.at) < MinInterval && now.Sub(h.at) >= 0 {
		return h.last
	}
	h.last = &snapshot{st: build(h.src(), now)}
	h.at = h.now()
	return h.last
}

// build adds to in what the page shows: the formatted figures, the
// counts by state.
func build(in Input, now time.Time) *Status {
	st := &Status{
		Time: now, AsOf: now.Format(asOfLayout), Daemon: in.Daemon, Warnings: in.Warnings, States: map[string]int{},
		Uptime:    api.FormatUptime(time.Duration(in.Daemon.UptimeS * float64(time.Second))),
		Processes: make([]Process, len(in.Processes)),
	}
	if st.Warnings == nil {
		st.Warnings = []string{}
	}
	for i, p := range in.Processes {
		st.Processes[i] = Process{ProcStatus: p, Show: showOf(p)}
		st.States[p.State]++
	}
	st.Summary = summary(len(in.Processes), st.States)
	return st
}

// asOfLayout is Status.AsOf's: the status table's (time.DateTime) and the
// zone.
const asOfLayout = time.DateTime + " MST"

// showOf is p's columns on the page: as gosup ctl status has them, and
// for a process running again after an exit, with nothing else to say,
// that exit as its INFO.
func showOf(p api.ProcStatus) api.Columns {
	c := api.FormatColumns(p)
	if c.Info == "" && p.Pid > 0 && p.LastExit != "" {
		c.Info = "last exit " + p.LastExitAt.Format(time.DateTime) + ", " + p.LastExit
	}
	return c
}

// stateOrder is the order the summary counts states in: the ones that
// need a look first.
var stateOrder = []string{"FATAL", "BACKOFF", "EXITED", "UNKNOWN", "STARTING", "STOPPING", "STOPPED", "RUNNING"}

// summary is "12 processes: 1 FATAL, 11 RUNNING".
func summary(n int, states map[string]int) string {
	s := "1 process"
	if n != 1 {
		s = strconv.Itoa(n) + " processes"
	}
	var parts []string
	seen := 0
	for _, state := range stateOrder {
		if c := states[state]; c > 0 {
			parts = append(parts, strconv.Itoa(c)+" "+state)
			seen += c
		}
	}
	if seen < n { // a state this list does not know
		parts = append(parts, strconv.Itoa(n-seen)+" other")
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	return s
}

// program is one program's processes on the page.
type program struct {
	Name    string
	Running int
	Procs   []row
}

// row is one process on the page: flat, for the template's sake (a field
// of an embedded struct costs the template a search by name each time).
type row struct {
	Name, State, Class string
	Show               api.Columns
}

// programs groups procs by program, in the order they come.
func programs(procs []Process) []*program {
	var out []*program
	index := map[string]*program{}
	for _, p := range procs {
		g := index[p.Program]
		if g == nil {
			g = &program{Name: p.Program}
			index[p.Program] = g
			out = append(out, g)
		}
		g.Procs = append(g.Procs, row{Name: p.Name, State: p.State, Class: "proc state-" + strings.ToLower(p.State), Show: p.Show})
		if p.State == "RUNNING" {
			g.Running++
		}
	}
	return out
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	sn := h.snapshot()
	sn.page.make(func() ([]byte, error) {
		var b bytes.Buffer
		err := h.tmpl.Execute(&b, map[string]any{
			"S": sn.st, "Programs": programs(sn.st.Processes), "Every": pollEvery.Milliseconds(),
			"CSS": template.CSS(pageCSS), "JS": template.JS(pageJS),
		})
		return b.Bytes(), err
	})
	w.Header().Set("Content-Security-Policy", h.csp)
	sn.page.write(w, r, "text/html; charset=utf-8")
}

func (h *handler) json(w http.ResponseWriter, r *http.Request) {
	sn := h.snapshot()
	sn.js.make(func() ([]byte, error) {
		b, err := json.Marshal(sn.st)
		return append(b, '\n'), err
	})
	sn.js.write(w, r, "application/json")
}
