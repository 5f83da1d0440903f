package engine

import (
	"reflect"
	"slices"
	"testing"

	"crs/fhir"
	"crs/fhir/search"
)

// TestMaterialisedIndexIsExtraction: the search values an AuditEvent is
// stored with (computed from its journal entry) are those extraction gives
// for its stored body, less _lastUpdated's; and with an AuditEvent search parameter added to the
// registry, the engine extracts them instead, the added one included.
func TestMaterialisedIndexIsExtraction(t *testing.T) {
	added, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := added.Add(map[string]any{"resourceType": "SearchParameter", "url": "http://example.org/sp/ae-desc", "code": "outcome-desc",
		"type": "string", "base": []any{"AuditEvent"}, "expression": "AuditEvent.outcomeDesc"}); err != nil {
		t.Fatal(err)
	}
	for _, reg := range []*search.Registry{search.Default(), added} {
		e := New(Config{Base: "http://bench/fhir", Audit: true, Params: reg})
		descs := 0
		for _, en := range benchEntries(8) {
			p, err := e.prepareEntry(en)
			if err != nil {
				t.Fatal(err)
			}
			body, err := p.rendered.Body(p.version.ID, formatInstant(p.version.LastUpdated), "", "h")
			if err != nil {
				t.Fatal(err)
			}
			ev, err := fhir.Parse(body, fhir.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			delete(ev, "extension") // the chain link is set in the writer; no parameter reads it
			want, err := reg.Extract("AuditEvent", ev)
			if err != nil {
				t.Fatal(err)
			}
			if reg != added {
				// Computed values leave out _lastUpdated: searches read it
				// from the date values (auditalias.go).
				want = slices.DeleteFunc(want, func(v fhir.IndexValue) bool { return v.Param == "_lastUpdated" })
			}
			if !reflect.DeepEqual(p.index, want) {
				t.Fatalf("stored search values of %s differ from extraction\n got %+v\nwant %+v", p.version.ID, p.index, want)
			}
			for _, v := range p.index {
				if v.Param == "outcome-desc" {
					descs++
				}
			}
		}
		if reg == added && descs == 0 {
			t.Fatal("the added AuditEvent parameter has no values: the engine did not fall back to extraction")
		}
	}
}
