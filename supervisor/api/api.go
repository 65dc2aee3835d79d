// Package api is gosup's control API as it travels over the unix socket:
// the request and response bodies, the HTTP handler that serves them for a
// Daemon (the supervisor), and the Client that cmd/gosup uses to speak to
// it. It depends on nothing else in gosup, so that a client needs none of
// the daemon.
//
// The API is a closed set of verbs over HTTP+JSON. Nothing in it runs a
// command or reads a path chosen by the client: tail reads only the log
// files named in the configuration.
package api

import (
	"strconv"
	"time"
)

// ProcStatus is one process as the API reports it.
type ProcStatus struct {
	Name        string  `json:"name"`    // group:process
	Group       string  `json:"group"`   // the address group: the program's group key, by default its name
	Program     string  `json:"program"` // the [program.NAME] it comes from
	Process     string  `json:"process"`
	State       string  `json:"state"`
	Pid         int     `json:"pid"`
	Port        int     `json:"port"`
	UptimeS     float64 `json:"uptime_s"`
	Restarts    int     `json:"restarts"`
	ExitStatus  *int    `json:"exit_status"`
	SpawnError  string  `json:"spawn_error"`
	Description string  `json:"description"`
	// LastExit is how the process's last child exited ("" if none has),
	// at LastExitAt: of a process running again, the exit it was
	// restarted after.
	LastExit   string    `json:"last_exit,omitempty"`
	LastExitAt time.Time `json:"last_exit_at,omitzero"`
	Stdout     string    `json:"stdout_logfile,omitempty"`
	Stderr     string    `json:"stderr_logfile,omitempty"`
	// Sampled says the figures below were read (every 2 s, at most 3 s
	// before the status, or at the status; whether or not [memmon] is
	// configured): false when no process runs, or it could not be read
	// (gone meanwhile). A zombie is sampled, at RSS 0.
	Sampled bool `json:"sampled"`
	// CPUPercent is the process's CPU use, in percent of one core (as
	// top: 200 is two cores busy), over the last CPUWindowS seconds
	// (between 1 s and a few: the daemon reads every child's CPU clock
	// every 2 s). CPUWindowS is 0, and there is no CPU figure, for a
	// process younger than 1 s. RSSBytes is its own resident memory, and
	// TreeRSSBytes that of it and its descendants when it has any (0
	// otherwise).
	CPUPercent      float64   `json:"cpu_percent"`
	CPUWindowS      float64   `json:"cpu_window_s"`
	RSSBytes        int64     `json:"rss_bytes"`
	TreeRSSBytes    int64     `json:"tree_rss_bytes,omitempty"`
	MemmonRestartAt time.Time `json:"memmon_restart_at,omitzero"`
	MemmonReason    string    `json:"memmon_reason,omitempty"`
	// MemmonGaveUp says why memmon no longer restarts the process
	// (max_restarts within restart_window), since MemmonGaveUpAt.
	MemmonGaveUp   string    `json:"memmon_gave_up,omitempty"`
	MemmonGaveUpAt time.Time `json:"memmon_gave_up_at,omitzero"`
	// IllegalMoves counts operations the process's state machine refused
	// as illegal: each is a gosup bug, logged at ERROR.
	IllegalMoves int `json:"illegal_moves,omitempty"`
	// LogDroppedBytes counts output the process wrote that reached no log:
	// a log file that refused it (disk full), or a log copier that
	// panicked and discarded the rest of that spawn's output.
	LogDroppedBytes int64 `json:"log_dropped_bytes,omitempty"`
	// StdoutDroppedBytes and StderrDroppedBytes split LogDroppedBytes by
	// stream (stderr redirected to stdout counts as stdout).
	StdoutDroppedBytes int64 `json:"stdout_dropped_bytes,omitempty"`
	StderrDroppedBytes int64 `json:"stderr_dropped_bytes,omitempty"`
	// LogFailing lists the logs that refuse output now (disk full,
	// read-only): their output is dropped and counted until they take it
	// again.
	LogFailing []LogFailure `json:"log_failing,omitempty"`
	// OldSpec says a rollout under way (ctl restart --rolling, a reload's
	// restarts, touch_reload) has yet to restart the process: it still
	// runs the spec the rollout replaces.
	OldSpec bool `json:"old_spec,omitempty"`
}

// LogFailure is one log that refuses output now.
type LogFailure struct {
	Stream string    `json:"stream"` // stdout or stderr
	Path   string    `json:"path"`   // the file, or "syslog"
	Since  time.Time `json:"since"`
	Error  string    `json:"error"` // the last write's error
	// DroppedBytes is what was lost since then.
	DroppedBytes int64 `json:"dropped_bytes"`
}

// Info describes the daemon.
type Info struct {
	Pid     int     `json:"pid"`
	Config  string  `json:"config"`
	Socket  string  `json:"socket"`
	UptimeS float64 `json:"uptime_s"`
	// State is starting (the socket answers, the processes are being
	// started or adopted), running or stopping (shut down); "" from a
	// daemon older than the field.
	State   string `json:"state,omitempty"`
	Version string `json:"version"`
	// Revision is the build's VCS revision ("" if unknown); Binary the
	// file the daemon runs (its next upgrade's default), GoVersion the
	// toolchain that built it.
	Revision  string `json:"revision,omitempty"`
	GoVersion string `json:"go_version,omitempty"`
	Binary    string `json:"binary"`
	// StartedAt is when the daemon first started (an upgrade keeps it);
	// UptimeS counts from then. Upgrades counts the in-place upgrades
	// since, UpgradedAt is the last one and UpgradedFrom the version it
	// replaced; Rescues counts the re-executions after a panic in the
	// daemon's core. UpgradeFailures counts the upgrades that failed
	// after their check (the daemon went on as before), LastUpgradeError
	// says why the last did.
	StartedAt        time.Time `json:"started_at"`
	Upgrades         int       `json:"upgrades"`
	UpgradedAt       time.Time `json:"upgraded_at,omitzero"`
	UpgradedFrom     string    `json:"upgraded_from,omitempty"`
	Rescues          int       `json:"rescues,omitempty"`
	UpgradeFailures  int       `json:"upgrade_failures"`
	LastUpgradeError string    `json:"last_upgrade_error,omitempty"`
	// TailFiles is how many log files tails hold open now, for how many
	// Tails; TailFilesMax bounds them, all tails together, and
	// TailsRefused counts the tails refused for it.
	TailFiles    int   `json:"tail_files"`
	Tails        int   `json:"tails"`
	TailFilesMax int   `json:"tail_files_max"`
	TailsRefused int64 `json:"tails_refused"`
	// Nginx is the last nginx update's outcome (nil without [nginx]).
	Nginx *NginxStatus `json:"nginx,omitempty"`
	// Registry is how publishing to etcd goes (nil without a [registry]
	// that publishes: one with a host).
	Registry *RegistryStatus `json:"registry,omitempty"`
	// HAProxy is the last HAProxy update's outcome (nil without
	// [haproxy]).
	HAProxy *NginxStatus `json:"haproxy,omitempty"`
	// Watch is how the registry watch goes (nil unless an upstream is
	// rendered from the registry).
	Watch *WatchStatus `json:"watch,omitempty"`
	// memmon's counters (zero without [memmon] / [email]): the mails
	// sent and the alerts in them, the alerts held for a mail now, the
	// attempts that failed, the alerts held for another attempt now (the
	// next at AlertRetryAt; among those held), those given up (not
	// mailed after retrying for an hour), filtered (alert_max_uptime) and
	// dropped (past a bound). Every alert is mailed, held, given up,
	// filtered or dropped.
	MemmonRestarts int64     `json:"memmon_restarts"`
	AlertsSent     int64     `json:"alerts_sent"`
	AlertsMailed   int64     `json:"alerts_mailed"`
	AlertsHeld     int64     `json:"alerts_held"`
	AlertFailures  int64     `json:"alert_failures"`
	AlertsRetrying int64     `json:"alerts_retrying"`
	AlertRetryAt   time.Time `json:"alert_retry_at,omitzero"`
	AlertsGivenUp  int64     `json:"alerts_given_up"`
	AlertsFiltered int64     `json:"alerts_filtered"`
	AlertsDropped  int64     `json:"alerts_dropped"`
	// WatchdogMissed counts the systemd watchdog pings withheld because
	// one of the daemon's loops did not answer in time;
	// WatchdogLastFailure says when and which ("" when none).
	WatchdogMissed      int64  `json:"watchdog_missed"`
	WatchdogLastFailure string `json:"watchdog_last_failure,omitempty"`
	// LastReload is the outcome of the last reload (zero before any).
	LastReload ReloadStatus `json:"last_reload"`
	// LogDroppedBytes is the output lost by all processes (the sum of
	// their log_dropped_bytes), LogDroppedProcesses how many lost some,
	// and LogsFailing how many logs refuse output now.
	LogDroppedBytes     int64 `json:"log_dropped_bytes"`
	LogDroppedProcesses int   `json:"log_dropped_processes"`
	LogsFailing         int   `json:"logs_failing"`
	// Panics lists the side features that panicked (each a gosup bug),
	// by component: the processes were left alone.
	Panics []Panic `json:"panics,omitempty"`
	// HTTP is the read-only HTTP listener (nil without [http] listen).
	HTTP *HTTPInfo `json:"http,omitempty"`
}

// HTTPInfo is the read-only HTTP listener ([http]) as ctl info shows it.
type HTTPInfo struct {
	Listen string `json:"listen"`
	// State is listening, failed (Error says why, since ErrorAt, after
	// Attempts attempts; it is tried again), starting or stopped.
	State    string    `json:"state"`
	Error    string    `json:"error,omitempty"`
	ErrorAt  time.Time `json:"error_at,omitzero"`
	Attempts int       `json:"attempts,omitempty"`
	// Auth is none, basic, bearer or "basic, bearer".
	Auth string `json:"auth"`
	// Accepted counts the connections served, Refused those refused
	// because MaxConnections were being served; Active is how many are
	// being served now. The counts go on across reloads and upgrades.
	MaxConnections int   `json:"max_connections"`
	Accepted       int64 `json:"accepted"`
	Refused        int64 `json:"refused"`
	Active         int64 `json:"active"`
}

// Build names a gosup build.
type Build struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Go       string `json:"go,omitempty"`
}

// UpgradeRequest is the body of upgrade.
type UpgradeRequest struct {
	// Binary is the file to execute ("": the one the daemon was started
	// from).
	Binary string `json:"binary,omitempty"`
}

// UpgradeReply says an upgrade passed its checks and is under way: the
// daemon re-executes once the reply is sent. The client then waits until
// Info shows Upgrades above this (done) or UpgradeFailures above this
// (failed, with LastUpgradeError).
type UpgradeReply struct {
	Pid      int    `json:"pid"`
	Binary   string `json:"binary"`
	From     Build  `json:"from"`
	To       Build  `json:"to"`
	Upgrades int    `json:"upgrades"`
	Failures int    `json:"failures"`
}

// Panic is what the panics of one component (log copier, readiness
// probe, nginx manager, memmon, alerter, file watcher, touch_reload,
// reload, control socket) left.
type Panic struct {
	Component string    `json:"component"`
	Count     int64     `json:"count"`
	LastAt    time.Time `json:"last_at"`
	Last      string    `json:"last"`  // the last panic's value, after where it hit
	State     string    `json:"state"` // what became of the feature
}

// ActionRequest is the body of start, stop, restart and signal.
type ActionRequest struct {
	Patterns []string `json:"patterns"`
	Signal   string   `json:"signal,omitempty"`
	// Rolling makes a restart go at most max_unavailable processes of a
	// program at a time, each drained from nginx and waited for until ready.
	Rolling bool `json:"rolling,omitempty"`
}

// ActionResponse lists one result per matched process.
type ActionResponse struct {
	Results []Result `json:"results"`
}

// Result is the outcome of a request for one process.
type Result struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// ReopenRequest is the body of reopen-logs: the processes whose logs to
// reopen (all when none).
type ReopenRequest struct {
	Patterns []string `json:"patterns,omitempty"`
}

// ReloadRequest is the body of reload.
type ReloadRequest struct {
	DryRun bool `json:"dry_run"`
}

// ReloadPlan is a reload's difference and, once applied, its outcome.
type ReloadPlan struct {
	Config  string   `json:"config"`
	DryRun  bool     `json:"dry_run"`
	Changes []Change `json:"changes"`
	Notes   []string `json:"notes,omitempty"`
	Results []Result `json:"results,omitempty"`
	// Nginx is the outcome of the nginx update the reload ends with ("ok"
	// once nginx has loaded it, or why not); empty without [nginx] or on
	// a dry run. The reload returns only once it is known.
	Nginx string `json:"nginx,omitempty"`
	// NginxNotRunning says Nginx is no failure: the file is written (and
	// checked), and nginx is not running (or not installed) to load it;
	// it is reloaded once it runs, as when gosup starts before nginx.
	NginxNotRunning bool `json:"nginx_not_running,omitempty"`
}

// Change is what a reload does to one program.
type Change struct {
	Program string `json:"program"`
	// Action is added, removed, changed or unchanged.
	Action  string   `json:"action"`
	Start   []string `json:"start,omitempty"`    // new processes
	Stop    []string `json:"stop,omitempty"`     // processes that go away
	Restart []string `json:"restart,omitempty"`  // processes restarted, rolling
	Why     []string `json:"why,omitempty"`      // the spawn settings whose change restarts them
	InPlace []string `json:"in_place,omitempty"` // settings applied without a restart
}

// ReloadStatus is the outcome of the last reload.
type ReloadStatus struct {
	At    time.Time `json:"at,omitzero"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// RegistryStatus is how publishing the upstream members to etcd goes.
type RegistryStatus struct {
	Endpoints []string `json:"endpoints"`
	Prefix    string   `json:"prefix"`
	Host      string   `json:"host"`
	TTLS      float64  `json:"ttl_s"`
	// State is "connecting" (no answer yet), "ok" or "unreachable"
	// (Error says why); Since is when it began.
	State string    `json:"state"`
	Error string    `json:"error,omitempty"`
	Since time.Time `json:"since"`
	// Lease is the daemon's lease (hex, as etcdctl shows it).
	Lease string `json:"lease"`
	// Published counts the members etcd holds, Down those marked down.
	Published int `json:"published"`
	Down      int `json:"down,omitempty"`
	// FailedWrites counts the puts and deletes etcd did not take (each
	// is tried again); LeaseGrants the leases granted since the start.
	FailedWrites int64 `json:"failed_writes"`
	LeaseGrants  int64 `json:"lease_grants"`
}

// WatchStatus is the registry watch of a daemon that renders upstreams
// from the registry (a balancer host).
type WatchStatus struct {
	Endpoints []string `json:"endpoints"`
	Prefix    string   `json:"prefix"`
	// State is "connecting" (not read yet), "ok" or "unreachable" (Error
	// says why: the members last known are rendered); Since is when it
	// began.
	State string    `json:"state"`
	Error string    `json:"error,omitempty"`
	Since time.Time `json:"since"`
	// Synced says the members were read at least once.
	Synced bool `json:"synced"`
	// Members counts every host's members held, Down those marked down;
	// Revision is etcd's revision they are as of.
	Members  int   `json:"members"`
	Down     int   `json:"down,omitempty"`
	Revision int64 `json:"revision"`
	// Ignored is how many keys under the prefix are not members now;
	// Dropped counts the keys left out past the watch's bounds (100,000
	// members, 10,000 keys ignored); Reads the whole reads (the first,
	// then one after each compaction).
	Ignored int   `json:"ignored,omitempty"`
	Dropped int64 `json:"dropped,omitempty"`
	Reads   int64 `json:"reads"`
}

// NginxStatus is the outcome of the last nginx update.
type NginxStatus struct {
	Output      string    `json:"output"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitzero"` // when the last update finished
	LastChange  time.Time `json:"last_change,omitzero"`  // last time a new file went live
	Reloads     int       `json:"reloads"`
	Failures    int       `json:"failures"`
	RetryAt     time.Time `json:"retry_at,omitzero"` // a failed reload is retried then
	// Servers is how many servers the file on disk has, Down of them
	// marked down.
	Servers int `json:"servers"`
	Down    int `json:"down,omitempty"`
	// NotRunning: the file is written and tested, but nginx is not
	// running; it is reloaded once it runs.
	NotRunning bool `json:"not_running,omitempty"`
	// NotInstalled: nginx is not running because its program (the test or
	// reload command's) is not there; the file is written, not tested.
	NotInstalled bool `json:"not_installed,omitempty"`
}

// TestAlertReply says where the test mail of `ctl test-alert` went: the
// SMTP server or the sendmail command, and to whom.
type TestAlertReply struct {
	Via string   `json:"via"`
	To  []string `json:"to"`
}

// ErrorResponse is the body of every non-2xx response.
type ErrorResponse struct {
	Error string `json:"error"`
}

// WarningHeader carries a one-line warning for the status table, such as
// a failed nginx update.
const WarningHeader = "Gosup-Warning"

// FormatUptime prints d as supervisorctl does: H:MM:SS, with days in front.
func FormatUptime(d time.Duration) string {
	return string(AppendUptime(make([]byte, 0, 24), d))
}

// AppendUptime appends FormatUptime(d).
func AppendUptime(b []byte, d time.Duration) []byte {
	secs := int64(d.Seconds())
	days, secs := secs/86400, secs%86400
	if days > 0 {
		b = strconv.AppendInt(b, days, 10)
		b = append(b, " days, "...)
	}
	b = strconv.AppendInt(b, secs/3600, 10)
	b = append(b, ':')
	b = appendTwoDigits(b, secs%3600/60)
	b = append(b, ':')
	return appendTwoDigits(b, secs%60)
}

// appendTwoDigits appends n as %02d does.
func appendTwoDigits(b []byte, n int64) []byte {
	if n >= 0 && n < 10 {
		b = append(b, '0')
	}
	return strconv.AppendInt(b, n, 10)
}
