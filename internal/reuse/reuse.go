// Package reuse keeps buffers for their next use: a typed sync.Pool whose
// values empty themselves before they are kept, and are dropped instead
// when they have grown too large to be worth keeping.
package reuse

import "sync"

// Pool keeps values of T between uses; its zero value is ready. PT's
// Reset empties a value for its next use (clearing what it references,
// so that the pool keeps nothing else alive) and reports whether it is
// worth keeping.
type Pool[T any, PT interface {
	*T
	Reset() bool
}] struct {
	p sync.Pool
}

// Get returns a kept value, or a new one.
func (p *Pool[T, PT]) Get() PT {
	if v, ok := p.p.Get().(PT); ok {
		return v
	}
	return PT(new(T))
}

// Put keeps v for a later Get, once emptied, unless Reset says it is not
// worth keeping.
func (p *Pool[T, PT]) Put(v PT) {
	if v.Reset() {
		p.p.Put(v)
	}
}
