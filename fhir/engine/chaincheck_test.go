package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/profiles"
)

// TestBatchedChainCreateChecks: the council's episodes (create condition
// patient:Patient.responsible-la=…, a chain) are cleared by one search of the
// Patients they point to (createcheck_chain.go): 150 episodes of its own
// resident, and of a resident created in the same transaction, are stored;
// one episode of another council's resident among them is still refused,
// naming its entry, and nothing is stored.
func TestBatchedChainCreateChecks(t *testing.T) {
	st, _ := openStore(t)
	eng := twoCouncils(t, st)
	ctx := council()
	la := profiles.DefaultCanonicalBase + "/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority"
	episode := func(patient string) string {
		return `{"resource":{"resourceType":"EpisodeOfCare","status":"active","patient":{"reference":"` + patient + `"}},"request":{"method":"POST","url":"EpisodeOfCare"}}`
	}
	bundle := func(entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	count := func() int {
		res, err := st.Search(context.Background(), &fhir.Query{Type: "EpisodeOfCare", Count: 1000, Total: fhir.TotalAccurate})
		if err != nil {
			t.Fatal(err)
		}
		return res.Total
	}
	newPatient := fmt.Sprintf(`{"fullUrl":"urn:uuid:6b0f7c1e-1d2a-4c55-9a0e-2f3b4c5d6e7f","resource":{"resourceType":"Patient","extension":[{"url":%q,"valueCoding":{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":"E10000031"}}]},"request":{"method":"POST","url":"Patient"}}`, la)
	var many []string
	for i := 0; i < 150; i++ {
		many = append(many, episode("Patient/pat-a"))
	}
	before := count()
	if _, err := eng.Bundle(ctx, bundle(append(append([]string{newPatient}, many...), episode("urn:uuid:6b0f7c1e-1d2a-4c55-9a0e-2f3b4c5d6e7f"), episode("urn:uuid:6b0f7c1e-1d2a-4c55-9a0e-2f3b4c5d6e7f"))...), engine.SearchOptions{}); err != nil {
		t.Fatalf("152 episodes within the council's bounds: %v", err)
	}
	if got := count() - before; got != 152 {
		t.Fatalf("%d episodes stored, want 152", got)
	}
	for _, at := range []int{0, 77, 149} {
		entries := append([]string(nil), many...)
		entries[at] = episode("Patient/pat-b") // Coventry's resident
		before := count()
		_, err := eng.Bundle(ctx, bundle(entries...), engine.SearchOptions{})
		if fhir.KindOf(err) != fhir.Forbidden || !strings.Contains(err.Error(), fmt.Sprintf("entry %d ", at)) {
			t.Errorf("one of 150 episodes outside the bounds, at %d: %v, want 403 naming entry %d", at, err, at)
		}
		if count() != before {
			t.Errorf("a refused transaction stored %d episodes", count()-before)
		}
	}
}
