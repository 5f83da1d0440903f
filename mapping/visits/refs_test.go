package visits_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
)

// TestPrestampedReferencesChecked: the references of an import's creates,
// found before the write (fhir/engine/prestamp.go), are still checked inside
// it: a transaction of visit Encounters (strict profiles) where one names an
// episode that does not exist is refused naming that entry and stores
// nothing; the same Encounters with the episode that exists are stored.
func TestPrestampedReferencesChecked(t *testing.T) {
	e := newEnv(t)
	enc := e.importOne(t, "refs.csv", "REF-1")
	delete(enc, "id")
	delete(enc, "meta")
	body, _ := json.Marshal(enc)
	bundle := func(episodes ...string) []byte {
		var entries []string
		for i, ep := range episodes {
			b := strings.Replace(string(body), "EpisodeOfCare/alice-ep", ep, 1)
			b = strings.Replace(b, `"REF-1"`, `"REF-X`+string(rune('a'+i))+`"`, 1)
			entries = append(entries, `{"resource":`+b+`,"request":{"method":"POST","url":"Encounter"}}`)
		}
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	ctx := auth.WithPrincipal(context.Background(), e.Admin)
	before := e.Versions(t, "Encounter")
	_, err := e.Engine.Bundle(ctx, bundle("EpisodeOfCare/alice-ep", "EpisodeOfCare/nowhere", "EpisodeOfCare/alice-ep"), engine.SearchOptions{})
	if fhir.KindOf(err) != fhir.Unprocessable || !strings.Contains(err.Error(), "EpisodeOfCare/nowhere") || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("an Encounter naming a missing episode: %v, want 422 naming entry 1 and the reference", err)
	}
	if got := e.Versions(t, "Encounter"); got != before {
		t.Fatalf("a refused transaction stored %d Encounters", got-before)
	}
	if _, err := e.Engine.Bundle(ctx, bundle("EpisodeOfCare/alice-ep", "EpisodeOfCare/alice-ep", "EpisodeOfCare/alice-ep"), engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := e.Versions(t, "Encounter"); got != before+3 {
		t.Fatalf("%d Encounters stored, want 3", got-before)
	}
}
