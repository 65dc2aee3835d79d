//go:build linux && !amd64

package forkexec

import "os"

const forkSupported = false

func (s *Spawner) fork(path string, argv []string, a *Attr) (*os.Process, error) {
	return startProcess(path, argv, a)
}
