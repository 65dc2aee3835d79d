package main

// Every command and configuration shown in README.md and docs/*.md runs in
// a test. TestDocs reads every fenced block of those files and enforces
// the convention below, so that a doc edit that breaks an example (or an
// example that drifts from what gosup does) fails `go test`.
//
// The first word of a block's info string says what the block is; a block
// without one, or with another word, fails the test:
//
//   - ```toml: a whole gosup configuration. The test writes it to a
//     temporary directory and runs `gosup check -c FILE` on it (the real
//     loader and every validation, in process); it must pass.
//     ```toml fragment: part of one (a table or two, top-level keys). The
//     test puts docFragmentBase (below: programs web, api and jobs) after
//     it and checks the whole; a fragment must not define those programs.
//
//   - ```sh: commands, one a line (`\` continues a line, `# ...` is a
//     comment, `a && b` is two commands). The block must follow a directive
//     naming where they run, on the nearest non-blank line before it:
//
//     <!-- test: NAME.txtar -->   (cmd/gosup/testdata/script/NAME.txtar)
//     <!-- test: .ci/run -->      (or another file, from the repository root)
//
//     Each command must appear in that file. In a testscript: as an
//     `exec COMMAND` line (also `! exec`, `exitcode N`, a `[cond]` prefix
//     and a trailing `&` or `&name&`), verbatim; or adapted, as a comment
//     line `# doc: COMMAND` directly above the script line that runs it
//     (for a path the test may not touch, such as /usr/local/bin or /etc;
//     the adaptation is there for review). In another file (.ci/run): the
//     command verbatim within a line, or a `# doc: COMMAND` line directly
//     above the line that runs it. The only commands that need no test
//     are those in docExempt (below), each with the reason.
//
//   - ```console: `$ COMMAND` lines, as in ```sh, and the output they
//     print. The directive also gives the block an id:
//     <!-- test: NAME.txtar id=ID -->. The script must compare its output
//     with the block: a `matchdoc ... ID` line (see cmdMatchdoc).
//
//   - ```text, ```nginx: output or a file gosup prints. Like ```console
//     without commands: <!-- test: NAME.txtar id=ID --> and a `matchdoc`
//     line in the script that compares real output with it.
//
//   - ```logrotate, ```yaml, ```haproxy, ```dotenv (a configuration a
//     script feeds to its tool: logrotate's, Prometheus', HAProxy's, a
//     systemd EnvironmentFile such as /etc/default/haproxy):
//     <!-- test: NAME.txtar id=ID --> and a `docblock ... ID FILE` line in
//     the script that writes the block to FILE for the script to run.
//
// In scripts, `matchdoc [-shape] [-replace OLD NEW]... stdout|stderr|FILE
// ID` compares output with block ID, line by line (a line `...`, `…` or
// `# ...` in the block stands for any lines, a line ending in ` ...` for
// any end of the line; -shape also lets numbers, durations and runs of
// spaces differ, for pids, times and column widths; -replace maps a $WORK
// path to the one the docs show), `docblock [-replace OLD NEW]... ID FILE`
// writes block ID to FILE, and `repocp SRC DST` copies a file of the
// repository (examples/sentry.toml) into $WORK. The scripts written for
// the docs are cmd/gosup/testdata/script/docs_*.txtar; a block may also
// name any other script that runs its commands.
//
// Benchmark commands (`go test -run '^$' -bench ...`, fenced or inline)
// are not run (see docExempt); checkBench checks their packages and
// benchmark names instead.
//
// Inline code (`gosup ctl tail -f web` in a sentence) is checked more
// lightly: each span that starts with `gosup ` must name a real command
// and only flags that command has. Every relative link must reach a file,
// and a #anchor a heading of it; so must every link into this repository
// (https://github.com/gosup/gosup/blob/main/PATH#ANCHOR) that gosup prints
// or an example holds (the unit's Documentation=).

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/rogpeppe/go-internal/txtar"
	"github.com/spf13/cobra"
)

// docExempt are the commands shown in the docs that no test runs, by
// prefix, each with the reason. Keep it short: every other command runs.
var docExempt = map[string]string{
	"go test -run '^$' -bench ": "benchmarks are measured, not asserted, and take minutes; checkBench checks instead that each names a package and benchmarks that exist",
	"systemctl ":                "systemd is not PID 1 on the test machine or in CI; the unit gosup prints is checked by systemd-analyze verify (TestSystemdUnitVerify, systemd_unit.txtar)",
	"journalctl ":               "systemd is not PID 1 on the test machine or in CI: there is no journal to read",
}

// docFragmentBase follows a ```toml fragment block: the programs the
// docs' fragments name (memmon limits per process, program and group).
const docFragmentBase = `
[program.web]
command = "gosup demo-app --port %(port)d"
numprocs = 2
port_start = 9000
process_name = "web_%(process_num)02d"

[program.api]
command = "gosup demo-app --port %(port)d"
port_start = 9100

[program.jobs]
command = "gosup demo-worker"
`

// repoRoot is the repository's root, from the package directory.
const repoRoot = "../.."

// docBlock is one fenced block of a doc file.
type docBlock struct {
	file   string // relative to the repository root
	line   int    // of the opening fence
	kind   string // the info string's first word
	info   []string
	target string // the directive's file, relative to the repository root
	id     string
	body   []string
}

func (b docBlock) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var directiveRE = regexp.MustCompile(`^<!-- test: (.*) -->$`)

// docFiles lists README.md and docs/*.md, relative to the repository root.
func docFiles() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	out := []string{"README.md"}
	for _, f := range files {
		rel, err := filepath.Rel(repoRoot, f)
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	return out, nil
}

// parseDocBlocks reads every fenced block of the doc files, with its
// directive. Errors are about the directive's syntax.
func parseDocBlocks() ([]docBlock, []string, error) {
	files, err := docFiles()
	if err != nil {
		return nil, nil, err
	}
	var blocks []docBlock
	var errs []string
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			return nil, nil, err
		}
		b, e := parseDocText(f, string(data))
		blocks = append(blocks, b...)
		errs = append(errs, e...)
	}
	return blocks, errs, nil
}

// parseDocText reads the fenced blocks of one doc file, f its path
// relative to the repository root.
func parseDocText(f, text string) (blocks []docBlock, errs []string) {
	{
		lines := strings.Split(text, "\n")
		for i := 0; i < len(lines); i++ {
			if !strings.HasPrefix(lines[i], "```") {
				continue
			}
			b := docBlock{file: f, line: i + 1, info: strings.Fields(strings.TrimPrefix(lines[i], "```"))}
			if len(b.info) > 0 {
				b.kind = b.info[0]
			}
			// The directive: the nearest non-blank line before the fence.
			for j := i - 1; j >= 0; j-- {
				if strings.TrimSpace(lines[j]) == "" {
					continue
				}
				if m := directiveRE.FindStringSubmatch(strings.TrimSpace(lines[j])); m != nil {
					for k, w := range strings.Fields(m[1]) {
						switch {
						case k == 0:
							b.target = w
							if !strings.Contains(w, "/") && strings.HasSuffix(w, ".txtar") {
								b.target = filepath.Join("cmd", "gosup", "testdata", "script", w)
							}
						case strings.HasPrefix(w, "id="):
							b.id = strings.TrimPrefix(w, "id=")
						default:
							errs = append(errs, fmt.Sprintf("%s: directive: unknown word %q (want <!-- test: FILE [id=ID] -->)", b.where(), w))
						}
					}
				}
				break
			}
			for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
				b.body = append(b.body, lines[i])
			}
			blocks = append(blocks, b)
		}
	}
	return blocks, errs
}

// docCommands splits a ```sh block (or the $ lines of a ```console one)
// into commands.
func docCommands(b docBlock) []string {
	var cmds []string
	var cur string
	for _, l := range b.body {
		if b.kind == "console" {
			if !strings.HasPrefix(l, "$ ") {
				continue
			}
			l = strings.TrimPrefix(l, "$ ")
		}
		if strings.HasSuffix(l, `\`) {
			cur += strings.TrimSuffix(l, `\`)
			continue
		}
		l = stripShellComment(cur + l)
		cur = ""
		for _, c := range strings.Split(l, " && ") {
			if c = strings.TrimSpace(c); c != "" {
				cmds = append(cmds, c)
			}
		}
	}
	return cmds
}

// stripShellComment cuts a `#` comment that starts a word outside quotes.
func stripShellComment(l string) string {
	var quote rune
	for i, r := range l {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || l[i-1] == ' ' || l[i-1] == '\t'):
			return strings.TrimSpace(l[:i])
		}
	}
	return strings.TrimSpace(l)
}

// docTarget is what a directive's file runs: its exec lines (a testscript)
// or its lines (another file), the commands adapted by `# doc:` comments,
// and the block ids its matchdoc and docblock lines use.
type docTarget struct {
	script  bool
	execs   map[string]bool
	lines   []string
	adapted map[string]bool
	ids     map[string]bool // "matchdoc ID", "docblock ID"
}

var (
	execPrefixRE = regexp.MustCompile(`^(\[[^\]]*\] )*(! |\? )?(exitcode \d+ )?exec `)
	bgSuffixRE   = regexp.MustCompile(` &(\w*&)?$`)
	idUseRE      = regexp.MustCompile(`^(\[[^\]]*\] )*(matchdoc|docblock)\b(.*)$`)
)

func readDocTarget(root, path string) (*docTarget, error) {
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return nil, err
	}
	t := &docTarget{execs: map[string]bool{}, adapted: map[string]bool{}, ids: map[string]bool{}}
	text := string(data)
	if strings.HasSuffix(path, ".txtar") {
		t.script = true
		text = string(txtar.Parse(data).Comment)
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		t.lines = append(t.lines, l)
		if c, ok := strings.CutPrefix(l, "# doc: "); ok {
			// Only directly above a line that runs something.
			if i+1 < len(lines) {
				next := strings.TrimSpace(lines[i+1])
				if next != "" && !strings.HasPrefix(next, "#") {
					t.adapted[strings.TrimSpace(c)] = true
				}
			}
			continue
		}
		if !t.script {
			continue
		}
		if loc := execPrefixRE.FindStringIndex(l); loc != nil {
			t.execs[bgSuffixRE.ReplaceAllString(l[loc[1]:], "")] = true
		}
		if m := idUseRE.FindStringSubmatch(l); m != nil {
			args := strings.Fields(m[3])
			for len(args) > 0 && strings.HasPrefix(args[0], "-") {
				if args[0] == "-replace" && len(args) >= 3 {
					args = args[3:]
				} else {
					args = args[1:]
				}
			}
			switch {
			case m[2] == "matchdoc" && len(args) == 2:
				t.ids["matchdoc "+args[1]] = true
			case m[2] == "docblock" && len(args) == 2:
				t.ids["docblock "+args[0]] = true
			}
		}
	}
	return t, nil
}

// runs says whether the target runs cmd.
func (t *docTarget) runs(cmd string) bool {
	if t.adapted[cmd] || t.execs[cmd] {
		return true
	}
	if t.script {
		return false
	}
	for _, l := range t.lines {
		if strings.HasPrefix(l, "#") {
			continue
		}
		for off := 0; ; {
			i := strings.Index(l[off:], cmd)
			if i < 0 {
				break
			}
			i += off
			end := i + len(cmd)
			before := i == 0 || strings.ContainsRune(" ('\"`", rune(l[i-1]))
			after := end == len(l) || strings.ContainsRune(" ;)|&>'\"`", rune(l[end]))
			if before && after {
				return true
			}
			off = i + 1
		}
	}
	return false
}

func docExemptReason(cmd string) string {
	for p, why := range docExempt {
		if strings.HasPrefix(cmd, p) {
			return why
		}
	}
	return ""
}

func TestDocs(t *testing.T) {
	blocks, errs, err := parseDocBlocks()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Error(e)
	}
	for _, e := range checkDocBlocks(repoRoot, blocks, t.TempDir()) {
		t.Error(e)
	}
	checkInlineCommands(t)
	checkDocLinks(t)
	checkRepoURLs(t)
}

// checkDocBlocks enforces the convention (top of this file) on blocks,
// whose targets are read under root; tmp holds the ```toml files checked.
// It returns what is wrong, one message a problem.
func checkDocBlocks(root string, blocks []docBlock, tmp string) []string {
	var errs []string
	errorf := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	targets := map[string]*docTarget{}
	target := func(b docBlock) *docTarget {
		if b.target == "" {
			errorf("%s: a ```%s block needs <!-- test: FILE --> on the line before it (see docs_test.go)", b.where(), b.kind)
			return nil
		}
		if tg, ok := targets[b.target]; ok {
			return tg
		}
		tg, err := readDocTarget(root, b.target)
		if err != nil {
			errorf("%s: test target: %v", b.where(), err)
		}
		targets[b.target] = tg
		return tg
	}
	ids := map[string]string{}
	for n, b := range blocks {
		if b.id != "" {
			if prev, ok := ids[b.id]; ok {
				errorf("%s: id=%s is also %s", b.where(), b.id, prev)
			}
			ids[b.id] = b.where()
		}
		switch b.kind {
		case "toml":
			fragment := slices.Contains(b.info[1:], "fragment")
			if e := checkDocTOML(filepath.Join(tmp, fmt.Sprintf("toml-%d.toml", n)), b, fragment); e != "" {
				errs = append(errs, e)
			}
		case "sh", "console":
			cmds := docCommands(b)
			for _, c := range cmds {
				if strings.HasPrefix(c, "go test ") && strings.Contains(c, " -bench ") {
					if err := checkBench(c); err != nil {
						errorf("%s: %q: %v", b.where(), c, err)
					}
				}
			}
			if !slices.ContainsFunc(cmds, func(c string) bool { return docExemptReason(c) == "" }) && b.kind == "sh" {
				continue // nothing to run (benchmarks only)
			}
			tg := target(b)
			if tg == nil {
				continue
			}
			for _, c := range cmds {
				if docExemptReason(c) != "" {
					continue
				}
				if !tg.runs(c) {
					how := "run it there"
					if tg.script {
						how = fmt.Sprintf("add `exec %s` there", c)
					}
					errorf("%s: %q is not run by %s: %s (or a `# doc: %s` line above the line that runs it adapted; see docs_test.go)", b.where(), c, b.target, how, c)
				}
			}
			if b.kind == "console" {
				errs = append(errs, needID(b, tg, "matchdoc")...)
			}
		case "text", "nginx":
			if tg := target(b); tg != nil {
				errs = append(errs, needID(b, tg, "matchdoc")...)
			}
		case "logrotate", "yaml", "haproxy", "dotenv":
			if tg := target(b); tg != nil {
				errs = append(errs, needID(b, tg, "docblock")...)
			}
		case "":
			errorf("%s: a fenced block needs an info string saying what it is (toml, sh, console, text, ...; see docs_test.go)", b.where())
		default:
			errorf("%s: ```%s: unknown kind of block; docs_test.go knows toml, sh, console, text, nginx, logrotate, yaml, haproxy, dotenv", b.where(), b.kind)
		}
	}
	return errs
}

// repoURLRE is a link into this repository's files on GitHub: the
// repository alone (its README) or a file on main, with an optional anchor.
var repoURLRE = regexp.MustCompile(`https://github\.com/gosup/gosup(/blob/main/[^\s#"'` + "`" + `)]+)?(#[\w-]+)?`)

// repoURLFiles are the files whose links into the repository are checked
// besides the docs: what gosup prints (the unit) and the examples.
var repoURLFiles = []string{"cmd/gosup/*.go", "examples/*", "README.md", "docs/*.md"}

// repoURLError says what is wrong with a repository link found in text,
// or "" when its file and heading exist.
func repoURLError(link string) string {
	m := repoURLRE.FindStringSubmatch(link)
	if m == nil {
		return ""
	}
	path := "README.md"
	if m[1] != "" {
		path = strings.TrimPrefix(m[1], "/blob/main/")
	}
	body, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		return fmt.Sprintf("%s: no file %s in the repository", link, path)
	}
	if a := strings.TrimPrefix(m[2], "#"); a != "" && strings.HasSuffix(path, ".md") && !docAnchors(string(body))[a] {
		return fmt.Sprintf("%s: %s has no heading with anchor #%s", link, path, a)
	}
	return ""
}

// checkRepoURLs checks every link into the repository in repoURLFiles.
func checkRepoURLs(t *testing.T) {
	for _, pat := range repoURLFiles {
		files, err := filepath.Glob(filepath.Join(repoRoot, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				continue // a directory
			}
			for n, line := range strings.Split(string(data), "\n") {
				for _, link := range repoURLRE.FindAllString(line, -1) {
					if e := repoURLError(link); e != "" {
						rel, _ := filepath.Rel(repoRoot, f)
						t.Errorf("%s:%d: %s", rel, n+1, e)
					}
				}
			}
		}
	}
}

var (
	docLinkRE   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	anchorDrop  = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	headingLine = regexp.MustCompile(`^#{1,6} (.*)$`)
)

// docAnchors are the anchors GitHub gives a markdown file's headings.
func docAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	inFence := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		if m := headingLine.FindStringSubmatch(l); m != nil && !inFence {
			a := strings.ReplaceAll(anchorDrop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")
			for n := 0; ; n++ { // a repeated heading gets -1, -2, ...
				k := a
				if n > 0 {
					k = fmt.Sprintf("%s-%d", a, n)
				}
				if !anchors[k] {
					anchors[k] = true
					break
				}
			}
		}
	}
	return anchors
}

// checkDocLinks checks every relative link of the docs: the file exists
// and, for a markdown file, so does the #anchor.
func checkDocLinks(t *testing.T) {
	files, err := docFiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		inFence := false
		for n, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "```") {
				inFence = !inFence
			}
			if inFence {
				continue
			}
			for _, m := range docLinkRE.FindAllStringSubmatch(line, -1) {
				link := m[1]
				if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
					continue
				}
				path, anchor, _ := strings.Cut(link, "#")
				target := f
				if path != "" {
					target = filepath.Join(filepath.Dir(f), path)
				}
				body, err := os.ReadFile(filepath.Join(repoRoot, target))
				if err != nil {
					if info, serr := os.Stat(filepath.Join(repoRoot, target)); serr == nil && info.IsDir() {
						continue
					}
					t.Errorf("%s:%d: link %s: %v", f, n+1, link, err)
					continue
				}
				if anchor != "" && strings.HasSuffix(target, ".md") && !docAnchors(string(body))[anchor] {
					t.Errorf("%s:%d: link %s: %s has no heading with anchor #%s", f, n+1, link, target, anchor)
				}
			}
		}
	}
}

func needID(b docBlock, tg *docTarget, verb string) []string {
	if b.id == "" {
		return []string{fmt.Sprintf("%s: a ```%s block needs an id: <!-- test: %s id=ID --> and a `%s ... ID` line in that script", b.where(), b.kind, filepath.Base(b.target), verb)}
	}
	if !tg.ids[verb+" "+b.id] {
		return []string{fmt.Sprintf("%s: %s has no `%s ... %s` line: nothing compares this block with what gosup does", b.where(), b.target, verb, b.id)}
	}
	return nil
}

// checkDocTOML runs `gosup check` on a ```toml block, written to path; it
// says what is wrong, or "".
func checkDocTOML(path string, b docBlock, fragment bool) string {
	text := strings.Join(b.body, "\n") + "\n"
	if fragment {
		text += docFragmentBase
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Sprintf("%s: %v", b.where(), err)
	}
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"check", "-c", path})
	if err := root.Execute(); err != nil {
		return fmt.Sprintf("%s: gosup check fails on this block: %v\n%s\n(the file checked:)\n%s", b.where(), err, out.String(), text)
	}
	if !strings.Contains(out.String(), ": valid, ") {
		return fmt.Sprintf("%s: gosup check printed no verdict:\n%s", b.where(), out.String())
	}
	return ""
}

var (
	inlineGosupRE = regexp.MustCompile("`(gosup [^`]+)`")
	doubleTickRE  = regexp.MustCompile("``[^`].*?``")
	inlineBenchRE = regexp.MustCompile("`(go test [^`]*-bench [^`]+)`")
	benchFuncRE   = regexp.MustCompile(`(?m)^func (Benchmark\w*)\(`)
)

// checkBench checks a `go test ... -bench REGEXP ... PKG...` command of the
// docs: each package exists and has a benchmark REGEXP matches (by name,
// as go test matches the first level).
func checkBench(cmd string) error {
	words := strings.Fields(cmd)
	var re *regexp.Regexp
	var pkgs []string
	for i := 2; i < len(words); i++ {
		w := strings.Trim(words[i], "'\"")
		switch {
		case w == "-bench" && i+1 < len(words):
			i++
			r, err := regexp.Compile(strings.Trim(words[i], "'\""))
			if err != nil {
				return fmt.Errorf("-bench: %w", err)
			}
			re = r
		case strings.HasPrefix(w, "./"):
			pkgs = append(pkgs, w)
		case strings.HasPrefix(w, "-") && i+1 < len(words) && !strings.HasPrefix(words[i+1], "-") && !strings.HasPrefix(words[i+1], "./") && w != "-benchmem":
			i++ // a flag's value: -run '^$', -benchtime 10x, -count 3
		}
	}
	if re == nil || len(pkgs) == 0 {
		return fmt.Errorf("want -bench REGEXP and a ./package")
	}
	for _, p := range pkgs {
		files, err := filepath.Glob(filepath.Join(repoRoot, p, "*_test.go"))
		if err != nil || len(files) == 0 {
			return fmt.Errorf("no test files in %s", p)
		}
		found := false
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			for _, m := range benchFuncRE.FindAllStringSubmatch(string(data), -1) {
				if re.MatchString(m[1]) {
					found = true
				}
			}
		}
		if !found {
			return fmt.Errorf("no benchmark in %s matches %q", p, re)
		}
	}
	return nil
}

// checkInlineCommands checks that each inline `gosup ...` span of the docs
// names a real command and flags it has.
func checkInlineCommands(t *testing.T) {
	files, err := docFiles()
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	root.InitDefaultCompletionCmd()
	root.InitDefaultHelpCmd()
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		// Paragraph by paragraph (a span may be wrapped over lines), outside
		// fences, double-backtick spans left out.
		inFence := false
		var para []string
		start := 0
		flush := func() {
			text := doubleTickRE.ReplaceAllString(strings.Join(para, " "), "")
			for _, m := range inlineBenchRE.FindAllStringSubmatch(text, -1) {
				if err := checkBench(m[1]); err != nil {
					t.Errorf("%s:%d: `%s`: %v", f, start, m[1], err)
				}
			}
			for _, m := range inlineGosupRE.FindAllStringSubmatch(text, -1) {
				if err := checkInline(root, m[1]); err != nil {
					t.Errorf("%s:%d: `%s`: %v", f, start, m[1], err)
				}
			}
			para = nil
		}
		for n, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "```") {
				inFence = !inFence
				flush()
				continue
			}
			if inFence {
				continue
			}
			if strings.TrimSpace(line) == "" {
				flush()
				continue
			}
			if para == nil {
				start = n + 1
			}
			para = append(para, line)
		}
		flush()
	}
}

// checkInline resolves the command words of span (up to the first word
// that is not a subcommand) and checks every flag word against that
// command's flags. Placeholders (FILE, [--json], a|b) are left alone.
func checkInline(root *cobra.Command, span string) error {
	if docInlineMessages[span] {
		return nil
	}
	words := strings.Fields(strings.ReplaceAll(span, `\|`, "|"))[1:]
	cmd := root
	i := 0
	for ; i < len(words); i++ {
		if strings.HasSuffix(words[i], ":") {
			return nil // a message gosup prints (`gosup ctl: unknown command ...`)
		}
		alts := strings.Split(words[i], "|")
		next := findSub(cmd, alts[0])
		if next == nil {
			break
		}
		// `ctl start|stop|restart`: each must exist; flags are the first's.
		for _, a := range alts[1:] {
			if findSub(cmd, a) == nil {
				return fmt.Errorf("%s has no command %q", cmd.CommandPath(), a)
			}
		}
		cmd = next
	}
	if i < len(words) && len(cmd.Commands()) > 0 && commandWordRE.MatchString(words[i]) {
		return fmt.Errorf("%s has no command %q", cmd.CommandPath(), words[i])
	}
	if cmd == root && i < len(words) && !strings.HasPrefix(words[i], "-") {
		return fmt.Errorf("gosup has no command %q", words[i])
	}
	for _, w := range words[i:] {
		w = strings.Trim(w, "[]()")
		for _, alt := range strings.Split(w, "|") {
			name, _, _ := strings.Cut(alt, "=")
			name = strings.TrimSuffix(name, "/") // `-n/--lines`
			for _, n := range strings.Split(name, "/") {
				if !strings.HasPrefix(n, "-") || n == "-" || n == "--" {
					continue
				}
				if !hasFlag(cmd, n) {
					return fmt.Errorf("%s has no flag %s", cmd.CommandPath(), n)
				}
			}
		}
	}
	return nil
}

// commandWordRE is a word where a subcommand is expected that names one
// (not FILE, PATTERN or a flag).
var commandWordRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// docInlineMessages are inline spans that start with "gosup " but quote
// a message, not a command.
var docInlineMessages = map[string]bool{
	"gosup is shutting down": true,
}

func findSub(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || slices.Contains(c.Aliases, name) {
			return c
		}
	}
	return nil
}

func hasFlag(cmd *cobra.Command, name string) bool {
	if long, ok := strings.CutPrefix(name, "--"); ok {
		return long == "help" || long == "version" ||
			cmd.Flags().Lookup(long) != nil || cmd.InheritedFlags().Lookup(long) != nil
	}
	short := strings.TrimPrefix(name, "-")
	if len(short) != 1 {
		return true // `-USR2` of kill, a negative number: not a flag of ours
	}
	return short == "h" || cmd.Flags().ShorthandLookup(short) != nil || cmd.InheritedFlags().ShorthandLookup(short) != nil
}

// docCmds are the testscript commands for the docs (see the top of this
// file); TestScripts adds them.
func docCmds() map[string]func(*testscript.TestScript, bool, []string) {
	return map[string]func(*testscript.TestScript, bool, []string){
		"matchdoc": cmdMatchdoc,
		"docblock": cmdDocblock,
		"repocp":   cmdRepocp,
	}
}

var (
	docBlocksOnce sync.Once
	docBlocksByID map[string]docBlock
	docBlocksErr  error
)

func docBlockByID(ts *testscript.TestScript, id string) docBlock {
	docBlocksOnce.Do(func() {
		blocks, _, err := parseDocBlocks()
		docBlocksErr = err
		docBlocksByID = map[string]docBlock{}
		for _, b := range blocks {
			if b.id != "" {
				docBlocksByID[b.id] = b
			}
		}
	})
	ts.Check(docBlocksErr)
	b, ok := docBlocksByID[id]
	if !ok {
		ts.Fatalf("no block with id=%s in README.md or docs/*.md", id)
	}
	return b
}

// docFlags parses [-shape] [-replace OLD NEW]... before the arguments.
func docFlags(ts *testscript.TestScript, args []string) (shape bool, repl []string, rest []string) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch {
		case args[0] == "-shape":
			shape = true
			args = args[1:]
		case args[0] == "-replace" && len(args) >= 3:
			repl = append(repl, args[1], args[2])
			args = args[3:]
		default:
			ts.Fatalf("unknown flag %s", args[0])
		}
	}
	return shape, repl, args
}

// cmdMatchdoc compares output (stdout, stderr or a file) with the doc
// block ID: its output lines (a ```console block's lines but its $
// commands), each the next line of the output, trailing spaces aside. A
// block line `...` or `…` (or a comment `# ...`, in a file shown) stands
// for any lines, one ending in ` ...` for any end of its line. -shape lets every number and every run of spaces
// differ (times, pids, sizes, column widths); -replace OLD NEW replaces
// OLD in the output first (a $WORK path shown as /etc/gosup/gosup.toml).
//
//	matchdoc [-shape] [-replace OLD NEW]... stdout|stderr|FILE ID
func cmdMatchdoc(ts *testscript.TestScript, neg bool, args []string) {
	shape, repl, args := docFlags(ts, args)
	if neg || len(args) != 2 {
		ts.Fatalf("usage: matchdoc [-shape] [-replace OLD NEW]... stdout|stderr|FILE ID")
	}
	b := docBlockByID(ts, args[1])
	got := ts.ReadFile(args[0])
	for i := 0; i < len(repl); i += 2 {
		got = strings.ReplaceAll(got, repl[i], repl[i+1])
	}
	var want []string
	for _, l := range b.body {
		if b.kind == "console" && strings.HasPrefix(l, "$ ") {
			continue
		}
		want = append(want, l)
	}
	if err := matchDocLines(want, strings.Split(strings.TrimRight(got, "\n"), "\n"), shape); err != nil {
		ts.Fatalf("matchdoc: the output does not match %s (id=%s): %v\noutput:\n%s", b.where(), b.id, err, got)
	}
}

// shapeRE finds what -shape lets differ: a duration (2.0s, 310ms, 1m2s,
// which a slow machine may print in another unit), a number, a run of
// spaces. A number inside a word (web_00, v1) is part of the word.
var shapeRE = regexp.MustCompile(`\b(\d+(\.\d+)?(ms|µs|ns|h|m|s)\b)+|\b\d+(\.\d+)?| +`)

const durationRE = `(\d+(\.\d+)?(ms|µs|ns|h|m|s))+`

// docLineRE turns a block line into the regexp an output line must match.
func docLineRE(l string, shape bool) (re *regexp.Regexp, skip bool) {
	l = strings.TrimRight(l, " ")
	t := strings.TrimSpace(l)
	if t == "..." || t == "…" || strings.HasPrefix(t, "# ...") {
		return nil, true
	}
	prefix := false
	for _, e := range []string{" ...", " …"} {
		if strings.HasSuffix(l, e) {
			l, prefix = strings.TrimSuffix(l, e), true
		}
	}
	var s string
	if shape {
		// Quote the text between numbers and space runs, generalise those.
		var b strings.Builder
		last := 0
		for _, m := range shapeRE.FindAllStringIndex(l, -1) {
			b.WriteString(regexp.QuoteMeta(l[last:m[0]]))
			switch tok := l[m[0]:m[1]]; {
			case tok[0] == ' ':
				b.WriteString(` +`)
			case strings.Trim(tok, "0123456789.") != "":
				b.WriteString(durationRE)
			default:
				b.WriteString(`\d+(\.\d+)?`)
			}
			last = m[1]
		}
		b.WriteString(regexp.QuoteMeta(l[last:]))
		s = b.String()
	} else {
		s = regexp.QuoteMeta(l)
	}
	if prefix {
		s += ".*"
	}
	return regexp.MustCompile(`^` + s + ` *$`), false
}

func matchDocLines(want, got []string, shape bool) error {
	g := 0
	for w := 0; w < len(want); w++ {
		re, skip := docLineRE(want[w], shape)
		if skip {
			// Any lines, then the next block line.
			if w+1 == len(want) {
				return nil
			}
			next, _ := docLineRE(want[w+1], shape)
			for g < len(got) && !next.MatchString(got[g]) {
				g++
			}
			if g == len(got) {
				return fmt.Errorf("no output line matches block line %d %q", w+2, want[w+1])
			}
			continue
		}
		if g >= len(got) {
			return fmt.Errorf("the output ends before block line %d %q", w+1, want[w])
		}
		if !re.MatchString(got[g]) {
			return fmt.Errorf("output line %d %q does not match block line %d %q", g+1, got[g], w+1, want[w])
		}
		g++
	}
	if g < len(got) {
		return fmt.Errorf("output line %d %q and the rest are not in the block", g+1, got[g])
	}
	return nil
}

// cmdDocblock writes the doc block ID to FILE (in $WORK), each -replace
// OLD NEW applied (a /var/log path made one under $WORK).
//
//	docblock [-replace OLD NEW]... ID FILE
func cmdDocblock(ts *testscript.TestScript, neg bool, args []string) {
	_, repl, args := docFlags(ts, args)
	if neg || len(args) != 2 {
		ts.Fatalf("usage: docblock [-replace OLD NEW]... ID FILE")
	}
	b := docBlockByID(ts, args[0])
	text := strings.Join(b.body, "\n") + "\n"
	for i := 0; i < len(repl); i += 2 {
		text = strings.ReplaceAll(text, repl[i], repl[i+1])
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), []byte(text), 0o644))
}

// cmdRepocp copies a file of the repository (relative to its root) to
// DST in $WORK, creating DST's directory.
//
//	repocp SRC DST
func cmdRepocp(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: repocp SRC DST")
	}
	wd, err := os.Getwd() // the package directory, where go test runs
	ts.Check(err)
	data, err := os.ReadFile(filepath.Join(wd, repoRoot, args[0]))
	ts.Check(err)
	dst := ts.MkAbs(args[1])
	ts.Check(os.MkdirAll(filepath.Dir(dst), 0o755))
	ts.Check(os.WriteFile(dst, data, 0o644))
}

// TestDocsHarness checks that the checks above can fail: each is given a
// doc example that drifted, and must say so.
func TestDocsHarness(t *testing.T) {
	t.Run("matchdoc", func(t *testing.T) {
		for _, c := range []struct {
			want, got string
			shape, ok bool
		}{
			{"a\nb", "a\nb", false, true},
			{"a\nb", "a\nc", false, false},
			{"a\nb", "a\nb\nc", false, false},                 // output the block does not show
			{"a\n...\nd", "a\nb\nc\nd", false, true},          // elision
			{"a\n...", "a\nb\nc", false, true},                // elision to the end
			{"a\n# ... more\nd", "a\nb\nd", false, true},      // a file's comment elides
			{"x: ...", "x: anything", false, true},            // any end
			{"pid 4121 in 62ms", "pid 7 in 1.2s", true, true}, // -shape: numbers, durations
			{"pid 4121 in 62ms", "pid 7 in 1.2s", false, false},
			{"a  b", "a      b", true, true}, // -shape: column widths
			{"v1.4.0 -> v1.5.0", "v1 -> v2", true, false},
			{"web:web_00 started", "web:web_01 started", true, false}, // names stay
		} {
			err := matchDocLines(strings.Split(c.want, "\n"), strings.Split(c.got, "\n"), c.shape)
			if (err == nil) != c.ok {
				t.Errorf("matchDocLines(%q, %q, shape %v): %v, want ok %v", c.want, c.got, c.shape, err, c.ok)
			}
		}
	})
	t.Run("inline", func(t *testing.T) {
		root := newRootCmd()
		root.InitDefaultCompletionCmd()
		for span, ok := range map[string]bool{
			"gosup ctl tail -f -n 10 web":                      true,
			"gosup ctl start|stop|restart PATTERN... [--json]": true,
			"gosup ctl tail --folow web":                       false, // no such flag
			"gosup ctl strat web":                              false, // no such command
			"gosup ctl start|stopp web":                        false,
			"gosup chek -c FILE":                               false,
			"gosup check -c FILE":                              true,
			"gosup completion bash":                            true,
			"gosup ctl reload --dry-run --json":                true,
			"gosup ctl reload --dryrun":                        false,
		} {
			if err := checkInline(root, span); (err == nil) != ok {
				t.Errorf("checkInline(%q): %v, want ok %v", span, err, ok)
			}
		}
	})
	t.Run("runs", func(t *testing.T) {
		script := &docTarget{script: true, execs: map[string]bool{"gosup ctl reload": true}, adapted: map[string]bool{"install x /usr/local/bin/gosup": true}}
		other := &docTarget{lines: []string{`reply=$(curl 127.0.0.1:9101/ 2>/dev/null)`, "go test -race -count=1 ./..."}, execs: map[string]bool{}, adapted: map[string]bool{}}
		for _, c := range []struct {
			t   *docTarget
			cmd string
			ok  bool
		}{
			{script, "gosup ctl reload", true},
			{script, "gosup ctl reload --dry-run", false},
			{script, "install x /usr/local/bin/gosup", true},
			{other, "curl 127.0.0.1:9101/", true},
			{other, "curl 127.0.0.1:9101", false}, // a prefix of the line's word is not it
			{other, "go test -race -count=1 ./...", true},
			{other, "go test -race ./...", false},
		} {
			if got := c.t.runs(c.cmd); got != c.ok {
				t.Errorf("runs(%q) = %v, want %v", c.cmd, got, c.ok)
			}
		}
	})
	t.Run("anchors", func(t *testing.T) {
		a := docAnchors("# Top\n## conf.d (include)\n## `[supervisor]`\n```sh\n# not a heading\n```\n## Top\n")
		for _, want := range []string{"top", "confd-include", "supervisor", "top-1"} {
			if !a[want] {
				t.Errorf("no anchor %q in %v", want, a)
			}
		}
		if a["not-a-heading"] {
			t.Errorf("a comment in a fence is not a heading: %v", a)
		}
	})
	t.Run("blocks", func(t *testing.T) {
		// A repository of one script and one other file, and a doc for
		// each rule: it passes, or drifted and must be named.
		root := t.TempDir()
		script := filepath.Join(root, "cmd", "gosup", "testdata", "script")
		if err := os.MkdirAll(script, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, text := range map[string]string{
			filepath.Join(script, "x.txtar"): "# doc: gosup check -c /etc/gosup/gosup.toml\nexec gosup check -c gosup.toml\nexec gosup ctl reload\nmatchdoc stdout plan\n-- gosup.toml --\n",
			filepath.Join(root, "run.sh"):    "bin/gosup start -c q.toml &\n",
		} {
			if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		fence := "```"
		for _, c := range []struct {
			doc, want string // want: "" passes, else a part of the message
		}{
			{"<!-- test: x.txtar -->\n" + fence + "sh\ngosup ctl reload\n" + fence, ""},
			{"<!-- test: x.txtar -->\n" + fence + "sh\ngosup check -c /etc/gosup/gosup.toml   # adapted\n" + fence, ""},
			{"<!-- test: run.sh -->\n" + fence + "sh\nbin/gosup start -c q.toml\n" + fence, ""},
			{"<!-- test: x.txtar id=plan -->\n" + fence + "console\n$ gosup ctl reload\nweb changed\n" + fence, ""},
			{fence + "toml\n[program.web]\ncommand = \"sleep 1\"\n" + fence, ""},
			{fence + "toml fragment\n[memmon]\nany = \"1GB\"\n" + fence, ""},
			{fence + "sh\ngo test -run '^$' -bench Tick -count 3 ./memmon/\n" + fence, ""}, // exempt: checkBench only
			{fence + "sh\ngosup ctl reload\n" + fence, "needs <!-- test: FILE -->"},
			{"<!-- test: x.txtar -->\n" + fence + "sh\ngosup ctl reload --dry-run\n" + fence, `"gosup ctl reload --dry-run" is not run by`},
			{"<!-- test: run.sh -->\n" + fence + "sh\nbin/gosup start -c other.toml\n" + fence, "is not run by run.sh"},
			{"<!-- test: nosuch.txtar -->\n" + fence + "sh\ngosup ctl reload\n" + fence, "test target"},
			{fence + "toml\n[program.web]\ncomand = \"sleep 1\"\n" + fence, "gosup check fails on this block"},
			{fence + "toml fragment\n[program.web]\ncommand = \"sleep 1\"\n" + fence, "gosup check fails on this block"}, // web is the base's
			{"<!-- test: x.txtar -->\n" + fence + "console\n$ gosup ctl reload\nweb changed\n" + fence, "needs an id"},
			{"<!-- test: x.txtar id=other -->\n" + fence + "text\nweb changed\n" + fence, "nothing compares this block"},
			{"<!-- test: x.txtar id=plan -->\n" + fence + "logrotate\n/var/log/x {\n}\n" + fence, "no `docblock ... plan` line"},
			{"<!-- test: x.txtar id=plan -->\n" + fence + "yaml\nscrape_configs: []\n" + fence, "no `docblock ... plan` line"},
			{fence + "yaml\nscrape_configs: []\n" + fence, "needs <!-- test: FILE -->"},
			{fence + "\nsome text\n" + fence, "needs an info string"},
			{fence + "bash\ngosup ctl reload\n" + fence, "unknown kind of block"},
			{"<!-- test: x.txtar id=plan -->\n" + fence + "text\nweb changed\n" + fence + "\n<!-- test: x.txtar id=plan -->\n" + fence + "text\nweb changed\n" + fence, "id=plan is also"},
			{fence + "sh\ngo test -run '^$' -bench NoSuch -count 3 ./memmon/\n" + fence, "no benchmark in ./memmon/"},
		} {
			blocks, errs := parseDocText("doc.md", c.doc)
			errs = append(errs, checkDocBlocks(root, blocks, t.TempDir())...)
			switch {
			case c.want == "" && len(errs) > 0:
				t.Errorf("doc %q: want it to pass, got %q", c.doc, errs)
			case c.want != "" && !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, c.want) }):
				t.Errorf("doc %q: want an error with %q, got %q", c.doc, c.want, errs)
			}
		}
		_, errs := parseDocText("doc.md", "<!-- test: x.txtar idd=plan -->\n"+fence+"text\nx\n"+fence)
		if len(errs) != 1 || !strings.Contains(errs[0], `unknown word "idd=plan"`) {
			t.Errorf("a misspelt directive: %q", errs)
		}
	})
	t.Run("repo URLs", func(t *testing.T) {
		for link, ok := range map[string]bool{
			"https://github.com/gosup/gosup":                                      true,
			"https://github.com/gosup/gosup/blob/main/docs/systemd.md":            true,
			"https://github.com/gosup/gosup/blob/main/docs/systemd.md#build":      true,
			"https://github.com/gosup/gosup#running-under-systemd":                false, // a README heading that went
			"https://github.com/gosup/gosup/blob/main/docs/no-such-page.md":       false,
			"https://github.com/gosup/gosup/blob/main/docs/systemd.md#no-heading": false,
		} {
			if e := repoURLError(link); (e == "") != ok {
				t.Errorf("repoURLError(%q) = %q, want ok %v", link, e, ok)
			}
		}
	})
	t.Run("bench", func(t *testing.T) {
		for cmd, ok := range map[string]bool{
			"go test -run '^$' -bench . -benchtime 10x ./supervisor/":     true,
			"go test -run '^$' -bench Tick -count 3 ./memmon/":            true,
			"go test -run '^$' -bench NoSuchBenchmark -count 3 ./memmon/": false,
			"go test -run '^$' -bench Tick -count 3 ./nosuchpackage/":     false,
		} {
			if err := checkBench(cmd); (err == nil) != ok {
				t.Errorf("checkBench(%q): %v, want ok %v", cmd, err, ok)
			}
		}
	})
}
