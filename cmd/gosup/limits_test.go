package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gosup/gosup/supervisor/config"
)

// TestSystemdUnitLimitNOFILE: the unit's LimitNOFILE= holds what the
// daemon needs (FDs): 65536, or the next power of two above.
func TestSystemdUnitLimitNOFILE(t *testing.T) {
	for _, c := range []struct {
		procs int
		want  string
	}{{10, "LimitNOFILE=65536\n"}, {9000, "LimitNOFILE=65536\n"}, {11000, "LimitNOFILE=131072\n"}} {
		dir := t.TempDir()
		file := filepath.Join(dir, "gosup.toml")
		body := "[supervisor]\nsocket = \"s.sock\"\nlogdir = \"log\"\n" +
			"[program.web]\ncommand = \"/bin/sleep 3600\"\nnumprocs = " + strconv.Itoa(c.procs) + "\nprocess_name = \"web%(process_num)d\"\n"
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		unit, err := systemdUnit("/usr/local/bin/gosup", cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(unit), "up to "+strconv.Itoa(cfg.FDs())+" descriptors\n") || !strings.Contains(string(unit), "\n"+c.want) {
			t.Errorf("%d processes (%d descriptors): no %q in\n%s", c.procs, cfg.FDs(), c.want, unit)
		}
	}
}
