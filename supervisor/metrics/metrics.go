// Package metrics exports the daemon's state as Prometheus metrics.
//
// The handler takes a Snapshot of the daemon at each scrape: nothing is
// registered per process, so processes come and go (a reload) without any
// registration to keep in step. Every family is written straight into the
// text format (version 0.0.4) by this package: the daemon's own from the
// snapshot (appendDaemon), the Go runtime's from runtime/metrics and
// runtime/debug (appendGo), the process's from /proc/self (appendProcess),
// and the per-process ones (appendProcesses, 22 series a process). No
// Prometheus library is linked: client_golang's init (its registry,
// procfs, protobuf, expvar) cost every gosup command, the CLI's included,
// 1.6-1.8 ms of start-up. The tests hold the output to what
// client_golang writes from the same figures: the same families, types,
// help, labels and series as its GoCollector, ProcessCollector and const
// metrics.
package metrics

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// States are the process states, in gosup_process_state's order.
var States = []string{"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"}

// ExitReasons are the reasons gosup_process_exits_total counts, in the
// order of Process.Exits: expected (an exit code in exitcodes, without a
// stop), unexpected (another code, or killed by gosup for not becoming
// ready), killed (a signal gosup did not send to stop it), stopped (gosup
// stopped it), memmon (memmon's restart stopped it).
var ExitReasons = []string{"expected", "unexpected", "killed", "stopped", "memmon"}

// Reload outcomes, nginx outcomes: the label values the counters always
// show (0 until counted).
var (
	ReloadOutcomes      = []string{"ok", "invalid", "failed"}
	NginxRenderOutcomes = []string{"changed", "unchanged", "failed"}
	NginxTestOutcomes   = []string{"ok", "failed"}
	NginxReloadOutcomes = []string{"ok", "failed", "not_running"}
)

// processLabels label every per-process metric; sortedLabels are the
// same in the order of their names (the extra label of a family, state,
// reason or stream, comes after them).
var (
	processLabels = []string{"group", "program", "process", "port"}
	sortedLabels  = []string{"group", "port", "process", "program"}
)

// defaultMaxInFlight is Options.MaxInFlight's default.
const defaultMaxInFlight = 4

// Process is one process as its metrics show it.
type Process struct {
	Group, Program string
	// Name is group:process, as gosup ctl status prints it.
	Name string
	Port int // 0: none
	// State is one of States.
	State string
	// StartTime is when its child started; zero while none runs.
	StartTime time.Time
	Restarts  int
	// Exits counts its exits by reason, in ExitReasons' order.
	Exits [5]int64
	// The figures of its child, when sampled (Sampled): CPU time (when
	// CPUOK), its own RSS and its tree's (itself and its descendants),
	// and its open files (when FDsOK).
	Sampled      bool
	CPU          time.Duration
	CPUOK        bool
	RSS, TreeRSS int64
	FDs          int
	FDsOK        bool
	// StdoutDropped and StderrDropped count the output bytes lost.
	StdoutDropped, StderrDropped int64
}

// Histogram is a histogram as Prometheus exposes it: Buckets holds, by
// upper bound, the observations at most that bound (cumulative).
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

// Snapshot is the daemon's state at one moment.
type Snapshot struct {
	Processes []Process

	// memmon, across the watchdogs a reload replaces.
	MemmonSamples, MemmonRestarts, MemmonGiveUps int64
	// The alerter's: mails sent, alerts in them, failed attempts,
	// attempts made again after a failed one, alerts dropped, given up
	// after retrying, and held for a mail now.
	AlertMailsSent, AlertsMailed, AlertFailures, AlertRetries, AlertsDropped, AlertsGivenUp, AlertsHeld int64

	// nginx: counts by outcome (in the orders of NginxRenderOutcomes,
	// NginxTestOutcomes, NginxReloadOutcomes), the last update that left
	// nginx in step (zero: none), whether the last update failed, and
	// the servers in the file on disk,
	// and how many of them are down (only with Nginx set: [nginx] has an
	// output).
	NginxRenders            [3]int64
	NginxTests              [2]int64
	NginxReloads            [3]int64
	NginxLastSuccess        time.Time
	NginxLastFailed         bool
	Nginx                   bool
	NginxServers, NginxDown int

	// HAProxy (only with [haproxy]): reload outcomes in the order of
	// NginxReloadOutcomes, runtime API updates (ok, failed), the servers
	// in the file on disk and how many of them are down.
	HAProxy                     bool
	HAProxyReloads              [3]int64
	HAProxyRuntime              [2]int64
	HAProxyServers, HAProxyDown int

	// The registry watch (only with one: an upstream rendered from the
	// registry): etcd answering, the members held, the keys ignored now
	// and those left out past its bounds.
	Watch, WatchReachable      bool
	WatchMembers, WatchIgnored int
	WatchDropped               int64

	// Reloads counts the reloads by outcome (ReloadOutcomes);
	// ReloadSeconds is how long they took. LastReloadOK says the last
	// reload succeeded (or none ran), LastReloadSuccess when the
	// configuration last loaded fine.
	Reloads           map[string]int64
	ReloadSeconds     Histogram
	LastReloadOK      bool
	LastReloadSuccess time.Time

	Upgrades, UpgradeFailures, Rescues int64
	// Panics counts the panics recovered, by component.
	Panics         map[string]int64
	WatchdogMissed int64
	// StartTime is when the daemon's first image started.
	StartTime                    time.Time
	Version, Revision, GoVersion string
	HTTPConnections, HTTPRefused int64

	// Registry: a [registry] publishes (the rest is only meaningful
	// then); whether etcd answers, the members it holds and those marked
	// down, the writes it did not take and the leases granted.
	Registry                                  bool
	RegistryReachable                         bool
	RegistryMembers, RegistryDown             int
	RegistryFailedWrites, RegistryLeaseGrants int64
}

// Options tune the handler.
type Options struct {
	// MaxInFlight bounds the scrapes served at once; one more gets a 503
	// (0: 4).
	MaxInFlight int
	// Logger gets the errors of a scrape (nil: slog.Default()).
	Logger *slog.Logger
}

// handler serves the metrics.
type handler struct {
	source   func() Snapshot
	proc     procStatic // what /proc tells once of this process
	inFlight chan struct{}
	log      *slog.Logger
	// scratch holds at most MaxInFlight *scratch: one a scrape in flight.
	scratch sync.Pool
}

// scratch is what a scrape writes with, kept for the next: the text, the
// gzip writer, each process's labels as last written, and the buffers
// the runtime's and the process's figures are read into.
type scratch struct {
	buf bytes.Buffer
	gz  *gzip.Writer
	pw  processWriter
	rt  runtimeReader
}

// maxKeptBuffer bounds the text buffer kept for the next scrape: one
// larger (a scrape of a much larger daemon) is let go.
const maxKeptBuffer = 16 << 20

// NewHandler serves, at each GET, the metrics of a snapshot source takes
// then, with the Go runtime's and this process's, in the text format
// (version 0.0.4, which every Prometheus reads), gzipped when the client
// accepts it.
func NewHandler(source func() Snapshot, o Options) http.Handler {
	h := &handler{source: source, proc: readProcStatic(), log: o.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = defaultMaxInFlight
	}
	h.inFlight = make(chan struct{}, o.MaxInFlight)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		http.Error(w, "too many scrapes at once: try again shortly", http.StatusServiceUnavailable)
		return
	}
	sc, _ := h.scratch.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	defer func() {
		if sc.buf.Cap() <= maxKeptBuffer {
			h.scratch.Put(sc)
		}
	}()
	buf := &sc.buf
	buf.Reset()
	if err := h.write(buf, sc); err != nil {
		// What could be gathered is served: a scrape with a family
		// missing beats none.
		h.log.Warn("metrics: not every metric could be gathered", "err", err)
	}
	w.Header().Set("Content-Type", contentType)
	if !acceptsGzip(r) {
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		_, _ = w.Write(buf.Bytes())
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.Header().Add("Vary", "Accept-Encoding")
	// The fastest level: 1 MB of text (500 processes) in a third of the
	// default level's time, and still a twentieth of its size. The
	// writer (a few hundred KB of tables) is reset, not made anew.
	if sc.gz == nil {
		sc.gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
	} else {
		sc.gz.Reset(w)
	}
	_, _ = sc.gz.Write(buf.Bytes())
	_ = sc.gz.Close()
	sc.gz.Reset(io.Discard) // let go of w
}

// acceptsGzip reports whether r's Accept-Encoding has gzip.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// contentType is the text format's, version 0.0.4.
const contentType = "text/plain; version=0.0.4; charset=utf-8"

// write writes one scrape: the Go runtime's metrics, a snapshot's
// daemon-wide ones, the process's, then the per-process ones. Each group
// is in the order of the families' names, as client_golang wrote them.
func (h *handler) write(buf *bytes.Buffer, sc *scratch) error {
	snap := h.source()
	b := buf.AvailableBuffer()
	b = sc.rt.appendGo(b)
	b = appendDaemon(b, &snap)
	b, err := sc.rt.appendProcess(b, &h.proc)
	b = sc.pw.append(b, snap.Processes)
	buf.Write(b)
	return err
}

// A per-process family: its name, help and type.
type family struct {
	name, help, typ string
}

// The per-process families, in the order written.
var (
	famState        = family{"gosup_process_state", "The process's state: 1 for the state it is in, 0 for the others (a stateset).", "gauge"}
	famUp           = family{"gosup_process_up", "1 when the process is RUNNING, else 0.", "gauge"}
	famStartTime    = family{"gosup_process_start_time_seconds", "When the process's child started, in seconds since the epoch (only while a child runs).", "gauge"}
	famRestarts     = family{"gosup_process_restarts_total", "The process's spawns after its first: restarts of every kind.", "counter"}
	famExits        = family{"gosup_process_exits_total", "The process's exits, by reason: expected (a code in exitcodes), unexpected (another code, or killed by gosup as not ready), killed (a signal gosup did not send to stop it), stopped (gosup stopped it), memmon (memmon's restart).", "counter"}
	famCPU          = family{"gosup_process_cpu_seconds_total", "CPU time the process's child has used (its own threads, not its descendants').", "counter"}
	famRSS          = family{"gosup_process_resident_memory_bytes", "Resident memory of the process's child.", "gauge"}
	famTreeRSS      = family{"gosup_process_tree_resident_memory_bytes", "Resident memory of the process's child and its descendants.", "gauge"}
	famFDs          = family{"gosup_process_open_fds", "Files the process's child has open.", "gauge"}
	famLogDropped   = family{"gosup_process_log_dropped_bytes_total", "Output bytes of the process lost (a log that failed, a copier that panicked), by stream.", "counter"}
	processFamilies = []family{famState, famUp, famStartTime, famRestarts, famExits, famCPU, famRSS, famTreeRSS, famFDs, famLogDropped}
)

// The per-process families' places in processFamilies.
const (
	iState = iota
	iUp
	iStartTime
	iRestarts
	iExits
	iCPU
	iRSS
	iTreeRSS
	iFDs
	iLogDropped
)

// appendProcesses appends to b the per-process families of ps in the
// text format, each family once (none without a series).
func appendProcesses(b []byte, ps []Process) []byte {
	var pw processWriter
	return pw.append(b, ps)
}

// processKey is what a process's labels are made of.
type processKey struct {
	group, program, name string
	port                 int
}

// processWriter writes the per-process families, keeping each process's
// labels, escaped, from one scrape to the next while the process at that
// place has the same ones: a daemon's processes change only at a reload.
type processWriter struct {
	keys   []processKey
	labels [][]byte // group="...",port="...",process="...",program="..."
}

// setLabels makes pw's labels those of ps.
func (pw *processWriter) setLabels(ps []Process) {
	if cap(pw.keys) < len(ps) {
		pw.keys = slices.Grow(pw.keys[:0], len(ps))
		pw.labels = slices.Grow(pw.labels[:0], len(ps))
	}
	n := len(pw.keys)
	pw.keys, pw.labels = pw.keys[:len(ps)], pw.labels[:len(ps)]
	for i := range ps {
		p := &ps[i]
		k := processKey{p.Group, p.Program, p.Name, p.Port}
		if i < n && pw.keys[i] == k {
			continue
		}
		pw.keys[i] = k
		port := ""
		if p.Port > 0 {
			port = strconv.Itoa(p.Port)
		}
		// In the order of their names, as client_golang writes them.
		l := pw.labels[i][:0]
		for j, v := range [...]string{p.Group, port, p.Name, p.Program} {
			if j > 0 {
				l = append(l, ',')
			}
			l = append(l, sortedLabels[j]...)
			l = append(l, '=', '"')
			l = appendEscaped(l, v)
			l = append(l, '"')
		}
		pw.labels[i] = l
	}
}

// append appends to b the per-process families of ps in the text format,
// each family once (none without a series).
func (pw *processWriter) append(b []byte, ps []Process) []byte {
	if len(ps) == 0 {
		return b
	}
	pw.setLabels(ps)
	for fi, f := range processFamilies {
		start := len(b)
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.help...) // no backslash nor newline in any help
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.typ...)
		b = append(b, '\n')
		any := false
		// sample appends one line: name{labels[,extra]} v, where extra
		// is a label="value" with nothing to escape.
		sample := func(i int, extra string, v float64) {
			b = append(b, f.name...)
			b = append(b, '{')
			b = append(b, pw.labels[i]...)
			if extra != "" {
				b = append(b, ',')
				b = append(b, extra...)
			}
			b = append(b, '}', ' ')
			b = appendFloat(b, v)
			b = append(b, '\n')
		}
		for i := range ps {
			p := &ps[i]
			switch fi {
			case iState:
				for j, st := range States {
					sample(i, stateLabels[j], bool01(st == p.State))
				}
			case iUp:
				sample(i, "", bool01(p.State == "RUNNING"))
			case iStartTime:
				if p.StartTime.IsZero() {
					continue
				}
				sample(i, "", float64(p.StartTime.UnixNano())/1e9)
			case iRestarts:
				sample(i, "", float64(p.Restarts))
			case iExits:
				for j := range ExitReasons {
					sample(i, reasonLabels[j], float64(p.Exits[j]))
				}
			case iCPU:
				if !p.Sampled || !p.CPUOK {
					continue
				}
				sample(i, "", p.CPU.Seconds())
			case iRSS:
				if !p.Sampled {
					continue
				}
				sample(i, "", float64(p.RSS))
			case iTreeRSS:
				if !p.Sampled {
					continue
				}
				sample(i, "", float64(max(p.TreeRSS, p.RSS)))
			case iFDs:
				if !p.Sampled || !p.FDsOK {
					continue
				}
				sample(i, "", float64(p.FDs))
			case iLogDropped:
				sample(i, `stream="stdout"`, float64(p.StdoutDropped))
				sample(i, `stream="stderr"`, float64(p.StderrDropped))
			}
			any = true
		}
		if !any {
			b = b[:start] // a family without a series is left out
		}
	}
	return b
}

// The extra labels of the stateset and of the exits, written out.
var (
	stateLabels  = labelPairs("state", States)
	reasonLabels = labelPairs("reason", ExitReasons)
)

func labelPairs(name string, values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = name + `="` + v + `"`
	}
	return out
}

// appendEscaped appends a label value escaped as the text format wants:
// backslash, double quote and newline.
func appendEscaped(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat appends v as the text format writes it.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case v == 0:
		return append(b, '0')
	case v == 1:
		return append(b, '1')
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		// Most values are counts and bytes: as integers, the same
		// number in a third of the time.
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
