// Package etcd is a small etcd v3 client over etcd's JSON gateway (HTTP
// POST /v3/...): leases, put, delete, range by prefix and watch of a
// prefix, with endpoint failover, per-request timeouts, username/password
// authentication and TLS client settings.
//
// It speaks the gateway with net/http and encoding/json instead of linking
// go.etcd.io/etcd/client/v3, whose package init (protobuf descriptors, gRPC)
// would cost every gosup command ~7 ms of start-up. Every answer is read
// with a byte bound (Config.MaxResponseBytes).
package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMaxResponseBytes = 16 << 20
)

// Config says how to reach etcd.
type Config struct {
	// Endpoints are etcd's client URLs ("http://127.0.0.1:2379",
	// "https://etcd1:2379"); a request goes to the last one that answered
	// and fails over to the others in order.
	Endpoints []string
	// Timeout bounds one attempt of a request on one endpoint (the
	// caller's context bounds the whole request); 0 means DefaultTimeout.
	Timeout time.Duration
	// TLS is used for https endpoints (the daemon's comes from
	// config.Registry.TLS); nil means the system's roots and no client
	// certificate.
	TLS *tls.Config
	// Username and Password authenticate (etcd's /v3/auth/authenticate);
	// the token is renewed when etcd says it expired.
	Username, Password string
	// MaxResponseBytes bounds one answer (one message of a watch);
	// 0 means DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// Error is etcd's answer to a request it refused ("etcdserver: requested
// lease not found", code 5). Code is the gRPC status code.
type Error struct {
	Code     int
	Message  string
	Endpoint string
}

func (e *Error) Error() string {
	if e.Endpoint == "" {
		return fmt.Sprintf("%s (code %d)", e.Message, e.Code)
	}
	return fmt.Sprintf("%s: %s (code %d)", e.Endpoint, e.Message, e.Code)
}

// Is makes errors.Is(err, ErrLeaseNotFound) true for etcd's "lease not
// found" and errors.Is(err, ErrCompacted) for "required revision has been
// compacted".
func (e *Error) Is(target error) bool {
	switch target {
	case ErrLeaseNotFound:
		return e.Code == codeNotFound && strings.Contains(e.Message, "lease not found")
	case ErrCompacted:
		return e.Code == codeOutOfRange && strings.Contains(e.Message, "compacted")
	}
	return false
}

// gRPC status codes the gateway passes on.
const (
	codeNotFound        = 5
	codeOutOfRange      = 11
	codeUnavailable     = 14
	codeUnauthenticated = 16
)

var (
	// ErrLeaseNotFound: the lease expired or was revoked.
	ErrLeaseNotFound = errors.New("lease not found")
	// ErrCompacted: the revision asked for is older than etcd keeps.
	ErrCompacted = errors.New("required revision has been compacted")
)

// Client is safe for concurrent use.
type Client struct {
	cfg    Config
	unary  *http.Client
	stream *http.Client
	tr     *http.Transport

	mu    sync.Mutex
	cur   int    // the endpoint that answered last
	token string // "" until authenticated
}

// New checks the endpoints and makes a Client; it does not connect.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoint")
	}
	for i, ep := range cfg.Endpoints {
		if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
			return nil, fmt.Errorf("endpoint %q: want http://HOST:PORT or https://HOST:PORT", ep)
		}
		cfg.Endpoints[i] = strings.TrimRight(ep, "/")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	// TCP keepalives notice a peer that vanished (host down, network cut)
	// under a watch, which otherwise waits for a message forever.
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 5 * time.Second, Interval: 5 * time.Second, Count: 3,
	}}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     cfg.TLS,
		TLSHandshakeTimeout: cfg.Timeout,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		Proxy:               nil, // etcd is never reached through an HTTP proxy
	}
	return &Client{cfg: cfg, tr: tr, unary: &http.Client{Transport: tr}, stream: &http.Client{Transport: tr}}, nil
}

// Close drops the idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Endpoints gives the endpoints, the one that answered last first.
func (c *Client) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.cfg.Endpoints)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, c.cfg.Endpoints[(c.cur+i)%n])
	}
	return out
}

// header is every answer's header; int64 fields are JSON strings.
type header struct {
	Revision int64 `json:"revision,string"`
}

// errorBody is a refused request's body. A unary answer has "error" as a
// string; a streamed one as an object (grpc-gateway's stream error).
type errorBody struct {
	Error   json.RawMessage `json:"error"`
	Message string          `json:"message"`
	Code    int             `json:"code"`
}

type streamError struct {
	GRPCCode int    `json:"grpc_code"`
	Message  string `json:"message"`
}

func (b *errorBody) err(ep string) error {
	if b.Message != "" || b.Code != 0 {
		return &Error{Code: b.Code, Message: b.Message, Endpoint: ep}
	}
	var se streamError
	if json.Unmarshal(b.Error, &se) == nil && (se.Message != "" || se.GRPCCode != 0) {
		return &Error{Code: se.GRPCCode, Message: se.Message, Endpoint: ep}
	}
	var s string
	if json.Unmarshal(b.Error, &s) == nil {
		return &Error{Code: 2, Message: s, Endpoint: ep}
	}
	return &Error{Code: 2, Message: "unreadable error " + string(b.Error), Endpoint: ep}
}

// transient says whether another endpoint may answer where ep failed:
// it did not answer at all, or answered it cannot serve now.
func transient(err error) bool {
	if errors.Is(err, ErrTooLarge) {
		return false // every endpoint holds the same keys
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code == codeUnavailable
	}
	return true
}

func unauthenticated(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == codeUnauthenticated
}

// call posts in to path and decodes the answer into out, failing over
// across endpoints and authenticating again once if the token expired.
func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	for try := 0; ; try++ {
		tok, err := c.authToken(ctx)
		if err != nil {
			return err
		}
		err = c.post(ctx, path, body, tok, out)
		if unauthenticated(err) && c.cfg.Username != "" && try == 0 {
			c.dropToken(tok)
			continue
		}
		return err
	}
}

// post tries each endpoint in turn, from the one that answered last.
func (c *Client) post(ctx context.Context, path string, body []byte, tok string, out any) error {
	eps := c.Endpoints()
	var errs []error
	for _, ep := range eps {
		err := c.postTo(ctx, ep, path, body, tok, out)
		if err == nil {
			c.prefer(ep)
			return nil
		}
		if !transient(err) || ctx.Err() != nil {
			if !transient(err) {
				c.prefer(ep)
			}
			return err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("no etcd endpoint answered: %w", errors.Join(errs...))
}

func (c *Client) prefer(ep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range c.cfg.Endpoints {
		if e == ep {
			c.cur = i
		}
	}
}

func (c *Client) postTo(ctx context.Context, ep, path string, body []byte, tok string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", tok)
	}
	resp, err := c.unary.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", ep, err)
	}
	defer resp.Body.Close()
	data, err := readBounded(resp.Body, c.cfg.MaxResponseBytes)
	if err != nil {
		return fmt.Errorf("%s%s: %w", ep, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == nil {
			code := 2
			if resp.StatusCode >= 500 {
				code = codeUnavailable
			}
			return &Error{Code: code, Message: fmt.Sprintf("HTTP %s: %.200q", resp.Status, data), Endpoint: ep}
		}
		return eb.err(ep)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s%s: %w", ep, path, err)
	}
	return nil
}

// ErrTooLarge: an answer over Config.MaxResponseBytes (read no further).
var ErrTooLarge = errors.New("answer too large")

// readBounded reads r to its end, at most limit bytes.
func readBounded(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("over %d bytes: %w", limit, ErrTooLarge)
	}
	return data, nil
}

// authToken gives the token to send ("" without Username), asking etcd
// for one first if there is none.
func (c *Client) authToken(ctx context.Context) (string, error) {
	if c.cfg.Username == "" {
		return "", nil
	}
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok != "" {
		return tok, nil
	}
	var out struct {
		Token string `json:"token"`
	}
	in := map[string]string{"name": c.cfg.Username, "password": c.cfg.Password}
	body, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	if err := c.post(ctx, "/v3/auth/authenticate", body, "", &out); err != nil {
		return "", fmt.Errorf("authenticate as %q: %w", c.cfg.Username, err)
	}
	if out.Token == "" {
		return "", fmt.Errorf("authenticate as %q: etcd gave no token (is auth enabled?)", c.cfg.Username)
	}
	c.mu.Lock()
	c.token = out.Token
	c.mu.Unlock()
	return out.Token, nil
}

// dropToken forgets tok (etcd said it is invalid) unless another request
// already replaced it.
func (c *Client) dropToken(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == tok {
		c.token = ""
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// prefixEnd is the range end that covers every key starting with prefix.
func prefixEnd(prefix string) string {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return string(end[:i+1])
		}
	}
	return "\x00" // every key
}

// Grant makes a lease of ttl (whole seconds, at least 1) and gives its ID
// and the TTL etcd granted.
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (int64, time.Duration, error) {
	secs := max(int64((ttl+time.Second-1)/time.Second), 1)
	var out struct {
		ID    int64  `json:"ID,string"`
		TTL   int64  `json:"TTL,string"`
		Error string `json:"error"`
	}
	if err := c.call(ctx, "/v3/lease/grant", map[string]string{"TTL": strconv.FormatInt(secs, 10)}, &out); err != nil {
		return 0, 0, fmt.Errorf("lease grant: %w", err)
	}
	if out.Error != "" {
		return 0, 0, fmt.Errorf("lease grant: %s", out.Error)
	}
	return out.ID, time.Duration(out.TTL) * time.Second, nil
}

// KeepAliveOnce renews lease id and gives its new TTL; an expired or
// revoked lease gives ErrLeaseNotFound.
func (c *Client) KeepAliveOnce(ctx context.Context, id int64) (time.Duration, error) {
	var out struct {
		Result struct {
			ID  int64 `json:"ID,string"`
			TTL int64 `json:"TTL,string"`
		} `json:"result"`
		Error json.RawMessage `json:"error"`
	}
	if err := c.call(ctx, "/v3/lease/keepalive", map[string]string{"ID": strconv.FormatInt(id, 10)}, &out); err != nil {
		return 0, fmt.Errorf("lease keepalive: %w", err)
	}
	if out.Error != nil {
		eb := errorBody{Error: out.Error}
		return 0, fmt.Errorf("lease keepalive: %w", eb.err(""))
	}
	if out.Result.TTL <= 0 {
		return 0, fmt.Errorf("lease keepalive %x: %w", id, ErrLeaseNotFound)
	}
	return time.Duration(out.Result.TTL) * time.Second, nil
}

// Revoke ends lease id and deletes the keys attached to it.
func (c *Client) Revoke(ctx context.Context, id int64) error {
	var out struct{ Header header }
	if err := c.call(ctx, "/v3/lease/revoke", map[string]string{"ID": strconv.FormatInt(id, 10)}, &out); err != nil {
		return fmt.Errorf("lease revoke: %w", err)
	}
	return nil
}

// Put sets key to value, attached to lease (0: none), and gives the
// revision of the change.
func (c *Client) Put(ctx context.Context, key string, value []byte, lease int64) (int64, error) {
	in := map[string]string{"key": b64(key), "value": base64.StdEncoding.EncodeToString(value)}
	if lease != 0 {
		in["lease"] = strconv.FormatInt(lease, 10)
	}
	var out struct {
		Header header `json:"header"`
	}
	if err := c.call(ctx, "/v3/kv/put", in, &out); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return out.Header.Revision, nil
}

// Delete deletes key and gives how many keys went (0 or 1).
func (c *Client) Delete(ctx context.Context, key string) (int64, error) {
	return c.deleteRange(ctx, key, "")
}

// DeletePrefix deletes every key under prefix and gives how many went.
func (c *Client) DeletePrefix(ctx context.Context, prefix string) (int64, error) {
	return c.deleteRange(ctx, prefix, prefixEnd(prefix))
}

func (c *Client) deleteRange(ctx context.Context, key, end string) (int64, error) {
	in := map[string]string{"key": b64(key)}
	if end != "" {
		in["range_end"] = b64(end)
	}
	var out struct {
		Deleted int64 `json:"deleted,string"`
	}
	if err := c.call(ctx, "/v3/kv/deleterange", in, &out); err != nil {
		return 0, fmt.Errorf("delete %s: %w", key, err)
	}
	return out.Deleted, nil
}

// KV is one key as etcd holds it.
type KV struct {
	Key         string
	Value       []byte
	ModRevision int64
	Lease       int64
}

type kvJSON struct {
	Key         []byte `json:"key"`
	Value       []byte `json:"value"`
	ModRevision int64  `json:"mod_revision,string"`
	Lease       int64  `json:"lease,string"`
}

func (k kvJSON) kv() KV {
	return KV{Key: string(k.Key), Value: k.Value, ModRevision: k.ModRevision, Lease: k.Lease}
}

// Get gives key (ok false if there is none) and the store's revision.
func (c *Client) Get(ctx context.Context, key string) (kv KV, ok bool, rev int64, err error) {
	kvs, rev, err := c.rangeKeys(ctx, key, "")
	if err != nil || len(kvs) == 0 {
		return KV{}, false, rev, err
	}
	return kvs[0], true, rev, nil
}

// RangePrefix gives every key under prefix, in key order, and the store's
// revision they are read at: watching from rev+1 misses no later change.
func (c *Client) RangePrefix(ctx context.Context, prefix string) ([]KV, int64, error) {
	return c.rangeKeys(ctx, prefix, prefixEnd(prefix))
}

func (c *Client) rangeKeys(ctx context.Context, key, end string) ([]KV, int64, error) {
	kvs, rev, _, err := c.rangePage(ctx, key, end, 0, 0)
	return kvs, rev, err
}

// rangePage reads the keys from key to end (""), at most limit of them
// (0: all) at revision rev (0: the latest), and says whether more follow.
func (c *Client) rangePage(ctx context.Context, key, end string, limit int, rev int64) ([]KV, int64, bool, error) {
	in := map[string]string{"key": b64(key)}
	if end != "" {
		in["range_end"] = b64(end)
	}
	if limit > 0 {
		in["limit"] = strconv.Itoa(limit)
	}
	if rev > 0 {
		in["revision"] = strconv.FormatInt(rev, 10)
	}
	var out struct {
		Header header   `json:"header"`
		KVs    []kvJSON `json:"kvs"`
		More   bool     `json:"more"`
	}
	if err := c.call(ctx, "/v3/kv/range", in, &out); err != nil {
		return nil, 0, false, fmt.Errorf("range %s: %w", key, err)
	}
	kvs := make([]KV, len(out.KVs))
	for i, k := range out.KVs {
		kvs[i] = k.kv()
	}
	return kvs, out.Header.Revision, out.More, nil
}

// rangePageKeys is how many keys RangePages asks for at once.
const rangePageKeys = 256

// RangePages reads every key under prefix, in key order, all at one
// revision, which it gives (watching from rev+1 misses no later change),
// and hands them to each a page at a time: at most rangePageKeys keys,
// fewer when a page's answer would be over MaxResponseBytes (one key
// always fits: etcd takes no value over 1.5 MiB unless told to). Only one
// page is held at a time, however many keys there are. An error from
// each ends the read with it.
func (c *Client) RangePages(ctx context.Context, prefix string, each func([]KV) error) (int64, error) {
	key, end := prefix, prefixEnd(prefix)
	limit := rangePageKeys
	var rev int64
	for {
		kvs, r, more, err := c.rangePage(ctx, key, end, limit, rev)
		if errors.Is(err, ErrTooLarge) && limit > 1 {
			limit /= 2
			continue
		}
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = r
		}
		if err := each(kvs); err != nil {
			return 0, err
		}
		if !more || len(kvs) == 0 {
			return rev, nil
		}
		key = kvs[len(kvs)-1].Key + "\x00"
		limit = min(limit*2, rangePageKeys)
	}
}
