package engine_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/store"
)

// countLegacyPending is how many pending audit records st holds as
// bookkeeping records (versions of type CrsAuditPending).
func countLegacyPending(t *testing.T, st store.Store) int {
	t.Helper()
	res, err := st.Search(context.Background(), &fhir.Query{Type: pendingAuditType, Count: 1, Total: fhir.TotalAccurate})
	if err != nil {
		t.Fatal(err)
	}
	return res.Total
}

// TestPendingAuditTable: on the SQLite store a write's pending audit
// record is one row of its pending table, not a bookkeeping record: after
// the writes (the materialiser storing nothing) the table holds one row per
// write and no CrsAuditPending version exists; once materialised, the
// table is empty and every write has exactly one AuditEvent.
func TestPendingAuditTable(t *testing.T) {
	sq, v := openStore(t)
	fs := &faultStore{Store: sq}
	fs.failEvents.Store(true)
	path := filepath.Join(t.TempDir(), "audit-journal")
	eng, j := journaled(t, fs, v, path)
	want := auditWrites(t, eng)
	eng.Close()
	j.Close()
	seqs, _, err := sq.PendingAudits(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != len(want)-1 {
		t.Fatalf("%d pending audit rows after %d writes", len(seqs), len(want)-1)
	}
	if n := countLegacyPending(t, sq); n != 0 {
		t.Fatalf("%d pending audit records stored as versions beside the table", n)
	}
	eng, _ = journaled(t, sq, v, path)
	eng.MaterialiseAudit(context.Background())
	if n := countPending(t, sq); n != 0 {
		t.Fatalf("%d pending audit records left", n)
	}
	if got := verifyChain(t, sq); got != len(want) {
		t.Fatalf("%d AuditEvents, want %d", got, len(want))
	}
	if got := auditedEntities(t, sq); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the AuditEvents name\n%v\nwant\n%v", got, want)
	}
}

// TestPendingAuditLegacyRecords: pending audit records an earlier crs left
// as bookkeeping records (before the pending table) are stored as
// AuditEvents at the next start, once each, before the table's rows (they
// were committed first), and removed.
func TestPendingAuditLegacyRecords(t *testing.T) {
	sq, v := openStore(t)
	ctx := context.Background()
	recorded := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	var want []string
	err := sq.Write(ctx, func(tx store.Tx) error {
		for _, id := range []string{"old-1", "old-2"} {
			ref := "Patient/" + id + "/_history/1"
			want = append(want, ref)
			body, err := audit.EncodeEntry(audit.NewEntry("ae-"+id, audit.Record{Interaction: "create", Action: "C", Entities: []string{ref}, Recorded: recorded}))
			if err != nil {
				return err
			}
			if err := tx.Put(ctx, store.Version{Type: pendingAuditType, ID: "ae-" + id, VersionID: 1, LastUpdated: recorded, Method: "POST", Body: body}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fs := &faultStore{Store: sq}
	fs.failEvents.Store(true)
	path := filepath.Join(t.TempDir(), "audit-journal")
	eng, j := journaled(t, fs, v, path)
	want = append(want, auditWrites(t, eng)...)
	eng.Close()
	j.Close()
	if n := countLegacyPending(t, sq); n != 2 {
		t.Fatalf("%d legacy pending records, want the 2 put", n)
	}
	for run := 0; run < 2; run++ {
		eng, j := journaled(t, sq, v, path)
		eng.Close()
		j.Close()
		if n := countPending(t, sq); n != 0 {
			t.Fatalf("start %d: %d pending audit records left", run+1, n)
		}
		if got := verifyChain(t, sq); got != len(want) {
			t.Fatalf("start %d: %d AuditEvents, want %d", run+1, got, len(want))
		}
	}
	if got := auditedEntities(t, sq); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the AuditEvents name\n%v\nwant\n%v", got, want)
	}
}
