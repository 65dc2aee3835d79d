package config

import (
	"go/build"
	"path/filepath"
	"strings"
	"testing"
)

// config yields plain structs: it, and whatever it imports, may use only
// the process layer (procgroup and its subpackages, memmon), the template
// model, logtail, internal/safetext and internal/hostaddr (leaves on the
// standard library),
// never the daemon or its side packages (supervisor,
// supervisor/nginx, supervisor/api, ...). Checked over everything config
// imports, directly or not, so that the direction cannot regress unseen.
func TestConfigImportsNoRuntime(t *testing.T) {
	const module = "github.com/gosup/gosup/"
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(path string) bool {
		rel := strings.TrimPrefix(path, module)
		for _, ok := range []string{"procgroup", "memmon", "templates", "logtail", "internal/safetext", "internal/hostaddr"} {
			if rel == ok || strings.HasPrefix(rel, ok+"/") {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	var walk func(path, from string)
	walk = func(path, from string) {
		if seen[path] {
			return
		}
		seen[path] = true
		pkg, err := build.ImportDir(filepath.Join(root, strings.TrimPrefix(path, module)), 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			if !allowed(imp) {
				t.Errorf("%s imports %s (%s): config must not depend on the daemon or its side packages", path, imp, from)
			}
			walk(imp, from+" → "+imp)
		}
	}
	walk(module+"supervisor/config", "via supervisor/config")
	if !seen[module+"procgroup"] || !seen[module+"memmon"] {
		t.Fatalf("the walk did not reach procgroup and memmon (is it reading the module?): %v", seen)
	}
}
