// Package guardtest holds what tests of guarded goroutines share: a log
// destination that many goroutines may write while a test reads it.
package guardtest

import (
	"bytes"
	"sync"
)

// LogBuffer collects log output from many goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
