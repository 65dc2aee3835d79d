package procgroup

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// procLog logs for one process: each record has "process" (group:name)
// as its first attribute, as a log.With("process", name) would give it,
// without a logger of each process's own (With clones the handler and
// formats the attribute: some 300 bytes a process, for records that an
// idle process rarely writes).
type procLog struct {
	l    *slog.Logger
	name string // group:name
}

func newProcLog(l *slog.Logger, spec *ProcSpec) procLog {
	return procLog{l: l, name: spec.FullName()}
}

func (pl *procLog) Debug(msg string, args ...any) { pl.log(slog.LevelDebug, msg, args) }
func (pl *procLog) Info(msg string, args ...any)  { pl.log(slog.LevelInfo, msg, args) }
func (pl *procLog) Warn(msg string, args ...any)  { pl.log(slog.LevelWarn, msg, args) }
func (pl *procLog) Error(msg string, args ...any) { pl.log(slog.LevelError, msg, args) }

// log writes a record at level, its source the caller's caller (as
// slog.Logger's own methods have it).
func (pl *procLog) log(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if pl.l == nil || !pl.l.Enabled(ctx, level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // Callers, log, Info (or its kin)
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	r.AddAttrs(slog.String("process", pl.name))
	r.Add(args...)
	_ = pl.l.Handler().Handle(ctx, r)
}
