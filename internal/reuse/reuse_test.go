package reuse

import "testing"

type buf struct {
	b []string
}

// Reset keeps buffers of up to 4 elements.
func (b *buf) Reset() bool {
	if cap(b.b) > 4 {
		return false
	}
	clear(b.b[:cap(b.b)])
	b.b = b.b[:0]
	return true
}

// A value comes back emptied, and one grown past its bound is not kept:
// the next Get makes a new one.
func TestPoolEmptiesAndBounds(t *testing.T) {
	var p Pool[buf, *buf]
	v := p.Get()
	v.b = append(v.b, "a", "b")
	backing := &v.b[:1][0]
	p.Put(v)
	if *backing != "" {
		t.Errorf("a kept buffer still references %q", *backing)
	}
	big := p.Get()
	big.b = append(big.b, "1", "2", "3", "4", "5")
	p.Put(big)
	for range 10 { // the pool may drop anything; it never returns the big one
		if v := p.Get(); cap(v.b) > 4 || len(v.b) != 0 {
			t.Fatalf("Get returned %d of %d: a buffer over the bound, or not emptied", len(v.b), cap(v.b))
		}
	}
}
