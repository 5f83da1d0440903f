package engine

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/mongo"
	"crs/fhir/store/mongo/mongotest"
	"crs/fhir/store/sqlite"
)

// auditSearchStore is an engine on a new SQLite store holding two
// AuditEvents, ae-a (a signed-in user's search of a patient's records) and
// ae-b (a refused read, no user), and Patient p1. With old, the events are
// stored as before the _lastUpdated alias (with their _lastUpdated values),
// as a database written by an earlier crs holds them.
func auditSearchStore(t *testing.T, backend string, old bool) (*Engine, store.Store) {
	t.Helper()
	var st store.Store
	var err error
	if backend == "mongo" {
		st, err = mongo.Open(context.Background(), mongotest.URI(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	} else {
		st, err = sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := New(Config{Store: st, Base: "http://x/fhir", Audit: true})
	who := &auth.Principal{Issuer: "https://idp.example", Subject: "u1", ClientID: "c1", Org: "RX1", JTI: "j1", Roles: []string{"clinician"}}
	recs := map[string]audit.Record{
		"ae-a": {Interaction: "search-type", Action: "E", Query: "status=active", Entities: []string{"Patient/p1/_history/2", "ServiceRequest/s1/_history/1"},
			Patient: "Patient/p1", RequestID: "req-1", Remote: "10.0.0.1", Server: "http://x/fhir", Who: who, Recorded: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)},
		"ae-b": {Interaction: "read", Action: "R", Outcome: fhir.Errorf(fhir.Forbidden, "", "not yours"), Entities: []string{"Encounter/e9"},
			Recorded: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)},
	}
	ctx := context.Background()
	for _, id := range []string{"ae-a", "ae-b"} {
		rec := recs[id]
		p, err := e.prepared(audit.Render(rec), id, rec.Recorded)
		if err != nil {
			t.Fatal(err)
		}
		if old {
			ev := p.rendered.Tree()
			ev["id"] = id
			ev["meta"] = map[string]any{"versionId": "1", "lastUpdated": formatInstant(rec.Recorded)}
			if p.index, err = e.params.Extract("AuditEvent", ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.store.Write(ctx, func(tx store.Tx) error { return e.appendAudit(ctx, tx, p) }); err != nil {
			t.Fatal(err)
		}
	}
	pat := fhir.Object{"resourceType": "Patient", "id": "p1", "meta": map[string]any{"versionId": "1", "lastUpdated": "2026-11-28T00:00:00.000Z"}}
	index, err := e.params.Extract("Patient", pat)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Write(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, store.Version{Type: "Patient", ID: "p1", VersionID: 1, LastUpdated: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), Method: "PUT",
			Body: []byte(`{"resourceType":"Patient","id":"p1"}`)}, index)
	}); err != nil {
		t.Fatal(err)
	}
	return e, st
}

// searchIDs runs the query string qs of type rt through the engine's store
// (as every engine search does) and returns the ids found, in order.
func searchIDs(t *testing.T, e *Engine, s store.Store, rt, qs string) []string {
	t.Helper()
	var raw []fhir.RawParam
	for _, kv := range strings.Split(qs, "&") {
		k, v, _ := strings.Cut(kv, "=")
		raw = append(raw, fhir.RawParam{Name: k, Value: v})
	}
	q, err := e.params.ParseQuery(rt, raw, search.ParseOptions{DefaultCount: 50, MaxCount: 50})
	if err != nil {
		t.Fatalf("%s?%s: %v", rt, qs, err)
	}
	q.Total = fhir.TotalAccurate
	res, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("%s?%s: %v", rt, qs, err)
	}
	ids := []string{}
	for _, v := range res.Matches {
		ids = append(ids, v.ID)
	}
	if res.Total != len(ids) {
		t.Errorf("%s?%s: total %d for %d matches", rt, qs, res.Total, len(ids))
	}
	return ids
}

// TestAuditEventSearchParams: every AuditEvent search parameter R4 defines
// finds the events it should and not the others, both in a store the
// materialiser writes now (no _lastUpdated rows: read from the date's) and
// in one written before (both rows), through the engine's store as every
// search is made, on SQLite and on MongoDB (FerretDB); and the new stores
// hold no _lastUpdated values.
func TestAuditEventSearchParams(t *testing.T) {
	const (
		ods    = "https://fhir.nhs.uk/Id/ods-organization-code"
		role   = "http://terminology.hl7.org/CodeSystem/object-role"
		etype  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
		rest   = "http://hl7.org/fhir/restful-interaction"
		evtype = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	)
	cases := []struct {
		rt, q   string
		want    []string
		ordered bool
	}{
		{"AuditEvent", "_id=ae-a", []string{"ae-a"}, false},
		{"AuditEvent", "_id=ae-z", nil, false},
		{"AuditEvent", "_lastUpdated=2026-11-29", []string{"ae-a"}, false},
		{"AuditEvent", "_lastUpdated=gt2026-11-29T23:00:00Z", []string{"ae-b"}, false},
		{"AuditEvent", "_lastUpdated=lt2026-01-01", nil, false},
		{"AuditEvent", "_lastUpdated=ge2026-11-29&_lastUpdated=le2026-11-30T23:00:00Z", []string{"ae-a", "ae-b"}, false},
		{"AuditEvent", "_lastUpdated:missing=true", nil, false},
		{"AuditEvent", "_sort=_lastUpdated", []string{"ae-a", "ae-b"}, true},
		{"AuditEvent", "_sort=-_lastUpdated", []string{"ae-b", "ae-a"}, true},
		{"AuditEvent", "action=E&_lastUpdated=ge2026-11-29", []string{"ae-a"}, false},
		{"AuditEvent", "action=R&_lastUpdated=le2026-11-29T13:00:00Z", nil, false},
		{"AuditEvent", "_profile:missing=true", []string{"ae-a", "ae-b"}, false},
		{"AuditEvent", "_profile=http://example.org/p", nil, false},
		{"AuditEvent", "_security=http://example.org|x", nil, false},
		{"AuditEvent", "_source=http://example.org/s", nil, false},
		{"AuditEvent", "_tag=http://example.org|x", nil, false},
		{"AuditEvent", "action=E", []string{"ae-a"}, false},
		{"AuditEvent", "action=C", nil, false},
		{"AuditEvent", "address=10.0.0.1", []string{"ae-a"}, false},
		{"AuditEvent", "address=192.168", nil, false},
		{"AuditEvent", "agent:identifier=https://idp.example|u1", []string{"ae-a"}, false},
		{"AuditEvent", "agent:identifier=https://idp.example|u2", nil, false},
		{"AuditEvent", "agent-name=anyone", nil, false},
		{"AuditEvent", "agent-role=" + ods + "|RX1", []string{"ae-a"}, false},
		{"AuditEvent", "agent-role:text=clinician", []string{"ae-a"}, false},
		{"AuditEvent", "agent-role=" + ods + "|RX2", nil, false},
		{"AuditEvent", "altid=x", nil, false},
		{"AuditEvent", "date=2026-11-30", []string{"ae-b"}, false},
		{"AuditEvent", "date=lt2026-11-29", nil, false},
		{"AuditEvent", "_sort=-date", []string{"ae-b", "ae-a"}, true},
		{"AuditEvent", "entity=Patient/p1", []string{"ae-a"}, false},
		{"AuditEvent", "entity=Encounter/e9", []string{"ae-b"}, false},
		{"AuditEvent", "entity=Patient/p9", nil, false},
		{"AuditEvent", "entity:identifier=req-1", []string{"ae-a"}, false},
		{"AuditEvent", "entity-name=x", nil, false},
		{"AuditEvent", "entity-role=" + role + "|24", []string{"ae-a"}, false},
		{"AuditEvent", "entity-role=" + role + "|4", []string{"ae-a", "ae-b"}, false},
		{"AuditEvent", "entity-role=" + role + "|99", nil, false},
		{"AuditEvent", "entity-type=" + etype + "|1", []string{"ae-a"}, false},
		{"AuditEvent", "entity-type=" + etype + "|3", nil, false},
		{"AuditEvent", "outcome=4", []string{"ae-b"}, false},
		{"AuditEvent", "outcome=0", []string{"ae-a"}, false},
		{"AuditEvent", "outcome=8", nil, false},
		{"AuditEvent", "patient=Patient/p1", []string{"ae-a"}, false},
		{"AuditEvent", "patient=p2", nil, false},
		{"AuditEvent", "policy=urn:ietf:params:oauth:jti:j1", []string{"ae-a"}, false},
		{"AuditEvent", "policy=urn:ietf:params:oauth:jti:j2", nil, false},
		{"AuditEvent", "site=x", nil, false},
		{"AuditEvent", "source=Device/x", nil, false},
		{"AuditEvent", "subtype=read", []string{"ae-b"}, false},
		{"AuditEvent", "subtype=" + rest + "|search-type", []string{"ae-a"}, false},
		{"AuditEvent", "subtype=vread", nil, false},
		{"AuditEvent", "type=" + evtype + "|rest", []string{"ae-a", "ae-b"}, false},
		{"AuditEvent", "type=" + evtype + "|110114", nil, false},
		// A reverse chain through the events' patient, by their _lastUpdated.
		{"Patient", "_has:AuditEvent:patient:_lastUpdated=2026-11-29", []string{"p1"}, false},
		{"Patient", "_has:AuditEvent:patient:_lastUpdated=2026-11-30", nil, false},
	}
	for _, tc := range []struct {
		backend string
		old     bool
	}{{"sqlite", false}, {"sqlite", true}, {"mongo", false}, {"mongo", true}} {
		old := tc.old
		e, raw := auditSearchStore(t, tc.backend, old)
		for _, c := range cases {
			got := searchIDs(t, e, e.store, c.rt, c.q)
			want := append([]string{}, c.want...)
			if !c.ordered {
				slices.Sort(got)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s old=%v %s?%s: found %v, want %v", tc.backend, old, c.rt, c.q, got, want)
			}
		}
		// The store itself, asked without the alias, holds _lastUpdated
		// values only for the events written before.
		n := len(searchIDs(t, e, raw, "AuditEvent", "_lastUpdated=ge2000-01-01"))
		if want := map[bool]int{false: 0, true: 2}[old]; n != want {
			t.Errorf("%s old=%v: %d AuditEvents with _lastUpdated values, want %d", tc.backend, old, n, want)
		}
	}
}
