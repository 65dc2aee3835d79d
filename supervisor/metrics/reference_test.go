package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The daemon-wide families through client_golang, as the handler wrote
// them before it wrote them by hand: the reference appendDaemon is held to.

// descs are the daemon-wide metrics' descriptions.
type descs struct {
	memmonSamples, memmonRestarts, memmonGiveUps                                                                          *prometheus.Desc
	alertMailsSent, alertsMailed, alertFailures, alertRetries, alertsDropped, alertsGivenUp, alertsHeld                   *prometheus.Desc
	nginxRenders, nginxTests, nginxReloads, nginxLastSuccess, nginxLastOK, nginxServers, nginxDown                        *prometheus.Desc
	reloads, reloadSeconds, lastReloadOK, lastReloadSuccess                                                               *prometheus.Desc
	upgrades, rescues, panics, watchdogMissed, startTime, buildInfo, processes                                            *prometheus.Desc
	httpConnections, httpRefused                                                                                          *prometheus.Desc
	registryFailedWrites, registryLeaseGrants, registryMembers, registryDown, registryReachable                           *prometheus.Desc
	haproxyReloads, haproxyRuntime, haproxyServers, haproxyDown, watchDropped, watchIgnored, watchMembers, watchReachable *prometheus.Desc
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

		registryFailedWrites: one("gosup_registry_failed_writes_total", "Puts and deletes of upstream members etcd did not take (each is tried again; only with a [registry] that publishes)."),
		registryLeaseGrants:  one("gosup_registry_lease_grants_total", "Leases the daemon was granted in etcd: more than one after a lease expired or was lost, or a reload changed [registry] (only with a [registry] that publishes)."),
		registryMembers:      one("gosup_registry_members", "Upstream members etcd holds for this daemon (only with a [registry] that publishes)."),
		registryDown:         one("gosup_registry_members_down", "Of those, marked down (draining before a planned stop)."),
		registryReachable:    one("gosup_registry_reachable", "1 while etcd answers the registry's writes and lease renewals, 0 while it does not (only with a [registry] that publishes)."),

		haproxyReloads: one("gosup_haproxy_reloads_total", "Runs of the HAProxy reload command, by outcome: ok, failed, not_running (only with [haproxy]).", "outcome"),
		haproxyRuntime: one("gosup_haproxy_runtime_updates_total", "Changes of server states alone applied through HAProxy's runtime API instead of a reload, by outcome (failed: reloaded instead).", "outcome"),
		haproxyServers: one("gosup_haproxy_servers", "Servers in the HAProxy file on disk (only with [haproxy])."),
		haproxyDown:    one("gosup_haproxy_servers_down", "Servers marked down (disabled) in the HAProxy file on disk."),
		watchDropped:   one("gosup_registry_watch_dropped_total", "Keys under the registry's prefix the watch left out past its bounds (only with an upstream rendered from the registry)."),
		watchIgnored:   one("gosup_registry_watch_ignored_keys", "Keys under the registry's prefix the watch ignores now: not members, or not safe in a balancer's file."),
		watchMembers:   one("gosup_registry_watch_members", "Every host's upstream members the registry watch holds (the last known while etcd is unreachable)."),
		watchReachable: one("gosup_registry_watch_reachable", "1 while the registry watch reads etcd, 0 while it does not (the members last known are rendered)."),
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
		d.httpConnections, d.httpRefused,
		d.registryFailedWrites, d.registryLeaseGrants, d.registryMembers, d.registryDown, d.registryReachable,
		d.haproxyReloads, d.haproxyRuntime, d.haproxyServers, d.haproxyDown, d.watchDropped, d.watchIgnored, d.watchMembers, d.watchReachable} {
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
	if s.Registry {
		counter(d.registryFailedWrites, float64(s.RegistryFailedWrites))
		counter(d.registryLeaseGrants, float64(s.RegistryLeaseGrants))
		gauge(d.registryMembers, float64(s.RegistryMembers))
		gauge(d.registryDown, float64(s.RegistryDown))
		gauge(d.registryReachable, bool01(s.RegistryReachable))
	}
	if s.HAProxy {
		for i, o := range NginxReloadOutcomes {
			counter(d.haproxyReloads, float64(s.HAProxyReloads[i]), o)
		}
		counter(d.haproxyRuntime, float64(s.HAProxyRuntime[0]), "ok")
		counter(d.haproxyRuntime, float64(s.HAProxyRuntime[1]), "failed")
		gauge(d.haproxyServers, float64(s.HAProxyServers))
		gauge(d.haproxyDown, float64(s.HAProxyDown))
	}
	if s.Watch {
		counter(d.watchDropped, float64(s.WatchDropped))
		gauge(d.watchIgnored, float64(s.WatchIgnored))
		gauge(d.watchMembers, float64(s.WatchMembers))
		gauge(d.watchReachable, bool01(s.WatchReachable))
	}
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
