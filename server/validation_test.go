package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"crs/fhir/engine"
)

// badInput is one request R4 forbids: the type it is written to, the body, and
// what the OperationOutcome must say (the element's FHIRPath and a word of the
// rule).
type badInput struct {
	name, typ, body, expr, rule string
}

// badInputs has a case per class of issue 17's list of what was accepted.
var badInputs = []badInput{
	// Wrong JSON shapes on complex elements.
	{"name as array of arrays", "Patient", `{"resourceType":"Patient","name":[["Smith"]]}`, "Patient.name[0]", "JSON object"},
	{"address of strings", "Patient", `{"resourceType":"Patient","address":["1 High St"]}`, "Patient.address[0]", "JSON object"},
	{"text as string", "Patient", `{"resourceType":"Patient","text":"x"}`, "Patient.text", "JSON object"},
	{"subject as string", "ServiceRequest", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":"Patient/1"}`, "ServiceRequest.subject", "JSON object"},
	{"period as array", "Encounter", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":[{"start":"2026-01-01"}]}`, "Encounter.period", "single value"},
	{"name null", "Patient", `{"resourceType":"Patient","name":[null]}`, "Patient.name[0]", "JSON object"},
	{"meta as string", "Patient", `{"resourceType":"Patient","meta":"x"}`, "Patient.meta", "JSON object"},
	// Primitive values out of their type.
	{"integer 1e400", "Patient", `{"resourceType":"Patient","multipleBirthInteger":1e400}`, "Patient.multipleBirthInteger", "integer"},
	{"integer 2147483648", "Patient", `{"resourceType":"Patient","multipleBirthInteger":2147483648}`, "Patient.multipleBirthInteger", "32-bit"},
	{"integer 2.5", "Patient", `{"resourceType":"Patient","multipleBirthInteger":2.5}`, "Patient.multipleBirthInteger", "fraction"},
	{"30 February", "Patient", `{"resourceType":"Patient","birthDate":"2026-02-30"}`, "Patient.birthDate", "does not exist"},
	{"29 February 1900", "Patient", `{"resourceType":"Patient","birthDate":"1900-02-29"}`, "Patient.birthDate", "does not exist"},
	// Empty things (ele-1).
	{"empty array", "Patient", `{"resourceType":"Patient","name":[]}`, "Patient.name", "ele-1"},
	{"empty object in array", "Patient", `{"resourceType":"Patient","name":[{}]}`, "Patient.name[0]", "ele-1"},
	{"empty identifier", "Patient", `{"resourceType":"Patient","identifier":[{}]}`, "Patient.identifier[0]", "ele-1"},
	{"empty primitive extension", "Patient", `{"resourceType":"Patient","_birthDate":{}}`, "Patient.birthDate", "ele-1"},
	{"extension without value", "Patient", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://example.org/x"}]}}`, "Patient.birthDate.extension[0]", "ext-1"},
	{"_given longer than given", "Patient", `{"resourceType":"Patient","name":[{"given":["a"],"_given":[null,{"id":"x"}]}]}`, "Patient.name[0].given", "align"},
	{"_family as array", "Patient", `{"resourceType":"Patient","name":[{"family":"a","_family":[{"id":"x"}]}]}`, "Patient.name[0].family", "not an array"},
	// The R4 invariants.
	{"contained unreferenced", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"x"}]}`, "Patient.contained[0]", "dom-3"},
	{"contained without id", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","name":"x"}]}`, "Patient.contained[0].id", "dom-3"},
	{"extension value and extensions", "Patient", `{"resourceType":"Patient","extension":[{"url":"http://example.org/a","valueString":"x","extension":[{"url":"b","valueString":"y"}]}]}`, "Patient.extension[0]", "ext-1"},
	{"extension two values", "Patient", `{"resourceType":"Patient","extension":[{"url":"http://example.org/a","valueString":"x","valueBoolean":true}]}`, "Patient.extension[0].value", "more than one"},
	{"extension relative url", "Patient", `{"resourceType":"Patient","extension":[{"url":"a","valueString":"x"}]}`, "Patient.extension[0].url", "absolute"},
	{"script in narrative", "Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x<script>alert(1)</script></div>"}}`, "Patient.text.div", "txt-1"},
	{"onclick in narrative", "Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p onclick=\"x()\">x</p></div>"}}`, "Patient.text.div", "txt-1"},
	{"iframe in narrative", "Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><iframe src=\"http://x\">x</iframe></div>"}}`, "Patient.text.div", "txt-1"},
	{"period start after end", "Encounter", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"period":{"start":"2026-02-01","end":"2026-01-31"}}`, "Encounter.period", "per-1"},
	{"two deceased", "Patient", `{"resourceType":"Patient","deceasedBoolean":true,"deceasedDateTime":"2026-01-01"}`, "Patient.deceased", "more than one"},
	{"patient as GP", "Patient", `{"resourceType":"Patient","generalPractitioner":[{"reference":"Patient/2"}]}`, "Patient.generalPractitioner[0].reference", "cannot refer to a Patient"},
	{"dot-dot reference", "Patient", `{"resourceType":"Patient","managingOrganization":{"reference":"Organization/../x"}}`, "Patient.managingOrganization.reference", "not a valid reference"},
	{"reference without id", "Patient", `{"resourceType":"Patient","managingOrganization":{"reference":"Organization/"}}`, "Patient.managingOrganization.reference", "not a valid reference"},
	{"reference to unknown type", "Patient", `{"resourceType":"Patient","link":[{"other":{"reference":"Foo/1"},"type":"seealso"}]}`, "Patient.link[0].other.reference", "not a resource type"},
	{"conditional reference outside a transaction", "Patient", `{"resourceType":"Patient","managingOrganization":{"reference":"Organization?identifier=x|1"}}`, "Patient.managingOrganization.reference", "only inside a transaction"},
	{"bad urn:uuid", "Patient", `{"resourceType":"Patient","managingOrganization":{"reference":"urn:uuid:not-a-uuid"}}`, "Patient.managingOrganization.reference", "urn:uuid"},
	{"organization without name or identifier", "Organization", `{"resourceType":"Organization","active":true}`, "Organization", "org-1"},
	{"patient contact without details", "Patient", `{"resourceType":"Patient","contact":[{"gender":"male"}]}`, "Patient.contact[0]", "pat-1"},
	// Input that is not text.
	// (A string over 1 MB is refused by fhir/validate; over HTTP the body limit
	// of the test server, 1 MB, refuses it first with 413.)
	{"invalid UTF-8", "Patient", "{\"resourceType\":\"Patient\",\"name\":[{\"text\":\"a\xffb\"}]}", "", "not valid UTF-8: invalid byte 0xff at byte offset"},
	{"lone surrogate", "Patient", `{"resourceType":"Patient","name":[{"text":"\ud800"}]}`, "", "high surrogate without its low surrogate"},
}

// TestBadInputRefused posts, puts and transacts every bad input, in strict and
// declared profile enforcement: each is a 400 whose OperationOutcome names the
// element and the rule, and nothing is stored.
func TestBadInputRefused(t *testing.T) {
	for _, mode := range []engine.Enforcement{engine.EnforceStrict, engine.EnforceDeclared} {
		t.Run(string(mode), func(t *testing.T) {
			ts := newProfiledServer(t, mode)
			for _, c := range badInputs {
				t.Run(c.name, func(t *testing.T) {
					r := do(t, http.MethodPost, ts.URL+"/fhir/"+c.typ, []byte(c.body))
					checkRefused(t, "POST", r, c, http.StatusBadRequest)
					put := strings.Replace(c.body, `{"resourceType":"`+c.typ+`"`, `{"resourceType":"`+c.typ+`","id":"bad1"`, 1)
					r = do(t, http.MethodPut, ts.URL+"/fhir/"+c.typ+"/bad1", []byte(put))
					checkRefused(t, "PUT", r, c, http.StatusBadRequest)
					if !strings.HasPrefix(c.name, "conditional reference") { // which a transaction resolves
						tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + c.body + `,"request":{"method":"POST","url":"` + c.typ + `"}}]}`
						r = do(t, http.MethodPost, ts.URL+"/fhir", []byte(tx))
						if c.expr != "" {
							c.expr = "" // a transaction names the entry; the element is in the diagnostics
						}
						checkRefused(t, "transaction", r, c, http.StatusBadRequest)
					}
					count := do(t, http.MethodGet, ts.URL+"/fhir/"+c.typ+"?_summary=count", nil)
					if n := count.json(t)["total"]; n != json.Number("0") {
						t.Fatalf("%s stored: total %v", c.typ, n)
					}
				})
			}
		})
	}
}

// TestPatchCannotBreakShape: a JSON Patch whose result R4 forbids is refused
// the same way, and the stored version is unchanged.
func TestPatchCannotBreakShape(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceDeclared)
	r := do(t, http.MethodPut, ts.URL+"/fhir/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1","active":true}`))
	if r.status != http.StatusCreated {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, c := range []badInput{
		{"meta as string", "Patient", `[{"op":"add","path":"/meta","value":"x"}]`, "Patient.meta", "JSON object"},
		{"empty name", "Patient", `[{"op":"add","path":"/name","value":[{}]}]`, "Patient.name[0]", "ele-1"},
		{"31 April", "Patient", `[{"op":"add","path":"/birthDate","value":"2026-04-31"}]`, "Patient.birthDate", "does not exist"},
	} {
		r := do(t, http.MethodPatch, ts.URL+"/fhir/Patient/p1", []byte(c.body), "Content-Type", "application/json-patch+json")
		// A patch that is valid but makes an invalid resource is a 422 (FHIR's
		// patch rule), with the same outcome.
		checkRefused(t, "PATCH "+c.name, r, c, http.StatusUnprocessableEntity)
	}
	if got := do(t, http.MethodGet, ts.URL+"/fhir/Patient/p1", nil).json(t); got["meta"].(map[string]any)["versionId"] != "1" {
		t.Fatalf("patched: %v", got)
	}
}

func checkRefused(t *testing.T, what string, r response, c badInput, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %.300s", what, r.status, status, r.body)
	}
	oo := r.json(t)
	if oo["resourceType"] != "OperationOutcome" {
		t.Fatalf("%s: not an OperationOutcome: %.300s", what, r.body)
	}
	issues, _ := oo["issue"].([]any)
	for _, is := range issues {
		m, _ := is.(map[string]any)
		diag, _ := m["diagnostics"].(string)
		exprs, _ := m["expression"].([]any)
		if c.expr == "" && strings.Contains(diag, c.rule) {
			return
		}
		for _, e := range exprs {
			if e == c.expr && strings.Contains(diag, c.rule) {
				return
			}
		}
	}
	t.Fatalf("%s: no issue at %q about %q: %.600s", what, c.expr, c.rule, r.body)
}

// TestBundleShapeRefused: a transaction whose shape R4 forbids is a 400 naming
// the element, not a silent 200 that does nothing.
func TestBundleShapeRefused(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceDeclared)
	for _, c := range []badInput{
		{"entry as object", "Bundle", `{"resourceType":"Bundle","type":"transaction","entry":{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}}`, "Bundle.entry", "array"},
		{"entry as string", "Bundle", `{"resourceType":"Bundle","type":"batch","entry":["x"]}`, "Bundle.entry[0]", "object"},
		{"bad urn:uuid fullUrl", "Bundle", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:xyz","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`, "Bundle.entry[0].fullUrl", "urn:uuid"},
		{"resource as string", "Bundle", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":"x","request":{"method":"POST","url":"Patient"}}]}`, "Bundle.entry[0].resource", "object"},
	} {
		r := do(t, http.MethodPost, ts.URL+"/fhir", []byte(c.body))
		checkRefused(t, c.name, r, c, http.StatusBadRequest)
	}
	if n := do(t, http.MethodGet, ts.URL+"/fhir/Patient?_summary=count", nil).json(t)["total"]; n != json.Number("0") {
		t.Fatalf("stored: %v", n)
	}
}
