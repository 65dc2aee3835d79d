package main

import (
	"strings"
	"testing"

	"github.com/gosup/gosup/supervisor/importer"
)

// Imported straight to where gosup looks without -c (README's command):
// the next steps do not install the file onto itself, which fails
// ("are the same file") before its gosup check.
func TestNextStepsInstalledOutput(t *testing.T) {
	var b strings.Builder
	printNextSteps(&b, "/etc/supervisor/supervisord.conf", installedConfig, &importer.Result{}, 0)
	got := b.String()
	if strings.Contains(got, "install -D") {
		t.Errorf("the next steps install %s onto itself:\n%s", installedConfig, got)
	}
	if !strings.Contains(got, "     gosup check -c "+installedConfig+"\n") {
		t.Errorf("the next steps do not check %s:\n%s", installedConfig, got)
	}
}
