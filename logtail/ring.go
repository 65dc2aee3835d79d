package logtail

import (
	"bytes"
	"sync"
)

// RingBytes is the default bound of the daemon's own log kept in memory
// (`gosup ctl tail --daemon`).
const RingBytes = 1 << 20

// ringOverhead is what a record costs the ring beyond its bytes (its slice
// header and allocation): counted against the bound, so that a storm of
// short records holds no more memory than a few long ones.
const ringOverhead = 32

// A Ring keeps the most recent records written to it (the daemon's log:
// one record a Write, as log/slog writes them), within a byte bound,
// overwriting the oldest; it counts what it overwrote. Each record is one
// line ending in a newline (one is added when missing). Records are
// numbered from 0 in the order written: a reader asks for those since the
// next number it has not seen.
type Ring struct {
	mu    sync.Mutex
	max   int
	recs  [][]byte // oldest first
	bytes int      // held, with ringOverhead a record
	first uint64   // the number of recs[0]
	// overwritten counts the records (and their bytes) let go for newer
	// ones.
	overwritten, overwrittenBytes int64
}

// NewRing returns a ring holding at most max bytes (RingBytes when max
// <= 0).
func NewRing(max int) *Ring {
	if max <= 0 {
		max = RingBytes
	}
	return &Ring{max: max}
}

// Write keeps a copy of b as one record; a record over the ring's bound
// keeps only its start, and says so. It never fails.
func (r *Ring) Write(b []byte) (int, error) {
	n := len(b)
	rec := r.record(b)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.add(rec)
	return n, nil
}

// record is b as a record: a copy, ending in a newline, cut to fit.
func (r *Ring) record(b []byte) []byte {
	b = bytes.TrimSuffix(b, nl)
	if limit := r.max - ringOverhead - 64; len(b) > limit {
		cut := int64(len(b) - limit)
		b = append(bytes.Clone(b[:max(limit, 0)]), " [gosup: "+FormatBytes(cut)+" of this record cut]"...)
	} else {
		b = bytes.Clone(b)
	}
	return append(b, '\n')
}

func (r *Ring) add(rec []byte) {
	r.recs = append(r.recs, rec)
	r.bytes += len(rec) + ringOverhead
	drop := 0
	for r.bytes > r.max && drop < len(r.recs)-1 {
		r.bytes -= len(r.recs[drop]) + ringOverhead
		r.overwritten++
		r.overwrittenBytes += int64(len(r.recs[drop]))
		r.recs[drop] = nil
		drop++
	}
	if drop > 0 {
		r.first += uint64(drop)
		r.recs = r.recs[drop:]
	}
}

// Last returns the last n records (all when n < 0) and the number of the
// next record to be written.
func (r *Ring) Last(n int) (recs [][]byte, next uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n < 0 || n > len(r.recs) {
		n = len(r.recs)
	}
	return append([][]byte(nil), r.recs[len(r.recs)-n:]...), r.first + uint64(len(r.recs))
}

// Since returns the records numbered from seq on, the number of the next
// record to be written, and how many of those asked for were overwritten
// before they were read.
func (r *Ring) Since(seq uint64) (recs [][]byte, next uint64, missed uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next = r.first + uint64(len(r.recs))
	if seq < r.first {
		missed, seq = r.first-seq, r.first
	}
	if seq >= next {
		return nil, next, missed
	}
	return append([][]byte(nil), r.recs[seq-r.first:]...), next, missed
}

// Overwritten says how many records, and bytes of them, the ring let go.
func (r *Ring) Overwritten() (records, bytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.overwritten, r.overwrittenBytes
}

// Snapshot returns the newest records held within limit bytes (all of
// them when limit <= 0), joined (each ends in a newline), and the
// overwrite counters, the records left out counted in them: what an
// in-place upgrade hands the next image.
func (r *Ring) Snapshot(limit int) (records []byte, overwritten, overwrittenBytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first, size := len(r.recs), 0
	for first > 0 && (limit <= 0 || size+len(r.recs[first-1]) <= limit) {
		first--
		size += len(r.recs[first])
	}
	overwritten, overwrittenBytes = r.overwritten, r.overwrittenBytes
	out := make([]byte, 0, size)
	for i, rec := range r.recs {
		if i < first {
			overwritten++
			overwrittenBytes += int64(len(rec))
			continue
		}
		out = append(out, rec...)
	}
	return out, overwritten, overwrittenBytes
}

// Restore puts back what Snapshot returned, before what the ring holds
// now (the new image's first records), within the bound.
func (r *Ring) Restore(records []byte, overwritten, overwrittenBytes int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.recs
	r.recs, r.bytes, r.first = nil, 0, 0
	r.overwritten += overwritten
	r.overwrittenBytes += overwrittenBytes
	for len(records) > 0 {
		line, rest, _ := bytes.Cut(records, nl)
		records = rest
		r.add(r.record(line))
	}
	for _, rec := range now {
		r.add(rec)
	}
}
