package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestOutputOrder: what the server answers reads as FHIR does: resourceType
// first, then the elements in the order of their definition, for a stored
// resource (whatever order it was sent in), an OperationOutcome and the
// CapabilityStatement.
func TestOutputOrder(t *testing.T) {
	ts := newServer(t)
	sent := `{"gender":"female","birthDate":"1970-01-01","name":[{"given":["Ann"],"family":"Lee"}],"identifier":[{"value":"1","system":"urn:x"}],"resourceType":"Patient"}`
	created := do(t, "POST", ts.URL+"/fhir/Patient", []byte(sent))
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	id := created.json(t)["id"].(string)
	read := do(t, "GET", ts.URL+"/fhir/Patient/"+id, nil)
	for _, body := range [][]byte{created.body, read.body} {
		assertOrder(t, string(body), `{"resourceType":"Patient","id":`, `"meta":{"versionId":"1","lastUpdated":`,
			`"identifier":[{"system":"urn:x","value":"1"}],"name":[{"family":"Lee","given":["Ann"]}],"gender":"female","birthDate":"1970-01-01"}`)
	}
	bad := do(t, "POST", ts.URL+"/fhir/Patient", []byte(`{"resourceType":"Patient","gender":"nonsense"}`))
	assertOrder(t, string(bad.body), `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":`)
	meta := do(t, "GET", ts.URL+"/fhir/metadata", nil)
	assertOrder(t, string(meta.body), `{"resourceType":"CapabilityStatement",`, `"status":`, `"date":`, `"kind":`, `"fhirVersion":`, `"format":`, `"rest":[{"mode":"server"`)
}

// assertOrder checks that parts occur in body in this order, the first at the start.
func assertOrder(t *testing.T, body string, parts ...string) {
	t.Helper()
	if !strings.HasPrefix(body, parts[0]) {
		t.Fatalf("%.80s… does not start with %s", body, parts[0])
	}
	at := 0
	for _, p := range parts {
		i := strings.Index(body[at:], p)
		if i < 0 {
			t.Fatalf("%s not found (in order) in %s", p, body)
		}
		at += i + len(p)
	}
}
