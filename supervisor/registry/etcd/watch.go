package etcd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// EventType says what happened to a key.
type EventType int

const (
	// Put: the key was set (made or changed).
	Put EventType = iota
	// Delete: the key was deleted (or its lease ended).
	Delete
)

func (t EventType) String() string {
	if t == Delete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change of one key. A Delete's Value is empty.
type Event struct {
	Type EventType
	KV   KV
}

// WatchResponse is the changes of one or more revisions, in order;
// Revision is the store's revision when etcd sent them.
type WatchResponse struct {
	Events   []Event
	Revision int64
}

// CompactedError ends a watch whose next revision etcd no longer keeps:
// read the prefix again (RangePrefix) and watch from there.
type CompactedError struct {
	// Next is the revision the watch needed; CompactRevision the oldest
	// etcd keeps.
	Next, CompactRevision int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("watch from revision %d: etcd compacted up to %d", e.Next, e.CompactRevision)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// WatchOptions are the optional parts of a watch.
type WatchOptions struct {
	// Broken hears every error that broke the stream (etcd stopped, the
	// network failed) before the watch resumes from the last revision it
	// delivered; nil ignores them.
	Broken func(error)
	// Created hears that a stream is set up (again): changes from here on
	// reach handle. nil ignores it.
	Created func()
	// RetryMin and RetryMax bound the pause between attempts to resume
	// (doubling from RetryMin); 0 means 100 ms and 2 s.
	RetryMin, RetryMax time.Duration
}

// Watch calls handle with every change under prefix from revision start
// on (0: from now), in revision order, until ctx ends, handle returns an
// error, or etcd no longer keeps a revision the watch needs
// (*CompactedError). A broken stream resumes, on any endpoint, from the
// revision after the last one handle saw, so no change is missed or seen
// twice. handle runs on Watch's goroutine.
func (c *Client) Watch(ctx context.Context, prefix string, start int64, handle func(WatchResponse) error, opt WatchOptions) error {
	if opt.RetryMin <= 0 {
		opt.RetryMin = 100 * time.Millisecond
	}
	if opt.RetryMax <= 0 {
		opt.RetryMax = 2 * time.Second
	}
	w := &watch{c: c, prefix: prefix, next: start, handle: handle}
	pause := opt.RetryMin
	for {
		progressed, err := w.stream(ctx, opt.Created)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ce *CompactedError
		if errors.As(err, &ce) {
			return ce
		}
		var he *handlerError
		if errors.As(err, &he) {
			return he.err
		}
		if unauthenticated(err) && c.cfg.Username != "" {
			c.dropToken(w.tok)
		}
		if opt.Broken != nil {
			opt.Broken(err)
		}
		if progressed {
			pause = opt.RetryMin
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(pause*2, opt.RetryMax)
	}
}

// handlerError wraps handle's error so Watch can tell it apart.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }

type watch struct {
	c      *Client
	prefix string
	next   int64 // the revision to resume from; 0: from now
	handle func(WatchResponse) error
	tok    string
}

type watchMessage struct {
	Result *struct {
		Header          header `json:"header"`
		Created         bool   `json:"created"`
		Canceled        bool   `json:"canceled"`
		CancelReason    string `json:"cancel_reason"`
		CompactRevision int64  `json:"compact_revision,string"`
		Events          []struct {
			Type string `json:"type"`
			KV   kvJSON `json:"kv"`
		} `json:"events"`
	} `json:"result"`
	Error json.RawMessage `json:"error"`
}

// stream runs one watch stream on one endpoint until it breaks; progressed
// says whether it got as far as created.
func (w *watch) stream(ctx context.Context, created func()) (progressed bool, err error) {
	tok, err := w.c.authToken(ctx)
	if err != nil {
		return false, err
	}
	w.tok = tok
	eps := w.c.Endpoints()
	ep := eps[0]
	req := map[string]any{
		"key":             b64(w.prefix),
		"range_end":       b64(prefixEnd(w.prefix)),
		"progress_notify": true,
	}
	if w.next > 0 {
		req["start_revision"] = strconv.FormatInt(w.next, 10)
	}
	body, err := json.Marshal(map[string]any{"create_request": req})
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Only setting up the stream has a timeout; its answer lasts.
	setup := time.AfterFunc(w.c.cfg.Timeout, cancel)
	hreq, err := http.NewRequestWithContext(sctx, http.MethodPost, ep+"/v3/watch", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if tok != "" {
		hreq.Header.Set("Authorization", tok)
	}
	resp, err := w.c.stream.Do(hreq)
	if err != nil {
		w.c.rotate(ep)
		return false, fmt.Errorf("%s: watch: %w", ep, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		w.c.rotate(ep)
		data, _ := readBounded(resp.Body, 4096)
		return false, fmt.Errorf("%s: watch: HTTP %s: %.200q", ep, resp.Status, data)
	}
	r := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := readLine(r, w.c.cfg.MaxResponseBytes)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if !progressed {
				w.c.rotate(ep)
			}
			return progressed, fmt.Errorf("%s: watch: %w", ep, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m watchMessage
		if err := json.Unmarshal(line, &m); err != nil {
			return progressed, fmt.Errorf("%s: watch: %w", ep, err)
		}
		if m.Error != nil {
			eb := errorBody{Error: m.Error}
			err := eb.err(ep)
			if errors.Is(err, ErrCompacted) {
				return progressed, &CompactedError{Next: w.next}
			}
			if transient(err) {
				w.c.rotate(ep)
			}
			return progressed, fmt.Errorf("watch: %w", err)
		}
		res := m.Result
		if res == nil {
			continue
		}
		if res.CompactRevision > 0 {
			return progressed, &CompactedError{Next: w.next, CompactRevision: res.CompactRevision}
		}
		if res.Canceled {
			code := 2
			if bytes.Contains([]byte(res.CancelReason), []byte("Unauthenticated")) {
				code = codeUnauthenticated
			}
			return progressed, &Error{Code: code, Message: "watch canceled: " + res.CancelReason, Endpoint: ep}
		}
		if res.Created {
			setup.Stop()
			progressed = true
			w.c.prefer(ep)
			if w.next == 0 {
				w.next = res.Header.Revision + 1
			}
			if created != nil {
				created()
			}
			continue
		}
		if len(res.Events) == 0 {
			// A progress notice: every change up to Header.Revision
			// has been sent.
			w.next = max(w.next, res.Header.Revision+1)
			continue
		}
		wr := WatchResponse{Revision: res.Header.Revision, Events: make([]Event, len(res.Events))}
		last := int64(0)
		for i, e := range res.Events {
			t := Put
			if e.Type == "DELETE" {
				t = Delete
			}
			wr.Events[i] = Event{Type: t, KV: e.KV.kv()}
			last = max(last, e.KV.ModRevision)
		}
		if err := w.handle(wr); err != nil {
			return progressed, &handlerError{err}
		}
		w.next = max(w.next, last+1)
	}
}

// rotate moves on from ep if it is still the preferred endpoint.
func (c *Client) rotate(ep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.Endpoints[c.cur] == ep {
		c.cur = (c.cur + 1) % len(c.cfg.Endpoints)
	}
}

// readLine reads one newline-ended message of at most limit bytes.
func readLine(r *bufio.Reader, limit int64) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if int64(len(line)+len(chunk)) > limit {
			return nil, fmt.Errorf("message over %d bytes", limit)
		}
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return line, nil
			}
			return nil, err
		}
		return line, nil
	}
}
