package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/gosup/gosup/procgroup"
)

// The TOML schema: what each table may hold, by key, and how each value is
// written. The runtime packages know nothing of it: convert copies a
// decoded table into their structs, field by field of the same name.

// rawConfig is the main file as decoded; each program, [memmon] and
// [email] is decoded separately, over its defaults.
type rawConfig struct {
	Include    []string                  `toml:"include"`
	Supervisor rawSettings               `toml:"supervisor"`
	Program    map[string]toml.Primitive `toml:"program"`
	Nginx      *rawNginx                 `toml:"nginx"`
	Memmon     toml.Primitive            `toml:"memmon"`
	Email      toml.Primitive            `toml:"email"`
	HTTP       *rawHTTP                  `toml:"http"`
	Registry   *rawRegistry              `toml:"registry"`
	HAProxy    *rawHAProxy               `toml:"haproxy"`
}

// rawInclude is an included file as decoded: only [program.NAME] tables are
// allowed; anything else stays undecoded and is reported.
type rawInclude struct {
	Program map[string]toml.Primitive `toml:"program"`
}

// rawSettings is the [supervisor] table (Settings).
type rawSettings struct {
	Socket          string   `toml:"socket"`
	SocketMode      string   `toml:"socket_mode"`
	SocketGroup     string   `toml:"socket_group"`
	LogDir          string   `toml:"logdir"`
	ShutdownTimeout duration `toml:"shutdown_timeout"`
	LogLevel        string   `toml:"loglevel"`
	Watch           bool     `toml:"watch"`
	TasksMax        tasksMax `toml:"tasks_max"`
}

// rawProgram is a [program.NAME] table (procgroup.Spec).
type rawProgram struct {
	Group                 string            `toml:"group"`
	Command               string            `toml:"command"`
	NumProcs              int               `toml:"numprocs"`
	NumProcsStart         int               `toml:"numprocs_start"`
	PortStart             int               `toml:"port_start"`
	ProcessName           string            `toml:"process_name"`
	Directory             string            `toml:"directory"`
	Environment           map[string]string `toml:"environment"`
	User                  string            `toml:"user"`
	Priority              int               `toml:"priority"`
	AutoStart             bool              `toml:"autostart"`
	AutoRestart           autoRestart       `toml:"autorestart"`
	ExitCodes             []int             `toml:"exitcodes"`
	StartSecs             int               `toml:"startsecs"`
	StartRetries          int               `toml:"startretries"`
	StopSignal            signal            `toml:"stopsignal"`
	StopWaitSecs          int               `toml:"stopwaitsecs"`
	BackoffMax            duration          `toml:"backoff_max"`
	BackoffReset          duration          `toml:"backoff_reset"`
	StopAsGroup           bool              `toml:"stopasgroup"`
	KillAsGroup           bool              `toml:"killasgroup"`
	RedirectStderr        bool              `toml:"redirect_stderr"`
	Umask                 umask             `toml:"umask"`
	Upstream              string            `toml:"upstream"`
	Weight                int               `toml:"weight"`
	Ready                 string            `toml:"ready"`
	ReadyTimeout          duration          `toml:"ready_timeout"`
	Drain                 duration          `toml:"drain"`
	MaxUnavailable        maxUnavailable    `toml:"max_unavailable"`
	TouchReload           []string          `toml:"touch_reload"`
	StdoutLogfile         string            `toml:"stdout_logfile"`
	StdoutLogfileMaxBytes size              `toml:"stdout_logfile_maxbytes"`
	StdoutLogfileBackups  int               `toml:"stdout_logfile_backups"`
	StderrLogfile         string            `toml:"stderr_logfile"`
	StderrLogfileMaxBytes size              `toml:"stderr_logfile_maxbytes"`
	StderrLogfileBackups  int               `toml:"stderr_logfile_backups"`
	LogTimestamps         bool              `toml:"log_timestamps"`
}

// rawNginx is the [nginx] table (Nginx).
type rawNginx struct {
	Output         string                 `toml:"output"`
	Template       string                 `toml:"template"`
	TestCommand    string                 `toml:"test_command"`
	ReloadCommand  string                 `toml:"reload_command"`
	CommandTimeout duration               `toml:"command_timeout"`
	Upstream       map[string]rawUpstream `toml:"upstream"`
}

// rawUpstream is one [nginx.upstream.NAME] table (Upstream).
type rawUpstream struct {
	Balance    string `toml:"balance"`
	Protocol   string `toml:"protocol"`
	Keepalive  int    `toml:"keepalive"`
	Host       string `toml:"host"`
	Listen     string `toml:"listen"`
	ServerName string `toml:"server_name"`
	Location   string `toml:"location"`
	Source     string `toml:"source"`
}

// rawHAProxy is the [haproxy] table (HAProxy).
type rawHAProxy struct {
	Output         string                `toml:"output"`
	Template       string                `toml:"template"`
	TestCommand    string                `toml:"test_command"`
	ReloadCommand  string                `toml:"reload_command"`
	CommandTimeout duration              `toml:"command_timeout"`
	Socket         string                `toml:"socket"`
	Backend        map[string]rawBackend `toml:"backend"`
}

// rawBackend is one [haproxy.backend.NAME] table (Backend).
type rawBackend struct {
	Bind          string   `toml:"bind"`
	Mode          string   `toml:"mode"`
	Balance       string   `toml:"balance"`
	CheckPath     string   `toml:"check_path"`
	CheckInterval duration `toml:"check_interval"`
	Rise          int      `toml:"rise"`
	Fall          int      `toml:"fall"`
}

// rawHTTP is the [http] table (HTTP).
type rawHTTP struct {
	Listen         string `toml:"listen"`
	SocketMode     string `toml:"socket_mode"`
	SocketGroup    string `toml:"socket_group"`
	BasicAuthFile  string `toml:"basic_auth_file"`
	TokenFile      string `toml:"token_file"`
	MaxConnections int    `toml:"max_connections"`
}

// rawRegistry is the [registry] table (Registry).
type rawRegistry struct {
	Etcd         []string `toml:"etcd"`
	Prefix       string   `toml:"prefix"`
	Host         string   `toml:"host"`
	TTL          duration `toml:"ttl"`
	CA           string   `toml:"ca"`
	Cert         string   `toml:"cert"`
	Key          string   `toml:"key"`
	Username     string   `toml:"username"`
	PasswordFile string   `toml:"password_file"`
}

// rawMemmon is the [memmon] table (memmon.Settings).
type rawMemmon struct {
	Interval       duration        `toml:"interval"`
	Any            size            `toml:"any"`
	Program        map[string]size `toml:"program"`
	Group          map[string]size `toml:"group"`
	Cumulative     bool            `toml:"cumulative"`
	Samples        int             `toml:"samples"`
	MaxRestarting  int             `toml:"max_restarting"`
	AlertMaxUptime duration        `toml:"alert_max_uptime"`
	Name           string          `toml:"name"`
	MaxRestarts    int             `toml:"max_restarts"`
	RestartWindow  duration        `toml:"restart_window"`
}

// rawEmail is the [email] table (memmon.Email).
type rawEmail struct {
	To           []string `toml:"to"`
	From         string   `toml:"from"`
	SMTP         string   `toml:"smtp"`
	Username     string   `toml:"username"`
	Password     string   `toml:"password"`
	PasswordFile string   `toml:"password_file"`
	StartTLS     *bool    `toml:"starttls"`
	Timeout      duration `toml:"timeout"`
	Sendmail     string   `toml:"sendmail"`
	RateLimit    duration `toml:"rate_limit"`
}

// decodeOver decodes the table prim over *v, a runtime struct holding the
// defaults, through its schema struct R.
func decodeOver[R, T any](md toml.MetaData, prim toml.Primitive, v *T) error {
	var raw R
	convert(&raw, v)
	if err := md.PrimitiveDecode(prim, &raw); err != nil {
		return err
	}
	convert(v, &raw)
	return nil
}

// convert copies each field of the struct *src into the field of the same
// name in the struct *dst, converting between a schema type above and its
// runtime type (duration and time.Duration, a map of sizes and a map of
// procgroup.Size). TestSchemaMatchesRuntime checks that the fields pair up.
func convert(dst, src any) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for i := range s.NumField() {
		assign(d.FieldByName(s.Type().Field(i).Name), s.Field(i))
	}
}

func assign(d, s reflect.Value) {
	if s.Kind() != reflect.Map || s.Type().ConvertibleTo(d.Type()) {
		d.Set(s.Convert(d.Type()))
		return
	}
	if s.IsNil() {
		d.SetZero()
		return
	}
	m := reflect.MakeMapWithSize(d.Type(), s.Len())
	for it := s.MapRange(); it.Next(); {
		v := reflect.New(d.Type().Elem()).Elem()
		assign(v, it.Value())
		m.SetMapIndex(it.Key(), v)
	}
	d.Set(m)
}

// tomlKeys lists the keys of a schema struct, in declaration order.
func tomlKeys(v any) []string {
	t := reflect.TypeOf(v)
	var keys []string
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// ChangedKeys lists the keys of a [program.NAME] table whose values differ
// between two specs, in schema order.
func ChangedKeys(a, b *procgroup.Spec) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for _, f := range programKeys() {
		if !reflect.DeepEqual(va.FieldByIndex(f.index).Interface(), vb.FieldByIndex(f.index).Interface()) {
			out = append(out, f.key)
		}
	}
	return out
}

// programKey is a [program.NAME] key and where its value sits in a
// procgroup.Spec.
type programKey struct {
	key   string
	index []int
}

// programKeys maps the schema's keys to Spec fields once: a reload compares
// every process, and looking fields up by name each time was a third of a
// no-op reload's CPU.
var programKeys = sync.OnceValue(func() []programKey {
	t, spec := reflect.TypeFor[rawProgram](), reflect.TypeFor[procgroup.Spec]()
	keys := make([]programKey, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		sf, ok := spec.FieldByName(f.Name)
		if !ok {
			panic("config: procgroup.Spec has no field " + f.Name) // TestSchemaMatchesRuntime says which
		}
		keys = append(keys, programKey{key: key, index: sf.Index})
	}
	return keys
})

// duration is a time.Duration written as a Go duration string ("30s",
// "1m30s") or as an integer number of seconds.
type duration time.Duration

// UnmarshalTOML accepts "30s" or 30.
func (d *duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid duration %d: must not be negative", v)
		}
		*d = duration(time.Duration(v) * time.Second)
		return nil
	case string:
		x, err := time.ParseDuration(v)
		if err != nil || x < 0 {
			return fmt.Errorf("invalid duration %q: want a duration such as \"30s\" or \"1m\"", v)
		}
		*d = duration(x)
		return nil
	}
	return fmt.Errorf("invalid duration %v: want a string such as \"30s\"", v)
}

// size is a procgroup.Size written as a string ("50MB") or an integer
// number of bytes.
type size procgroup.Size

// UnmarshalTOML accepts "50MB" or 52428800.
func (s *size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", v)
		}
		*s = size(v)
		return nil
	case string:
		n, err := procgroup.ParseSize(v)
		*s = size(n)
		return err
	}
	return fmt.Errorf("invalid size %v: want a string such as \"50MB\" or a number of bytes", v)
}

// signal is a procgroup.Signal written as supervisord accepts it: TERM,
// SIGTERM, term, or a number.
type signal procgroup.Signal

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *signal) UnmarshalText(b []byte) error {
	sig, err := procgroup.ParseSignal(string(b))
	*s = signal(sig)
	return err
}

// tasksMax is [supervisor] tasks_max: a number, or "infinity" (systemd's
// word for no limit), kept as TasksInfinity.
type tasksMax int

// UnmarshalTOML accepts 4096 or "infinity"; the lower bound is checked
// with the processes known (Load).
func (t *tasksMax) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("must be a number of tasks or \"infinity\", have %d", v)
		}
		*t = tasksMax(min(v, math.MaxInt32))
		return nil
	case string:
		if strings.EqualFold(v, "infinity") {
			*t = TasksInfinity
			return nil
		}
		return fmt.Errorf("invalid tasks_max %q: want a number of tasks or \"infinity\"", v)
	}
	return fmt.Errorf("want a number of tasks or \"infinity\", have %v", v)
}

// maxUnavailable is max_unavailable: a number of processes (3) or a
// percentage of numprocs ("25%"); the bounds are checked by checkProgram.
type maxUnavailable procgroup.Unavailable

// UnmarshalTOML accepts 3 or "25%" (a number alone in a string too).
func (m *maxUnavailable) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*m = maxUnavailable{N: int(max(min(v, math.MaxInt32), math.MinInt32))}
		return nil
	case string:
		num, pct := strings.CutSuffix(strings.TrimSpace(v), "%")
		n, err := strconv.Atoi(strings.TrimSpace(num))
		if err != nil {
			return fmt.Errorf("invalid max_unavailable %q: want a number of processes such as 2 or a percentage of numprocs such as \"25%%\"", v)
		}
		*m = maxUnavailable{N: n, Percent: pct}
		return nil
	}
	return fmt.Errorf("invalid max_unavailable %v: want a number of processes such as 2 or a percentage of numprocs such as \"25%%\"", v)
}

// autoRestart is supervisord's autorestart: true, false or "unexpected".
type autoRestart procgroup.AutoRestart

// UnmarshalTOML accepts a boolean, "true", "false" or "unexpected".
func (a *autoRestart) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		*a = autoRestart(procgroup.RestartNever)
		if v {
			*a = autoRestart(procgroup.RestartAlways)
		}
		return nil
	case string:
		switch strings.ToLower(v) {
		case "true":
			*a = autoRestart(procgroup.RestartAlways)
			return nil
		case "false":
			*a = autoRestart(procgroup.RestartNever)
			return nil
		case "unexpected":
			*a = autoRestart(procgroup.RestartUnexpected)
			return nil
		}
	}
	return fmt.Errorf("invalid autorestart %v: want true, false or \"unexpected\"", v)
}

// umask is a procgroup.Umask written as an octal string ("022") or an
// integer taken as octal digits (22 → 022).
type umask procgroup.Umask

// UnmarshalTOML accepts "022" or 22.
func (u *umask) UnmarshalTOML(v any) error {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case int64:
		s = strconv.FormatInt(v, 10)
	default:
		return fmt.Errorf("invalid umask %v: want an octal string such as \"022\"", v)
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || n > 0o777 {
		return fmt.Errorf("invalid umask %q: want an octal string such as \"022\"", s)
	}
	*u = umask{Mask: int(n), Set: true}
	return nil
}
