package procgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readLog returns the content of path, "" when it does not exist.
func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// A daemon started on a log already larger than maxbytes (a lower limit in
// the new config, or a file written by something else) rotates it away
// before its first write instead of computing a negative room.
func TestRotatorStartsOnOversizeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.log")
	old := strings.Repeat("old line\n", 10) // 90 bytes
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := newRotator(path, 20, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := r.Write([]byte("new\n")); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v; want 4, nil", n, err)
	}
	if got := readLog(t, path+".1"); got != old {
		t.Errorf("r.log.1 = %q; want the old file, untouched", got)
	}
	if got := readLog(t, path); got != "new\n" {
		t.Errorf("r.log = %q; want %q", got, "new\n")
	}
}

// A reload that lowers maxbytes below the current file's size takes effect
// at the next write: the file rotates first, and every later file keeps to
// the new limit.
func TestRotatorLimitLoweredMidStream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.log")
	r, err := newRotator(path, 1000, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first := strings.Repeat("0123456789\n", 10) // 110 bytes
	if _, err := r.Write([]byte(first)); err != nil {
		t.Fatal(err)
	}
	r.setLimits(30, 3)
	second := strings.Repeat("abcdefghi\n", 5) // 50 bytes: 30 + 20 at a line break
	if n, err := r.Write([]byte(second)); n != len(second) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(second))
	}
	want := map[string]string{
		path + ".2": first,
		path + ".1": second[:30],
		path:        second[30:],
	}
	for p, w := range want {
		if got := readLog(t, p); got != w {
			t.Errorf("%s = %q; want %q", filepath.Base(p), got, w)
		}
	}
}

// A line that does not fit in what is left of a file starts the next file;
// a line longer than maxbytes goes out in maxbytes pieces, one per file.
func TestRotatorKeepsLinesWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.log")
	r, err := newRotator(path, 20, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	long := strings.Repeat("L", 45)
	for _, w := range []string{"0123456789abcde\n", "second line ok\n", long} {
		if n, err := r.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	want := []string{"0123456789abcde\n", "second line ok\n", long[:20], long[20:40], long[40:]}
	for i, w := range want {
		p := path
		if k := len(want) - 1 - i; k > 0 {
			p += "." + strconv.Itoa(k)
		}
		if got := readLog(t, p); got != w {
			t.Errorf("%s = %q; want %q", filepath.Base(p), got, w)
		}
	}
}

// With maxbytes 0 (a reload that turns rotation off while a copier still
// drains into the rotator) the file is only appended to.
func TestRotatorWithoutLimitAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.log")
	r, err := newRotator(path, 10, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Write([]byte("12345\n")); err != nil {
		t.Fatal(err)
	}
	r.setLimits(0, 1)
	big := strings.Repeat("x", 100) + "\n"
	if n, err := r.Write([]byte(big)); n != len(big) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if got := readLog(t, path); got != "12345\n"+big {
		t.Errorf("r.log = %q", got)
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("rotated without a limit: %v", err)
	}
}
