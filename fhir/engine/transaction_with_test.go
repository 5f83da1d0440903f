package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
)

// TestTransactionWith: the lookups of a build are policed as the caller (the
// Warwickshire council finds its own person, not Coventry's) and answered
// inside the transaction; the transaction's one AuditEvent names what they
// found beside what it wrote; a build that writes nothing is still audited
// with what it found; a failed build stores nothing; more matches than the
// lookup takes is refused.
func TestTransactionWith(t *testing.T) {
	st, v := openStore(t)
	eng := twoCouncils(t, st)
	open := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", Params: pathwayParams(t)})
	ctx := council()
	audits := func() []string {
		b, err := open.Search(context.Background(), "AuditEvent", []fhir.RawParam{{Name: "_count", Value: "1000"}}, engine.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range b.Entry {
			out = append(out, string(e.Resource))
		}
		return out
	}
	versions := func(rt string) int {
		b, err := open.Search(context.Background(), rt, []fhir.RawParam{{Name: "_count", Value: "1000"}}, engine.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(b.Entry)
	}
	before := len(audits())

	// Lookup, then write what it decided.
	b, err := eng.TransactionWith(ctx, func(ctx context.Context, l engine.Lookup) (fhir.Object, error) {
		found, err := l.Search(ctx, "Patient", "_id=pat-a,pat-b", 10)
		if err != nil {
			return nil, err
		}
		if len(found) != 1 || found[0].ID != "pat-a" {
			t.Errorf("the council's lookup found %d Patients (%v), want pat-a only", len(found), found)
		}
		return fhir.Object{"resourceType": "Bundle", "type": "transaction", "entry": []any{map[string]any{
			"request":  map[string]any{"method": "POST", "url": "EpisodeOfCare"},
			"resource": map[string]any{"resourceType": "EpisodeOfCare", "status": "active", "patient": map[string]any{"reference": "Patient/" + found[0].ID}},
		}}}, nil
	}, engine.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Entry) != 1 || !strings.HasPrefix(b.Entry[0].Response.Status, "201") {
		t.Fatalf("transaction-response: %+v", b.Entry)
	}
	all := audits()
	if len(all) != before+1 {
		t.Fatalf("%d AuditEvents for one transaction with a lookup, want 1", len(all)-before)
	}
	last := newest(all)
	loc, _, _ := strings.Cut(b.Entry[0].Response.Location, "/_history/")
	for _, want := range []string{"Patient/pat-a/_history/1", loc} {
		if !strings.Contains(last, want) {
			t.Errorf("the transaction's AuditEvent does not name %s: %s", want, last)
		}
	}
	if strings.Contains(last, "pat-b") {
		t.Errorf("the AuditEvent names a record the caller could not see: %s", last)
	}

	// Nothing to write: nothing stored, the lookup audited.
	episodes := versions("EpisodeOfCare")
	before = len(audits())
	if _, err := eng.TransactionWith(ctx, func(ctx context.Context, l engine.Lookup) (fhir.Object, error) {
		_, err := l.Search(ctx, "EpisodeOfCare", "_id=ep-a", 1)
		return nil, err
	}, engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := versions("EpisodeOfCare"); n != episodes {
		t.Errorf("a build with no Bundle stored: %d → %d episodes", episodes, n)
	}
	if all := audits(); len(all) != before+1 || !strings.Contains(newest(all), "EpisodeOfCare/ep-a/_history/1") {
		t.Errorf("the lookup of a build with no Bundle is not audited: %d new AuditEvents", len(all)-before)
	}

	// A failed build stores nothing; a lookup finding more than it takes fails.
	boom := errors.New("boom")
	_, err = eng.TransactionWith(ctx, func(ctx context.Context, l engine.Lookup) (fhir.Object, error) {
		return nil, boom
	}, engine.SearchOptions{})
	if err == nil || versions("EpisodeOfCare") != episodes {
		t.Errorf("a failed build: %v, %d episodes (was %d)", err, versions("EpisodeOfCare"), episodes)
	}
	_, err = eng.TransactionWith(ctx, func(ctx context.Context, l engine.Lookup) (fhir.Object, error) {
		_, err := l.Search(ctx, "EpisodeOfCare", "patient=Patient/pat-a", 1)
		return nil, err
	}, engine.SearchOptions{})
	if fhir.KindOf(err) != fhir.TooManyMatches {
		t.Errorf("a lookup finding 2 where it takes 1: %v, want TooManyMatches", err)
	}
}

// newest is the AuditEvent recorded last of bodies (by its recorded time).
func newest(bodies []string) string {
	var best, bestAt string
	for _, b := range bodies {
		obj, err := fhir.Parse([]byte(b), fhir.DefaultLimits)
		if err != nil {
			continue
		}
		if at, _ := obj["recorded"].(string); at >= bestAt {
			best, bestAt = b, at
		}
	}
	return best
}
