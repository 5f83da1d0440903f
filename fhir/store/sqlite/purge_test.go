package sqlite

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// TestPurgeUnindexed: the records named go, every version and their current
// rows; a record of the same type not named, a record of another type under
// the same id, and the search values of indexed resources stay; the query
// plan finds the records by key, not by scanning the tables.
func TestPurgeUnindexed(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	const typ = "CrsAuditPending"
	put := func(tx store.Tx, typ, id string, vid int, body string, index []fhir.IndexValue) error {
		return tx.Put(ctx, store.Version{Type: typ, ID: id, VersionID: vid, LastUpdated: time.Unix(1700000000, 0), Method: "POST", Body: []byte(body)}, index)
	}
	pat := `{"resourceType":"Patient","id":"a","name":[{"family":"Kept"}]}`
	obj, err := fhir.Parse([]byte(pat), fhir.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	index, err := fsearch.Default().Extract("Patient", obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		for _, id := range []string{"a", "b", "c"} {
			if err := put(tx, typ, id, 1, `{"id":"`+id+`"}`, nil); err != nil {
				return err
			}
		}
		if err := put(tx, typ, "b", 2, `{"id":"b","v":2}`, nil); err != nil {
			return err
		}
		return put(tx, "Patient", "a", 1, pat, index)
	}); err != nil {
		t.Fatal(err)
	}
	indexRows := func() int {
		n := 0
		for _, table := range indexTables {
			n += countRows(t, s, table, "1")
		}
		return n
	}
	before := indexRows()
	if before == 0 {
		t.Fatal("the Patient has no search values: the test proves nothing")
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		return tx.(*txn).PurgeUnindexed(ctx, typ, []string{"a", "b", "missing"})
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		table, where string
		want         int
	}{
		{"versions", "type = '" + typ + "' AND id IN ('a', 'b')", 0},
		{"current", "type = '" + typ + "' AND id IN ('a', 'b')", 0},
		{"versions", "type = '" + typ + "' AND id = 'c'", 1},
		{"current", "type = '" + typ + "' AND id = 'c'", 1},
		{"versions", "type = 'Patient' AND id = 'a'", 1},
		{"current", "type = 'Patient' AND id = 'a'", 1},
	} {
		if n := countRows(t, s, c.table, c.where); n != c.want {
			t.Errorf("%s where %s: %d rows, want %d", c.table, c.where, n, c.want)
		}
	}
	if after := indexRows(); after != before {
		t.Errorf("%d index rows after the purge, want the %d before", after, before)
	}
	if _, err := s.Read(ctx, typ, "a"); fhir.KindOf(err) != fhir.NotFound {
		t.Errorf("read of a purged record: %v, want NotFound", err)
	}
	for _, table := range []string{"versions", "current"} {
		plan := queryPlan(t, s, `DELETE FROM `+table+` WHERE type = ? AND id IN (SELECT value FROM json_each(?))`, typ, `["a"]`)
		all := strings.Join(plan, "; ")
		if !strings.Contains(all, "SEARCH "+table+" USING") || strings.Contains(all, "SCAN "+table) {
			t.Errorf("%s: the purge's plan %q does not find the records by key", table, all)
		}
	}
}

// BenchmarkPurgePending removes records stored without search values (the
// engine's pending audit records) in transactions of 500, as the audit
// materialiser does: with Purge (a DELETE per index table as well) and with
// PurgeUnindexed; and the same records as rows of the pending audit table
// (pendingaudit.go) removed by key with DeletePendingAudits
// ("PendingTable"). cpu-us/record is the process's CPU per record removed,
// the commit included.
func BenchmarkPurgePending(b *testing.B) {
	const batch = 500
	for _, mode := range []string{"Purge", "PurgeUnindexed", "PendingTable"} {
		b.Run(mode, func(b *testing.B) {
			s := openTemp(b)
			ctx := context.Background()
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = fmt.Sprintf("01938f2a-%04x-7000-8000-%012x", i%65536, i)
			}
			// Patients with search values beside them, so that the index
			// tables are not empty.
			index := []fhir.IndexValue{{Param: "family", Type: fhir.TypeString, Str: "bench", Exact: "Bench"}}
			for i := 0; i < len(ids); i += batch {
				if err := s.Write(ctx, func(tx store.Tx) error {
					for j, id := range ids[i:min(i+batch, len(ids))] {
						v := store.Version{Type: "CrsAuditPending", ID: id, VersionID: 1, LastUpdated: time.Unix(1700000000, 0), Method: "POST", Body: []byte(`{"id":"` + id + `","r":{"i":"create","a":"C"}}`)}
						if mode == "PendingTable" {
							if err := tx.(*txn).PutPendingAudit(ctx, v.Body); err != nil {
								return err
							}
						} else if err := tx.Put(ctx, v, nil); err != nil {
							return err
						}
						p := store.Version{Type: "Patient", ID: fmt.Sprint("p", i+j), VersionID: 1, LastUpdated: time.Unix(1700000000, 0), Method: "POST", Body: []byte(`{}`)}
						if err := tx.Put(ctx, p, index); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			seqs, _, err := s.PendingAudits(ctx, len(ids))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu0 := purgeCPU(b)
			for i := 0; i < len(ids); i += batch {
				chunk := ids[i:min(i+batch, len(ids))]
				if err := s.Write(ctx, func(tx store.Tx) error {
					switch mode {
					case "PendingTable":
						return tx.(*txn).DeletePendingAudits(ctx, seqs[i:min(i+batch, len(ids))])
					case "Purge":
						return tx.(*txn).Purge(ctx, "CrsAuditPending", chunk)
					}
					return tx.(*txn).PurgeUnindexed(ctx, "CrsAuditPending", chunk)
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(purgeCPU(b)-cpu0)/1e3/float64(b.N), "cpu-us/record")
			if n := countRows(b, s, "current", "type = 'CrsAuditPending'") + countRows(b, s, "audit_pending", "1"); n != 0 {
				b.Fatalf("%d records left", n)
			}
		})
	}
}

// purgeCPU is the process's user and system CPU time so far, in nanoseconds.
func purgeCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
