package audit_test

import (
	"path/filepath"
	"testing"
	"time"

	"crs/audit"
)

// BenchmarkJournalAppend appends from 8 goroutines, each append durable
// (group-committed fsync) before it returns; nothing materialises, so the
// entries are taken and reported as they come.
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
	canonical := []byte(`{"action":"R","agent":[{"requestor":false,"type":{"coding":[{"code":"110153","display":"Source Role ID","system":"http://dicom.nema.org/resources/ontology/DCM"}]},"who":{"display":"anonymous caller"}}],"entity":[{"role":{"code":"4"},"what":{"reference":"Patient/0193a0b4-6f0c-7c1e-9a53-1d2f3a4b5c6d/_history/1"}}],"outcome":"0","recorded":"2026-11-29T17:00:00.000Z","resourceType":"AuditEvent"}`)
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := j.Append(audit.Entry{ID: "x", Recorded: time.Now(), Canonical: canonical}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}
