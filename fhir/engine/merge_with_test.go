package engine_test

import (
	"context"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
)

// TestMergePatientsWith: the merge's lookups run inside its transaction and
// name the two Patients; the references to the merged one move as with
// MergePatients. Naming one Patient twice, or a transaction that does not
// leave the merged Patient replaced-by the survivor, is refused and writes
// nothing; a nil Bundle writes nothing.
func TestMergePatientsWith(t *testing.T) {
	st, v := openStore(t)
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir"})
	ctx := context.Background()
	for _, r := range []struct{ rt, id, body string }{
		{"Patient", "a", `{"resourceType":"Patient","id":"a","identifier":[{"system":"urn:test","value":"A"}]}`},
		{"Patient", "b", `{"resourceType":"Patient","id":"b","identifier":[{"system":"urn:test","value":"B"}]}`},
		{"RelatedPerson", "r", `{"resourceType":"RelatedPerson","id":"r","patient":{"reference":"Patient/b"}}`},
	} {
		if _, err := eng.Update(ctx, r.rt, r.id, []byte(r.body), 0); err != nil {
			t.Fatal(err)
		}
	}
	// find looks a Patient up by identifier inside the transaction.
	find := func(ctx context.Context, l engine.Lookup, value string) string {
		found, err := l.Search(ctx, "Patient", "identifier=urn:test|"+value, 2)
		if err != nil || len(found) != 1 {
			t.Fatalf("lookup %s: %v %d", value, err, len(found))
		}
		return found[0].ID
	}
	mergeOf := func(from, to string) fhir.Object {
		return fhir.Object{"resourceType": "Bundle", "type": "transaction", "entry": []any{
			map[string]any{"resource": map[string]any{"resourceType": "Patient", "id": from, "active": false,
				"link": []any{map[string]any{"other": map[string]any{"reference": "Patient/" + to}, "type": "replaced-by"}}},
				"request": map[string]any{"method": "PUT", "url": "Patient/" + from}},
		}}
	}
	for _, c := range []struct {
		name string
		from string
		tree func(from, to string) fhir.Object
	}{
		{"one Patient twice", "A", mergeOf},
		{"not merged", "B", func(from, to string) fhir.Object {
			m := mergeOf(from, to)
			delete(m["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any), "link")
			return m
		}},
	} {
		_, err := eng.MergePatientsWith(ctx, func(ctx context.Context, l engine.Lookup) (fhir.Object, string, string, error) {
			from, to := find(ctx, l, c.from), find(ctx, l, "A")
			return c.tree(from, to), from, to, nil
		}, engine.SearchOptions{})
		if fhir.KindOf(err) != fhir.Invalid {
			t.Errorf("%s: %v, want invalid", c.name, err)
		}
	}
	if _, err := eng.MergePatientsWith(ctx, func(ctx context.Context, l engine.Lookup) (fhir.Object, string, string, error) {
		return nil, "", "", nil
	}, engine.SearchOptions{}); err != nil {
		t.Errorf("nothing to write: %v", err)
	}
	for _, id := range []string{"a", "b"} {
		if p, _ := eng.Read(ctx, "Patient", id); p.VersionID != 1 {
			t.Fatalf("a refused merge wrote Patient/%s", id)
		}
	}
	if _, err := eng.MergePatientsWith(ctx, func(ctx context.Context, l engine.Lookup) (fhir.Object, string, string, error) {
		from, to := find(ctx, l, "B"), find(ctx, l, "A")
		return mergeOf(from, to), from, to, nil
	}, engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	if r, _ := eng.Read(ctx, "RelatedPerson", "r"); r.VersionID != 2 || !strings.Contains(string(r.Body), `"reference":"Patient/a"`) {
		t.Errorf("RelatedPerson after the merge: %s", r.Body)
	}
}
