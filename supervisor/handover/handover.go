// Package handover is the document one image of the gosup daemon hands the
// next across execve, in an in-place upgrade: every process with its pid,
// counters, timers and log pipes, the descriptors of the lock, the
// abstract socket and the control socket, the configuration as it was
// read, and the state of nginx and memmon.
//
// The document is JSON, written to a memfd whose descriptor number the new
// image finds in $GOSUP_HANDOVER_FD; the descriptors it names are
// inherited (their close-on-exec flag cleared for the exec). Version is
// bumped whenever a change to the document would be misread by an image
// that knows an earlier one: before the exec, the old image asks the new
// binary (`gosup upgrade-check`) which versions it reads, and refuses an
// upgrade to one that cannot read this image's.
package handover

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gosup/gosup/memmon"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/nginx"
	"golang.org/x/sys/unix"
)

// Version is the version of the document this build writes.
const Version = 1

// Readable lists the document versions this build reads.
var Readable = []int{Version}

// Env names the environment variable that carries the descriptor number
// of the document to the new image.
const Env = "GOSUP_HANDOVER_FD"

// MaxBytes bounds the document: a few hundred bytes a process, the
// configuration files (4 MiB each at most) and memmon's samples.
const MaxBytes = 256 << 20

// Why the daemon re-executed.
const (
	ReasonUpgrade = "upgrade"
	// ReasonRescue: a panic in the daemon's core; the document was
	// rebuilt from what the kernel knows.
	ReasonRescue = "rescue"
)

// Doc is the whole handover.
type Doc struct {
	Version int    `json:"version"`
	Reason  string `json:"reason"`
	// From is the build that wrote the document; Binary the file it
	// executed.
	From   Build  `json:"from"`
	Binary string `json:"binary"`
	// StartedAt is when the daemon's first image started; Upgrades
	// counts the re-executions since, this one included, and UpgradedAt
	// is when this one began.
	StartedAt  time.Time `json:"started_at"`
	Upgrades   int       `json:"upgrades"`
	UpgradedAt time.Time `json:"upgraded_at"`
	// Rescues counts the re-executions after a panic in the core.
	Rescues int `json:"rescues,omitempty"`

	Config    Config               `json:"config"`
	Instance  Instance             `json:"instance"`
	Socket    Socket               `json:"socket"`
	Processes []procgroup.Handover `json:"processes"`

	// The state of nginx's manager, memmon's watchdog and its alerter
	// (nil without [nginx], [memmon], [email]).
	Nginx *nginx.State `json:"nginx,omitempty"`
	// HAProxy is the [haproxy] manager's (nil without one).
	HAProxy *nginx.State          `json:"haproxy,omitempty"`
	Memmon  *memmon.WatchdogState `json:"memmon,omitempty"`
	Alerter *memmon.AlerterState  `json:"alerter,omitempty"`
	Reload  api.ReloadStatus      `json:"reload"`
	// TouchPending are the programs whose touch_reload restart was asked
	// for and not yet begun: the new image restarts them.
	TouchPending []string `json:"touch_pending,omitempty"`
	// RescuedAt is when the last rescue began (zero: none): a panic
	// again within a minute of it is not rescued (it may be the new
	// image's own, in a loop).
	RescuedAt time.Time `json:"rescued_at,omitzero"`
	// ReloadPending says a reload was asked for (SIGHUP, the file
	// watcher) and not yet begun: the new image runs it.
	ReloadPending bool `json:"reload_pending,omitempty"`
	// Down names the processes rendered down in nginx.
	Down []string `json:"down,omitempty"`
	// WatchdogMissed continues the count of withheld watchdog pings.
	WatchdogMissed int64 `json:"watchdog_missed,omitempty"`
	// HTTP is the read-only HTTP listener's socket (nil: none listened).
	HTTP *HTTP `json:"http,omitempty"`
	// DaemonLog is the daemon's recent log kept in memory (`ctl tail
	// --daemon`), for the next image to keep (nil: none). An image that
	// does not know it starts with an empty one.
	DaemonLog *DaemonLog `json:"daemon_log,omitempty"`
	// Counters continues the counters the daemon's metrics show that no
	// part's state above carries (nil: an image that kept none).
	Counters *Counters `json:"counters,omitempty"`
}

// Counters are the daemon's counters for its metrics: memmon's and
// nginx's, kept across the reloads that replace those parts, the reloads
// by outcome and their durations, and the upgrades that failed.
type Counters struct {
	Memmon memmon.TallyCounts `json:"memmon"`
	Nginx  nginx.Counts       `json:"nginx"`
	// HAProxy: the [haproxy] managers' (an image that kept none: zero).
	HAProxy nginx.Counts `json:"haproxy,omitzero"`
	// Reloads counts the reloads by outcome (ok, invalid, failed).
	Reloads map[string]int64 `json:"reloads,omitempty"`
	// ReloadSeconds is the histogram of the reloads' durations.
	ReloadSeconds Histogram `json:"reload_seconds"`
	// LastReloadSuccess is when the configuration last loaded fine (the
	// daemon's first start, or a reload).
	LastReloadSuccess time.Time `json:"last_reload_success,omitzero"`
	UpgradeFailures   int       `json:"upgrade_failures,omitempty"`
}

// Histogram is a histogram of observations: Counts[i] counts those not
// above Bounds[i] and above the bound before (the last, those above every
// bound).
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Sum    float64   `json:"sum"`
}

// DaemonLogBytes bounds the daemon's log handed over: the newest records
// of its ring within it, a few hundred records (the rest counts as
// overwritten): 0.6-0.9 ms more for an upgrade, where the whole ring (1
// MiB) would add 15-23 ms, mostly decoding (BenchmarkDaemonLogHandover).
const DaemonLogBytes = 32 << 10

// DaemonLog is the daemon's log kept in memory (logtail.Ring's Snapshot).
type DaemonLog struct {
	// Records are the records held, oldest first, each ending in a
	// newline.
	Records []byte `json:"records"`
	// Overwritten and OverwrittenBytes count what the ring let go.
	Overwritten      int64 `json:"overwritten,omitempty"`
	OverwrittenBytes int64 `json:"overwritten_bytes,omitempty"`
}

// Build names a gosup build (the API's type: ctl info shows it too).
type Build = api.Build

// Config is the configuration the daemon runs: the bytes of every file it
// read, so that the new image parses the same configuration whatever was
// edited on disk since.
type Config struct {
	File string `json:"file"`
	// Files are the files read, main first (config.Config.Files): the
	// new image refuses a configuration that would read others.
	Files    []string          `json:"files"`
	Sources  map[string][]byte `json:"sources"`
	Insecure bool              `json:"insecure,omitempty"`
}

// Instance is the daemon's claim on its socket.
type Instance struct {
	ID         string `json:"id"`
	LockFD     int    `json:"lock_fd"`
	AbstractFD int    `json:"abstract_fd"` // -1: none (the name was squatted)
}

// Socket is the control socket's listener.
type Socket struct {
	FD   int    `json:"fd"`
	Path string `json:"path"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
	// Gid is socket_group's gid (-1: none), looked up by the first
	// image: the new one must not fail on a name service that is down.
	Gid int `json:"gid"`
}

// HTTP is the read-only HTTP listener's listening socket, and its
// counters.
type HTTP struct {
	FD     int    `json:"fd"`
	Listen string `json:"listen"` // as [http] listen says
	Unix   bool   `json:"unix,omitempty"`
	// Dev, Ino, Gid and Mode are the unix socket file's (Gid -1: no
	// socket_group).
	Dev  uint64 `json:"dev,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
	Gid  int    `json:"gid"`
	Mode uint32 `json:"mode,omitempty"`
	// Accepted and Refused continue the connection counts.
	Accepted int64 `json:"accepted"`
	Refused  int64 `json:"refused"`
}

// ErrIncompatible says a document's version is not one this build reads.
var ErrIncompatible = errors.New("incompatible handover version")

// FDs lists every descriptor the document hands over.
func (d *Doc) FDs() []int {
	fds := []int{d.Instance.LockFD, d.Socket.FD}
	if d.Instance.AbstractFD >= 0 {
		fds = append(fds, d.Instance.AbstractFD)
	}
	if d.HTTP != nil {
		fds = append(fds, d.HTTP.FD)
	}
	for _, p := range d.Processes {
		for _, pipe := range p.Pipes {
			fds = append(fds, pipe.FD)
		}
	}
	return fds
}

// Decode reads a document, refusing a version this build does not read
// (whatever else it says: a later version may not decode as this one).
func Decode(b []byte) (*Doc, error) {
	var d Doc
	err := json.Unmarshal(b, &d)
	if err != nil && d.Version == 0 {
		return nil, fmt.Errorf("handover document: %w", err)
	}
	if !slices.Contains(Readable, d.Version) {
		return nil, fmt.Errorf("%w %d: this build reads %v", ErrIncompatible, d.Version, Readable)
	}
	if err != nil {
		return nil, fmt.Errorf("handover document: %w", err)
	}
	return &d, nil
}

// Memfd writes b to a new memfd (close-on-exec: the caller clears the flag
// for the exec) and returns it positioned at its start.
func Memfd(b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("gosup-handover", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "gosup-handover")
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("write handover: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("write handover: %w", err)
	}
	return f, nil
}

// Read reads the document from the inherited descriptor fd, which must be
// the memfd an earlier image wrote (Memfd), and closes it.
func Read(fd int) ([]byte, error) {
	if link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err != nil || !strings.HasPrefix(link, "/memfd:gosup-handover") {
		return nil, fmt.Errorf("handover descriptor %d: not a handover written by gosup (%s)", fd, cmp.Or(link, fmt.Sprint(err)))
	}
	f := os.NewFile(uintptr(fd), "gosup-handover")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read handover: %w", err)
	}
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("read handover: more than %d MiB", MaxBytes>>20)
	}
	return b, nil
}

// Check is what `gosup upgrade-check` prints: the build, and the document
// versions it reads.
type Check struct {
	Build    Build `json:"build"`
	Readable []int `json:"readable"`
}
