package procgroup

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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

// FuzzRotator drives a rotator with a random program of writes, limit
// changes (lowered, raised, turned off) and restarts (a new rotator on the
// same files, as after a daemon restart), starting from random pre-existing
// files, and checks after every step:
//   - Write never panics, takes every byte and returns no error;
//   - the files, oldest first (path.B … path.1, path), concatenate to the
//     stream (pre-existing content then every byte written) while nothing
//     has been dropped, and to a suffix of it once backups ran out;
//   - a file that received bytes in a step holds at most the limit; the
//     current file stays below it (it rotates on reaching it) and a file
//     rotated away ends at a line break, or is exactly the limit because
//     the write ended there or it holds one piece of an over-long line.
//
// The parameters: limit (0 = none), backups, bytes of pre-existing logs
// and over how many backups they are spread, and ops, read three bytes at
// a time (kind, a, b).
func FuzzRotator(f *testing.F) {
	f.Add(uint16(20), uint8(2), uint16(90), uint8(0), []byte{0, 4, 5})                                           // start on a file over the limit
	f.Add(uint16(200), uint8(3), uint16(0), uint8(0), []byte{2, 13, 10, 3, 30, 0, 0, 50, 10})                    // lowered mid-stream
	f.Add(uint16(10), uint8(1), uint16(5), uint8(0), []byte{0, 40, 4, 3, 200, 0, 2, 90, 3})                      // raised mid-stream
	f.Add(uint16(10), uint8(2), uint16(5), uint8(0), []byte{0, 13, 0})                                           // a line that does not fit the rest of a file
	f.Add(uint16(16), uint8(4), uint16(300), uint8(3), []byte{0, 63, 0, 2, 40, 0})                               // lines longer than the limit
	f.Add(uint16(64), uint8(0), uint16(100), uint8(0), []byte{2, 30, 9, 2, 30, 1})                               // no backups
	f.Add(uint16(32), uint8(2), uint16(0), uint8(0), []byte{0, 20, 3, 3, 0, 0, 0, 60, 7, 3, 8, 0, 0, 10, 2})     // turned off, then on below the size
	f.Add(uint16(300), uint8(5), uint16(1000), uint8(2), []byte{3, 20, 0, 4, 0, 0, 0, 9, 3, 4, 0, 0, 1, 200, 5}) // restart over the limit
	f.Fuzz(func(t *testing.T, limitArg uint16, backupsArg uint8, preArg uint16, preFilesArg uint8, ops []byte) {
		limit := int64(limitArg % 257)
		backups := int(backupsArg % 6)
		path := filepath.Join(t.TempDir(), "r.log")
		name := func(k int) string {
			if k == 0 {
				return path
			}
			return path + "." + strconv.Itoa(k)
		}
		var stream []byte
		gen := func(n, density int) []byte {
			for range n {
				h := mix(uint64(len(stream)))
				c := byte('a' + h%26)
				if density > 0 && (h>>8)%uint64(density) == 0 {
					c = '\n'
				}
				stream = append(stream, c)
			}
			return stream[len(stream)-n:]
		}
		// Pre-existing logs: path.k … path.1, path, oldest first.
		pre := gen(int(preArg%2048), 7)
		files := int(preFilesArg)%(backups+1) + 1
		for k := files - 1; k >= 0; k-- {
			part := pre[:len(pre)/(k+1)]
			pre = pre[len(part):]
			if err := os.WriteFile(name(k), part, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		r, _ := newRotator(path, limit, backups)
		defer func() { r.Close() }()

		for steps := 0; len(ops) >= 3 && steps < 48 && len(stream) < 8<<10; steps++ {
			kind, a, b := ops[0]%5, int(ops[1]), int(ops[2])
			ops = ops[3:]
			before := len(stream)
			switch kind {
			case 0, 1: // a short write
				w := gen(a%64, b%16)
				if n, err := r.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
				}
			case 2: // a long one
				w := gen(a<<2|b&3, b>>2%32)
				if n, err := r.Write(w); n != len(w) || err != nil {
					t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
				}
			case 3: // a reload changes the limit
				limit = int64(a)
				r.setLimits(limit, backups)
			case 4: // the daemon restarts on the same files
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
				r, _ = newRotator(path, limit, backups)
			}
			checkRotated(t, name, backups, stream, before, limit)
		}
	})
}

// checkRotated checks the files of a rotator against the stream written
// to it; the bytes from before on were written by the last step.
func checkRotated(t *testing.T, name func(int) string, backups int, stream []byte, before int, limit int64) {
	t.Helper()
	var all []byte
	var parts [][]byte
	for k := backups; k >= 0; k-- {
		b, err := os.ReadFile(name(k))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
		parts = append(parts, b)
	}
	_, err := os.Stat(name(backups))
	complete := backups > 0 && os.IsNotExist(err) // nothing dropped yet
	switch {
	case complete && !bytes.Equal(all, stream):
		t.Fatalf("files hold %d bytes, not the %d of the stream (limit %d, backups %d)", len(all), len(stream), limit, backups)
	case !bytes.HasSuffix(stream, all):
		t.Fatalf("files (%d bytes) are not the end of the stream (%d bytes; limit %d, backups %d)", len(all), len(stream), limit, backups)
	}
	if limit <= 0 {
		return
	}
	end := len(stream)
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		start := end - len(p)
		if end > before { // received bytes in the last step
			current := i == len(parts)-1
			switch {
			case int64(len(p)) > limit:
				t.Fatalf("%s: %d bytes, over the limit %d", name(len(parts)-1-i), len(p), limit)
			case current && int64(len(p)) == limit:
				t.Fatalf("%s: reached the limit %d and did not rotate", name(0), limit)
			case current || p[len(p)-1] == '\n':
			case int64(len(p)) != limit:
				t.Fatalf("%s: rotated with %d bytes (limit %d) and not at a line break", name(len(parts)-1-i), len(p), limit)
			case end < len(stream) && (start < before || bytes.IndexByte(p, '\n') >= 0):
				// Full and cut mid-line, and the write went on: only a
				// line longer than the limit, alone in its file, may be.
				t.Fatalf("%s: a line that fit a fresh file was cut at the limit %d", name(len(parts)-1-i), limit)
			}
		}
		end = start
	}
}

// mix is splitmix64's finalizer: a byte of the stream from its offset.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// BenchmarkRotator writes 128 KiB reads of 100-byte lines, as the copier
// does under a burst, into a log rotating every MiB.
func BenchmarkRotator(b *testing.B) {
	r, err := newRotator(filepath.Join(b.TempDir(), "r.log"), 1<<20, 2)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	buf := bytes.Repeat([]byte(strings.Repeat("x", 99)+"\n"), largeBuf/100)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := r.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// Lowering *_logfile_backups (by reload, or for a new daemon) removes the
// backups above the new count at the next rotation instead of leaving them
// on disk for ever; files that only share the prefix are left alone.
func TestRotatorBackupsLoweredRemovesTheRest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.log")
	r, err := newRotator(path, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	write := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := fmt.Fprintf(r, "chunk %d..\n", i); err != nil { // 10 bytes: one rotation per write
				t.Fatal(err)
			}
		}
	}
	files := func() []string {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	for _, name := range []string{"r.log.old", "r.log.05", "r.log.07", "r.log.5.gz", "r.logger.9"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(6)
	if got, want := files(), []string{"r.log", "r.log.05", "r.log.07", "r.log.1", "r.log.2", "r.log.3", "r.log.4", "r.log.5.gz", "r.log.old", "r.logger.9"}; !slices.Equal(got, want) {
		t.Fatalf("with 4 backups: %v; want %v", got, want)
	}
	r.setLimits(10, 1)
	write(1)
	if got, want := files(), []string{"r.log", "r.log.05", "r.log.07", "r.log.1", "r.log.5.gz", "r.log.old", "r.logger.9"}; !slices.Equal(got, want) {
		t.Errorf("backups lowered to 1: %v; want %v", got, want)
	}
	// A rotator of a new daemon, with no backups at all.
	r2, err := newRotator(path, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	r.Close()
	if _, err := fmt.Fprintf(r2, "chunk x..\nchunk y..\n"); err != nil {
		t.Fatal(err)
	}
	if got, want := files(), []string{"r.log", "r.log.05", "r.log.07", "r.log.5.gz", "r.log.old", "r.logger.9"}; !slices.Equal(got, want) {
		t.Errorf("backups lowered to 0: %v; want %v", got, want)
	}
}

// After an external rotation renamed the file (logrotate's create), Reopen
// makes the next write land at the path again; what was written before is
// in the renamed file, nothing lost.
func TestRotatorReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.log")
	r, err := newRotator(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Write([]byte("before\n")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write([]byte("between\n")); err != nil {
		t.Fatal(err)
	}
	if err := r.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Reopen did not create %s: %v", path, err)
	}
	if _, err := r.Write([]byte("after\n")); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, path+".1"); got != "before\nbetween\n" {
		t.Errorf("renamed file = %q", got)
	}
	if got := readLog(t, path); got != "after\n" {
		t.Errorf("file at the path = %q", got)
	}
}

// A copytruncate rotation truncates the file under the rotator: the next
// writes go to the start of the file (O_APPEND: no hole of NUL bytes), and
// the size limit counts from there (no early rotation).
func TestRotatorAfterCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.log")
	r, err := newRotator(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	line := strings.Repeat("x", 39) + "\n" // 40 bytes
	for range 2 {
		if _, err := r.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if got := readLog(t, path); got != line+line {
		t.Errorf("after truncation the file holds %q; want two lines from its start", got)
	}
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("rotated early (80 bytes in a 100-byte file): %s.1: %v", path, err)
	}
}
