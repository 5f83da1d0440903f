package mapping

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
)

// typedProvenance is Run.Provenance as it was: the whole resource built from
// the typed model, every time.
func typedProvenance(r *Run, target string, rows []SourceRow, created bool) fhir.Object {
	op := "UPDATE"
	if created {
		op = "CREATE"
	}
	p := fm.Provenance{
		Target:   []fm.Reference{{Reference: &target}},
		Recorded: r.Time.UTC().Format(time.RFC3339),
		Activity: &fm.CodeableConcept{
			Coding: []fm.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/v3-DataOperation"), Code: ptr(op)}},
			Text:   ptr("crs import " + r.Source + " run " + r.ID),
		},
		Agent: []fm.ProvenanceAgent{{
			Type: &fm.CodeableConcept{Coding: []fm.Coding{{System: ptr("http://terminology.hl7.org/CodeSystem/provenance-participant-type"), Code: ptr("author")}}},
			Who:  *r.orgRef(),
		}},
	}
	seen := map[SourceRow]bool{}
	for _, row := range rows {
		if seen[row] {
			continue
		}
		seen[row] = true
		display := fmt.Sprintf("%s file %s line %d", r.Source, r.File, row.Line)
		if row.Ref != "" {
			display += ", record " + row.Ref
		}
		p.Entity = append(p.Entity, fm.ProvenanceEntity{
			Role: fm.ProvenanceEntityRoleSource,
			What: fm.Reference{
				Identifier: &fm.Identifier{System: ptr(r.System("/Id/import-source/" + r.Source)), Value: ptr(r.File + "#line=" + strconv.Itoa(row.Line))},
				Display:    &display,
			},
		})
	}
	return toObject(p)
}

// TestProvenanceAsTyped: the Provenance built from the run's shared parts is
// the one the typed model builds whole, for creates and updates, rows with
// and without references, repeated rows and none; and a copy handed out is
// not the run's own (changing it changes no later Provenance).
func TestProvenanceAsTyped(t *testing.T) {
	r := &Run{ID: "run-1", Source: "visits", File: "v.csv", Org: Current{ID: "org-1"}, ODS: "VN1A2",
		Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Base: "https://example.org/fhir"}
	cases := []struct {
		target  string
		rows    []SourceRow
		created bool
	}{
		{"urn:uuid:4f1e7a3c-0c9e-4b62-9e2b-3e0b8e5f1a2d", []SourceRow{{Line: 2, Ref: "B-1"}}, true},
		{"Patient/p1", []SourceRow{{Line: 3}, {Line: 4, Ref: "E-4"}, {Line: 3}}, false},
		{"EpisodeOfCare/e1", nil, false},
		{"Encounter/x", []SourceRow{{Line: 9}}, true},
	}
	for round := 0; round < 2; round++ {
		for i, c := range cases {
			got := r.Provenance(c.target, c.rows, c.created)
			want := typedProvenance(r, c.target, c.rows, c.created)
			g, _ := fhir.Marshal(got)
			w, _ := fhir.Marshal(want)
			if string(g) != string(w) {
				t.Fatalf("round %d case %d:\n%s\nwant\n%s", round, i, g, w)
			}
			got["activity"].(map[string]any)["text"] = "changed"
			got["agent"].([]any)[0].(map[string]any)["who"].(map[string]any)["reference"] = "Organization/other"
		}
		r.ID = "run-2" // a changed run: its shared parts are built again
	}
}

// TestBatchProvenanceConcurrent: a pipelined import builds the Provenances
// of the batch in flight and of the next one at once, from one Run; under
// -race this fails if the run's memo of their shared parts is unguarded,
// and each Provenance keeps its own targets and activity.
func TestBatchProvenanceConcurrent(t *testing.T) {
	run := &Run{ID: "run-1", Source: "cld", File: "council.csv", Org: Current{ID: "org-1"}, ODS: "XYZ12",
		Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Base: "https://example.org/fhir"}
	const workers = 8
	got := make([]fhir.Object, workers)
	done := make(chan int)
	for w := 0; w < workers; w++ {
		go func() {
			got[w] = run.BatchProvenance([]string{"Patient/p" + strconv.Itoa(w)}, w%2 == 0, w, w)
			done <- w
		}()
	}
	for range workers {
		<-done
	}
	for w, p := range got {
		op := "UPDATE"
		if w%2 == 0 {
			op = "CREATE"
		}
		if s := jsonOf(p["target"]); s != `[{"reference":"Patient/p`+strconv.Itoa(w)+`"}]` {
			t.Errorf("worker %d's targets: %s", w, s)
		}
		if s := jsonOf(p["activity"]); !strings.Contains(s, `"`+op+`"`) {
			t.Errorf("worker %d's activity: %s, want %s", w, s, op)
		}
	}
}
