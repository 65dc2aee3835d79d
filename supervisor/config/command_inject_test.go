package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A process's command reaches a user's nginx template (.Command) but no
// key check: a word with a line break (a script of several lines for
// sh -c, or one brought in by %(ENV_X)s) cannot start a directive of its
// own in the rendered file, while the program still gets it as written.
func TestRenderCommandCannotInject(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "nginx.tmpl")
	if err := os.WriteFile(tmpl, []byte("{{ range .Programs }}{{ range .Processes }}# {{ .Name }}: {{ join \" \" .Command }}\n{{ end }}{{ end }}"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "gosup.toml")
	conf := `[program.web]
command = "sh -c 'echo a\nlisten 6666;\u0085b' %(ENV_INJECT)s"
port_start = 9000
upstream = "web"

[nginx]
output = "nginx.conf"
template = "nginx.tmpl"

[nginx.upstream.web]
`
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("INJECT", "'x\rlocation / { return 200; }'")
	cfg, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.RenderNginx(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.FieldsFunc(string(out), func(r rune) bool { return r == '\n' || r == '\r' || r == '\u0085' }) {
		if !strings.HasPrefix(l, "# ") {
			t.Errorf("the command put a line of its own in the file: %q\n%s", l, out)
		}
	}
	if want := "# web:web: sh -c echo a?listen 6666;?b x?location / { return 200; }\n"; string(out) != want {
		t.Errorf("render:\n%q\nwant\n%q", out, want)
	}
	argv := cfg.Programs[0].Procs[0].Argv
	if want := []string{"sh", "-c", "echo a\nlisten 6666;\u0085b", "x\rlocation / { return 200; }"}; !slices.Equal(argv, want) {
		t.Errorf("the program's argv changed: %q, want %q", argv, want)
	}
}
