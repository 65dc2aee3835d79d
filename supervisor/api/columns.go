package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Columns is one process as the status table shows it (gosup ctl status,
// and the status page): every figure formatted, "-" where there is none.
type Columns struct {
	Pid      string `json:"pid"`
	Port     string `json:"port"`
	Uptime   string `json:"uptime"`
	Restarts string `json:"restarts"`
	CPU      string `json:"cpu"`
	Mem      string `json:"mem"`
	// TreeMem is the memory of the process and its descendants, when
	// larger than its own ("" otherwise).
	TreeMem string `json:"tree_mem,omitempty"`
	// Info is the status table's INFO: why a process without a pid has
	// none, memmon's last restart or giving up, the output it lost, a
	// pending rolling restart.
	Info string `json:"info"`
}

// FormatColumns formats p for the status table.
func FormatColumns(p ProcStatus) Columns {
	c := Columns{Pid: "-", Port: "-", Uptime: "-", CPU: "-", Mem: "-", Restarts: strconv.Itoa(p.Restarts)}
	if p.Pid > 0 {
		c.Pid = strconv.Itoa(p.Pid)
		c.Uptime = FormatUptime(time.Duration(p.UptimeS * float64(time.Second)))
	}
	if p.Port > 0 {
		c.Port = strconv.Itoa(p.Port)
	}
	if p.Pid == 0 {
		c.Info = p.Description
	} else if p.MemmonGaveUp != "" {
		c.Info = "memmon gave up " + p.MemmonGaveUpAt.Format(time.DateTime) + ": " + p.MemmonGaveUp
	} else if p.MemmonReason != "" {
		c.Info = "memmon restart " + p.MemmonRestartAt.Format(time.DateTime) + ": " + p.MemmonReason
	}
	if p.LogDroppedBytes > 0 {
		c.Info = strings.TrimPrefix(c.Info+"; "+droppedInfo(p), "; ")
	}
	if p.OldSpec {
		c.Info = strings.TrimSuffix(OldSpecInfo+"; "+c.Info, "; ")
	}
	if p.Pid > 0 && p.Sampled {
		if p.CPUWindowS > 0 { // else younger than the shortest window
			c.CPU = string(append(strconv.AppendFloat(make([]byte, 0, 8), p.CPUPercent, 'f', 1, 64), '%')) // %.1f%%
		}
		c.Mem = FormatMem(p.RSSBytes)
		if p.TreeRSSBytes > p.RSSBytes {
			c.TreeMem = FormatMem(p.TreeRSSBytes)
		}
	}
	return c
}

// OldSpecInfo marks, in INFO, a process that a rollout under way has yet
// to restart.
const OldSpecInfo = "old spec (rolling restart pending)"

// FormatMem is a resident set as top shows it: MiB to a tenth, GiB to a
// hundredth from 1 GiB.
func FormatMem(b int64) string {
	buf := make([]byte, 0, 12)
	if b >= 1<<30 {
		return string(append(strconv.AppendFloat(buf, float64(b)/(1<<30), 'f', 2, 64), 'G')) // %.2fG
	}
	return string(append(strconv.AppendFloat(buf, float64(b)/(1<<20), 'f', 1, 64), 'M')) // %.1fM
}

// droppedInfo says how much output a process lost, per stream, and which
// of its logs fail now.
func droppedInfo(p ProcStatus) string {
	var streams []string
	if p.StdoutDroppedBytes > 0 {
		streams = append(streams, fmt.Sprintf("stdout %d", p.StdoutDroppedBytes))
	}
	if p.StderrDroppedBytes > 0 {
		streams = append(streams, fmt.Sprintf("stderr %d", p.StderrDroppedBytes))
	}
	s := fmt.Sprintf("%d bytes of output dropped", p.LogDroppedBytes)
	if len(streams) > 0 {
		s += " (" + strings.Join(streams, ", ") + ")"
	}
	for _, f := range p.LogFailing {
		s += fmt.Sprintf("; %s log failing: %s", f.Stream, f.Error)
	}
	return s
}
