package config_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gosup/gosup/supervisor/config"
	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected output of the golden files")

// Each testdata/render/*.txtar holds a gosup.toml and the nginx.conf it
// renders to: the [nginx] table, validated here, through the template
// package (which knows nothing of gosup.toml).
func TestRenderGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/render/*.txtar")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var want []byte
			for _, f := range ar.Files {
				if f.Name == "nginx.conf" {
					want = f.Data
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := config.Load(filepath.Join(dir, "gosup.toml"))
			if err != nil {
				t.Fatal(err)
			}
			have, err := cfg.RenderNginx(nil)
			if err != nil {
				t.Fatal(err)
			}
			have = bytes.ReplaceAll(have, []byte(cfg.File), []byte("GOSUP.TOML"))
			again, _ := cfg.RenderNginx(nil)
			if !bytes.Equal(bytes.ReplaceAll(again, []byte(cfg.File), []byte("GOSUP.TOML")), have) {
				t.Error("two renderings of the same configuration differ")
			}
			if *update {
				for i := range ar.Files {
					if ar.Files[i].Name == "nginx.conf" {
						ar.Files[i].Data = have
					}
				}
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !bytes.Equal(have, want) {
				t.Errorf("rendered:\n%s\nwant:\n%s", have, want)
			}
		})
	}
}
