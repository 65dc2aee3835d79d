package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// lineIndex maps dotted keys to the line that defines them. The TOML
// decoder keeps key positions private, so this light scan of the file finds
// them for error messages; it only needs to be right for table headers and
// "key = value" lines.
type lineIndex map[string]int

func keyLines(data []byte) lineIndex {
	idx := lineIndex{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	prefix := ""
	inMulti := ""
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if inMulti != "" {
			if strings.Count(line, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		switch {
		case line == "" || line[0] == '#':
			continue
		case strings.HasPrefix(line, "["):
			end := strings.LastIndex(line, "]")
			if end < 0 {
				continue
			}
			prefix = normalizeKey(strings.Trim(line[:end], "[]"))
			if _, ok := idx[prefix]; !ok {
				idx[prefix] = n
			}
			continue
		}
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key := normalizeKey(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		if _, ok := idx[key]; !ok {
			idx[key] = n
		}
		for _, q := range []string{`"""`, `'''`} {
			if strings.Count(rest, q)%2 == 1 {
				inMulti = q
			}
		}
	}
	return idx
}

func normalizeKey(k string) string {
	parts := strings.Split(strings.TrimSpace(k), ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// find returns the line of key, or of the nearest enclosing table.
func (idx lineIndex) find(key string) int {
	for key != "" {
		if n, ok := idx[key]; ok {
			return n
		}
		i := strings.LastIndex(key, ".")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

func parseMode(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("invalid mode %q: want an octal mode such as \"0660\"", s)
	}
	return uint32(n), nil
}

// first returns the earliest line of key or of any key under it, for keys
// such as a program defined by dotted keys rather than a table header.
func (idx lineIndex) first(key string) int {
	best := 0
	for k, n := range idx {
		if (k == key || strings.HasPrefix(k, key+".")) && (best == 0 || n < best) {
			best = n
		}
	}
	return best
}
