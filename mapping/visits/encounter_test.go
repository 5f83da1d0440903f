package visits

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
	"crs/mapping"
	"crs/profiles"
)

// typedEncounter is the Encounter of a visit as the typed model writes it:
// what encounter built before it built the tree itself.
func (im *importer) typedEncounter(rw *row, pid string, ep *mapping.Current) fhir.Object {
	status := fm.EncounterStatusCancelled
	if *rw.outcome.Code == "delivered" {
		status = fm.EncounterStatusFinished
	}
	enc := fm.Encounter{
		Extension:       []fm.Extension{{Url: im.run.System("/StructureDefinition/Extension-CRS-VisitOutcome"), ValueCoding: &rw.outcome}},
		Identifier:      []fm.Identifier{{System: mapping.Ptr(im.visitSystem()), Value: mapping.Ptr(rw.id)}},
		Status:          status,
		Class:           fm.Coding{System: mapping.Ptr("http://terminology.hl7.org/CodeSystem/v3-ActCode"), Code: mapping.Ptr("HH"), Display: mapping.Ptr("home health")},
		Type:            []fm.CodeableConcept{{Coding: []fm.Coding{rw.visitType}}, {Coding: []fm.Coding{{System: mapping.Ptr("http://snomed.info/sct"), Code: mapping.Ptr("270420001"), Display: mapping.Ptr("Seen in own home")}}}},
		Subject:         &fm.Reference{Reference: mapping.Ptr("Patient/" + pid)},
		EpisodeOfCare:   []fm.Reference{{Reference: mapping.Ptr("EpisodeOfCare/" + ep.ID)}},
		Period:          &fm.Period{Start: mapping.Ptr(rw.start)},
		ServiceProvider: &fm.Reference{Reference: mapping.Ptr("Organization/" + im.run.Org.ID)},
	}
	if rw.end != "" {
		enc.Period.End = mapping.Ptr(rw.end)
	}
	if refs, _ := ep.Obj["referralRequest"].([]any); len(refs) > 0 {
		if m, _ := refs[0].(map[string]any); m != nil {
			if s, _ := m["reference"].(string); s != "" {
				enc.BasedOn = []fm.Reference{{Reference: mapping.Ptr(s)}}
			}
		}
	}
	for _, c := range rw.carers {
		enc.Participant = append(enc.Participant, fm.EncounterParticipant{Individual: &fm.Reference{
			Identifier: &fm.Identifier{System: mapping.Ptr(im.carerSystem()), Value: mapping.Ptr(c)}, Display: mapping.Ptr("carer " + c)}})
	}
	return mapping.Object(enc)
}

// TestEncounterAsTyped: the Encounter tree encounter builds is the one the
// typed model writes, for every shape of row (delivered or not, with or
// without carers, an end, a referral, a visit type's display).
func TestEncounterAsTyped(t *testing.T) {
	prof, err := profiles.Load("")
	if err != nil {
		t.Fatal(err)
	}
	im := &importer{run: &mapping.Run{ID: "r", Source: "visits", File: "f.csv", Org: mapping.Current{ID: "prov"}, ODS: "P01",
		Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Base: profiles.DefaultCanonicalBase, Profiles: prof}}
	coding := func(system, code, display string) fm.Coding {
		c := fm.Coding{System: mapping.Ptr(system), Code: mapping.Ptr(code)}
		if display != "" {
			c.Display = mapping.Ptr(display)
		}
		return c
	}
	withRef := &mapping.Current{ID: "ep1", Obj: fhir.Object{"referralRequest": []any{map[string]any{"reference": "ServiceRequest/r1"}}}}
	bare := &mapping.Current{ID: "ep2", Obj: fhir.Object{}}
	for name, tc := range map[string]struct {
		rw *row
		ep *mapping.Current
	}{
		"delivered, two carers, referral": {&row{id: "V1", outcome: coding("http://s/outcome", "delivered", "Delivered"), visitType: coding("http://s/type", "care-visit", "Care visit"),
			start: "2026-11-29T08:00:00Z", end: "2026-11-29T08:30:00Z", carers: []string{"C1", "C 2"}}, withRef},
		"missed, no end, no carers, no display": {&row{id: "V2", outcome: coding("http://s/outcome", "missed", ""), visitType: coding("http://s/type", "x", ""),
			start: "2026-11-29T09:00:00Z"}, bare},
		"a coding with its own extension": {&row{id: "V3", outcome: coding("http://s/outcome", "cancelled", "Cancelled"),
			visitType: fm.Coding{Code: mapping.Ptr("y"), Extension: []fm.Extension{{Url: "http://e", ValueString: mapping.Ptr("v")}}},
			start:     "2026-11-29T10:00:00Z"}, bare},
	} {
		got, want := im.encounter(tc.rw, "pat1", tc.ep), im.typedEncounter(tc.rw, "pat1", tc.ep)
		if !reflect.DeepEqual(map[string]any(got), map[string]any(want)) {
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			t.Errorf("%s:\n got %s\nwant %s", name, g, w)
		}
	}
}
