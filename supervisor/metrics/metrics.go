// Package metrics exports the daemon's state as Prometheus metrics.
//
// One collector reads a Snapshot of the daemon at each scrape and turns it
// into constant metrics: nothing is registered per process, so processes
// come and go (a reload) without any registration to keep in step. The
// registry is the package's own (never prometheus.DefaultRegisterer), with
// the Go runtime's and the process's collectors beside it.
package metrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// States are the process states, in gosup_process_state's order.
var States = []string{"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"}

// ExitReasons are the reasons gosup_process_exits_total counts, in the
// order of Process.Exits: expected (an exit code in exitcodes, without a
// stop), unexpected (another code, or killed by gosup for not becoming
// ready), killed (a signal gosup did not send to stop it), stopped (gosup
// stopped it), memmon (memmon's restart stopped it).
var ExitReasons = []string{"expected", "unexpected", "killed", "stopped", "memmon"}

// Reload outcomes, upgrade outcomes, nginx outcomes: the label values the
// counters always show (0 until counted).
var (
	ReloadOutcomes      = []string{"ok", "invalid", "failed"}
	NginxRenderOutcomes = []string{"changed", "unchanged", "failed"}
	NginxTestOutcomes   = []string{"ok", "failed"}
	NginxReloadOutcomes = []string{"ok", "failed", "not_running"}
)

// processLabels label every per-process metric.
var processLabels = []string{"group", "program", "process", "port"}

// The handler's defaults.
const (
	defaultMaxInFlight   = 4
	defaultScrapeTimeout = 10 * time.Second
)

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
	// nginx in step (zero: none), and the servers in the file on disk,
	// and how many of them are down (only with Nginx set: [nginx] has an
	// output).
	NginxRenders            [3]int64
	NginxTests              [2]int64
	NginxReloads            [3]int64
	NginxLastSuccess        time.Time
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
	// MaxInFlight bounds the scrapes served at once; more get a 503
	// (0: 4).
	MaxInFlight int
	// Timeout bounds a scrape (0: 10 s).
	Timeout time.Duration
	// Logger gets the errors of a scrape (nil: slog.Default()).
	Logger *slog.Logger
}

// NewHandler serves the metrics of the snapshots source takes, one a
// scrape, with the Go runtime's and this process's.
func NewHandler(source func() Snapshot, o Options) http.Handler {
	reg := NewRegistry(source)
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = defaultMaxInFlight
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultScrapeTimeout
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            errorLog{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: o.MaxInFlight,
		Timeout:             o.Timeout,
		// Registry: the error metric promhttp_metric_handler_errors_total.
		Registry: reg,
	})
}

// NewRegistry is a registry of the daemon's metrics (from source), the
// Go runtime's and this process's.
func NewRegistry(source func() Snapshot) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(source),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// errorLog is promhttp's Logger on slog.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) { l.log.Warn("metrics scrape", "err", v) }

// collector reads a Snapshot at each Collect.
type collector struct {
	source func() Snapshot
	descs  descs
}

// descs are the metrics' descriptions.
type descs struct {
	state, up, startTime, restarts, exits, cpu, rss, treeRSS, fds, logDropped *prometheus.Desc

	memmonSamples, memmonRestarts, memmonGiveUps                                                        *prometheus.Desc
	alertMailsSent, alertsMailed, alertFailures, alertRetries, alertsDropped, alertsGivenUp, alertsHeld *prometheus.Desc
	nginxRenders, nginxTests, nginxReloads, nginxLastSuccess, nginxServers, nginxDown                   *prometheus.Desc
	reloads, reloadSeconds, lastReloadOK, lastReloadSuccess                                             *prometheus.Desc
	upgrades, rescues, panics, watchdogMissed, startTime0, buildInfo, processes                         *prometheus.Desc
	httpConnections, httpRefused                                                                        *prometheus.Desc
}

func newCollector(source func() Snapshot) *collector {
	proc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(append([]string(nil), processLabels...), extra...), nil)
	}
	one := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{source: source, descs: descs{
		state:      proc("gosup_process_state", "The process's state: 1 for the state it is in, 0 for the others (a stateset).", "state"),
		up:         proc("gosup_process_up", "1 when the process is RUNNING, else 0."),
		startTime:  proc("gosup_process_start_time_seconds", "When the process's child started, in seconds since the epoch (only while a child runs)."),
		restarts:   proc("gosup_process_restarts_total", "The process's spawns after its first: restarts of every kind."),
		exits:      proc("gosup_process_exits_total", "The process's exits, by reason: expected (a code in exitcodes), unexpected (another code, or killed by gosup as not ready), killed (a signal gosup did not send to stop it), stopped (gosup stopped it), memmon (memmon's restart).", "reason"),
		cpu:        proc("gosup_process_cpu_seconds_total", "CPU time the process's child has used (its own threads, not its descendants')."),
		rss:        proc("gosup_process_resident_memory_bytes", "Resident memory of the process's child."),
		treeRSS:    proc("gosup_process_tree_resident_memory_bytes", "Resident memory of the process's child and its descendants."),
		fds:        proc("gosup_process_open_fds", "Files the process's child has open."),
		logDropped: proc("gosup_process_log_dropped_bytes_total", "Output bytes of the process lost (a log that failed, a copier that panicked), by stream.", "stream"),

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
		startTime0:     one("gosup_start_time_seconds", "When the daemon's first image started (kept across upgrades), in seconds since the epoch."),
		buildInfo:      one("gosup_build_info", "The daemon's build: 1, labelled with its version, revision and Go version.", "version", "revision", "goversion"),
		processes:      one("gosup_processes", "Processes configured."),

		httpConnections: one("gosup_http_connections_total", "Connections the read-only HTTP listener served."),
		httpRefused:     one("gosup_http_connections_refused_total", "Connections the read-only HTTP listener refused: max_connections were being served."),
	}}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	for _, x := range []*prometheus.Desc{d.state, d.up, d.startTime, d.restarts, d.exits, d.cpu, d.rss, d.treeRSS, d.fds, d.logDropped,
		d.memmonSamples, d.memmonRestarts, d.memmonGiveUps,
		d.alertMailsSent, d.alertsMailed, d.alertFailures, d.alertRetries, d.alertsDropped, d.alertsGivenUp, d.alertsHeld,
		d.nginxRenders, d.nginxTests, d.nginxReloads, d.nginxLastSuccess, d.nginxServers, d.nginxDown,
		d.reloads, d.reloadSeconds, d.lastReloadOK, d.lastReloadSuccess,
		d.upgrades, d.rescues, d.panics, d.watchdogMissed, d.startTime0, d.buildInfo, d.processes,
		d.httpConnections, d.httpRefused} {
		ch <- x
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.source()
	d := &c.descs
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	seconds := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	for i := range s.Processes {
		c.collectProcess(ch, &s.Processes[i])
	}
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
		gauge(d.startTime0, seconds(s.StartTime))
	}
	gauge(d.buildInfo, 1, s.Version, s.Revision, s.GoVersion)
	counter(d.httpConnections, float64(s.HTTPConnections))
	counter(d.httpRefused, float64(s.HTTPRefused))
}

// collectProcess sends the metrics of one process.
func (c *collector) collectProcess(ch chan<- prometheus.Metric, p *Process) {
	d := &c.descs
	port := ""
	if p.Port > 0 {
		port = strconv.Itoa(p.Port)
	}
	labels := [...]string{p.Group, p.Program, p.Name, port, ""}
	send := func(desc *prometheus.Desc, t prometheus.ValueType, v float64, extra string) {
		ls := labels[:4]
		if extra != "" {
			labels[4] = extra
			ls = labels[:5]
		}
		ch <- prometheus.MustNewConstMetric(desc, t, v, ls...)
	}
	for _, st := range States {
		send(d.state, prometheus.GaugeValue, bool01(st == p.State), st)
	}
	send(d.up, prometheus.GaugeValue, bool01(p.State == "RUNNING"), "")
	if !p.StartTime.IsZero() {
		send(d.startTime, prometheus.GaugeValue, float64(p.StartTime.UnixNano())/1e9, "")
	}
	send(d.restarts, prometheus.CounterValue, float64(p.Restarts), "")
	for i, r := range ExitReasons {
		send(d.exits, prometheus.CounterValue, float64(p.Exits[i]), r)
	}
	if p.Sampled {
		if p.CPUOK {
			send(d.cpu, prometheus.CounterValue, p.CPU.Seconds(), "")
		}
		send(d.rss, prometheus.GaugeValue, float64(p.RSS), "")
		send(d.treeRSS, prometheus.GaugeValue, float64(max(p.TreeRSS, p.RSS)), "")
		if p.FDsOK {
			send(d.fds, prometheus.GaugeValue, float64(p.FDs), "")
		}
	}
	send(d.logDropped, prometheus.CounterValue, float64(p.StdoutDropped), "stdout")
	send(d.logDropped, prometheus.CounterValue, float64(p.StderrDropped), "stderr")
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
