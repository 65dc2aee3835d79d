package procgroup

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Size is a byte count. ParseSize reads it as supervisord and memmon write
// it: a plain number of bytes or a number with a KB, MB or GB suffix
// (1024-based).
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

func (s Signal) String() string { return strings.TrimPrefix(unix.SignalName(unix.Signal(s)), "SIG") }

// AutoRestart is supervisord's autorestart: true, false or "unexpected".
type AutoRestart uint8

// AutoRestart values.
const (
	RestartUnexpected AutoRestart = iota
	RestartAlways
	RestartNever
)

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

func (u Umask) String() string {
	if !u.Set {
		return ""
	}
	return fmt.Sprintf("%03o", u.Mask)
}
