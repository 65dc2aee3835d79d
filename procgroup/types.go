package procgroup

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Size is a byte count written as supervisord and memmon write it: a plain
// number of bytes or a number with a KB, MB or GB suffix (1024-based).
type Size int64

// ParseSize parses "50MB", "400 KB", "1GB" or "1024".
func ParseSize(s string) (Size, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes or a number with KB, MB or GB", s)
	}
	return Size(n * mult), nil
}

// UnmarshalTOML accepts a string ("50MB") or an integer (bytes).
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid size %d: must not be negative", v)
		}
		*s = Size(v)
		return nil
	case string:
		n, err := ParseSize(v)
		*s = n
		return err
	}
	return fmt.Errorf("invalid size %v: want a string such as \"50MB\" or a number of bytes", v)
}

func (s Size) String() string {
	switch {
	case s != 0 && s%(1<<30) == 0:
		return fmt.Sprintf("%dGB", s>>30)
	case s != 0 && s%(1<<20) == 0:
		return fmt.Sprintf("%dMB", s>>20)
	case s != 0 && s%(1<<10) == 0:
		return fmt.Sprintf("%dKB", s>>10)
	}
	return strconv.FormatInt(int64(s), 10)
}

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s")
// or as an integer number of seconds.
type Duration time.Duration

// UnmarshalTOML accepts "30s" or 30.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("invalid duration %d: must not be negative", v)
		}
		*d = Duration(time.Duration(v) * time.Second)
		return nil
	case string:
		x, err := time.ParseDuration(v)
		if err != nil || x < 0 {
			return fmt.Errorf("invalid duration %q: want a duration such as \"30s\" or \"1m\"", v)
		}
		*d = Duration(x)
		return nil
	}
	return fmt.Errorf("invalid duration %v: want a string such as \"30s\"", v)
}

func (d Duration) String() string { return time.Duration(d).String() }

// Signal is a signal name as supervisord accepts it: TERM, SIGTERM, term, or a number.
type Signal unix.Signal

// ParseSignal parses "TERM", "SIGQUIT", "hup" or "9".
func ParseSignal(s string) (Signal, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if n, err := strconv.Atoi(t); err == nil && n > 0 && n < 65 {
		return Signal(n), nil
	}
	if !strings.HasPrefix(t, "SIG") {
		t = "SIG" + t
	}
	if sig := unix.SignalNum(t); sig != 0 {
		return Signal(sig), nil
	}
	return 0, fmt.Errorf("invalid signal %q: want a name such as TERM, QUIT, INT, HUP, KILL, USR1", s)
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Signal) UnmarshalText(b []byte) error {
	sig, err := ParseSignal(string(b))
	*s = sig
	return err
}

func (s Signal) String() string { return strings.TrimPrefix(unix.SignalName(unix.Signal(s)), "SIG") }

// AutoRestart is supervisord's autorestart: true, false or "unexpected".
type AutoRestart uint8

// AutoRestart values.
const (
	RestartUnexpected AutoRestart = iota
	RestartAlways
	RestartNever
)

// UnmarshalTOML accepts a boolean, "true", "false" or "unexpected".
func (a *AutoRestart) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case bool:
		*a = RestartNever
		if v {
			*a = RestartAlways
		}
		return nil
	case string:
		switch strings.ToLower(v) {
		case "true":
			*a = RestartAlways
			return nil
		case "false":
			*a = RestartNever
			return nil
		case "unexpected":
			*a = RestartUnexpected
			return nil
		}
	}
	return fmt.Errorf("invalid autorestart %v: want true, false or \"unexpected\"", v)
}

func (a AutoRestart) String() string {
	switch a {
	case RestartAlways:
		return "true"
	case RestartNever:
		return "false"
	}
	return "unexpected"
}

// Umask is an octal file mode creation mask such as "022". Unset means inherit.
type Umask struct {
	Mask int
	Set  bool
}

// UnmarshalTOML accepts an octal string ("022") or an integer (taken as octal digits: 22 → 022).
func (u *Umask) UnmarshalTOML(v any) error {
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
	*u = Umask{Mask: int(n), Set: true}
	return nil
}

func (u Umask) String() string {
	if !u.Set {
		return ""
	}
	return fmt.Sprintf("%03o", u.Mask)
}
