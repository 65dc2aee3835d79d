package api

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendStatusJSON appends procs as encoding/json's Encoder writes them
// (the same bytes: field order, omitempty and omitzero, HTML escaping, a
// newline at the end), indented as by its SetIndent("", "  ") when indent
// is set (gosup ctl status --json), without reflection: the status of
// 1,000 processes is the daemon's largest answer, asked for at every
// `ctl status` and every `ctl top` refresh.
// TestAppendStatusJSONIsEncodingJSONs holds it to encoding/json's output
// for every field of ProcStatus.
func AppendStatusJSON(b []byte, procs []ProcStatus, indent bool) []byte {
	j := jsonAppender{b: b, indent: indent}
	j.b = append(j.b, '[')
	for i := range procs {
		j.elem(i, 1)
		j.proc(&procs[i])
	}
	j.end(len(procs), 1, ']')
	return append(j.b, '\n')
}

// jsonAppender appends JSON, indented or not.
type jsonAppender struct {
	b      []byte
	indent bool
}

// elem starts the element i of an array at depth.
func (j *jsonAppender) elem(i, depth int) {
	if i > 0 {
		j.b = append(j.b, ',')
	}
	j.newline(depth)
}

// end closes an array or object of n elements at depth with c.
func (j *jsonAppender) end(n, depth int, c byte) {
	if n > 0 {
		j.newline(depth - 1)
	}
	j.b = append(j.b, c)
}

func (j *jsonAppender) newline(depth int) {
	if j.indent {
		j.b = append(j.b, '\n')
		for range depth {
			j.b = append(j.b, ' ', ' ')
		}
	}
}

// key starts the member key of an object at depth (first: its first).
func (j *jsonAppender) key(key string, first bool, depth int) {
	if !first {
		j.b = append(j.b, ',')
	}
	j.newline(depth)
	j.b = append(j.b, '"')
	j.b = append(j.b, key...)
	j.b = append(j.b, '"', ':')
	if j.indent {
		j.b = append(j.b, ' ')
	}
}

func (j *jsonAppender) str(key, v string) { j.key(key, false, 2); j.b = appendJSONString(j.b, v) }
func (j *jsonAppender) num(key string, v int64) {
	j.key(key, false, 2)
	j.b = strconv.AppendInt(j.b, v, 10)
}
func (j *jsonAppender) float(key string, v float64) {
	j.key(key, false, 2)
	j.b = appendJSONFloat(j.b, v)
}

// timeOmitZero is a time.Time member with omitzero.
func (j *jsonAppender) timeOmitZero(key string, t time.Time) {
	if !t.IsZero() {
		j.key(key, false, 2)
		j.b = appendJSONTime(j.b, t)
	}
}

func (j *jsonAppender) proc(p *ProcStatus) {
	j.b = append(j.b, '{')
	j.key("name", true, 2)
	j.b = appendJSONString(j.b, p.Name)
	j.str("group", p.Group)
	j.str("program", p.Program)
	j.str("process", p.Process)
	j.str("state", p.State)
	j.num("pid", int64(p.Pid))
	j.num("port", int64(p.Port))
	j.float("uptime_s", p.UptimeS)
	j.num("restarts", int64(p.Restarts))
	j.key("exit_status", false, 2)
	if p.ExitStatus == nil {
		j.b = append(j.b, "null"...)
	} else {
		j.b = strconv.AppendInt(j.b, int64(*p.ExitStatus), 10)
	}
	j.str("spawn_error", p.SpawnError)
	j.str("description", p.Description)
	if p.LastExit != "" {
		j.str("last_exit", p.LastExit)
	}
	j.timeOmitZero("last_exit_at", p.LastExitAt)
	if p.Stdout != "" {
		j.str("stdout_logfile", p.Stdout)
	}
	if p.Stderr != "" {
		j.str("stderr_logfile", p.Stderr)
	}
	j.key("sampled", false, 2)
	j.b = strconv.AppendBool(j.b, p.Sampled)
	j.float("cpu_percent", p.CPUPercent)
	j.float("cpu_window_s", p.CPUWindowS)
	j.num("rss_bytes", p.RSSBytes)
	if p.TreeRSSBytes != 0 {
		j.num("tree_rss_bytes", p.TreeRSSBytes)
	}
	j.timeOmitZero("memmon_restart_at", p.MemmonRestartAt)
	if p.MemmonReason != "" {
		j.str("memmon_reason", p.MemmonReason)
	}
	if p.MemmonGaveUp != "" {
		j.str("memmon_gave_up", p.MemmonGaveUp)
	}
	j.timeOmitZero("memmon_gave_up_at", p.MemmonGaveUpAt)
	if p.IllegalMoves != 0 {
		j.num("illegal_moves", int64(p.IllegalMoves))
	}
	if p.LogDroppedBytes != 0 {
		j.num("log_dropped_bytes", p.LogDroppedBytes)
	}
	if p.StdoutDroppedBytes != 0 {
		j.num("stdout_dropped_bytes", p.StdoutDroppedBytes)
	}
	if p.StderrDroppedBytes != 0 {
		j.num("stderr_dropped_bytes", p.StderrDroppedBytes)
	}
	if len(p.LogFailing) > 0 {
		j.key("log_failing", false, 2)
		j.b = append(j.b, '[')
		for i, f := range p.LogFailing {
			j.elem(i, 3)
			j.b = append(j.b, '{')
			j.key("stream", true, 4)
			j.b = appendJSONString(j.b, f.Stream)
			j.key("path", false, 4)
			j.b = appendJSONString(j.b, f.Path)
			j.key("since", false, 4)
			j.b = appendJSONTime(j.b, f.Since)
			j.key("error", false, 4)
			j.b = appendJSONString(j.b, f.Error)
			j.key("dropped_bytes", false, 4)
			j.b = strconv.AppendInt(j.b, f.DroppedBytes, 10)
			j.end(1, 4, '}')
		}
		j.end(len(p.LogFailing), 3, ']')
	}
	if p.OldSpec {
		j.key("old_spec", false, 2)
		j.b = append(j.b, "true"...)
	}
	j.end(1, 2, '}')
}

// appendJSONTime is time.Time's MarshalJSON: RFC 3339 with nanoseconds.
func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendJSONFloat is encoding/json's float64: the shortest decimal that
// reads back the same, in exponent form below 1e-6 and from 1e21. JSON
// has no NaN nor infinity (encoding/json fails on them): they are 0.
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, '0')
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json does.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString is encoding/json's string with HTML escaping (its
// Encoder's default): <, > and & as \u003c, \u003e and \u0026, U+2028 and
// U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
