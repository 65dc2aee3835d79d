// Package atomicfile replaces files so that no reader ever sees half of one.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gosup/gosup/procgroup/safefile"
)

// Write replaces path with data through a temporary file in the same
// directory and a rename, keeping the old file's mode (0644 for a new one):
// a reader (nginx, the next daemon) never reads a half-written file.
//
// The directory must be one no other user can change (safefile.Dir): the
// file written (nginx's configuration, run by root) is then the file read.
// The temporary file is created with O_EXCL|O_NOFOLLOW, and the rename
// replaces a symlink at path rather than writing through it.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := safefile.Dir(dir, safefile.NoUser, false); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
		mode = fi.Mode().Perm()
	}
	f, err := safefile.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
