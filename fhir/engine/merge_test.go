package engine_test

import (
	"context"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
)

// TestMergePatients: the merge's transaction runs with every reference to the
// merged Patient moved to the survivor (Provenance kept as it was); a
// transaction that does not leave the merged Patient replaced-by the survivor
// is refused and writes nothing.
func TestMergePatients(t *testing.T) {
	st, v := openStore(t)
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir"})
	ctx := context.Background()
	put := func(rt, id, body string) {
		t.Helper()
		if _, err := eng.Update(ctx, rt, id, []byte(body), 0); err != nil {
			t.Fatalf("%s/%s: %v", rt, id, err)
		}
	}
	put("Patient", "a", `{"resourceType":"Patient","id":"a"}`)
	put("Patient", "b", `{"resourceType":"Patient","id":"b"}`)
	put("RelatedPerson", "r", `{"resourceType":"RelatedPerson","id":"r","patient":{"reference":"Patient/b"}}`)
	put("Goal", "g", `{"resourceType":"Goal","id":"g","lifecycleStatus":"active","description":{"text":"walk"},"subject":{"reference":"http://test/fhir/Patient/b"}}`)
	put("Provenance", "p", `{"resourceType":"Provenance","id":"p","target":[{"reference":"Patient/b"}],"recorded":"2026-01-01T00:00:00Z","agent":[{"who":{"display":"x"}}]}`)

	notMerged := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"b","active":false},"request":{"method":"PUT","url":"Patient/b"}}]}`
	if _, err := eng.MergePatients(ctx, []byte(notMerged), "b", "a", engine.SearchOptions{}); fhir.KindOf(err) != fhir.Invalid {
		t.Fatalf("a transaction that does not merge: %v, want invalid", err)
	}
	if r, _ := eng.Read(ctx, "RelatedPerson", "r"); r.VersionID != 1 {
		t.Fatalf("the refused merge moved a reference")
	}
	batch := strings.Replace(notMerged, `"transaction"`, `"batch"`, 1)
	if _, err := eng.MergePatients(ctx, []byte(batch), "b", "a", engine.SearchOptions{}); fhir.KindOf(err) != fhir.Invalid {
		t.Errorf("a batch: %v, want invalid", err)
	}
	if p, _ := eng.Read(ctx, "Patient", "b"); p.VersionID != 1 {
		t.Errorf("a refused merge wrote Patient/b")
	}
	if _, err := eng.MergePatients(ctx, []byte(notMerged), "b", "b", engine.SearchOptions{}); fhir.KindOf(err) != fhir.Invalid {
		t.Errorf("a merge into itself: %v", err)
	}

	merge := `{"resourceType":"Bundle","type":"transaction","entry":[
{"resource":{"resourceType":"Patient","id":"b","active":false,"link":[{"other":{"reference":"Patient/a"},"type":"replaced-by"}]},"request":{"method":"PUT","url":"Patient/b"}},
{"resource":{"resourceType":"Patient","id":"a","link":[{"other":{"reference":"Patient/b"},"type":"replaces"}]},"request":{"method":"PUT","url":"Patient/a"}}]}`
	if _, err := eng.MergePatients(ctx, []byte(merge), "b", "a", engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ rt, id, want string }{
		{"RelatedPerson", "r", `"reference":"Patient/a"`},
		{"Goal", "g", `"reference":"Patient/a"`},
		{"Provenance", "p", `"reference":"Patient/b"`},
		{"Patient", "a", `"reference":"Patient/b"`},
	} {
		got, err := eng.Read(ctx, c.rt, c.id)
		if err != nil || !strings.Contains(string(got.Body), c.want) {
			t.Errorf("%s/%s: %v %s, want %s", c.rt, c.id, err, got.Body, c.want)
		}
	}
}
