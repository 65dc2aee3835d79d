package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The rendered nginx file is written only in a directory no other user
// can change (on main it was written into one owned by nobody, who could
// then swap in a configuration of their own for root's nginx to load), and
// a symlink at its path is replaced, never written through.
func TestWriteOnlyInOurDirectory(t *testing.T) {
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs root to chown to another user")
	}
	base := t.TempDir()
	his := filepath.Join(base, "his")
	if err := os.Mkdir(his, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(his, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(his, "upstreams.conf")
	err := Write(out, []byte("upstream x {}\n"))
	if err == nil || !strings.Contains(err.Error(), "directory "+his+" is owned by uid 65534 (nobody), mode 0755") {
		t.Errorf("want the write refused, naming the directory, its owner and mode; have %v", err)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Errorf("%s written", out)
	}

	secret := filepath.Join(base, "secret")
	if err := os.WriteFile(secret, []byte("root's own\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "nginx.conf")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	if err := Write(link, []byte("upstream x {}\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root's own\n" {
		t.Errorf("written through the symlink: %q", b)
	}
	fi, err := os.Lstat(link)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("want a regular file, mode 0644, at %s: %v %v", link, fi, err)
	}
}
