package logtail

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// One 10 MB line without a newline: the tail is its last DefaultBytes, after
// a marker saying how much of the lines asked for was cut.
func TestTailLinesLongLineIsCapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "long.log")
	line := "the start " + strings.Repeat("x", 10<<20) + " the end"
	if err := os.WriteFile(path, []byte("before\n"+line), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Lines(path, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	marker, rest, _ := strings.Cut(string(got), "\n")
	if marker != "[gosup: 9.9MB cut]" {
		t.Errorf("marker %q, want [gosup: 9.9MB cut]", marker)
	}
	if rest != line[len(line)-DefaultBytes:]+"\n" {
		t.Errorf("tail of a 10 MB line is %d bytes after the marker, want its last %d and a newline", len(rest), DefaultBytes)
	}
	// Asked for more, up to MaxBytes.
	for _, limit := range []int{1 << 20, 64 << 20} {
		got, err := Lines(path, 10, limit)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(limit, MaxBytes) + len("[gosup: 9.0MB cut]\n") + 1; len(got) != want || !strings.HasPrefix(string(got), "[gosup: ") {
			t.Errorf("limit %d: %d bytes, want %d: %.40q", limit, len(got), want, got)
		}
	}
}

// A line cut at the front starts at a rune, not in the middle of one.
func TestTailLinesCutsAtRune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "euro.log")
	line := strings.Repeat("€", 100) + "\n" // 3 bytes each
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	for limit := 1; limit < 20; limit++ {
		got, err := Lines(path, 1, limit)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(got), "]\n")
		if !utf8.ValidString(rest) || len(rest) > limit || len(rest) < limit-2 || !strings.HasSuffix(rest, "€\n") && limit > 3 {
			t.Errorf("limit %d: %q", limit, got)
		}
	}
}

// Lines that fit are whole: the cut drops whole lines from the front; the
// marker says how many bytes. Nothing cut, no marker.
func TestTailLinesDropsWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lines.log")
	if err := os.WriteFile(path, []byte("one 1\ntwo 22\nthree 333\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n, limit int
		want     string
	}{
		{3, 100, "one 1\ntwo 22\nthree 333\n"},
		{10, 100, "one 1\ntwo 22\nthree 333\n"},
		{2, 100, "two 22\nthree 333\n"},
		{0, 100, ""},
		{3, 17, "[gosup: 6B cut]\ntwo 22\nthree 333\n"},
		{3, 16, "[gosup: 13B cut]\nthree 333\n"},
		{2, 16, "[gosup: 7B cut]\nthree 333\n"},
		{1, 4, "[gosup: 6B cut]\n333\n"},
	} {
		got, err := Lines(path, tc.n, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("n %d limit %d: %q, want %q", tc.n, tc.limit, got, tc.want)
		}
	}
}

// Find agrees with a model that splits the whole region into lines,
// for random bytes, regions, line counts, limits, chunk sizes and scan
// bounds.
func TestFindTailModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 4))
	pieces := []string{"a", "b", "\n", "\n", "é", "€", "\xa9"}
	for i := range 20000 {
		var sb strings.Builder
		for range rng.IntN(200) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
		}
		data := []byte(sb.String())
		from := int64(rng.IntN(len(data) + 1))
		end := from + int64(rng.IntN(len(data)-int(from)+1))
		n := []int{-1, 0, 1, 2, 3, 7, 1000}[rng.IntN(7)]
		limit := 1 + rng.IntN(60)
		chunk := int64(1 + rng.IntN(20))
		scan := int64(1 + rng.IntN(300))
		got, err := find(bytes.NewReader(data), from, end, n, limit, chunk, scan)
		if err != nil {
			t.Fatal(err)
		}
		if want := modelTail(data, from, end, n, limit, scan); got != want {
			t.Fatalf("case %d: %q [%d,%d) n %d limit %d chunk %d scan %d:\ngot  %+v\nwant %+v", i, data, from, end, n, limit, chunk, scan, got, want)
		}
	}
}

// modelTail is Find the simple way: every line of the region, the
// last n of them, then whole lines dropped from the front until the rest
// fits.
func modelTail(data []byte, from, end int64, n, limit int, scan int64) Tail {
	t := Tail{Start: end, End: end}
	if n == 0 || end <= from {
		return t
	}
	var starts []int64 // every line start in the region
	for i := from; i < end; i++ {
		if i == from || data[i-1] == '\n' {
			starts = append(starts, i)
		}
	}
	if n > 0 && len(starts) > n {
		starts = starts[len(starts)-n:]
	}
	start := starts[0]
	low := max(from, end-int64(limit))
	t.Start = end
	for _, s := range starts {
		if s >= low {
			t.Start = s
			break
		}
	}
	if t.Start == end {
		t.Start = low
		for i := 0; i < 3 && t.Start < end && !utf8.RuneStart(data[t.Start]); i++ {
			t.Start++
		}
	}
	t.Cut = t.Start - start
	// Lines that begin before the scan bound are not found (n < 0 needs no
	// scan: they begin at from).
	if floor := max(from, min(end-scan, low-1)); n > 0 && floor > from && start <= floor {
		t.Cut, t.CutAtLeast = t.Start-floor, true
	}
	return t
}

// A tail that stopped looking before the lines began says "more than".
func TestTailMarker(t *testing.T) {
	for _, tc := range []struct {
		t    Tail
		want string
	}{
		{Tail{}, ""},
		{Tail{Cut: 512}, "[gosup: 512B cut]\n"},
		{Tail{Cut: 10<<20 - 64<<10}, "[gosup: 9.9MB cut]\n"},
		{Tail{Cut: 64 << 20, CutAtLeast: true}, "[gosup: more than 64.0MB cut]\n"},
	} {
		if got := tc.t.Marker(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.t, got, tc.want)
		}
	}
}

// ParseLimit reads what an operator writes, from 1 byte to MaxBytes;
// SizeString writes it back.
func TestParseLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"1", 1}, {"4096", 4096}, {"64KB", 64 << 10}, {"64kb", 64 << 10}, {" 1 MB ", 1 << 20}, {"100B", 100}, {"4MB", MaxBytes}, {"4194304", MaxBytes},
		{"0", 0}, {"4194305", 0}, {"5MB", 0}, {"-1", 0}, {"", 0}, {"lots", 0}, {"1GB", 0}, {"9999999999999999999KB", 0},
	} {
		got, err := ParseLimit(tc.in)
		if got != tc.want || (err == nil) != (tc.want > 0) {
			t.Errorf("ParseLimit(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), "want 1 to 4MB") {
			t.Errorf("ParseLimit(%q): %v", tc.in, err)
		}
	}
	for n, want := range map[int]string{DefaultBytes: "64KB", MaxBytes: "4MB", 1000: "1000"} {
		if got := SizeString(n); got != want {
			t.Errorf("SizeString(%d) = %q, want %q", n, got, want)
		}
	}
}

// BenchmarkTailLongLine tails 10 lines of a 10 MB file that is one line.
func BenchmarkTailLongLine(b *testing.B) {
	path := filepath.Join(b.TempDir(), "long.log")
	if err := os.WriteFile(path, []byte(strings.Repeat("x", 10<<20)), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Lines(path, 10, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTailLines tails 10 and 1000 lines of a 10 MB file of 100-byte
// lines.
func BenchmarkTailLines(b *testing.B) {
	path := filepath.Join(b.TempDir(), "lines.log")
	if err := os.WriteFile(path, []byte(strings.Repeat(strings.Repeat("y", 99)+"\n", 100<<10)), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 1000} {
		b.Run("n="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Lines(path, n, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
