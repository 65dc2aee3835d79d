package metrics

import (
	"os/exec"
	"strings"
	"testing"
)

// The gosup binary links no Prometheus library (nor protobuf, which
// client_golang brought): their package initialisation ran in every gosup
// command, the CLI's included. They are the tests' reference only.
func TestBinaryLinksNoPrometheusLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/gosup/gosup/cmd/gosup").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for pkg := range strings.Lines(string(out)) {
		if strings.HasPrefix(pkg, "github.com/prometheus/") || strings.HasPrefix(pkg, "google.golang.org/protobuf/") {
			t.Errorf("cmd/gosup imports %s", strings.TrimSpace(pkg))
		}
	}
}
