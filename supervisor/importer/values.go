package importer

import (
	"fmt"
	"strconv"
	"strings"
)

// supervisord's value types (supervisor/datatypes.py), read the way it reads them.

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true/false, yes/no, on/off, 1/0)", v)
}

func parseInt(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", v)
	}
	return n, nil
}

// parseExitCodes reads "0,2".
func parseExitCodes(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := parseInt(f)
		if err != nil || n < 0 || n > 255 {
			return nil, fmt.Errorf("%q is not a list of exit codes such as 0,2", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseSize reads supervisord's byte_size ("50MB", "1GB", "1024") into
// gosup's spelling of it.
func parseSize(v string) (string, error) {
	t := strings.ToUpper(strings.TrimSpace(v))
	for _, suf := range []string{"KB", "MB", "GB"} {
		if num, ok := strings.CutSuffix(t, suf); ok {
			if _, err := strconv.ParseFloat(num, 64); err != nil {
				return "", fmt.Errorf("%q is not a size such as 50MB", v)
			}
			return num + suf, nil
		}
	}
	if _, err := strconv.ParseInt(t, 10, 64); err != nil {
		return "", fmt.Errorf("%q is not a size such as 50MB", v)
	}
	return t, nil
}

// parseEnvironment reads KEY="val",KEY2=val2 as supervisord's
// dict_of_key_value_pairs does: a non-POSIX shlex whose words also take
// "/.+-():" (and here '%', so that unexpanded %(x)s survive), '#' starting
// a comment, quotes keeping commas inside a value, each value's quotes
// stripped, and whatever single token follows a pair taken as the
// separator.
func parseEnvironment(v string) (map[string]string, []string, error) {
	toks, err := shlexTokens(v)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]string{}
	var order []string
	for i := 0; i < len(toks); i += 4 {
		if i+2 >= len(toks) || toks[i+1] != "=" {
			return nil, nil, fmt.Errorf("%q: want KEY=value pairs separated by commas (quote values that contain commas or spaces)", v)
		}
		k := toks[i]
		if _, dup := out[k]; !dup {
			order = append(order, k)
		}
		out[k] = strings.Trim(toks[i+2], `'"`)
	}
	return out, order, nil
}

func isWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || strings.IndexByte("/.+-():%", c) >= 0
}

func shlexTokens(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#': // shlex's comment: to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("%q: unclosed quote", s)
			}
			toks = append(toks, s[i:i+j+2])
			i += j + 2
		case isWordChar(c):
			j := i
			for j < len(s) && isWordChar(s[j]) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			toks = append(toks, s[i:i+1])
			i++
		}
	}
	return toks, nil
}

// signalName normalizes a stop signal ("SIGQUIT", "quit" → "QUIT").
func signalName(v string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(v)), "SIG")
}
