package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
)

// TestWarningsKeepTheReplyShape: a write with warnings answers like one
// without (the resource, by default), with the warnings in X-Warning; only
// Prefer: return=OperationOutcome makes them the body. Every write interaction
// and bundle entries alike.
func TestWarningsKeepTheReplyShape(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceStrict)
	base := ts.URL + "/fhir"
	putAll(t, base)
	plan := profileExample(t, "valid-CarePlan-reduced")
	check := func(what string, r response, status int, wantType string) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: %d %s", what, r.status, r.body)
		}
		if got := fhir.ResourceType(r.json(t)); got != wantType {
			t.Errorf("%s: body is a %s, want a %s", what, got, wantType)
		}
	}
	warned := func(what string, r response) {
		t.Helper()
		h := strings.Join(r.header.Values("X-Warning"), "\n")
		if !strings.Contains(h, "severity=warning") || !strings.Contains(h, "expression=") {
			t.Errorf("%s: X-Warning %q, want the warning with its place", what, h)
		}
	}

	r := do(t, "POST", base+"/CarePlan", plan)
	check("POST", r, http.StatusCreated, "CarePlan")
	warned("POST", r)
	if r.json(t)["id"] == "" {
		t.Error("POST: no id in the reply")
	}
	eoc := profileExample(t, "warning-EpisodeOfCare-past-six-weeks")
	obj, _ := fhir.Parse(eoc, fhir.Limits{})
	r = do(t, "PUT", base+"/EpisodeOfCare/"+fhir.ID(obj), eoc)
	check("PUT", r, http.StatusCreated, "EpisodeOfCare")
	warned("PUT", r)

	r = do(t, "POST", base+"/CarePlan", plan, "Prefer", "return=OperationOutcome")
	check("POST return=OperationOutcome", r, http.StatusCreated, "OperationOutcome")
	if !strings.Contains(string(r.body), `"warning"`) {
		t.Errorf("return=OperationOutcome: the warnings are not in the body: %s", r.body)
	}
	if r.header.Get("X-Warning") != "" {
		t.Error("return=OperationOutcome: the warnings are also in the header")
	}
	r = do(t, "POST", base+"/CarePlan", plan, "Prefer", "return=minimal")
	if r.status != http.StatusCreated || len(r.body) != 0 {
		t.Errorf("return=minimal: %d %s", r.status, r.body)
	}
	warned("return=minimal", r)

	// A transaction entry carries the resource and its warnings in response.outcome.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(plan) + `,"request":{"method":"POST","url":"CarePlan"}}]}`
	r = do(t, "POST", base, []byte(tx))
	if r.status != http.StatusOK {
		t.Fatalf("transaction: %d %s", r.status, r.body)
	}
	var b struct {
		Entry []struct {
			Resource map[string]any
			Response struct{ Outcome json.RawMessage }
		}
	}
	if err := json.Unmarshal(r.body, &b); err != nil || len(b.Entry) != 1 {
		t.Fatalf("transaction response: %v %s", err, r.body)
	}
	if b.Entry[0].Resource["resourceType"] != "CarePlan" || !strings.Contains(string(b.Entry[0].Response.Outcome), `"warning"`) {
		t.Errorf("transaction entry: resource %v, outcome %s", b.Entry[0].Resource["resourceType"], b.Entry[0].Response.Outcome)
	}
}

// TestTransactionErrorPaths: an entry's error names the element as FHIRPath
// from the Bundle: Bundle.entry[n].resource.<element>, without the type name.
func TestTransactionErrorPaths(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceStrict)
	base := ts.URL + "/fhir"
	putAll(t, base)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"dance"},"subject":{"reference":"Patient/pat-1"},"expressedBy":{"reference":"Patient/pat-1"}},"request":{"method":"POST","url":"Goal"}},
	 {"resource":{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/pat-1"},"period":{"start":"2026-12-01","end":"2026-11-01"}},"request":{"method":"POST","url":"CarePlan"}}]}`
	r := do(t, "POST", base, []byte(tx))
	if r.status < 400 {
		t.Fatalf("an invalid transaction answered %d", r.status)
	}
	var oo struct {
		Issue []struct{ Expression []string }
	}
	if err := json.Unmarshal(r.body, &oo); err != nil || len(oo.Issue) == 0 {
		t.Fatalf("outcome: %v %s", err, r.body)
	}
	for _, is := range oo.Issue {
		for _, e := range is.Expression {
			if !strings.HasPrefix(e, "Bundle.entry[") || strings.Contains(e, ".resource.Goal") || strings.Contains(e, ".resource.CarePlan") {
				t.Errorf("expression %q is not FHIRPath from the Bundle", e)
			}
		}
	}
}
