package imagepages

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Drop takes the executable's read-only pages out of the RSS, and the
// process goes on running from them (it faults back what it touches:
// this test's own code, the testing package's).
func TestDrop(t *testing.T) {
	before := imageRSS(t)
	if before == 0 {
		t.Fatal("no resident page of the test binary's read-only mappings before the drop")
	}
	if n := Drop(); n < 2 {
		t.Fatalf("dropped %d mappings, want the code's and the constant data's", n)
	}
	after := imageRSS(t)
	t.Logf("the test binary's read-only mappings: %d kB resident before, %d kB after", before, after)
	if after >= before {
		t.Errorf("resident kB of the read-only image: %d before the drop, %d after", before, after)
	}
}

// A position-independent build (-buildmode=pie, as distributions build
// Go programs) has a read-only mapping the dynamic loader wrote to
// (RELRO: relocated pointers): Drop must leave it, or the program reads
// unrelocated pointers and crashes. The daemon built so crashed at its
// first status request after start-up.
func TestDropInPositionIndependentBuild(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test builds a program with the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "piecheck")
	build := exec.Command(gobin, "build", "-buildmode=pie", "-o", bin, "./testdata/piecheck")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildmode=pie: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || !strings.HasSuffix(string(out), "ok\n") {
		t.Fatalf("a PIE program after Drop: %v\n%s", err, out)
	}
}

// imageRSS is the resident kB of the test binary's read-only mappings,
// from /proc/self/smaps.
func imageRSS(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && len(fields[1]) == 4:
			in = len(fields) == 6 && fields[5] == exe && !strings.Contains(fields[1], "w")
		case in && len(fields) == 3 && fields[0] == "Rss:":
			n, _ := strconv.Atoi(fields[1])
			kb += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kb
}

func TestMappings(t *testing.T) {
	smaps := `00400000-00b98000 r-xp 00000000 fd:01 123 /usr/bin/gosup
Rss:                6752 kB
Anonymous:             0 kB
00b98000-013d3000 r--p 00798000 fd:01 123 /usr/bin/gosup
Rss:                6824 kB
Anonymous:             0 kB
013d3000-013e0000 r--p 00fd3000 fd:01 123 /usr/bin/gosup
Rss:                  52 kB
Anonymous:            52 kB
013e0000-014d9000 rw-p 00fe0000 fd:01 123 /usr/bin/gosup
Anonymous:           536 kB
014d9000-03742000 rw-p 00000000 00:00 0
Anonymous:          3000 kB
7f0000000000-7f0000001000 r--p 00000000 fd:01 456 /usr/bin/gosup.old
Anonymous:             0 kB
7f0000002000-7f0000003000 r--s 00000000 fd:01 123 /usr/bin/gosup
Anonymous:             0 kB
7f0000004000-7f0000005000 r-xp 00000000 fd:01 123 /usr/bin/gosup (deleted)
Anonymous:             0 kB
7f0000006000-7f0000007000 r--p 00000000 fd:01 123 /usr/bin/gosup
Anonymous:             4 kB
`
	got := Mappings(strings.NewReader(smaps), "/usr/bin/gosup")
	want := [][2]uintptr{{0x400000, 0xb98000}, {0xb98000, 0x13d3000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Mappings = %x, want %x (the private read-only mappings of the file holding no private page)", got, want)
	}
}
