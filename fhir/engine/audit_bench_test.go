package engine_test

import (
	"context"
	"path/filepath"
	"testing"

	"crs/audit"
	"crs/fhir/engine"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
)

// BenchmarkAuditedRead reads one resource by id from 8 goroutines on a
// durable SQLite store: unaudited (the baseline), with every read's
// AuditEvent group-committed to the store, and with it group-committed to
// the audit journal (materialised behind). make bench prints the ratios.
func BenchmarkAuditedRead(b *testing.B) {
	for _, mode := range []string{"unaudited", "store", "journal"} {
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			st, err := sqlite.Open(filepath.Join(dir, "crs.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			v, err := validate.New()
			if err != nil {
				b.Fatal(err)
			}
			cfg := engine.Config{Store: st, Validator: v, Base: "http://bench/fhir", Audit: mode != "unaudited"}
			if mode == "journal" {
				j, _, err := audit.OpenJournal(filepath.Join(dir, "crs.db.audit-journal"), 0)
				if err != nil {
					b.Fatal(err)
				}
				defer j.Close()
				cfg.AuditJournal = j
			}
			eng := engine.New(cfg)
			defer eng.Close()
			ctx := context.Background()
			res, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Bench"}]}`), "")
			if err != nil {
				b.Fatal(err)
			}
			id := res.Version.ID
			b.SetParallelism(4) // 8 readers on 2 cores
			b.ResetTimer()
			cpu0 := engine.CPUTime(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := eng.Read(ctx, "Patient", id); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer() // materialising what the run left in the journal happens after, when idle
			b.ReportMetric(float64(engine.CPUTime(b)-cpu0)/1e3/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
			// The materialiser leaves the journal's entries to wait while
			// reads come, until a quarter of its bound (16,384) waits: in a
			// run of fewer reads cpu-us/op is the journal's path alone, in a
			// longer one it includes storing some of the AuditEvents.
			// cpu-us/op-all counts storing them all (Close does).
			eng.Close()
			b.ReportMetric(float64(engine.CPUTime(b)-cpu0)/1e3/float64(b.N), "cpu-us/op-all")
		})
	}
}

// BenchmarkAuditedCreate creates from 8 goroutines on a durable SQLite store,
// unaudited (the baseline), audited with no audit journal (each create's
// AuditEvent in the create's own transaction: the MongoDB layout), and
// audited with the journal (what crs serve does on SQLite). cpu-us/op stops
// at the last answer; cpu-us/op-all also counts storing the AuditEvents the
// run left for the materialiser (Close stores them all).
func BenchmarkAuditedCreate(b *testing.B) {
	for _, mode := range []string{"unaudited", "audited", "journal"} {
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			st, err := sqlite.Open(filepath.Join(dir, "crs.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			v, err := validate.New()
			if err != nil {
				b.Fatal(err)
			}
			var j *audit.Journal
			if mode == "journal" {
				if j, _, err = audit.OpenJournal(filepath.Join(dir, "crs.db.audit-journal"), 0); err != nil {
					b.Fatal(err)
				}
				defer j.Close()
			}
			eng := engine.New(engine.Config{Store: st, Validator: v, Base: "http://bench/fhir", Audit: mode != "unaudited", AuditJournal: j})
			defer eng.Close()
			ctx := context.Background()
			body := []byte(`{"resourceType":"Patient","name":[{"family":"Bench","given":["Ada"]}],"gender":"female","birthDate":"1950-02-03"}`)
			b.SetParallelism(4) // 8 writers on 2 cores
			b.ResetTimer()
			cpu0 := engine.CPUTime(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := eng.Create(ctx, "Patient", body, ""); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(engine.CPUTime(b)-cpu0)/1e3/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
			eng.Close()
			b.ReportMetric(float64(engine.CPUTime(b)-cpu0)/1e3/float64(b.N), "cpu-us/op-all")
		})
	}
}
