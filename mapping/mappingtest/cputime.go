package mappingtest

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the CPU time (user and system) the process has used so far, 0
// where the system cannot tell.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportRate reports a benchmark's rows/s (wall time since start) and its CPU
// time per row in µs (since cpu0, from CPUTime): the CPU figure counts every
// goroutine of the process (the store's writer, the garbage collector) and
// depends less on what else the machine runs than the wall time does.
func ReportRate(b *testing.B, rows int, start time.Time, cpu0 time.Duration) {
	b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
	if cpu := CPUTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(rows), "cpu-µs/row")
	}
}
