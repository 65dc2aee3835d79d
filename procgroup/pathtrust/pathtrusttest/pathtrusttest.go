// Package pathtrusttest holds what the tests of who may change a path
// share: the other user, and the rule for the tests that need root.
package pathtrusttest

import (
	"os"
	"testing"
)

// Nobody is "another user" (uid, and gid of nogroup) in these tests: the
// daemon runs as root here, and CI runs as root.
const Nobody = 65534

// NeedRoot skips a test that needs root (to chown to Nobody, to mount a
// filesystem) when not root, except under CI, where it fails instead: a
// test that skips in CI tests nothing.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (it chowns files to another user or mounts a filesystem), and CI is set")
	}
	t.Skip("needs root: it chowns files to another user or mounts a filesystem")
}
