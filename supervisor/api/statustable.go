package api

import (
	"bytes"
	"fmt"
	"text/tabwriter"
	"unicode/utf8"
)

// StatusTableType is the media type of the status as `gosup ctl status`
// prints it: a client that sends it in Accept gets the table, formatted by
// the daemon, and copies it out (no JSON to decode); a daemon that does
// not know it answers JSON, which the client formats.
const StatusTableType = "text/plain"

// statusHeader is the first line of the status table.
var statusHeader = [...]string{"NAME", "STATE", "PID", "PORT", "UPTIME", "RESTARTS", "CPU", "MEM", "INFO"}

// AppendStatusTable appends the status table of procs: a header and a line
// a process, columns aligned as text/tabwriter aligns them (two spaces
// between, widths in runes), INFO last. Cells with a tab, newline,
// vertical tab, form feed or tabwriter's escape byte (0xff), which
// tabwriter takes as layout, go through tabwriter itself; the rest, in
// one pass to measure and one to write.
func AppendStatusTable(b []byte, procs []ProcStatus) []byte {
	b, _ = appendStatusTable(b, procs, nil)
	return b
}

// statusRows are the cells of a status table, a row a process.
type statusRows = [][len(statusHeader)]string

// appendStatusTable is AppendStatusTable laying the cells out in rows
// (its elements overwritten), which it returns for the next table.
func appendStatusTable(b []byte, procs []ProcStatus, rows statusRows) ([]byte, statusRows) {
	rows = append(rows[:0], statusHeader)
	for i := range procs {
		rows = append(rows, statusRow(&procs[i]))
	}
	var widths [len(statusHeader) - 1]int
	for _, r := range rows {
		for j, c := range r {
			w, plain := cellWidth(c)
			if !plain {
				return appendTabwriter(b, rows), rows
			}
			if j < len(widths) {
				widths[j] = max(widths[j], w)
			}
		}
	}
	for _, r := range rows {
		for j, c := range r[:len(widths)] {
			b = append(b, c...)
			w, _ := cellWidth(c)
			for range widths[j] - w + 2 {
				b = append(b, ' ')
			}
		}
		b = append(b, r[len(widths)]...)
		b = append(b, '\n')
	}
	return b, rows
}

// cellWidth is the width of c (valid UTF-8, see validUTF8) as tabwriter
// counts it, in runes, in one pass over its bytes; plain is false if c
// holds a byte tabwriter takes as layout (tab, newline, vertical tab,
// form feed, its escape).
func cellWidth(c string) (width int, plain bool) {
	for i := 0; i < len(c); i++ {
		switch b := c[i]; {
		case b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == tabwriter.Escape:
			return 0, false
		case b&0xc0 != 0x80: // not a continuation byte: a rune begins
			width++
		}
	}
	return width, true
}

// statusRow is one process's cells.
func statusRow(p *ProcStatus) [len(statusHeader)]string {
	c := FormatColumns(*p)
	mem := c.Mem
	if c.TreeMem != "" {
		mem += " (tree " + c.TreeMem + ")"
	}
	row := [...]string{p.Name, p.State, c.Pid, c.Port, c.Uptime, c.Restarts, c.CPU, mem, c.Info}
	for i := range row {
		row[i] = validUTF8(row[i])
	}
	return row
}

// validUTF8 replaces each byte of s that is not part of valid UTF-8 with
// U+FFFD, as a trip through JSON did when the CLI formatted the table
// from the daemon's JSON (a byte a replacement, not a run of them).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\uFFFD"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}

// appendTabwriter is AppendStatusTable through text/tabwriter.
func appendTabwriter(b []byte, rows statusRows) []byte {
	buf := bytes.NewBuffer(b)
	tw := tabwriter.NewWriter(buf, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])
	}
	tw.Flush()
	return buf.Bytes()
}
