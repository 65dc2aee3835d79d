package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// The INI dialect is supervisord's: Python's RawConfigParser with ';' and
// '#' as full-line and inline comment prefixes (inline ones only after
// whitespace), '=' or ':' between key and value, keys lowercased, a line
// indented deeper than its key continuing the value, a section named twice
// merged, and %(here)s replaced by the directory of the file it is in.

// section is one [name] of a file, merged over every place it appears.
type section struct {
	name string
	file string
	line int
	keys []*entry // in order of first appearance
}

// entry is one key = value.
type entry struct {
	key   string
	value string
	file  string
	line  int
}

func (s *section) get(key string) (*entry, bool) {
	for _, e := range s.keys {
		if e.key == key {
			return e, true
		}
	}
	return nil, false
}

// ParseError is a line of a supervisord.conf that is not INI.
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

var (
	sectionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\[(.+)\]`) })
	optionRE  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(.*?)\s*([=:])\s*(.*)$`) })
)

// parseINI reads one file's sections (a section named twice merged), in
// supervisord's dialect.
func parseINI(file string, data []byte) ([]*section, error) {
	var sections []*section
	here := filepath.Dir(file)
	var cur *section
	var last *entry // the option a continuation line extends
	indent := 0
	var pending []string // blank lines inside a value, kept only if it goes on
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		raw := strings.TrimRight(sc.Text(), "\r")
		line := stripComment(raw)
		if strings.TrimSpace(line) == "" {
			if line == raw && last != nil {
				pending = append(pending, "")
			}
			continue
		}
		lead := len(raw) - len(strings.TrimLeft(raw, " \t"))
		value := strings.TrimSpace(line)
		if last != nil && lead > indent {
			for _, p := range pending {
				last.value += "\n" + p
			}
			pending = nil
			last.value += "\n" + strings.ReplaceAll(value, "%(here)s", here)
			continue
		}
		pending = nil
		indent = lead
		if m := sectionRE().FindStringSubmatch(value); m != nil {
			name := m[1]
			cur = nil
			for _, s := range sections {
				if s.name == name {
					cur = s
				}
			}
			if cur == nil {
				cur = &section{name: name, file: file, line: n}
				sections = append(sections, cur)
			}
			last = nil
			continue
		}
		if cur == nil {
			return nil, &ParseError{File: file, Line: n, Msg: fmt.Sprintf("%q comes before any [section] header", value)}
		}
		m := optionRE().FindStringSubmatch(value)
		if m == nil || strings.TrimSpace(m[1]) == "" {
			return nil, &ParseError{File: file, Line: n, Msg: fmt.Sprintf("%q is not a key = value line (in [%s])", value, cur.name)}
		}
		key := strings.ToLower(strings.TrimSpace(m[1]))
		e := &entry{key: key, value: strings.ReplaceAll(m[3], "%(here)s", here), file: file, line: n}
		if old, ok := cur.get(key); ok {
			*old = *e // a later value wins, in the first one's place
			e = old
		} else {
			cur.keys = append(cur.keys, e)
		}
		last = e
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return sections, nil
}

// stripComment removes a full-line comment, or an inline one: ';' or '#'
// at the start of the line or after whitespace.
func stripComment(line string) string {
	t := strings.TrimSpace(line)
	if strings.HasPrefix(t, ";") || strings.HasPrefix(t, "#") {
		return ""
	}
	for i := 0; i < len(line); i++ {
		if (line[i] == ';' || line[i] == '#') && i > 0 && (line[i-1] == ' ' || line[i-1] == '\t') {
			return line[:i]
		}
	}
	return line
}

// merge adds from's sections to into, merging those of the same name
// (a later key wins, in the first one's place).
func merge(into, from []*section) []*section {
	for _, f := range from {
		i := slices.IndexFunc(into, func(s *section) bool { return s.name == f.name })
		if i < 0 {
			into = append(into, f)
			continue
		}
		for _, e := range f.keys {
			if old, ok := into[i].get(e.key); ok {
				*old = *e
			} else {
				into[i].keys = append(into[i].keys, e)
			}
		}
	}
	return into
}

// maxFileBytes bounds a file import reads: far above any supervisord.conf,
// so that a mistake (a log, a link to /dev/zero) is refused instead of read
// into memory.
const maxFileBytes = 4 << 20

var errTooLarge = fmt.Errorf("more than %d MiB: too large for a supervisord configuration (is it one?)", maxFileBytes>>20)

// readBounded reads the file at path, refusing more than maxFileBytes
// (errTooLarge).
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileBytes {
		return nil, errTooLarge
	}
	return b, nil
}

// readConfig reads a supervisord.conf and the files its [include] files=
// globs name (relative to it), as supervisord does: matches in sorted
// order, directories and unreadable files skipped, dotfiles only for a
// pattern that asks for them (Python's glob), and an [include] in an
// included file not followed. [DEFAULT] keys become every program's and
// event listener's defaults. Problems that supervisord only warns about
// are returned as warnings.
func readConfig(path string, expand func(string) string) ([]*section, []string, []Warning, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil, nil, err
	}
	data, err := readBounded(abs)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	sections, err := parseINI(abs, data)
	if err != nil {
		return nil, nil, nil, err
	}
	files := []string{abs}
	var warnings []Warning
	var inc *entry
	if i := slices.IndexFunc(sections, func(s *section) bool { return s.name == "include" }); i >= 0 {
		inc, _ = sections[i].get("files")
	}
	if inc != nil {
		for _, pat := range strings.Fields(expand(inc.value)) {
			if !filepath.IsAbs(pat) {
				pat = filepath.Join(filepath.Dir(abs), pat)
			}
			matches, err := filepath.Glob(pat)
			if err != nil {
				return nil, nil, nil, &ParseError{File: inc.file, Line: inc.line, Msg: fmt.Sprintf("[include] files: pattern %q: %v", pat, err)}
			}
			slices.Sort(matches)
			n := 0
			for _, m := range matches {
				if strings.HasPrefix(filepath.Base(m), ".") && !strings.HasPrefix(filepath.Base(pat), ".") {
					continue
				}
				if fi, err := os.Stat(m); err != nil || fi.IsDir() {
					continue
				}
				b, err := readBounded(m)
				if errors.Is(err, errTooLarge) {
					return nil, nil, nil, &ParseError{File: inc.file, Line: inc.line, Msg: fmt.Sprintf("[include] files: %s: %v", m, err)}
				}
				if err != nil {
					warnings = append(warnings, Warning{File: inc.file, Line: inc.line, Msg: fmt.Sprintf("[include] files: %v (skipped, as supervisord does)", err)})
					continue
				}
				more, err := parseINI(m, b)
				if err != nil {
					return nil, nil, nil, err
				}
				more = slices.DeleteFunc(more, func(s *section) bool {
					if s.name == "include" {
						warnings = append(warnings, Warning{File: s.file, Line: s.line, Msg: "[include] in an included file: supervisord does not follow it, nor does gosup import"})
						return true
					}
					return false
				})
				sections = merge(sections, more)
				files = append(files, m)
				n++
			}
			if n == 0 {
				warnings = append(warnings, Warning{File: inc.file, Line: inc.line, Msg: fmt.Sprintf("[include] files: %s matches no file", pat)})
			}
		}
	}
	if i := slices.IndexFunc(sections, func(s *section) bool { return s.name == "DEFAULT" }); i >= 0 {
		defs := sections[i]
		sections = slices.Delete(sections, i, i+1)
		for _, s := range sections {
			if !strings.HasPrefix(s.name, "program:") && !strings.HasPrefix(s.name, "eventlistener:") && !strings.HasPrefix(s.name, "fcgi-program:") {
				continue
			}
			for _, e := range defs.keys {
				if _, ok := s.get(e.key); !ok {
					c := *e
					s.keys = append(s.keys, &c)
				}
			}
		}
	}
	return sections, files, warnings, nil
}
