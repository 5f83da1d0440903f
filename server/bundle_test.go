package server_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"crs/fhir"
)

// acuteReferral is the shape an acute EPR posts: Patient, Encounter and
// ServiceRequest in one transaction, linked by urn:uuid, the Patient created only
// if no Patient has the NHS number.
func acuteReferral(nhs, family string) string {
	return `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111",
  "resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhs + `"}],"name":[{"family":"` + family + `"}]},
  "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=https://fhir.nhs.uk/Id/nhs-number|` + nhs + `"}},
 {"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222",
  "resource":{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}},
  "request":{"method":"POST","url":"Encounter"}},
 {"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333",
  "resource":{"resourceType":"ServiceRequest","status":"active","intent":"plan","subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"},"encounter":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"},"authoredOn":"2026-11-20T10:00:00Z"},
  "request":{"method":"POST","url":"ServiceRequest"}}
]}`
}

func entries(t *testing.T, b map[string]any) []map[string]any {
	t.Helper()
	var out []map[string]any
	list, _ := b["entry"].([]any)
	for _, e := range list {
		out = append(out, e.(map[string]any))
	}
	return out
}

func status(e map[string]any) string {
	r, _ := e["response"].(map[string]any)
	s, _ := r["status"].(string)
	return s
}

func TestTransactionAcuteReferral(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	r := do(t, "POST", base, []byte(acuteReferral("9000000009", "Jones")))
	if r.status != 200 {
		t.Fatalf("transaction: %d %s", r.status, r.body)
	}
	b := r.json(t)
	if b["type"] != "transaction-response" {
		t.Fatalf("type %v", b["type"])
	}
	es := entries(t, b)
	if len(es) != 3 || status(es[0]) != "201 Created" || status(es[2]) != "201 Created" {
		t.Fatalf("responses: %s", r.body)
	}
	patient := es[0]["resource"].(map[string]any)
	sr := es[2]["resource"].(map[string]any)
	ref := sr["subject"].(map[string]any)["reference"]
	if ref != "Patient/"+fhir.ID(patient) {
		t.Fatalf("urn:uuid not rewritten: %v", ref)
	}
	if enc := sr["encounter"].(map[string]any)["reference"]; enc != "Encounter/"+fhir.ID(es[1]["resource"].(map[string]any)) {
		t.Fatalf("encounter reference: %v", enc)
	}
	// The second referral for the same person reuses the Patient.
	r = do(t, "POST", base, []byte(acuteReferral("9000000009", "Jones")))
	es = entries(t, r.json(t))
	if status(es[0]) != "200 OK" || fhir.ID(es[0]["resource"].(map[string]any)) != fhir.ID(patient) {
		t.Fatalf("conditional create in a transaction: %s", r.body)
	}
	if ref := es[2]["resource"].(map[string]any)["subject"].(map[string]any)["reference"]; ref != "Patient/"+fhir.ID(patient) {
		t.Fatalf("reference to a conditionally created Patient: %v", ref)
	}
	if h := do(t, "GET", base+"/Patient/_history", nil).json(t); fmt.Sprint(h["total"]) != "1" {
		t.Fatalf("patients: %v", h["total"])
	}
}

// TestTransactionFailsWhole: an error in any entry stores nothing, and the
// outcome names the entry.
func TestTransactionFailsWhole(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	bad := strings.Replace(acuteReferral("9000000009", "Jones"), `"intent":"plan"`, `"intent":"bogus"`, 1)
	r := do(t, "POST", base, []byte(bad))
	if r.status != 400 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	is := issueOf(t, r)
	if ex := is["expression"].([]any)[0].(string); !strings.HasPrefix(ex, "Bundle.entry[2]") {
		t.Fatalf("expression %q does not name entry 2", ex)
	}
	cases := map[string]struct {
		body   string
		status int
	}{
		"duplicate fullUrl":               {strings.Replace(acuteReferral("9000000009", "J"), "urn:uuid:22222222-2222-4222-8222-222222222222\",\n  \"resource\":{\"resourceType\":\"Encounter\"", "urn:uuid:11111111-1111-4111-8111-111111111111\",\n  \"resource\":{\"resourceType\":\"Encounter\"", 1), 400},
		"unknown urn reference":           {strings.Replace(acuteReferral("9000000009", "J"), `"encounter":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"}`, `"encounter":{"reference":"urn:uuid:99999999-2222-4222-8222-222222222222"}`, 1), 400},
		"conditional reference, no match": {strings.Replace(acuteReferral("9000000009", "J"), `"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"},"encounter"`, `"subject":{"reference":"Patient?identifier=urn:x|nobody"},"encounter"`, 1), 400},
		"not a bundle":                    {`{"resourceType":"Patient"}`, 400},
		"wrong type":                      {`{"resourceType":"Bundle","type":"collection"}`, 400},
		"bad method":                      {`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"FLY","url":"Patient"}}]}`, 400},
		"PUT id differs":                  {`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/b"}}]}`, 400},
		"unserved type":                   {`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}]}`, 404},
		"If-Match fails":                  {`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/a","ifMatch":"W/\"3\""}}]}`, 412},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := do(t, "POST", base, []byte(c.body))
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			issueOf(t, r)
		})
	}
	if h := do(t, "GET", base+"/_history", nil).json(t); fmt.Sprint(h["total"]) != "0" {
		t.Fatalf("a failed transaction stored something: %v", h)
	}
}

// TestTransactionOrderAndConditionalReference: DELETE before POST before PUT
// before GET, and a conditional reference resolves to the one match.
func TestTransactionOrderAndConditionalReference(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	do(t, "PUT", base+"/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:x","value":"1"}]}`))
	do(t, "PUT", base+"/Goal/old", []byte(`{"resourceType":"Goal","id":"old","lifecycleStatus":"active","description":{"text":"old"},"subject":{"reference":"Patient/p1"}}`))
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"request":{"method":"GET","url":"Goal?subject=Patient/p1"}},
	 {"resource":{"resourceType":"Goal","id":"g2","lifecycleStatus":"active","description":{"text":"I want to make my own cup of tea"},"subject":{"reference":"Patient?identifier=urn:x|1"}},"request":{"method":"PUT","url":"Goal/g2"}},
	 {"resource":{"resourceType":"Goal","lifecycleStatus":"proposed","description":{"text":"walk"},"subject":{"reference":"Patient/p1"}},"request":{"method":"POST","url":"Goal"}},
	 {"request":{"method":"DELETE","url":"Goal/old"}}
	]}`
	r := do(t, "POST", base, []byte(tx))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	es := entries(t, r.json(t))
	search := es[0]["resource"].(map[string]any)
	if fmt.Sprint(search["total"]) != "2" {
		t.Fatalf("GET ran before the writes, or saw the deleted Goal: %v", search)
	}
	if status(es[3]) != "204 No Content" || status(es[1]) != "201 Created" {
		t.Fatalf("statuses: %s", r.body)
	}
	g2 := do(t, "GET", base+"/Goal/g2", nil).json(t)
	if g2["subject"].(map[string]any)["reference"] != "Patient/p1" {
		t.Fatalf("conditional reference not resolved: %v", g2["subject"])
	}
}

func TestBatch(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient","name":[{"family":"Ok"}]},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","gender":"bogus"},"request":{"method":"POST","url":"Patient"}},
	 {"request":{"method":"GET","url":"Patient/nothere"}},
	 {"request":{"method":"GET","url":"Patient?family=Ok"}}
	]}`
	r := do(t, "POST", base, []byte(batch))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	b := r.json(t)
	es := entries(t, b)
	if b["type"] != "batch-response" || len(es) != 4 {
		t.Fatalf("%s", r.body)
	}
	want := []string{"201 Created", "400", "404", "200 OK"}
	for i, w := range want {
		if status(es[i]) != w {
			t.Fatalf("entry %d: status %q, want %q: %s", i, status(es[i]), w, r.body)
		}
	}
	if es[1]["response"].(map[string]any)["outcome"] == nil {
		t.Fatalf("failed batch entry without an outcome: %s", r.body)
	}
}

func TestPatch(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	do(t, "PUT", base+"/CarePlan/cp1", []byte(`{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"}}`))
	patch := func(body string, headers ...string) response {
		return do(t, "PATCH", base+"/CarePlan/cp1", []byte(body), append([]string{"Content-Type", "application/json-patch+json"}, headers...)...)
	}
	if r := patch(`[{"op":"replace","path":"/status","value":"completed"}]`, "If-Match", `W/"1"`); r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	if r := patch(`[{"op":"replace","path":"/status","value":"revoked"}]`, "If-Match", `W/"1"`); r.status != 412 {
		t.Fatalf("stale If-Match: %d %s", r.status, r.body)
	}
	if r := patch(`[{"op":"replace","path":"/status","value":"bogus"}]`); r.status != 422 {
		t.Fatalf("invalid result: %d %s", r.status, r.body)
	}
	if r := patch(`[{"op":"test","path":"/status","value":"draft"}]`); r.status != 422 {
		t.Fatalf("failed test op: %d %s", r.status, r.body)
	}
	if r := patch(`not json`); r.status != 400 {
		t.Fatalf("malformed patch: %d %s", r.status, r.body)
	}
	if r := patch(`[{"op":"replace","path":"/id","value":"other"}]`); r.status != 422 {
		t.Fatalf("id change: %d %s", r.status, r.body)
	}
	if r := do(t, "PATCH", base+"/CarePlan/cp1", []byte(`[]`)); r.status != 415 {
		t.Fatalf("wrong content type: %d", r.status)
	}
	if r := do(t, "GET", base+"/CarePlan/cp1", nil).json(t); r["status"] != "completed" {
		t.Fatalf("after patches: %v", r["status"])
	}
	// PATCH inside a transaction, as a Binary.
	data := base64.StdEncoding.EncodeToString([]byte(`[{"op":"replace","path":"/status","value":"active"}]`))
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + data + `"},"request":{"method":"PATCH","url":"CarePlan/cp1"}}]}`
	if r := do(t, "POST", base, []byte(tx)); r.status != 200 {
		t.Fatalf("patch in transaction: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", base+"/CarePlan/cp1", nil).json(t); r["status"] != "active" {
		t.Fatalf("after transaction patch: %v", r["status"])
	}
}

// TestSpecBundleExamples posts the R4 transaction and batch examples' shapes: they
// must get a clear answer, never a 500.
func TestSpecBundleExamples(t *testing.T) {
	ts := newServer(t)
	files, _ := filepath.Glob(filepath.Join(examplesDir, "Bundle-*.json"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		r := do(t, "POST", ts.URL+"/fhir", data)
		if r.status >= 500 {
			t.Errorf("%s: %d %s", filepath.Base(f), r.status, r.body)
		}
		if r.status != http.StatusOK {
			issueOf(t, r)
		}
	}
}
