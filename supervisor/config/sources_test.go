package config

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sourcesTree is a configuration that reads four files: the main one, two
// included through a glob, and an nginx template.
var sourcesTree = map[string]string{
	"gosup.toml": `include = ["conf.d/*.toml"]

[supervisor]
socket = "gosup.sock"
logdir = "log"

[program.api]
command = "api --port %(port)d --here %(here)s"
port_start = 9000
upstream = "api"

[nginx]
output = "nginx/gosup.conf"
template = "nginx.tmpl"
test_command = ""

[nginx.upstream.api]
protocol = "http"
`,
	"conf.d/web.toml": `[program.web]
command = "web --port %(port)d"
numprocs = 2
process_name = "web_%(process_num)d"
port_start = 9100
upstream = "api"
directory = "%(here)s"
stdout_logfile = "logs/%(process_num)d.log"
`,
	"conf.d/worker.toml": `[program.worker]
command = "worker"
priority = 10
touch_reload = ["reload.txt"]
`,
	"nginx.tmpl": `# {{ len .Programs }} programs
{{- range .Upstreams }}
upstream {{ .Name }} {
{{- range .Servers }}
    server {{ .Address }};  # {{ .Name }}
{{- end }}
}
{{- end }}
`,
}

// loadSources loads sourcesTree from a new directory and returns it and
// the loaded Config.
func loadSources(t *testing.T) (string, *Config) {
	t.Helper()
	dir := writeTree(t, sourcesTree)
	cfg, err := Load(filepath.Join(dir, "gosup.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// A load keeps the bytes of every file it read, by absolute path.
func TestSourcesHoldEveryFileRead(t *testing.T) {
	dir, cfg := loadSources(t)
	want := map[string][]byte{}
	for name, body := range sourcesTree {
		want[filepath.Join(dir, name)] = []byte(body)
	}
	if !reflect.DeepEqual(cfg.Sources, want) {
		t.Errorf("Sources holds %q, want %q", slices.Sorted(maps.Keys(cfg.Sources)), slices.Sorted(maps.Keys(want)))
		for k, v := range want {
			if string(cfg.Sources[k]) != string(v) {
				t.Errorf("%s: have %q, want %q", k, cfg.Sources[k], v)
			}
		}
	}
	// Without a template, nothing more than the configuration files.
	dir = writeTree(t, map[string]string{"gosup.toml": "[program.web]\ncommand = \"web\"\n"})
	cfg, err := Load(filepath.Join(dir, "gosup.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if k := slices.Collect(maps.Keys(cfg.Sources)); !slices.Equal(k, []string{filepath.Join(dir, "gosup.toml")}) {
		t.Errorf("Sources: %q", k)
	}
}

// Loaded from its Sources, a configuration is the one first loaded,
// whatever became of the files on disk since: edited, deleted, added,
// made writable by anyone (no trust check: they were checked when read).
func TestLoadFromSources(t *testing.T) {
	dir, first := loadSources(t)
	firstNginx, err := first.RenderNginx(nil)
	if err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "gosup.toml")
	writeFile(t, main, "include = [\"conf.d/*.toml\"]\n[program.other]\ncommand = \"other\"\n"+
		"[nginx]\noutput = \"elsewhere.conf\"\ntemplate = \"nginx.tmpl\"\n[nginx.upstream.api]\n", 0o666, 0, 0)
	writeFile(t, filepath.Join(dir, "conf.d/new.toml"), "[program.new]\ncommand = \"new\"\n", 0o644, 0, 0)
	writeFile(t, filepath.Join(dir, "nginx.tmpl"), "changed\n", 0o644, 0, 0)
	if err := os.Remove(filepath.Join(dir, "conf.d/worker.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(main, 0o644); err != nil {
		t.Fatal(err)
	}
	// The edits matter: from disk, it is another configuration.
	if disk, err := Load(main); err != nil {
		t.Fatal(err)
	} else if slices.Equal(disk.Files, first.Files) {
		t.Fatalf("the edits on disk changed nothing: %q", disk.Files)
	}
	if err := os.Chmod(main, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(main); err == nil || !strings.Contains(err.Error(), "mode 0666 lets") {
		t.Fatalf("as root, a file anyone can write must be refused from disk: %v", err)
	}

	for _, o := range []LoadOptions{
		{Sources: first.Sources},
		{Sources: first.Sources, Files: first.Files},
	} {
		t.Run(fmt.Sprintf("files=%v", o.Files != nil), func(t *testing.T) {
			next, err := LoadWith(main, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				what       string
				have, want any
			}{
				{"File", next.File, first.File},
				{"Files", next.Files, first.Files},
				{"Include", next.Include, first.Include},
				{"Supervisor", next.Supervisor, first.Supervisor},
				{"Programs", next.Programs, first.Programs},
				{"Memmon", next.Memmon, first.Memmon},
				{"Email", next.Email, first.Email},
				{"Sources", next.Sources, first.Sources},
			} {
				if !reflect.DeepEqual(c.have, c.want) {
					t.Errorf("%s: have %+v, want %+v", c.what, c.have, c.want)
				}
			}
			if len(first.Programs) != 3 {
				t.Errorf("want 3 programs, have %d", len(first.Programs))
			}
			if next.Nginx == nil {
				t.Fatal("no [nginx]")
			}
			nn, fn := *next.Nginx, *first.Nginx
			if nn.Template == nil || nn.Template.Name != fn.Template.Name {
				t.Errorf("template %+v, want %+v", nn.Template, fn.Template)
			}
			nn.Template, fn.Template = nil, nil
			if !reflect.DeepEqual(nn, fn) {
				t.Errorf("Nginx: have %+v, want %+v", nn, fn)
			}
			rendered, err := next.RenderNginx(nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(rendered) != string(firstNginx) || !strings.Contains(string(rendered), "server 127.0.0.1:9101;  # web:web_1") {
				t.Errorf("nginx rendering:\n%s\nwant\n%s", rendered, firstNginx)
			}
		})
	}
}

// A file the configuration needs that the handed-over Sources lack is an
// error naming it, and so is a mistake in the bytes handed over.
func TestLoadFromSourcesErrors(t *testing.T) {
	dir, cfg := loadSources(t)
	main := filepath.Join(dir, "gosup.toml")
	worker := filepath.Join(dir, "conf.d/worker.toml")
	tmpl := filepath.Join(dir, "nginx.tmpl")
	const missing = ": not in the configuration handed over (it was not read when the running configuration was loaded)"
	without := func(file string) map[string][]byte {
		m := maps.Clone(cfg.Sources)
		delete(m, file)
		return m
	}
	with := func(file, body string) map[string][]byte {
		m := maps.Clone(cfg.Sources)
		m[file] = []byte(body)
		return m
	}
	for _, tc := range []struct {
		name string
		o    LoadOptions
		want []string // each a line of the error
	}{
		{"main", LoadOptions{Sources: without(main)}, []string{main + missing}},
		{"included", LoadOptions{Sources: without(worker), Files: cfg.Files}, []string{worker + missing}},
		{"template", LoadOptions{Sources: without(tmpl)}, []string{tmpl + missing, main + ":14: nginx.template: read template: refused (see above)"}},
		{"other files", LoadOptions{Sources: cfg.Sources, Files: cfg.Files[:2]}, []string{
			fmt.Sprintf("%s: the configuration handed over reads %q, not %q as the running one did", main, cfg.Files, cfg.Files[:2])}},
		{"syntax in main", LoadOptions{Sources: with(main, "[supervisor]\nsocket = \"x\"\nlogdir = \n")}, []string{main + ":3: supervisor.logdir: "}},
		{"syntax in included", LoadOptions{Sources: with(worker, "[program.worker]\ncommand = \"worker\nx = 1\n")}, []string{worker + ":2: "}},
		{"key in included", LoadOptions{Sources: with(worker, "[program.worker]\ncommand = \"worker\"\nnumprocs = \"two\"\n")}, []string{worker + ":3: program.worker.numprocs: incompatible types"}},
		{"template", LoadOptions{Sources: with(tmpl, "{{ .Nothing }}\n")}, []string{main + ":14: nginx.template: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadWith(main, tc.o)
			if err == nil {
				t.Fatal("loaded")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("want %d errors, have:\n%v", len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
					t.Errorf("want a line starting with\n\t%s\nhave\n\t%v", w, err)
				}
			}
		})
	}
	// Without Files, an included file Sources lack is simply not there,
	// as on a disk without it: only Files can tell.
	next, err := LoadWith(main, LoadOptions{Sources: without(worker)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{main, filepath.Join(dir, "conf.d/web.toml")}; !slices.Equal(next.Files, want) {
		t.Errorf("Files: %q, want %q", next.Files, want)
	}
}

// Include patterns match the keys of Sources as filepath.Glob matches the
// files on disk: each pattern, written cleanly or not, with metacharacters
// or none, reads the same files in the same order from Sources as from
// the disk.
func TestIncludeFromSourcesMatchesAsGlob(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"conf.d/a.toml":       "[program.a]\ncommand = \"a\"\n",
		"conf.d/b.toml":       "[program.b]\ncommand = \"b\"\n",
		"conf.d/.h.toml":      "[program.h]\ncommand = \"h\"\n",
		"conf.d/c.conf":       "[program.c]\ncommand = \"c\"\n",
		"conf.d/sub.toml/x":   "not read",
		"other/d.toml":        "[program.d]\ncommand = \"d\"\n",
		"other/sub/deep.toml": "[program.deep]\ncommand = \"deep\"\n",
	})
	for _, tc := range []struct {
		include []string
		files   int // included files read
	}{
		{[]string{"conf.d/*.toml"}, 3},
		{[]string{dir + "/conf.d/*.toml", "other/*.toml"}, 4},
		{[]string{dir + "//conf.d/[b].toml", "conf.d/*"}, 4},
		{[]string{dir + "/./conf.d/[ab].toml"}, 2},
		{[]string{dir + "/other/../conf.d/?.toml"}, 2},
		{[]string{"*/*.toml"}, 4},
		{[]string{"*/*/*.toml", "conf.d/.*"}, 2},
		{[]string{"conf.d/b.toml", "conf.d/*.toml"}, 3},
		{[]string{dir + "/conf.d//b.toml", "conf.d/nothing.toml", "conf.d/sub.toml", "conf.d"}, 1},
		{[]string{"*.none"}, 0},
	} {
		t.Run(strings.Join(tc.include, ","), func(t *testing.T) {
			main := writeFile(t, filepath.Join(dir, "gosup.toml"), includeLine(tc.include), 0o644, 0, 0)
			disk, err := Load(main)
			if err != nil {
				t.Fatal(err)
			}
			if len(disk.Files) != 1+tc.files {
				t.Errorf("from disk, read %q; want %d included files", disk.Files, tc.files)
			}
			sources, err := LoadWith(main, LoadOptions{Sources: disk.Sources, Files: disk.Files})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sources.Files, disk.Files) || !slices.Equal(sources.Include, disk.Include) {
				t.Errorf("from Sources, read %q for %q; from disk %q for %q", sources.Files, sources.Include, disk.Files, disk.Include)
			}
		})
	}
	// A bad pattern is the same error either way.
	main := writeFile(t, filepath.Join(dir, "gosup.toml"), "include = [\"conf.d/[\"]\n", 0o644, 0, 0)
	_, derr := Load(main)
	_, serr := LoadWith(main, LoadOptions{Sources: map[string][]byte{main: []byte("include = [\"conf.d/[\"]\n")}})
	if derr == nil || serr == nil || derr.Error() != serr.Error() {
		t.Errorf("a bad pattern: from disk %v, from Sources %v", derr, serr)
	}
}

// includeLine is a TOML include line for patterns.
func includeLine(patterns []string) string {
	var q []string
	for _, p := range patterns {
		q = append(q, strconv.Quote(p))
	}
	return "include = [" + strings.Join(q, ", ") + "]\n"
}
