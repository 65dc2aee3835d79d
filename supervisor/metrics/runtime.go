package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"syscall"
	"time"
)

// The runtime/metrics a scrape reads, in the order of rmNames.
const (
	rmTinyAllocs = iota
	rmAllocsObjects
	rmFreesObjects
	rmAllocsBytes
	rmTotal
	rmHeapObjectsBytes
	rmHeapUnused
	rmHeapReleased
	rmHeapFree
	rmHeapObjects
	rmHeapStacks
	rmOSStacks
	rmMSpanInuse
	rmMSpanFree
	rmMCacheInuse
	rmMCacheFree
	rmProfBuckets
	rmMetadataOther
	rmOther
	rmHeapGoal
	rmGOGC
	rmGOMEMLIMIT
	rmGOMAXPROCS
	rmCount
)

var rmNames = [rmCount]string{
	"/gc/heap/tiny/allocs:objects",
	"/gc/heap/allocs:objects",
	"/gc/heap/frees:objects",
	"/gc/heap/allocs:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/free:bytes",
	"/gc/heap/objects:objects",
	"/memory/classes/heap/stacks:bytes",
	"/memory/classes/os-stacks:bytes",
	"/memory/classes/metadata/mspan/inuse:bytes",
	"/memory/classes/metadata/mspan/free:bytes",
	"/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/metadata/mcache/free:bytes",
	"/memory/classes/profiling/buckets:bytes",
	"/memory/classes/metadata/other:bytes",
	"/memory/classes/other:bytes",
	"/gc/heap/goal:bytes",
	"/gc/gogc:percent",
	"/gc/gomemlimit:bytes",
	"/sched/gomaxprocs:threads",
}

// runtimeReader reads the Go runtime's figures and the process's, into
// buffers kept from one scrape to the next (one reader a scrape in
// flight).
type runtimeReader struct {
	samples []metrics.Sample
	gc      debug.GCStats
	file    []byte // a /proc file's bytes
}

// rm is the value of runtime/metrics' sample i (0: unsupported).
func (r *runtimeReader) rm(i int) float64 {
	v := r.samples[i].Value
	switch v.Kind() {
	case metrics.KindUint64:
		return float64(v.Uint64())
	case metrics.KindFloat64:
		return v.Float64()
	}
	return 0
}

// appendGo appends the Go runtime's families, those of client_golang's
// default GoCollector (v1.25), named and described as it does. The
// go_memstats_* come from runtime/metrics as it derives them (no
// ReadMemStats, which stops the world), go_gc_duration_seconds from
// debug.ReadGCStats.
func (r *runtimeReader) appendGo(b []byte) []byte {
	if r.samples == nil {
		r.samples = make([]metrics.Sample, rmCount)
		for i, name := range rmNames {
			r.samples[i].Name = name
		}
		r.gc.PauseQuantiles = make([]time.Duration, 5)
	}
	metrics.Read(r.samples)
	debug.ReadGCStats(&r.gc)
	w := textWriter{b}
	const c, g = "counter", "gauge"

	const gcDuration = "go_gc_duration_seconds"
	w.header(gcDuration, "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", "summary")
	for i, q := range [...]string{`quantile="0"`, `quantile="0.25"`, `quantile="0.5"`, `quantile="0.75"`, `quantile="1"`} {
		w.sample(gcDuration, q, r.gc.PauseQuantiles[i].Seconds())
	}
	w.sample(gcDuration+"_sum", "", r.gc.PauseTotal.Seconds())
	w.sample(gcDuration+"_count", "", float64(r.gc.NumGC))
	w.one("go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.", g, r.rm(rmGOGC))
	w.one("go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.", g, r.rm(rmGOMEMLIMIT))
	w.one("go_goroutines", "Number of goroutines that currently exist.", g, float64(runtime.NumGoroutine()))
	w.header("go_info", "Information about the Go environment.", g)
	w.labelled("go_info", "version", runtime.Version(), 1)

	tiny := r.rm(rmTinyAllocs)
	heapObjects := r.rm(rmHeapObjectsBytes)
	heapInuse := heapObjects + r.rm(rmHeapUnused)
	heapIdle := r.rm(rmHeapReleased) + r.rm(rmHeapFree)
	w.one("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", g, heapObjects)
	w.one("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", c, r.rm(rmAllocsBytes))
	w.one("go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", g, r.rm(rmProfBuckets))
	w.one("go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", c, r.rm(rmFreesObjects)+tiny)
	w.one("go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", g, r.rm(rmMetadataOther))
	w.one("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", g, heapObjects)
	w.one("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", g, heapIdle)
	w.one("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", g, heapInuse)
	w.one("go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", g, r.rm(rmHeapObjects))
	w.one("go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", g, r.rm(rmHeapReleased))
	w.one("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", g, heapInuse+heapIdle)
	w.one("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", g, seconds(r.gc.LastGC))
	w.one("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", c, r.rm(rmAllocsObjects)+tiny)
	w.one("go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", g, r.rm(rmMCacheInuse))
	w.one("go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", g, r.rm(rmMCacheInuse)+r.rm(rmMCacheFree))
	w.one("go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", g, r.rm(rmMSpanInuse))
	w.one("go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", g, r.rm(rmMSpanInuse)+r.rm(rmMSpanFree))
	w.one("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", g, r.rm(rmHeapGoal))
	w.one("go_memstats_other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", g, r.rm(rmOther))
	w.one("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", g, r.rm(rmHeapStacks))
	w.one("go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", g, r.rm(rmHeapStacks)+r.rm(rmOSStacks))
	w.one("go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", g, r.rm(rmTotal))
	w.one("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.", g, r.rm(rmGOMAXPROCS))
	threads, _ := runtime.ThreadCreateProfile(nil)
	w.one("go_threads", "Number of OS threads created.", g, float64(threads))
	return w.b
}

// procStatic is what /proc tells once of this process: when it started.
type procStatic struct {
	startTime float64 // seconds since the epoch
	err       error   // why startTime is not known
}

// userHZ is the kernel's clock ticks a second in /proc's times (USER_HZ,
// 100 on every Linux Prometheus' procfs reads).
const userHZ = 100

// Bounds on what a /proc file read here may hold: /proc/self/stat is one
// line of a few hundred bytes; /proc/self/net/netstat a few kB; a line of
// /proc/stat (intr has a count per interrupt) can be long on a large host.
const (
	maxStatFile    = 4 << 10
	maxNetstatFile = 64 << 10
	maxStatLine    = 64 << 10
	maxStatLines   = 1 << 16
)

// readProcStatic reads when this process started: the boot time
// (/proc/stat's btime) and the start of the process after it
// (/proc/self/stat), as Prometheus' procfs computes it.
func readProcStatic() procStatic {
	var r runtimeReader
	st, err := r.stat()
	if err != nil {
		return procStatic{err: err}
	}
	btime, err := bootTime()
	if err != nil {
		return procStatic{err: err}
	}
	return procStatic{startTime: float64(btime) + float64(st.start)/userHZ}
}

// bootTime is /proc/stat's btime, read a line at a time (lines past
// maxStatLine bytes are skipped).
func bootTime() (int64, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("boot time: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 4<<10)
	long := false // in a line longer than the buffer
	for range maxStatLines {
		line, err := br.ReadSlice('\n')
		if !long && bytes.HasPrefix(line, []byte("btime ")) {
			v, perr := strconv.ParseInt(string(bytes.TrimSpace(line[len("btime "):])), 10, 64)
			if perr != nil {
				return 0, fmt.Errorf("boot time: /proc/stat: btime: %w", perr)
			}
			return v, nil
		}
		long = errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !long {
			break
		}
	}
	return 0, errors.New("boot time: /proc/stat: no btime")
}

// procStat is what a scrape reads of /proc/self/stat.
type procStat struct {
	utime, stime, start, vsize, rss uint64 // ticks, ticks, ticks after boot, bytes, pages
}

// readFile reads path into r.file, at most max bytes.
func (r *runtimeReader) readFile(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if cap(r.file) < max+1 {
		r.file = make([]byte, 0, max+1)
	}
	b := r.file[:0]
	for len(b) < max+1 {
		n, err := f.Read(b[len(b) : max+1])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}

// stat reads /proc/self/stat: the fields after the command's name (which
// may hold spaces and parentheses: the last ')' ends it).
func (r *runtimeReader) stat() (procStat, error) {
	const path = "/proc/self/stat"
	b, err := r.readFile(path, maxStatFile)
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("%s: no command name", path)
	}
	// Fields from the state (3rd) on: utime is the 14th, stime the
	// 15th, starttime the 22nd, vsize the 23rd, rss the 24th.
	var st procStat
	field := 3
	for rest := b[i+1:]; len(rest) > 0 && field <= 24; field++ {
		var p *uint64
		switch field {
		case 14:
			p = &st.utime
		case 15:
			p = &st.stime
		case 22:
			p = &st.start
		case 23:
			p = &st.vsize
		case 24:
			p = &st.rss
		}
		var f []byte
		f, rest = nextField(rest)
		if p != nil {
			if *p, err = strconv.ParseUint(string(f), 10, 64); err != nil {
				return procStat{}, fmt.Errorf("%s: field %d: %w", path, field, err)
			}
		}
	}
	if field <= 24 {
		return procStat{}, fmt.Errorf("%s: %d fields, want 24 or more", path, field-1)
	}
	return st, nil
}

// nextField splits b's first space-separated field from the rest.
func nextField(b []byte) (field, rest []byte) {
	b = bytes.TrimLeft(b, " \n")
	if i := bytes.IndexAny(b, " \n"); i >= 0 {
		return b[:i], b[i:]
	}
	return b, nil
}

// openFDs counts this process's open files: /proc/self/fd's size (Linux
// 6.2 on), else its entries, as Prometheus' procfs does.
func openFDs() (int, error) {
	const path = "/proc/self/fd"
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return int(fi.Size()), nil
	}
	d, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	n := 0
	for {
		names, err := d.Readdirnames(1024)
		n += len(names)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
	}
}

// netBytes reads the octets this process's network namespace received
// and sent: IpExt's InOctets and OutOctets in /proc/self/net/netstat, as
// Prometheus' procfs reads them.
func (r *runtimeReader) netBytes() (in, out float64, err error) {
	const path = "/proc/self/net/netstat"
	b, err := r.readFile(path, maxNetstatFile)
	if err != nil {
		return 0, 0, err
	}
	var header []byte
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if !bytes.HasPrefix(line, []byte("IpExt:")) {
			continue
		}
		if header == nil {
			header = line
			continue
		}
		// The values under the header's names.
		names, values := header[len("IpExt:"):], line[len("IpExt:"):]
		for len(names) > 0 && len(values) > 0 {
			var name, value []byte
			name, names = nextField(names)
			value, values = nextField(values)
			var p *float64
			switch string(name) {
			case "InOctets":
				p = &in
			case "OutOctets":
				p = &out
			default:
				continue
			}
			if *p, err = strconv.ParseFloat(string(value), 64); err != nil {
				return 0, 0, fmt.Errorf("%s: IpExt: %s: %w", path, name, err)
			}
		}
		return in, out, nil
	}
	return 0, 0, fmt.Errorf("%s: no IpExt", path)
}

// appendProcess appends this process's families, those of client_golang's
// ProcessCollector on Linux, named and described as it does: read from
// /proc/self and the process's limits. A family that cannot be read is
// left out, and the error says why.
func (r *runtimeReader) appendProcess(b []byte, ps *procStatic) ([]byte, error) {
	w := textWriter{b}
	const c, g = "counter", "gauge"
	var errs []error
	st, serr := r.stat()
	if serr != nil {
		errs = append(errs, serr)
	} else {
		w.one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", c, float64(st.utime+st.stime)/userHZ)
	}
	var nofile, as syscall.Rlimit
	lerr := errors.Join(syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile), syscall.Getrlimit(syscall.RLIMIT_AS, &as))
	if lerr != nil {
		errs = append(errs, fmt.Errorf("limits: %w", lerr))
	} else {
		w.one("process_max_fds", "Maximum number of open file descriptors.", g, float64(nofile.Cur))
	}
	if in, out, err := r.netBytes(); err != nil {
		errs = append(errs, err)
	} else {
		w.one("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", c, in)
		w.one("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", c, out)
	}
	if n, err := openFDs(); err != nil {
		errs = append(errs, err)
	} else {
		w.one("process_open_fds", "Number of open file descriptors.", g, float64(n))
	}
	if serr == nil {
		w.one("process_resident_memory_bytes", "Resident memory size in bytes.", g, float64(st.rss*uint64(os.Getpagesize())))
	}
	if ps.err != nil {
		errs = append(errs, ps.err)
	} else {
		w.one("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", g, ps.startTime)
	}
	if serr == nil {
		w.one("process_virtual_memory_bytes", "Virtual memory size in bytes.", g, float64(st.vsize))
	}
	if lerr == nil {
		w.one("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", g, float64(as.Cur))
	}
	return w.b, errors.Join(errs...)
}
