package importer

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// out builds the TOML text: keys with values and comments, in order.
type out struct {
	b strings.Builder
}

func (o *out) line(format string, args ...any) {
	fmt.Fprintf(&o.b, format, args...)
	o.b.WriteByte('\n')
}

func (o *out) blank() { o.b.WriteByte('\n') }

// comment writes text as # lines.
func (o *out) comment(text string) {
	for _, l := range strings.Split(text, "\n") {
		o.line("# %s", l)
	}
}

// kv writes key = value with an optional trailing comment.
func (o *out) kv(key, value, note string) {
	if note != "" {
		o.line("%s = %s  # %s", tomlKey(key), value, oneLine(note))
		return
	}
	o.line("%s = %s", tomlKey(key), value)
}

var bareKeyRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_-]+$`) })

func tomlKey(k string) string {
	if bareKeyRE().MatchString(k) {
		return k
	}
	return tomlString(k)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tomlInt(n int) string { return strconv.Itoa(n) }

func tomlBool(v bool) string { return strconv.FormatBool(v) }

func tomlInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = strconv.Itoa(n)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func tomlStrings(ss []string) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = tomlString(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
