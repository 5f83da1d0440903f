package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestIntegrityOverHTTP: a delete that would strand references answers 409
// naming them, _cascade=delete removes them too; a second active Patient with
// an NHS number already held answers 409 naming the first.
func TestIntegrityOverHTTP(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	nhs := `"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]`
	if r := do(t, "PUT", base+"/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1",`+nhs+`}`)); r.status != 201 {
		t.Fatalf("patient: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", base+"/Goal/g1", []byte(`{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","description":{"text":"tea"},"subject":{"reference":"Patient/p1"}}`)); r.status != 201 {
		t.Fatalf("goal: %d %s", r.status, r.body)
	}
	r := do(t, "POST", base+"/Patient", []byte(`{"resourceType":"Patient",`+nhs+`}`))
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), "Patient/p1") || !strings.Contains(string(r.body), "OperationOutcome") {
		t.Errorf("duplicate NHS number: %d %s", r.status, r.body)
	}
	r = do(t, "DELETE", base+"/Patient/p1", nil)
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), "Goal/g1") {
		t.Errorf("delete of a referenced Patient: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", base+"/Patient/p1?_cascade=everything", nil); r.status != http.StatusBadRequest {
		t.Errorf("_cascade=everything: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", base+"/Patient/p1?_cascade=delete", nil); r.status != http.StatusNoContent {
		t.Fatalf("cascading delete: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/Patient/p1", "/Goal/g1"} {
		if r := do(t, "GET", base+p, nil); r.status != http.StatusGone {
			t.Errorf("GET %s after the cascade: %d", p, r.status)
		}
	}
}
