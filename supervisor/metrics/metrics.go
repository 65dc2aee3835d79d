// Package metrics exports the daemon's state as Prometheus metrics.
//
// The handler takes a Snapshot of the daemon at each scrape: nothing is
// registered per process, so processes come and go (a reload) without any
// registration to keep in step. The daemon's own metrics come from a
// collector reading that snapshot, in a registry of the package's own
// (never prometheus.DefaultRegisterer) with the Go runtime's and the
// process's collectors, encoded by client_golang. The per-process
// families (22 series a process, 11,000 for 500 processes) are written
// straight into the text format by appendProcesses: through client_golang's
// generic path (a const metric, a sort, an encoding per series) they cost
// 15 times as much, past the 5 ms a scrape of 500 processes may take
// (BenchmarkHandler500); a test checks both give the same families.
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
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
	runtime  *prometheus.Registry // the Go runtime's and the process's
	descs    *descs
	inFlight chan struct{}
	log      *slog.Logger
	// scratch holds at most MaxInFlight *scratch: one a scrape in flight.
	scratch sync.Pool
}

// scratch is what a scrape writes with, kept for the next: the text, the
// gzip writer, and each process's labels as last written.
type scratch struct {
	buf bytes.Buffer
	gz  *gzip.Writer
	pw  processWriter
}

// maxKeptBuffer bounds the text buffer kept for the next scrape: one
// larger (a scrape of a much larger daemon) is let go.
const maxKeptBuffer = 16 << 20

// NewHandler serves, at each GET, the metrics of a snapshot source takes
// then, with the Go runtime's and this process's, in the text format
// (version 0.0.4, which every Prometheus reads), gzipped when the client
// accepts it.
func NewHandler(source func() Snapshot, o Options) http.Handler {
	h := &handler{source: source, runtime: prometheus.NewRegistry(), descs: newDescs(), log: o.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = defaultMaxInFlight
	}
	h.inFlight = make(chan struct{}, o.MaxInFlight)
	h.runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
	if err := h.write(buf, &sc.pw); err != nil {
		// What could be gathered is served: a scrape with a family
		// missing beats none.
		h.log.Warn("metrics: not every metric could be gathered", "err", err)
	}
	w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
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

// write writes one scrape: a snapshot's metrics, and the Go runtime's and
// the process's.
func (h *handler) write(buf *bytes.Buffer, pw *processWriter) error {
	snap := h.source()
	reg := prometheus.NewRegistry()
	reg.MustRegister(&daemonCollector{snap: &snap, d: h.descs})
	fams, err := prometheus.Gatherers{reg, h.runtime}.Gather()
	enc := expfmt.NewEncoder(buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if eerr := enc.Encode(f); eerr != nil && err == nil {
			err = eerr
		}
	}
	buf.Write(pw.append(buf.AvailableBuffer(), snap.Processes))
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

// descs are the daemon-wide metrics' descriptions.
type descs struct {
	memmonSamples, memmonRestarts, memmonGiveUps                                                        *prometheus.Desc
	alertMailsSent, alertsMailed, alertFailures, alertRetries, alertsDropped, alertsGivenUp, alertsHeld *prometheus.Desc
	nginxRenders, nginxTests, nginxReloads, nginxLastSuccess, nginxLastOK, nginxServers, nginxDown      *prometheus.Desc
	reloads, reloadSeconds, lastReloadOK, lastReloadSuccess                                             *prometheus.Desc
	upgrades, rescues, panics, watchdogMissed, startTime, buildInfo, processes                          *prometheus.Desc
	httpConnections, httpRefused                                                                        *prometheus.Desc
}

func newDescs() *descs {
	one := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &descs{
		memmonSamples:  one("gosup_memmon_samples_total", "RSS samples memmon took: one per process per interval."),
		memmonRestarts: one("gosup_memmon_restarts_total", "Restarts memmon made of processes over their memory limit."),
		memmonGiveUps:  one("gosup_memmon_give_ups_total", "Times memmon gave up on a process still over its limit after max_restarts restarts."),
		alertMailsSent: one("gosup_alert_mails_sent_total", "Alert mails sent."),
		alertsMailed:   one("gosup_alerts_mailed_total", "Alerts mailed (a mail may carry several)."),
		alertFailures:  one("gosup_alert_failures_total", "Alert mail attempts that failed."),
		alertRetries:   one("gosup_alert_retries_total", "Alert mail attempts made again after a failed one."),
		alertsDropped:  one("gosup_alerts_dropped_total", "Alerts lost to a bound, or to a last attempt at shutdown that failed."),
		alertsGivenUp:  one("gosup_alerts_given_up_total", "Alerts not mailed after retrying for an hour."),
		alertsHeld:     one("gosup_alerts_held", "Alerts waiting for a mail now (coalescing, rate_limit, a retry)."),

		nginxRenders:     one("gosup_nginx_renders_total", "Renderings of the nginx upstream file, by outcome: changed (written), unchanged, failed.", "outcome"),
		nginxTests:       one("gosup_nginx_tests_total", "Runs of the nginx test command, by outcome.", "outcome"),
		nginxReloads:     one("gosup_nginx_reloads_total", "Runs of the nginx reload command, by outcome: ok, failed, not_running (nginx not running, or not installed).", "outcome"),
		nginxLastSuccess: one("gosup_nginx_last_success_timestamp_seconds", "When an nginx update last left nginx in step with the file, in seconds since the epoch (absent: never)."),
		nginxLastOK:      one("gosup_nginx_last_update_successful", "Whether the last nginx update left nginx in step with the file (rendered, tested and reloaded, or unchanged and loaded): 0 while updates fail or nginx is not running (only with [nginx] output)."),
		nginxServers:     one("gosup_nginx_servers", "Servers in the nginx upstream file on disk (only with [nginx] output)."),
		nginxDown:        one("gosup_nginx_servers_down", "Servers marked down in the nginx upstream file on disk (only with [nginx] output)."),

		reloads:           one("gosup_config_reloads_total", "Configuration reloads that ran, by outcome: ok, invalid (the file did not load: nothing changed), failed (applied with failures, or cut short).", "outcome"),
		reloadSeconds:     one("gosup_config_reload_duration_seconds", "How long the configuration reloads took, from their turn to the end of their rollout."),
		lastReloadOK:      one("gosup_config_last_reload_successful", "1 when the last reload succeeded (or none ran), else 0."),
		lastReloadSuccess: one("gosup_config_last_reload_success_timestamp_seconds", "When the configuration last loaded fine (the daemon's start or a reload), in seconds since the epoch."),

		upgrades:       one("gosup_upgrades_total", "In-place upgrades of the daemon, by outcome (ok: the new image runs).", "outcome"),
		rescues:        one("gosup_rescues_total", "Re-executions of the daemon after a panic in its core."),
		panics:         one("gosup_panics_total", "Panics recovered in the daemon's side features, by component.", "component"),
		watchdogMissed: one("gosup_watchdog_missed_total", "systemd watchdog pings withheld because a loop of the daemon did not answer."),
		startTime:      one("gosup_start_time_seconds", "When the daemon's first image started (kept across upgrades), in seconds since the epoch."),
		buildInfo:      one("gosup_build_info", "The daemon's build: 1, labelled with its version, revision and Go version.", "version", "revision", "goversion"),
		processes:      one("gosup_processes", "Processes configured."),

		httpConnections: one("gosup_http_connections_total", "Connections the read-only HTTP listener served."),
		httpRefused:     one("gosup_http_connections_refused_total", "Connections the read-only HTTP listener refused: max_connections were being served."),
	}
}

// daemonCollector collects the daemon-wide metrics of one snapshot.
type daemonCollector struct {
	snap *Snapshot
	d    *descs
}

func (c *daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, x := range []*prometheus.Desc{
		d.memmonSamples, d.memmonRestarts, d.memmonGiveUps,
		d.alertMailsSent, d.alertsMailed, d.alertFailures, d.alertRetries, d.alertsDropped, d.alertsGivenUp, d.alertsHeld,
		d.nginxRenders, d.nginxTests, d.nginxReloads, d.nginxLastSuccess, d.nginxLastOK, d.nginxServers, d.nginxDown,
		d.reloads, d.reloadSeconds, d.lastReloadOK, d.lastReloadSuccess,
		d.upgrades, d.rescues, d.panics, d.watchdogMissed, d.startTime, d.buildInfo, d.processes,
		d.httpConnections, d.httpRefused} {
		ch <- x
	}
}

func (c *daemonCollector) Collect(ch chan<- prometheus.Metric) {
	s, d := c.snap, c.d
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	seconds := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	gauge(d.processes, float64(len(s.Processes)))

	counter(d.memmonSamples, float64(s.MemmonSamples))
	counter(d.memmonRestarts, float64(s.MemmonRestarts))
	counter(d.memmonGiveUps, float64(s.MemmonGiveUps))
	counter(d.alertMailsSent, float64(s.AlertMailsSent))
	counter(d.alertsMailed, float64(s.AlertsMailed))
	counter(d.alertFailures, float64(s.AlertFailures))
	counter(d.alertRetries, float64(s.AlertRetries))
	counter(d.alertsDropped, float64(s.AlertsDropped))
	counter(d.alertsGivenUp, float64(s.AlertsGivenUp))
	gauge(d.alertsHeld, float64(s.AlertsHeld))

	for i, o := range NginxRenderOutcomes {
		counter(d.nginxRenders, float64(s.NginxRenders[i]), o)
	}
	for i, o := range NginxTestOutcomes {
		counter(d.nginxTests, float64(s.NginxTests[i]), o)
	}
	for i, o := range NginxReloadOutcomes {
		counter(d.nginxReloads, float64(s.NginxReloads[i]), o)
	}
	if !s.NginxLastSuccess.IsZero() {
		gauge(d.nginxLastSuccess, seconds(s.NginxLastSuccess))
	}
	if s.Nginx {
		gauge(d.nginxLastOK, bool01(!s.NginxLastFailed))
		gauge(d.nginxServers, float64(s.NginxServers))
		gauge(d.nginxDown, float64(s.NginxDown))
	}

	for _, o := range ReloadOutcomes {
		counter(d.reloads, float64(s.Reloads[o]), o)
	}
	h := s.ReloadSeconds
	ch <- prometheus.MustNewConstHistogram(d.reloadSeconds, h.Count, h.Sum, h.Buckets)
	gauge(d.lastReloadOK, bool01(s.LastReloadOK))
	if !s.LastReloadSuccess.IsZero() {
		gauge(d.lastReloadSuccess, seconds(s.LastReloadSuccess))
	}

	counter(d.upgrades, float64(s.Upgrades), "ok")
	counter(d.upgrades, float64(s.UpgradeFailures), "failed")
	counter(d.rescues, float64(s.Rescues))
	for component, n := range s.Panics {
		counter(d.panics, float64(n), component)
	}
	counter(d.watchdogMissed, float64(s.WatchdogMissed))
	if !s.StartTime.IsZero() {
		gauge(d.startTime, seconds(s.StartTime))
	}
	gauge(d.buildInfo, 1, s.Version, s.Revision, s.GoVersion)
	counter(d.httpConnections, float64(s.HTTPConnections))
	counter(d.httpRefused, float64(s.HTTPRefused))
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
