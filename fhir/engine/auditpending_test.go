package engine_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
	"crs/fhir/validate"
)

// pendingAuditType is the type of a write's pending audit record (the
// engine's auditPendingType).
const pendingAuditType = engine.OutboxPrefix + "AuditPending"

// journaled is an engine on st auditing as crs serve does, with the audit
// journal at path; both are closed at the end of the test (closing them
// earlier is fine).
func journaled(t *testing.T, st store.Store, v *validate.Validator, path string) (*engine.Engine, *audit.Journal) {
	t.Helper()
	j, _, err := audit.OpenJournal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", Audit: true, AuditJournal: j})
	t.Cleanup(func() {
		eng.Close()
		j.Close()
	})
	return eng, j
}

// countPending is how many pending audit records st holds: as
// bookkeeping records and, in a store with one, in its pending table.
func countPending(t *testing.T, st store.Store) int {
	t.Helper()
	res, err := st.Search(context.Background(), &fhir.Query{Type: pendingAuditType, Count: 1, Total: fhir.TotalAccurate})
	if err != nil {
		t.Fatal(err)
	}
	n := res.Total
	if pt, ok := st.(pendingRows); ok {
		seqs, _, err := pt.PendingAudits(context.Background(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		n += len(seqs)
	}
	return n
}

// auditWrites runs a create, an update, a patch, a transaction, a batch and
// a delete on eng and returns the versions their AuditEvents must name, in
// the chain's order: the writes' pending records in commit order, then the
// journal's entries (the batch's own event, which names what it wrote).
func auditWrites(t *testing.T, eng *engine.Engine) []string {
	t.Helper()
	ctx := context.Background()
	res, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"W"}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	id := res.Version.ID
	if _, err := eng.Update(ctx, "Patient", id, []byte(`{"resourceType":"Patient","id":"`+id+`","name":[{"family":"X"}]}`), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Patch(ctx, "Patient", id, []byte(`[{"op":"replace","path":"/name/0/family","value":"Y"}]`), 0); err != nil {
		t.Fatal(err)
	}
	b, err := eng.Bundle(ctx, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"tx-1","name":[{"family":"T"}]},"request":{"method":"PUT","url":"Patient/tx-1"}}]}`), engine.SearchOptions{})
	if err != nil || len(b.Entry) != 1 {
		t.Fatalf("transaction: %v", err)
	}
	if _, err := eng.Bundle(ctx, []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","id":"batch-1","name":[{"family":"B"}]},"request":{"method":"PUT","url":"Patient/batch-1"}}]}`), engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Delete(ctx, "Patient", id, 0); err != nil {
		t.Fatal(err)
	}
	return []string{
		"Patient/" + id + "/_history/1", "Patient/" + id + "/_history/2", "Patient/" + id + "/_history/3",
		"Patient/tx-1/_history/1", "Patient/batch-1/_history/1", "Patient/" + id + "/_history/4",
		"Patient/batch-1/_history/1",
	}
}

// auditedEntities is every entity reference of the AuditEvents stored in st, in the chain's order.
func auditedEntities(t *testing.T, st store.Store) []string {
	t.Helper()
	res, err := st.History(context.Background(), store.HistoryQuery{Type: "AuditEvent", Count: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for i := len(res.Versions) - 1; i >= 0; i-- {
		obj, err := fhir.Parse(res.Versions[i].Body, fhir.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		entities, _ := obj["entity"].([]any)
		for _, en := range entities {
			what, _ := en.(map[string]any)["what"].(map[string]any)
			if ref, _ := what["reference"].(string); strings.Contains(ref, "/_history/") {
				refs = append(refs, ref)
			}
		}
	}
	return refs
}

// TestWriteAuditPendingRecovered: with an audit journal, a write stores a
// compact pending audit record in its own transaction; when the process
// stops after the write's commit and before its AuditEvent is stored (here:
// every AuditEvent the materialiser tries fails, as a kill before its commit
// would leave it), the next start stores each record as an AuditEvent, once,
// in one verifiable chain, and removes the records.
func TestWriteAuditPendingRecovered(t *testing.T) {
	sq, v := openStore(t)
	fs := &faultStore{Store: sq}
	fs.failEvents.Store(true)
	path := filepath.Join(t.TempDir(), "audit-journal")
	eng, j := journaled(t, fs, v, path)
	want := auditWrites(t, eng)
	eng.Close()
	j.Close()
	if n := countAudit(t, sq); n != 0 {
		t.Fatalf("%d AuditEvents stored while the materialiser could store none", n)
	}
	if n := countPending(t, sq); n != len(want)-1 {
		t.Fatalf("%d pending audit records after %d writes", n, len(want)-1)
	}

	for run := 0; run < 2; run++ { // the second start finds nothing left to do
		eng, j := journaled(t, sq, v, path)
		eng.Close()
		j.Close()
		if got := verifyChain(t, sq); got != len(want) {
			t.Fatalf("start %d: %d AuditEvents, want %d (one per write and the batch's, each once)", run+1, got, len(want))
		}
		if n := countPending(t, sq); n != 0 {
			t.Fatalf("start %d: %d pending audit records left", run+1, n)
		}
	}
	if got := auditedEntities(t, sq); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the AuditEvents name\n%v\nwant, in the order of the writes,\n%v", got, want)
	}
}

// TestAuditSearchSeesWrites: a search, a history and a read of AuditEvents
// see the AuditEvent of every write answered before them, though writes
// leave pending records for the materialiser.
func TestAuditSearchSeesWrites(t *testing.T) {
	sq, v := openStore(t)
	eng, _ := journaled(t, sq, v, filepath.Join(t.TempDir(), "audit-journal"))
	ctx := context.Background()
	for round := 1; round <= 3; round++ {
		res, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"S"}]}`), "")
		if err != nil {
			t.Fatal(err)
		}
		ref := "Patient/" + res.Version.ID + "/_history/1"
		b, err := eng.Search(ctx, "AuditEvent", []fhir.RawParam{{Name: "entity", Value: "Patient/" + res.Version.ID}, {Name: "_total", Value: "accurate"}}, engine.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if b.Total == nil || *b.Total != 1 {
			t.Fatalf("round %d: the search of AuditEvents found %v for %s, want its create's", round, b.Total, ref)
		}
		h, err := eng.History(ctx, "AuditEvent", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if h.Total == nil || *h.Total < 2*round-1 {
			t.Fatalf("round %d: history of AuditEvents has %v, want at least %d", round, h.Total, 2*round-1)
		}
		if n := countPending(t, sq); n != 0 {
			t.Fatalf("round %d: %d pending audit records after a search of AuditEvents", round, n)
		}
	}
}

// TestPendingAuditFaults: with an audit journal, a write whose pending
// audit record cannot be stored is answered Unavailable and stores nothing.
func TestPendingAuditFaults(t *testing.T) {
	sq, v := openStore(t)
	fs := &faultStore{Store: sq}
	eng, _ := journaled(t, fs, v, filepath.Join(t.TempDir(), "audit-journal"))
	fs.failAudit.Store(true)
	ctx := context.Background()
	if _, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","id":"x","name":[{"family":"F"}]}`), ""); fhir.KindOf(err) != fhir.Unavailable {
		t.Fatalf("create with a failing audit record: %v, want Unavailable", err)
	}
	if _, err := eng.Update(ctx, "Patient", "u1", []byte(`{"resourceType":"Patient","id":"u1","name":[{"family":"F"}]}`), 0); fhir.KindOf(err) != fhir.Unavailable {
		t.Fatalf("update with a failing audit record: %v, want Unavailable", err)
	}
	found, err := sq.Search(ctx, &fhir.Query{Type: "Patient", Count: 10, Total: fhir.TotalAccurate})
	if err != nil || found.Total != 0 {
		t.Fatalf("writes whose audit failed stored %d patients (%v)", found.Total, err)
	}
	if n := countPending(t, sq); n != 0 {
		t.Fatalf("%d pending audit records stored by failed writes", n)
	}
}

// TestPendingAuditPurged: once the materialiser has stored the writes'
// AuditEvents, no pending audit record is left in the store, neither its
// current row nor any version (the SQLite store removes them with its
// unindexed purge), and every write has its AuditEvent.
func TestPendingAuditPurged(t *testing.T) {
	st, v := openStore(t)
	eng, _ := journaled(t, st, v, filepath.Join(t.TempDir(), "audit-journal"))
	want := auditWrites(t, eng)
	eng.MaterialiseAudit(context.Background())
	if n := countPending(t, st); n != 0 {
		t.Errorf("%d pending audit records left", n)
	}
	hist, err := st.History(context.Background(), store.HistoryQuery{Type: pendingAuditType, Count: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist.Versions) != 0 {
		t.Errorf("%d versions of pending audit records left", len(hist.Versions))
	}
	got := auditedEntities(t, st)
	for _, ref := range want {
		if !slices.Contains(got, ref) {
			t.Errorf("no AuditEvent names %s (they name %q)", ref, got)
		}
	}
}
