package audit_test

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
)

// BenchmarkJournalAppend appends from 8 goroutines (a read's compact
// record, as the engine journals it), each append durable
// (group-committed fsync) before it returns; nothing materialises, so the
// entries are taken and reported as they come. cpu-us/op is the process's
// CPU per append (sys-us/op its system part: mostly the fdatasyncs), and
// entries/sync the group commit's batch size.
func BenchmarkJournalAppend(b *testing.B) {
	j, _, err := audit.OpenJournal(filepath.Join(b.TempDir(), "j"), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-j.Durable():
				_ = j.Materialised(len(j.Take(1 << 20)))
			}
		}
	}()
	rec := audit.Record{Interaction: "read", Action: "R", Entities: []string{"Patient/0193a0b4-6f0c-7c1e-9a53-1d2f3a4b5c6d/_history/1"},
		Patient: "Patient/0193a0b4-6f0c-7c1e-9a53-1d2f3a4b5c6d", RequestID: "0193a0b4-6f0c-7c1e-9a53-1d2f3a4b5c6e", Remote: "127.0.0.1",
		Server: "http://127.0.0.1:8080/fhir", Who: &auth.Principal{Anonymous: true}, Recorded: time.Now()}
	b.SetParallelism(4)
	b.ResetTimer()
	s0 := j.Syncs()
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := j.Append(audit.NewEntry("x", rec)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	b.ReportMetric(float64(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano())/1e3/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(ru1.Stime.Nano()-ru0.Stime.Nano())/1e3/float64(b.N), "sys-us/op")
	b.ReportMetric(float64(b.N)/float64(j.Syncs()-s0), "entries/sync")
}
