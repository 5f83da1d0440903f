package server_test

import (
	"net/http"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
)

// TestTranslate: the embedded ConceptMaps are served read-only and answer
// $translate by GET and by POST with Parameters, by url, instance id or source
// system; a code the map does not know gives result false naming the map.
func TestTranslate(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceStrict)
	base := ts.URL + "/fhir"
	cm := "https://community-recovery.example.org/fhir/ConceptMap/cld-review-outcome"
	if r := do(t, "GET", base+"/ConceptMap?url="+cm, nil); r.status != 200 || !strings.Contains(string(r.body), `"total":1`) {
		t.Fatalf("search ConceptMap: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", base+"/ConceptMap/cld-review-outcome", []byte(`{"resourceType":"ConceptMap","id":"cld-review-outcome","status":"draft"}`)); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("write to a ConceptMap: %d %s", r.status, r.body)
	}
	posted := `{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"` + cm + `"},{"name":"coding","valueCoding":{"system":"https://community-recovery.example.org/fhir/CodeSystem/cld-event-outcome","code":"nfa - deceased"}}]}`
	for _, tc := range []struct {
		method, url, body string
		want              []string
	}{
		{"GET", base + "/ConceptMap/$translate?url=" + cm + "&code=NFA%20-%20Deceased", "", []string{`"valueBoolean":true`, `"code":"died"`, `"valueCode":"equivalent"`}},
		{"GET", base + "/ConceptMap/cld-gender/$translate?code=WOMAN", "", []string{`"valueBoolean":true`, `"code":"female"`}},
		{"GET", base + "/ConceptMap/$translate?system=https://community-recovery.example.org/fhir/CodeSystem/cld-gender&code=Man", "", []string{`"code":"male"`}},
		{"POST", base + "/ConceptMap/$translate", posted, []string{`"code":"died"`}},
		{"GET", base + "/ConceptMap/$translate?url=" + cm + "&code=Gone%20fishing", "", []string{`"valueBoolean":false`, `no target for code \"Gone fishing\" in ConceptMap ` + cm}},
		{"GET", base + "/ConceptMap/cld-service-component/$translate?code=Residential%20care", "", []string{`"valueBoolean":false`, `"valueCode":"unmatched"`}},
	} {
		r := do(t, tc.method, tc.url, []byte(tc.body))
		if r.status != 200 || fhir.ResourceType(r.json(t)) != "Parameters" {
			t.Fatalf("%s %s: %d %s", tc.method, tc.url, r.status, r.body)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(r.body), w) {
				t.Errorf("%s %s: want %s in %s", tc.method, tc.url, w, r.body)
			}
		}
	}
	for _, u := range []string{"/ConceptMap/$translate?code=x", "/ConceptMap/$translate?url=" + cm, "/ConceptMap/$translate?url=urn:nope&code=x"} {
		if r := do(t, "GET", base+u, nil); r.status < 400 || r.status >= 500 || fhir.ResourceType(r.json(t)) != "OperationOutcome" {
			t.Errorf("GET %s: %d %s", u, r.status, r.body)
		}
	}
}
