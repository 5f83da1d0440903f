package engine_test

import (
	"context"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store"
)

// TestPrestampedCreates: a transaction's creates are stamped before its
// write (prestamp.go). What is stored and indexed is what the write would
// have stamped: a reference to an urn: of the Bundle names the resource the
// urn: ends up naming, also when a conditional create finds one already
// stored (the stamp made ahead is then dropped and made again), and the
// search values follow the stored reference.
func TestPrestampedCreates(t *testing.T) {
	params, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	st, v := openStore(t)
	e := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", Params: params})
	ctx := context.Background()
	if _, err := e.Update(ctx, "Patient", "known", []byte(`{"resourceType":"Patient","id":"known","identifier":[{"system":"http://x","value":"K"}]}`), 0); err != nil {
		t.Fatal(err)
	}
	bundle := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0b6c6d3e-7a39-4d0e-9d3f-1a1b1c1d1e1f","resource":{"resourceType":"Patient","identifier":[{"system":"http://x","value":"K"}]},
	  "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://x|K"}},
	 {"fullUrl":"urn:uuid:2c2d2e2f-3a3b-4c4d-8e8f-9a9b9c9d9e9f","resource":{"resourceType":"Patient","identifier":[{"system":"http://x","value":"N"}]},
	  "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://x|N"}},
	 {"resource":{"resourceType":"Provenance","target":[{"reference":"urn:uuid:0b6c6d3e-7a39-4d0e-9d3f-1a1b1c1d1e1f"}],"recorded":"2026-11-29T12:00:00Z","agent":[{"who":{"display":"importer"}}]},
	  "request":{"method":"POST","url":"Provenance"}},
	 {"resource":{"resourceType":"Provenance","target":[{"reference":"urn:uuid:2c2d2e2f-3a3b-4c4d-8e8f-9a9b9c9d9e9f"}],"recorded":"2026-11-29T12:00:00Z","agent":[{"who":{"display":"importer"}}]},
	  "request":{"method":"POST","url":"Provenance"}}]}`)
	b, err := e.Bundle(ctx, bundle, engine.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Entry[0].Response.Location; !strings.HasPrefix(got, "Patient/known/") {
		t.Fatalf("conditional create of K: %s, want Patient/known", got)
	}
	newID := strings.Split(b.Entry[1].Response.Location, "/")[1]
	for i, target := range []string{"Patient/known", "Patient/" + newID} {
		loc := strings.Split(b.Entry[2+i].Response.Location, "/")
		got, err := st.Read(ctx, "Provenance", loc[1])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got.Body), `"reference":"`+target+`"`) || !strings.Contains(string(got.Body), `"id":"`+loc[1]+`"`) ||
			!strings.Contains(string(got.Body), `"versionId":"1"`) {
			t.Errorf("Provenance %d: %s, want its target %s", i, got.Body, target)
		}
		q, err := params.ParseQuery("Provenance", []fhir.RawParam{{Name: "target", Value: target}}, search.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := st.Search(ctx, q)
		if err != nil || len(res.Matches) != 1 || res.Matches[0].ID != loc[1] {
			t.Errorf("Provenance?target=%s: %v %v, want Provenance/%s", target, res.Matches, err, loc[1])
		}
	}
	// Nothing stored names an urn:.
	h, err := st.History(ctx, store.HistoryQuery{Type: "Provenance", Count: 10})
	if err != nil || len(h.Versions) != 2 {
		t.Fatalf("history: %v %v", h, err)
	}
	for _, v := range h.Versions {
		if strings.Contains(string(v.Body), "urn:") {
			t.Errorf("stored with an urn: %s", v.Body)
		}
	}
}
