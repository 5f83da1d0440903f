package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/store"
	"crs/fhir/store/sqlite"
)

// benchEntries is n journal entries of the mix an audited server writes:
// reads of a patient's resources by a signed-in user, searches, refusals.
func benchEntries(n int) []audit.Entry {
	who := &auth.Principal{Issuer: "https://idp.example/realms/crs", Subject: "user-7", ClientID: "crs-web",
		Org: "RX1", JTI: "b8c1f5e2", Roles: []string{"clinician"}}
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	out := make([]audit.Entry, n)
	for i := range out {
		r := audit.Record{Interaction: "read", Action: "R", Server: "http://bench/fhir", Who: who,
			RequestID: fmt.Sprintf("req-%08d", i), Remote: "10.1.2.3", Recorded: at.Add(time.Duration(i) * time.Millisecond)}
		switch i % 4 {
		case 0, 1:
			r.Entities = []string{fmt.Sprintf("Patient/p%d/_history/1", i%97)}
			r.Patient = fmt.Sprintf("Patient/p%d", i%97)
		case 2:
			r.Interaction, r.Action, r.Query = "search-type", "E", fmt.Sprintf("subject=Patient/p%d&status=active", i%97)
			r.Entities = []string{"ServiceRequest/s1/_history/2", "ServiceRequest/s2/_history/1"}
			r.Patient = fmt.Sprintf("Patient/p%d", i%97)
		case 3:
			r.Outcome = fhir.Errorf(fhir.Forbidden, "", "outside your organisation")
			r.Entities = []string{fmt.Sprintf("Encounter/e%d", i)}
		}
		out[i] = audit.NewEntry(fmt.Sprintf("ae-%08d", i), r)
	}
	return out
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMaterialise isolates what storing one journal entry as an
// AuditEvent costs, stage by stage: render (the AuditEvent's canonical JSON
// from the compact record; the stored body is written in the writer), index
// (its search values, computed from the record as the materialiser does),
// extract (the same values by FHIRPath extraction over the rendered tree, as
// before), and all (rendering, indexing, linking in the chain and the SQLite
// insert, 500 entries per durable transaction, as the materialiser does).
// cpu-us/event is the process's CPU time per entry (load-insensitive, unlike
// ns/op).
func BenchmarkMaterialise(b *testing.B) {
	e := New(Config{Base: "http://bench/fhir", Audit: true})
	entries := benchEntries(1000)
	report := func(b *testing.B, cpu0 time.Duration) {
		b.StopTimer()
		b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-us/event")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	}
	b.Run("render", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		for i := 0; i < b.N; i++ {
			if _, err := entries[i%len(entries)].Render(); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
	b.Run("index", func(b *testing.B) {
		xs := make([]*audit.Rendered, len(entries))
		for i, en := range entries {
			x, err := en.Render()
			if err != nil {
				b.Fatal(err)
			}
			xs[i] = x
		}
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime(b)
		for i := 0; i < b.N; i++ {
			if _, ok := e.auditIndex(xs[i%len(xs)], "ae-1", "2026-11-29T12:00:00.123Z"); !ok {
				b.Fatal("the search values were not computed from the record")
			}
		}
		report(b, cpu0)
	})
	b.Run("extract", func(b *testing.B) {
		evs := make([]fhir.Object, len(entries))
		for i, en := range entries {
			x, err := en.Render()
			if err != nil {
				b.Fatal(err)
			}
			evs[i] = x.Tree()
			evs[i]["id"] = "ae-1"
			evs[i]["meta"] = map[string]any{"versionId": "1", "lastUpdated": "2026-11-29T12:00:00.123Z"}
		}
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime(b)
		for i := 0; i < b.N; i++ {
			if _, err := e.params.Extract("AuditEvent", evs[i%len(evs)]); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
	b.Run("all", func(b *testing.B) {
		st, err := sqlite.Open(filepath.Join(b.TempDir(), "crs.db"), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		e := New(Config{Store: st, Base: "http://bench/fhir", Audit: true})
		all := benchEntries(b.N)
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime(b)
		for i := 0; i < len(all); i += materialiseBatch {
			if err := e.materialiseEntries(all[i:min(i+materialiseBatch, len(all))], 0); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
		var n int
		if err := st.Write(context.Background(), func(tx store.Tx) error {
			_, err := tx.Last(context.Background(), "AuditEvent")
			n++
			return err
		}); err != nil || n != 1 {
			b.Fatalf("no AuditEvent stored: %v", err)
		}
	})
}
