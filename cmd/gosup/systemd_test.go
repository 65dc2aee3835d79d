package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosup/gosup/supervisor/config"
)

var update = flag.Bool("update", false, "rewrite examples/gosup.service")

// loadExample loads examples/sentry.toml as if it were installed as
// /etc/gosup/gosup.toml.
func loadExample(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load(filepath.Join("..", "..", "examples", "sentry.toml"))
	if err != nil {
		t.Fatal(err)
	}
	c := *cfg
	c.File = "/etc/gosup/gosup.toml"
	return &c
}

// TestSystemdUnitGolden: examples/gosup.service is what systemd-unit prints
// for examples/sentry.toml (go test -run Golden -update rewrites it).
func TestSystemdUnitGolden(t *testing.T) {
	got, err := systemdUnit("/usr/local/bin/gosup", loadExample(t))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("..", "..", "examples", "gosup.service")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("systemd-unit output differs from %s (rerun with -update and review the diff):\n%s", golden, got)
	}
	again, _ := systemdUnit("/usr/local/bin/gosup", loadExample(t))
	if !bytes.Equal(got, again) {
		t.Errorf("two renderings differ")
	}
}

// TestSystemdUnitVerify runs systemd-analyze verify on units for the example
// and for configurations that change the hardening. systemd-analyze is part
// of Debian's systemd package, which .ci/run installs when it is missing.
func TestSystemdUnitVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed (apt-get install systemd): %v", err)
	}
	// ExecStart must name an executable file: use this test binary.
	bin, err := selfPath()
	if err != nil {
		t.Fatal(err)
	}
	home := loadExample(t)
	home.File = "/home/app/gosup conf/100% $HOME.toml"
	home.Supervisor.Socket = "/home/app/gosup.sock"
	unlimited := loadExample(t)
	unlimited.Supervisor.TasksMax = config.TasksInfinity
	for name, cfg := range map[string]*config.Config{"example": loadExample(t), "home": home, "tasks_max=infinity": unlimited} {
		t.Run(name, func(t *testing.T) {
			unit, err := systemdUnit(bin, cfg)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			file := filepath.Join(dir, "gosup.service")
			if err := os.WriteFile(file, unit, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", "--man=no", file).CombinedOutput()
			// Unknown keys and bad values are only warnings: any line
			// about the file is a failure.
			if err != nil || bytes.Contains(out, []byte("gosup.service")) {
				t.Errorf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
			}
		})
	}
}

func TestSystemdQuote(t *testing.T) {
	for _, c := range []struct {
		in        string
		exec      bool
		want, err string
	}{
		{in: "/usr/local/bin/gosup", exec: true, want: "/usr/local/bin/gosup"},
		{in: "/etc/gosup/a b.toml", exec: true, want: `"/etc/gosup/a b.toml"`},
		{in: `/x/"q"\`, exec: true, want: `"/x/\"q\"\\"`},
		{in: "/x/100%$HOME", exec: true, want: `"/x/100%%$$HOME"`},
		{in: "/x/100%$HOME", exec: false, want: `"/x/100%%$HOME"`},
		{in: "/x/a\nb", exec: true, err: "control character"},
	} {
		got, err := systemdQuote(c.in, c.exec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("systemdQuote(%q): error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("systemdQuote(%q, %v) = %q, %v; want %q", c.in, c.exec, got, err, c.want)
		}
	}
}

// TestSystemdUnitDocumentation: the unit's Documentation= (what systemctl
// help gosup opens) is a page of this repository on GitHub that exists,
// and its #anchor, if any, a heading of that page.
func TestSystemdUnitDocumentation(t *testing.T) {
	unit, err := systemdUnit("/usr/local/bin/gosup", loadExample(t))
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, l := range strings.Split(string(unit), "\n") {
		if u, ok := strings.CutPrefix(l, "Documentation="); ok {
			urls = append(urls, strings.Fields(u)...)
		}
	}
	if len(urls) == 0 {
		t.Fatalf("no Documentation= in\n%s", unit)
	}
	for _, u := range urls {
		page, anchor, _ := strings.Cut(u, "#")
		file, ok := strings.CutPrefix(page, "https://github.com/gosup/gosup/blob/main/")
		if page == "https://github.com/gosup/gosup" {
			file, ok = "README.md", true
		}
		if !ok {
			t.Errorf("Documentation=%s: not a page of github.com/gosup/gosup", u)
			continue
		}
		text, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(file)))
		if err != nil {
			t.Errorf("Documentation=%s: %v", u, err)
			continue
		}
		if anchor != "" && !docAnchors(string(text))[anchor] {
			t.Errorf("Documentation=%s: %s has no heading #%s", u, file, anchor)
		}
	}
}
