// Package registry keeps this host's upstream members published in etcd:
// each ready process of a program with an upstream under
// PREFIX/upstreams/NAME/HOST:PORT, attached to one lease per daemon that
// it keeps alive, so that a daemon that dies loses its members when the
// lease expires.
//
// The Publisher reconciles: the daemon tells it that the members changed
// (Kick, which never blocks), and its own goroutine computes the members
// wanted now and writes the difference from what etcd holds. A slow or
// unreachable etcd delays the writes and loses none: the next pass
// writes whatever differs then.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosup/gosup/internal/hostaddr"
	"github.com/gosup/gosup/procgroup"
	"github.com/gosup/gosup/supervisor/registry/etcd"
)

// States of a member.
const (
	StateUp   = "up"
	StateDown = "down"
)

// Member is one process in an upstream, as published.
type Member struct {
	Upstream string
	Host     string
	Port     int
	Weight   int
	// State is StateUp, or StateDown while it is drained before a planned
	// stop.
	State string
	// Program is the program's name, Process the process's full name
	// (group:process, as ctl names it).
	Program, Process string
	Pid              int
	StartTime        time.Time
}

// Key is where m is published under prefix: PREFIX/upstreams/NAME/HOST:PORT
// (an IPv6 host in brackets).
func (m Member) Key(prefix string) string {
	return UpstreamPrefix(prefix, m.Upstream) + net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
}

// UpstreamPrefix is the prefix of upstream name's members under prefix
// (with its trailing slash); name "" gives every upstream's.
func UpstreamPrefix(prefix, name string) string {
	if name == "" {
		return prefix + "/upstreams/"
	}
	return prefix + "/upstreams/" + name + "/"
}

// value is a member's JSON value.
type value struct {
	Host      string `json:"host"`
	Port      int    `json:"port"`
	Weight    int    `json:"weight"`
	State     string `json:"state"`
	Program   string `json:"program"`
	Process   string `json:"process"`
	Pid       int    `json:"pid"`
	StartTime string `json:"start_time"`
}

// Value is m's JSON value.
func (m Member) Value() []byte {
	v := value{Host: m.Host, Port: m.Port, Weight: m.Weight, State: m.State, Program: m.Program,
		Process: m.Process, Pid: m.Pid, StartTime: m.StartTime.UTC().Format(time.RFC3339)}
	if v.Weight < 1 {
		v.Weight = 1
	}
	b, _ := json.Marshal(v) // cannot fail: strings and ints
	return b
}

// ParseMember reads a published member back from its key (under prefix)
// and value.
func ParseMember(prefix, key string, data []byte) (Member, error) {
	rest, ok := strings.CutPrefix(key, UpstreamPrefix(prefix, ""))
	name, addr, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || name == "" {
		return Member{}, fmt.Errorf("key %q: not PREFIX/upstreams/NAME/HOST:PORT", key)
	}
	var v value
	if err := json.Unmarshal(data, &v); err != nil {
		return Member{}, fmt.Errorf("key %q: %w", key, err)
	}
	if net.JoinHostPort(v.Host, strconv.Itoa(v.Port)) != addr {
		return Member{}, fmt.Errorf("key %q: value names %s:%d", key, v.Host, v.Port)
	}
	if v.State != StateUp && v.State != StateDown {
		return Member{}, fmt.Errorf("key %q: state %q: want up or down", key, v.State)
	}
	// What a balancer writes into its configuration file must not be able
	// to end a directive or a comment there: whoever can write to etcd
	// is not trusted with the balancer's configuration.
	if err := hostaddr.Check(v.Host); err != nil {
		return Member{}, fmt.Errorf("key %q: host: %w", key, err)
	}
	if v.Port < 1 || v.Port > 65535 || v.Weight < 0 || v.Weight > maxWeight || v.Pid < 0 {
		return Member{}, fmt.Errorf("key %q: port %d, weight %d or pid %d out of range", key, v.Port, v.Weight, v.Pid)
	}
	group, proc, ok := strings.Cut(v.Process, ":")
	if !procgroup.ValidName(v.Program) || !ok || !procgroup.ValidName(group) || !procgroup.ValidName(proc) {
		return Member{}, fmt.Errorf("key %q: program %q or process %q is not a gosup name (NAME and GROUP:NAME of letters, digits, '_', '.' and '-')", key, v.Program, v.Process)
	}
	m := Member{Upstream: name, Host: v.Host, Port: v.Port, Weight: v.Weight, State: v.State,
		Program: v.Program, Process: v.Process, Pid: v.Pid}
	if v.StartTime != "" {
		t, err := time.Parse(time.RFC3339, v.StartTime)
		if err != nil {
			return Member{}, fmt.Errorf("key %q: start_time: %w", key, err)
		}
		m.StartTime = t
	}
	return m, nil
}

// maxWeight bounds a member's weight: HAProxy takes at most 256, nginx
// any; a larger one is not a member gosup published.
const maxWeight = 1 << 20

// Options set up a Publisher.
type Options struct {
	Client *etcd.Client
	Prefix string
	TTL    time.Duration
	// Members gives the members wanted now; the Publisher calls it on
	// its own goroutine after each Kick.
	Members func() []Member
	Log     *slog.Logger
}

// Publisher keeps the members published. Its methods are safe for
// concurrent use.
type Publisher struct {
	o    Options
	kick chan struct{}
	// kicked counts the Kicks; done is the count as of the last pass that
	// left etcd holding every member then wanted.
	kicked atomic.Uint64

	mu       sync.Mutex
	done     uint64
	progress chan struct{} // closed when done moves
	st       Status

	// Owned by Run's goroutine. written holds the value etcd holds under
	// each key this lease wrote, or unknown where a put or a delete got
	// no answer (etcd may have applied it).
	lease   int64
	written map[string]string
	// renewed is when the lease was last granted or renewed: a pass
	// longer than TTL/3 (many members, a slow etcd) renews it as it goes.
	renewed time.Time
}

// unknown marks a key in written whose put or delete got no answer: it
// is written again while wanted, deleted once not.
const unknown = ""

// Status is what status, info and metrics show of the registry.
type Status struct {
	Endpoints []string
	// State is "connecting" (no answer yet), "ok" or "unreachable".
	State string
	// LastError is why it is unreachable; Since is when the State began.
	LastError string
	Since     time.Time
	// Lease is the daemon's lease (0: none yet); Published counts the
	// members etcd holds, Down those of them marked down.
	Lease           int64
	Published, Down int
	// FailedWrites counts the puts and deletes etcd did not take (each
	// retried later); LeaseGrants the leases granted (more than one:
	// one expired, etcd lost it, or a reload changed the settings).
	FailedWrites, LeaseGrants int64
}

// New makes a Publisher; nothing happens until Run.
func New(o Options) *Publisher {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Publisher{
		o: o, kick: make(chan struct{}, 1), progress: make(chan struct{}), written: map[string]string{},
		st: Status{Endpoints: o.Client.Endpoints(), State: "connecting", Since: time.Now()},
	}
}

// Kick says the members may have changed, and gives the number to Wait
// for. It never blocks.
func (p *Publisher) Kick() uint64 {
	n := p.kicked.Add(1)
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return n
}

// Wait waits until etcd holds the members as wanted at Kick number n (or
// later), or ctx ends.
func (p *Publisher) Wait(ctx context.Context, n uint64) error {
	for {
		p.mu.Lock()
		done, ch := p.done, p.progress
		p.mu.Unlock()
		if done >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Status says how publishing goes.
func (p *Publisher) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	st.Endpoints = slices.Clone(st.Endpoints)
	return st
}

// Run publishes until ctx ends. It leaves the lease and the members as
// they are (see Revoke).
func (p *Publisher) Run(ctx context.Context) {
	every := p.o.TTL / 3
	keep := time.NewTicker(every)
	defer keep.Stop()
	minRetry, maxRetry := 250*time.Millisecond, min(every, 5*time.Second)
	retry := minRetry
	needKeepalive := false
	for {
		n := p.kicked.Load()
		err := p.pass(ctx, &needKeepalive)
		if ctx.Err() != nil {
			return
		}
		var again <-chan time.Time
		if err != nil {
			p.failed(err)
			// The next pass renews the lease whatever else it has to
			// do: a pass with nothing to write would otherwise make no
			// call, and leave the status unreachable after etcd is back.
			needKeepalive = true
			t := time.NewTimer(retry)
			again = t.C
			retry = min(retry*2, maxRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-keep.C:
				needKeepalive = true
			case <-again:
			case <-p.kick:
			}
			t.Stop()
			continue
		}
		retry = minRetry
		p.passed(n)
		select {
		case <-ctx.Done():
			return
		case <-keep.C:
			needKeepalive = true
		case <-p.kick:
		}
	}
}

// pass gets a lease if there is none, renews it if due, and writes the
// difference between the members wanted and those written.
func (p *Publisher) pass(ctx context.Context, needKeepalive *bool) error {
	for attempt := 0; ; attempt++ {
		err := p.passOnce(ctx, needKeepalive)
		if errors.Is(err, etcd.ErrLeaseNotFound) && attempt == 0 {
			// Expired (etcd unreachable longer than the TTL) or lost:
			// a new lease, and every member written again.
			p.o.Log.Warn("registry: the lease is gone: publishing every member again under a new one", "lease", fmt.Sprintf("%x", p.lease))
			p.lease, p.written = 0, map[string]string{}
			continue
		}
		return err
	}
}

func (p *Publisher) passOnce(ctx context.Context, needKeepalive *bool) error {
	if p.lease == 0 {
		id, _, err := p.o.Client.Grant(ctx, p.o.TTL)
		if err != nil {
			return err
		}
		p.lease, p.written, p.renewed = id, map[string]string{}, time.Now()
		*needKeepalive = false
		p.mu.Lock()
		p.st.Lease = id
		p.st.LeaseGrants++
		p.mu.Unlock()
		p.ok()
	}
	// A renewal that fails for want of an answer does not hold up the
	// writes: they are tried (and counted when they fail) all the same.
	var kaErr error
	if err := p.renewIfDue(ctx, needKeepalive, &kaErr); err != nil {
		return err
	}
	want := map[string]string{}
	for _, m := range p.o.Members() {
		want[m.Key(p.o.Prefix)] = string(m.Value())
	}
	defer func() {
		n, d := 0, 0
		for _, v := range p.written {
			if v != unknown {
				n++
			}
			if strings.Contains(v, `"state":"down"`) {
				d++
			}
		}
		p.mu.Lock()
		p.st.Published, p.st.Down = n, d
		p.mu.Unlock()
	}()
	// Changes first (a member marked down before it stops), then
	// removals, each key once, in key order.
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if p.written[k] == want[k] {
			continue
		}
		if err := p.renewIfDue(ctx, needKeepalive, &kaErr); err != nil {
			return err
		}
		if _, err := p.o.Client.Put(ctx, k, []byte(want[k]), p.lease); err != nil {
			// etcd may have applied it and lost its answer: the key
			// must be deleted if it is no longer wanted next pass.
			p.written[k] = unknown
			p.countFailed()
			return err
		}
		p.written[k] = want[k]
		p.ok()
	}
	for _, k := range slices.Sorted(maps.Keys(p.written)) {
		if _, ok := want[k]; ok {
			continue
		}
		if err := p.renewIfDue(ctx, needKeepalive, &kaErr); err != nil {
			return err
		}
		if _, err := p.o.Client.Delete(ctx, k); err != nil {
			// etcd may have applied it: the key must be written
			// again if it is wanted again as it was.
			p.written[k] = unknown
			p.countFailed()
			return err
		}
		delete(p.written, k)
		p.ok()
	}
	return kaErr
}

// renewIfDue renews the lease when it is due: asked for (*needKeepalive:
// the keep-alive tick, or a failed pass before), or TTL/3 after it was
// last granted or renewed, so that a pass longer than the TTL does not
// outlive its own lease. A renewal that gets no answer does not hold up
// the writes: it is kept in kaErr (the pass fails with it) and not tried
// again in this pass.
func (p *Publisher) renewIfDue(ctx context.Context, needKeepalive *bool, kaErr *error) error {
	if *kaErr != nil || !*needKeepalive && time.Since(p.renewed) < p.o.TTL/3 {
		return nil
	}
	if _, err := p.o.Client.KeepAliveOnce(ctx, p.lease); errors.Is(err, etcd.ErrLeaseNotFound) {
		return err
	} else if err != nil {
		*kaErr = err
		return nil
	}
	p.renewed = time.Now()
	*needKeepalive = false
	p.ok()
	return nil
}

func (p *Publisher) countFailed() {
	p.mu.Lock()
	p.st.FailedWrites++
	p.mu.Unlock()
}

// ok records an answer from etcd.
func (p *Publisher) ok() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st.State != "ok" {
		if p.st.State == "unreachable" {
			p.o.Log.Info("registry: etcd answers again", "was_unreachable_for", time.Since(p.st.Since).Round(time.Millisecond).String())
		}
		p.st.State, p.st.LastError, p.st.Since = "ok", "", time.Now()
	}
	p.st.Endpoints = p.o.Client.Endpoints()
}

// failed records a failed pass.
func (p *Publisher) failed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := err.Error()
	if p.st.State != "unreachable" {
		p.o.Log.Warn("registry: etcd unreachable: the processes keep running; their members are published when it answers", "err", msg)
		p.st.State, p.st.Since = "unreachable", time.Now()
	}
	p.st.LastError = msg
}

// passed records that etcd holds the members wanted at Kick number n.
func (p *Publisher) passed(n uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n > p.done {
		p.done = n
		close(p.progress)
		p.progress = make(chan struct{})
	}
}

// Revoke ends the daemon's lease, which takes every member it published
// with it. Call it after Run has returned.
func (p *Publisher) Revoke(ctx context.Context) error {
	if p.lease == 0 {
		return nil
	}
	err := p.o.Client.Revoke(ctx, p.lease)
	if errors.Is(err, etcd.ErrLeaseNotFound) {
		err = nil
	}
	if err == nil {
		p.lease, p.written = 0, map[string]string{}
	}
	return err
}
