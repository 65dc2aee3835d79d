package metrics

import (
	"slices"
	"strconv"
	"time"
)

// textWriter appends families in the text format (version 0.0.4).
type textWriter struct{ b []byte }

// header appends a family's HELP and TYPE lines (no backslash nor newline
// in any help, nothing to escape).
func (w *textWriter) header(name, help, typ string) {
	w.b = append(w.b, "# HELP "...)
	w.b = append(w.b, name...)
	w.b = append(w.b, ' ')
	w.b = append(w.b, help...)
	w.b = append(w.b, "\n# TYPE "...)
	w.b = append(w.b, name...)
	w.b = append(w.b, ' ')
	w.b = append(w.b, typ...)
	w.b = append(w.b, '\n')
}

// sample appends one series: name{labels} v, labels written out already
// (none: "").
func (w *textWriter) sample(name, labels string, v float64) {
	w.b = append(w.b, name...)
	if labels != "" {
		w.b = append(w.b, '{')
		w.b = append(w.b, labels...)
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, ' ')
	w.b = appendFloat(w.b, v)
	w.b = append(w.b, '\n')
}

// one appends a family of one series without labels.
func (w *textWriter) one(name, help, typ string, v float64) {
	w.header(name, help, typ)
	w.sample(name, "", v)
}

// labelled appends one series whose only label has a value to escape.
func (w *textWriter) labelled(name, label, value string, v float64) {
	w.b = append(w.b, name...)
	w.b = append(w.b, '{')
	w.b = append(w.b, label...)
	w.b = append(w.b, '=', '"')
	w.b = appendEscaped(w.b, value)
	w.b = append(w.b, '"', '}', ' ')
	w.b = appendFloat(w.b, v)
	w.b = append(w.b, '\n')
}

// seconds is t in seconds since the epoch.
func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// The series of the families counted by outcome, in the order of their
// label values (client_golang's): index into the snapshot's array, label.
var (
	nginxRenderSeries = [...]struct {
		i      int
		labels string
	}{{0, `outcome="changed"`}, {2, `outcome="failed"`}, {1, `outcome="unchanged"`}}
	nginxTestSeries = [...]struct {
		i      int
		labels string
	}{{1, `outcome="failed"`}, {0, `outcome="ok"`}}
	nginxReloadSeries = [...]struct {
		i      int
		labels string
	}{{1, `outcome="failed"`}, {2, `outcome="not_running"`}, {0, `outcome="ok"`}}
	reloadSeries = [...]string{"failed", "invalid", "ok"}
)

// appendDaemon appends to b the daemon-wide families of s, in the order
// of their names (docs/observability.md lists them). A family without a
// series (a time not yet come, nginx without an output, no panic) is
// left out.
func appendDaemon(b []byte, s *Snapshot) []byte {
	w := textWriter{b}
	const c, g = "counter", "gauge"
	w.one("gosup_alert_failures_total", "Alert mail attempts that failed.", c, float64(s.AlertFailures))
	w.one("gosup_alert_mails_sent_total", "Alert mails sent.", c, float64(s.AlertMailsSent))
	w.one("gosup_alert_retries_total", "Alert mail attempts made again after a failed one.", c, float64(s.AlertRetries))
	w.one("gosup_alerts_dropped_total", "Alerts lost to a bound, or to a last attempt at shutdown that failed.", c, float64(s.AlertsDropped))
	w.one("gosup_alerts_given_up_total", "Alerts not mailed after retrying for an hour.", c, float64(s.AlertsGivenUp))
	w.one("gosup_alerts_held", "Alerts waiting for a mail now (coalescing, rate_limit, a retry).", g, float64(s.AlertsHeld))
	w.one("gosup_alerts_mailed_total", "Alerts mailed (a mail may carry several).", c, float64(s.AlertsMailed))

	const buildInfo = "gosup_build_info"
	w.header(buildInfo, "The daemon's build: 1, labelled with its version, revision and Go version.", g)
	w.b = append(w.b, buildInfo+`{goversion="`...)
	w.b = appendEscaped(w.b, s.GoVersion)
	w.b = append(w.b, `",revision="`...)
	w.b = appendEscaped(w.b, s.Revision)
	w.b = append(w.b, `",version="`...)
	w.b = appendEscaped(w.b, s.Version)
	w.b = append(w.b, "\"} 1\n"...)

	if !s.LastReloadSuccess.IsZero() {
		w.one("gosup_config_last_reload_success_timestamp_seconds", "When the configuration last loaded fine (the daemon's start or a reload), in seconds since the epoch.", g, seconds(s.LastReloadSuccess))
	}
	w.one("gosup_config_last_reload_successful", "1 when the last reload succeeded (or none ran), else 0.", g, bool01(s.LastReloadOK))
	w.histogram("gosup_config_reload_duration_seconds", "How long the configuration reloads took, from their turn to the end of their rollout.", &s.ReloadSeconds)
	const reloads = "gosup_config_reloads_total"
	w.header(reloads, "Configuration reloads that ran, by outcome: ok, invalid (the file did not load: nothing changed), failed (applied with failures, or cut short).", c)
	for _, o := range reloadSeries {
		w.labelled(reloads, "outcome", o, float64(s.Reloads[o]))
	}

	if s.HAProxy {
		const haproxyReloads = "gosup_haproxy_reloads_total"
		w.header(haproxyReloads, "Runs of the HAProxy reload command, by outcome: ok, failed, not_running (only with [haproxy]).", c)
		for _, x := range nginxReloadSeries {
			w.sample(haproxyReloads, x.labels, float64(s.HAProxyReloads[x.i]))
		}
		const haproxyRuntime = "gosup_haproxy_runtime_updates_total"
		w.header(haproxyRuntime, "Changes of server states alone applied through HAProxy's runtime API instead of a reload, by outcome (failed: reloaded instead).", c)
		w.sample(haproxyRuntime, `outcome="failed"`, float64(s.HAProxyRuntime[1]))
		w.sample(haproxyRuntime, `outcome="ok"`, float64(s.HAProxyRuntime[0]))
		w.one("gosup_haproxy_servers", "Servers in the HAProxy file on disk (only with [haproxy]).", g, float64(s.HAProxyServers))
		w.one("gosup_haproxy_servers_down", "Servers marked down (disabled) in the HAProxy file on disk.", g, float64(s.HAProxyDown))
	}

	w.one("gosup_http_connections_refused_total", "Connections the read-only HTTP listener refused: max_connections were being served.", c, float64(s.HTTPRefused))
	w.one("gosup_http_connections_total", "Connections the read-only HTTP listener served.", c, float64(s.HTTPConnections))

	w.one("gosup_memmon_give_ups_total", "Times memmon gave up on a process still over its limit after max_restarts restarts.", c, float64(s.MemmonGiveUps))
	w.one("gosup_memmon_restarts_total", "Restarts memmon made of processes over their memory limit.", c, float64(s.MemmonRestarts))
	w.one("gosup_memmon_samples_total", "RSS samples memmon took: one per process per interval.", c, float64(s.MemmonSamples))

	if !s.NginxLastSuccess.IsZero() {
		w.one("gosup_nginx_last_success_timestamp_seconds", "When an nginx update last left nginx in step with the file, in seconds since the epoch (absent: never).", g, seconds(s.NginxLastSuccess))
	}
	if s.Nginx {
		w.one("gosup_nginx_last_update_successful", "Whether the last nginx update left nginx in step with the file (rendered, tested and reloaded, or unchanged and loaded): 0 while updates fail or nginx is not running (only with [nginx] output).", g, bool01(!s.NginxLastFailed))
	}
	const nginxReloads = "gosup_nginx_reloads_total"
	w.header(nginxReloads, "Runs of the nginx reload command, by outcome: ok, failed, not_running (nginx not running, or not installed).", c)
	for _, x := range nginxReloadSeries {
		w.sample(nginxReloads, x.labels, float64(s.NginxReloads[x.i]))
	}
	const nginxRenders = "gosup_nginx_renders_total"
	w.header(nginxRenders, "Renderings of the nginx upstream file, by outcome: changed (written), unchanged, failed.", c)
	for _, x := range nginxRenderSeries {
		w.sample(nginxRenders, x.labels, float64(s.NginxRenders[x.i]))
	}
	if s.Nginx {
		w.one("gosup_nginx_servers", "Servers in the nginx upstream file on disk (only with [nginx] output).", g, float64(s.NginxServers))
		w.one("gosup_nginx_servers_down", "Servers marked down in the nginx upstream file on disk (only with [nginx] output).", g, float64(s.NginxDown))
	}
	const nginxTests = "gosup_nginx_tests_total"
	w.header(nginxTests, "Runs of the nginx test command, by outcome.", c)
	for _, x := range nginxTestSeries {
		w.sample(nginxTests, x.labels, float64(s.NginxTests[x.i]))
	}

	if len(s.Panics) > 0 {
		const panics = "gosup_panics_total"
		w.header(panics, "Panics recovered in the daemon's side features, by component.", c)
		components := make([]string, 0, len(s.Panics))
		for component := range s.Panics {
			components = append(components, component)
		}
		slices.Sort(components)
		for _, component := range components {
			w.labelled(panics, "component", component, float64(s.Panics[component]))
		}
	}
	w.one("gosup_processes", "Processes configured.", g, float64(len(s.Processes)))
	if s.Registry {
		w.one("gosup_registry_failed_writes_total", "Puts and deletes of upstream members etcd did not take (each is tried again; only with a [registry] that publishes).", c, float64(s.RegistryFailedWrites))
		w.one("gosup_registry_lease_grants_total", "Leases the daemon was granted in etcd: more than one after a lease expired or was lost, or a reload changed [registry] (only with a [registry] that publishes).", c, float64(s.RegistryLeaseGrants))
		w.one("gosup_registry_members", "Upstream members etcd holds for this daemon (only with a [registry] that publishes).", g, float64(s.RegistryMembers))
		w.one("gosup_registry_members_down", "Of those, marked down (draining before a planned stop).", g, float64(s.RegistryDown))
		w.one("gosup_registry_reachable", "1 while etcd answers the registry's writes and lease renewals, 0 while it does not (only with a [registry] that publishes).", g, bool01(s.RegistryReachable))
	}
	if s.Watch {
		w.one("gosup_registry_watch_dropped_total", "Keys under the registry's prefix the watch left out past its bounds (only with an upstream rendered from the registry).", c, float64(s.WatchDropped))
		w.one("gosup_registry_watch_ignored_keys", "Keys under the registry's prefix the watch ignores now: not members, or not safe in a balancer's file.", g, float64(s.WatchIgnored))
		w.one("gosup_registry_watch_members", "Every host's upstream members the registry watch holds (the last known while etcd is unreachable).", g, float64(s.WatchMembers))
		w.one("gosup_registry_watch_reachable", "1 while the registry watch reads etcd, 0 while it does not (the members last known are rendered).", g, bool01(s.WatchReachable))
	}
	w.one("gosup_rescues_total", "Re-executions of the daemon after a panic in its core.", c, float64(s.Rescues))
	if !s.StartTime.IsZero() {
		w.one("gosup_start_time_seconds", "When the daemon's first image started (kept across upgrades), in seconds since the epoch.", g, seconds(s.StartTime))
	}
	const upgrades = "gosup_upgrades_total"
	w.header(upgrades, "In-place upgrades of the daemon, by outcome (ok: the new image runs).", c)
	w.sample(upgrades, `outcome="failed"`, float64(s.UpgradeFailures))
	w.sample(upgrades, `outcome="ok"`, float64(s.Upgrades))
	w.one("gosup_watchdog_missed_total", "systemd watchdog pings withheld because a loop of the daemon did not answer.", c, float64(s.WatchdogMissed))
	return w.b
}

// histogram appends a histogram family of one series without labels: its
// buckets by upper bound, then +Inf (the count), the sum and the count.
func (w *textWriter) histogram(name, help string, h *Histogram) {
	w.header(name, help, "histogram")
	bounds := make([]float64, 0, len(h.Buckets))
	for le := range h.Buckets {
		bounds = append(bounds, le)
	}
	slices.Sort(bounds)
	for _, le := range bounds {
		w.b = append(w.b, name...)
		w.b = append(w.b, `_bucket{le="`...)
		w.b = strconv.AppendFloat(w.b, le, 'g', -1, 64)
		w.b = append(w.b, `"} `...)
		w.b = appendFloat(w.b, float64(h.Buckets[le]))
		w.b = append(w.b, '\n')
	}
	w.b = append(w.b, name...)
	w.b = append(w.b, `_bucket{le="+Inf"} `...)
	w.b = appendFloat(w.b, float64(h.Count))
	w.b = append(w.b, '\n')
	w.b = append(w.b, name...)
	w.b = append(w.b, "_sum "...)
	w.b = appendFloat(w.b, h.Sum)
	w.b = append(w.b, '\n')
	w.b = append(w.b, name...)
	w.b = append(w.b, "_count "...)
	w.b = appendFloat(w.b, float64(h.Count))
	w.b = append(w.b, '\n')
}
