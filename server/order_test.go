package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestOutputOrder: what the server answers reads as FHIR does: resourceType
// first; a stored resource then in the order its client sent it (the fields the
// server adds, id and meta, where the definition puts them), by REST and in a
// transaction; the documents the server builds (OperationOutcome,
// CapabilityStatement) in the order of their definition.
func TestOutputOrder(t *testing.T) {
	ts := newServer(t)
	sent := `{"gender":"female","birthDate":"1970-01-01","name":[{"given":["Ann"],"family":"Lee"}],"identifier":[{"value":"1","system":"urn:x"}],"resourceType":"Patient"}`
	asSent := `"gender":"female","birthDate":"1970-01-01","name":[{"given":["Ann"],"family":"Lee"}],"identifier":[{"value":"1","system":"urn:x"}]}`
	created := do(t, "POST", ts.URL+"/fhir/Patient", []byte(sent))
	if created.status != http.StatusCreated {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	id := created.json(t)["id"].(string)
	read := do(t, "GET", ts.URL+"/fhir/Patient/"+id, nil)
	for _, body := range [][]byte{created.body, read.body} {
		assertOrder(t, string(body), `{"resourceType":"Patient","id":`, `"meta":{"versionId":"1","lastUpdated":`, `"},`+asSent)
	}
	// A subset (_elements) keeps the stored order.
	subset := do(t, "GET", ts.URL+"/fhir/Patient?_id="+id+"&_elements=identifier,gender", nil)
	assertOrder(t, string(subset.body), `{"resourceType":"Bundle",`, `"resource":{"resourceType":"Patient","id":`, `"meta":{"versionId":"1","lastUpdated":`, `"tag":[`, `"gender":"female","identifier":[{"value":"1","system":"urn:x"}]}`)
	// A patch keeps the stored order and adds elements where the definition puts them.
	patched := do(t, "PATCH", ts.URL+"/fhir/Patient/"+id, []byte(`[{"op":"add","path":"/active","value":true}]`), "Content-Type", "application/json-patch+json")
	if patched.status != http.StatusOK {
		t.Fatalf("patch: %d %s", patched.status, patched.body)
	}
	assertOrder(t, string(patched.body), `{"resourceType":"Patient","id":`, `"meta":{"versionId":"2","lastUpdated":`, `"},"active":true,`+asSent)
	// An entry of a transaction keeps its order too.
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},"resource":` + sent + `}]}`
	tx := do(t, "POST", ts.URL+"/fhir", []byte(bundle))
	if tx.status != http.StatusOK {
		t.Fatalf("transaction: %d %s", tx.status, tx.body)
	}
	loc := tx.json(t)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	txRead := do(t, "GET", ts.URL+"/fhir/"+strings.Join(strings.Split(loc, "/")[:2], "/"), nil)
	assertOrder(t, string(txRead.body), `{"resourceType":"Patient","id":`, `"meta":{"versionId":"1","lastUpdated":`, `"},`+asSent)
	assertOrder(t, string(tx.body), `{"resourceType":"Bundle","id":`, `"type":"transaction-response"`, `"entry":[{"fullUrl":`, `"resource":{"resourceType":"Patient","id":`, `"},`+asSent+`,"response":{"status":"201 Created","location":`)

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
