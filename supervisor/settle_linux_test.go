package supervisor

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// dropImagePages takes the executable's read-only pages out of the RSS,
// and the process goes on running from them (it faults back what it
// touches: this test's own code, the testing package's).
func TestDropImagePages(t *testing.T) {
	before := imageRSS(t)
	if before == 0 {
		t.Fatal("no resident page of the test binary's read-only mappings before the drop")
	}
	if n := dropImagePages(); n < 2 {
		t.Fatalf("dropped %d mappings, want the code's and the constant data's", n)
	}
	after := imageRSS(t)
	t.Logf("the test binary's read-only mappings: %d kB resident before, %d kB after", before, after)
	if after >= before {
		t.Errorf("resident kB of the read-only image: %d before the drop, %d after", before, after)
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

func TestImageMappings(t *testing.T) {
	maps := `00400000-00b98000 r-xp 00000000 fd:01 123 /usr/bin/gosup
00b98000-013d3000 r--p 00798000 fd:01 123 /usr/bin/gosup
013d3000-014d9000 rw-p 00fd3000 fd:01 123 /usr/bin/gosup
014d9000-03742000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fd:01 456 /usr/bin/gosup.old
7f0000002000-7f0000003000 r--s 00000000 fd:01 123 /usr/bin/gosup
7f0000004000-7f0000005000 r-xp 00000000 fd:01 123 /usr/bin/gosup (deleted)
`
	got := imageMappings(strings.NewReader(maps), "/usr/bin/gosup")
	want := [][2]uintptr{{0x400000, 0xb98000}, {0xb98000, 0x13d3000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("imageMappings = %x, want %x (the private read-only mappings of the file only)", got, want)
	}
}
