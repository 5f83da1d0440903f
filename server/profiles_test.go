package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/profiles"
	"crs/server"
)

const sd = profiles.DefaultCanonicalBase + "/StructureDefinition/"

// newProfiledServer starts crs with the pathway profiles and their search
// parameters, as cmd/crs wires them, with the given enforcement.
func newProfiledServer(t *testing.T, enforcement engine.Enforcement) *httptest.Server {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	prof, err := profiles.Load("")
	if err != nil {
		t.Fatal(err)
	}
	params, err := prof.SearchRegistry()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Start()
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: ts.URL + "/fhir", Params: params, Profiles: prof, Enforcement: enforcement})
	if err := eng.InstallConformance(t.Context()); err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = server.New(server.Config{Engine: eng, MaxBodyBytes: 1 << 20, Software: engine.Software{Name: "crs", Version: "test"}})
	t.Cleanup(func() { ts.Close(); st.Close() })
	return ts
}

func profileExample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "profiles", "examples", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// putAll writes the valid pathway examples in an order where references resolve.
func putAll(t *testing.T, base string) {
	t.Helper()
	for _, name := range []string{"valid-Practitioner-carer", "valid-Organization-trust", "valid-Organization-agency", "valid-Patient-nhs-number", "valid-Patient-no-nhs-number",
		"valid-Encounter-acute-stay", "valid-Referral-single", "valid-Referral-double-screened", "valid-EpisodeOfCare-active", "valid-EpisodeOfCare-finished",
		"valid-Goal-tea", "valid-Goal-walk", "valid-CarePlan-start", "valid-CarePlan-reduced", "valid-Encounter-home-assessment"} {
		body := profileExample(t, name)
		obj, _ := fhir.Parse(body, fhir.Limits{})
		r := do(t, "PUT", base+"/"+fhir.ResourceType(obj)+"/"+fhir.ID(obj), body, "Prefer", "return=representation")
		if r.status != http.StatusCreated {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
		if fhir.ResourceType(obj) == "Practitioner" {
			continue // not a pathway profile's type
		}
		got := r.json(t)
		meta := got["meta"].(map[string]any)
		if !strings.Contains(string(mustJSON(meta["profile"])), "/StructureDefinition/CRS-") {
			t.Errorf("%s: meta.profile not added: %v", name, meta)
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := fhir.Marshal(v)
	return b
}

func TestStrictProfiles(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceStrict)
	base := ts.URL + "/fhir"
	// A pathway type that does not conform is refused with 422 and the place.
	r := do(t, "POST", base+"/Patient", profileExample(t, "invalid-Patient-modulus11"))
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "Modulus 11") || !strings.Contains(string(r.body), "Patient.identifier[0].value") {
		t.Fatalf("modulus 11: %d %s", r.status, r.body)
	}
	// References must resolve, to an allowed type.
	r = do(t, "POST", base+"/ServiceRequest", profileExample(t, "valid-Referral-single"))
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "does not resolve") {
		t.Fatalf("unresolved: %d %s", r.status, r.body)
	}
	putAll(t, base)
	// A warning is reported in X-Warning; the reply is the resource, stored.
	r = do(t, "POST", base+"/EpisodeOfCare", profileExample(t, "warning-EpisodeOfCare-past-six-weeks"))
	if r.status != http.StatusCreated || fhir.ResourceType(r.json(t)) != "EpisodeOfCare" || !strings.Contains(r.header.Get("X-Warning"), "crs-eoc-2") || r.header.Get("Location") == "" {
		t.Fatalf("warning: %d %v %s", r.status, r.header, r.body)
	}
	// A PATCH whose result breaks the profile is refused.
	patch := []byte(`[{"op":"replace","path":"/status","value":"finished"}]`)
	r = do(t, "PATCH", base+"/EpisodeOfCare/ep-1", patch, "Content-Type", "application/json-patch+json")
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "crs-eoc-1") {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	// A transaction entry that breaks a profile names the entry; nothing is stored.
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:5f0c7c56-8c1a-4d6b-9a62-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}]},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"dance"},"subject":{"reference":"urn:uuid:5f0c7c56-8c1a-4d6b-9a62-111111111111"},"target":[{"dueDate":"2026-12-01"}]},"request":{"method":"POST","url":"Goal"}}]}`
	r = do(t, "POST", base, []byte(tx))
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "Bundle.entry[1]") {
		t.Fatalf("transaction: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", base+"/Patient?identifier=9434765919", nil); !strings.Contains(string(r.body), `"total":0`) {
		t.Fatalf("a failed transaction stored something: %s", r.body)
	}
	// The acute referral shape, with urn:uuid references between entries in any order.
	tx = `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":` + string(profileExample(t, "valid-Referral-single")) + `,"request":{"method":"POST","url":"ServiceRequest"}},
	 {"fullUrl":"urn:uuid:5f0c7c56-8c1a-4d6b-9a62-222222222222","resource":{"resourceType":"Encounter","status":"in-progress","class":{"code":"IMP","system":"http://terminology.hl7.org/CodeSystem/v3-ActCode"},"subject":{"reference":"Patient/pat-1"}},"request":{"method":"POST","url":"Encounter"}}]}`
	tx = strings.Replace(tx, `"Encounter/enc-acute"`, `"urn:uuid:5f0c7c56-8c1a-4d6b-9a62-222222222222"`, 1)
	if r := do(t, "POST", base, []byte(tx)); r.status != http.StatusOK {
		t.Fatalf("acute referral: %d %s", r.status, r.body)
	}
	// The pathway's search parameters work.
	for q, want := range map[string]int{
		"ServiceRequest?discharge-ready-date=2026-11-20": 3,
		"ServiceRequest?care-call-pattern=double":        1,
		"ServiceRequest?screening-outcome=declined":      1,
		"CarePlan?calls-per-day=lt4":                     1,
		"EpisodeOfCare?exit-route=independent":           2,
		"EpisodeOfCare?locality=rugby":                   3,
	} {
		r := do(t, "GET", base+"/"+q, nil)
		if total := r.json(t)["total"]; r.status != 200 || fmt.Sprint(total) != strconv.Itoa(want) {
			t.Errorf("%s: %d total %v, want %d", q, r.status, total, want)
		}
	}
}

func TestDeclaredProfiles(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceDeclared)
	base := ts.URL + "/fhir"
	// A resource that claims no profile is only base-validated.
	goal := `{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"walk"},"subject":{"reference":"Patient/nobody"}}`
	if r := do(t, "POST", base+"/Goal", []byte(goal)); r.status != http.StatusCreated {
		t.Fatalf("unclaimed: %d %s", r.status, r.body)
	}
	// One that claims the pathway profile is checked against it.
	claimed := strings.Replace(goal, `"resourceType":"Goal",`, `"resourceType":"Goal","meta":{"profile":["`+sd+`CRS-Goal"]},`, 1)
	if r := do(t, "POST", base+"/Goal", []byte(claimed)); r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "Goal.expressedBy") {
		t.Fatalf("claimed: %d %s", r.status, r.body)
	}
	// Base validation still applies.
	if r := do(t, "POST", base+"/Goal", []byte(`{"resourceType":"Goal","lifecycleStatus":"bogus","description":{"text":"x"},"subject":{"reference":"Patient/p"}}`)); r.status != http.StatusBadRequest {
		t.Fatalf("base: %d %s", r.status, r.body)
	}
}

func TestValidateOperation(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceStrict)
	base := ts.URL + "/fhir"
	putAll(t, base)
	outcome := func(r response) string {
		t.Helper()
		if r.status != http.StatusOK || fhir.ResourceType(r.json(t)) != "OperationOutcome" {
			t.Fatalf("%d %s", r.status, r.body)
		}
		return string(r.body)
	}
	if got := outcome(do(t, "POST", base+"/Goal/$validate", profileExample(t, "valid-Goal-walk"))); !strings.Contains(got, "no issues found") {
		t.Errorf("valid: %s", got)
	}
	if got := outcome(do(t, "POST", base+"/Patient/$validate", profileExample(t, "invalid-Patient-modulus11"))); !strings.Contains(got, "Modulus 11") {
		t.Errorf("invalid: %s", got)
	}
	// Nothing was stored by $validate.
	if r := do(t, "GET", base+"/Patient?identifier=9912003890", nil); !strings.Contains(string(r.body), `"total":0`) {
		t.Errorf("$validate stored: %s", r.body)
	}
	// Parameters with mode and profile; instance level.
	params := `{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"create"},{"name":"resource","resource":` + string(profileExample(t, "valid-CarePlan-reduced")) + `}]}`
	if got := outcome(do(t, "POST", base+"/CarePlan/$validate", []byte(params))); !strings.Contains(got, "crs-cp-2") || !strings.Contains(got, `"warning"`) {
		t.Errorf("mode=create: %s", got)
	}
	if got := outcome(do(t, "POST", base+"/Goal/goal-1/$validate?profile="+url.QueryEscape(sd+"CRS-Goal"), profileExample(t, "valid-Goal-tea"))); !strings.Contains(got, "no issues found") {
		t.Errorf("instance: %s", got)
	}
	if got := outcome(do(t, "POST", base+"/Goal/goal-1/$validate?mode=delete", nil)); !strings.Contains(got, "may be deleted") {
		t.Errorf("delete: %s", got)
	}
	if r := do(t, "POST", base+"/Goal/$validate?mode=bogus", profileExample(t, "valid-Goal-tea")); r.status != http.StatusBadRequest {
		t.Errorf("bad mode: %d", r.status)
	}
	if got := outcome(do(t, "POST", base+"/Goal/$validate?profile="+url.QueryEscape(sd+"CRS-Nothing"), profileExample(t, "valid-Goal-tea"))); !strings.Contains(got, "not known") {
		t.Errorf("unknown profile: %s", got)
	}
}

func TestConformanceResources(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceStrict)
	base := ts.URL + "/fhir"
	for _, q := range []string{
		"StructureDefinition?url=" + sd + "CRS-Referral",
		"ValueSet?url=" + profiles.DefaultCanonicalBase + "/ValueSet/crs-exit-route",
		"CodeSystem?url=" + profiles.DefaultCanonicalBase + "/CodeSystem/crs-visit-type",
		"SearchParameter?url=" + profiles.DefaultCanonicalBase + "/SearchParameter/crs-discharge-ready-date",
	} {
		if r := do(t, "GET", base+"/"+q, nil); !strings.Contains(string(r.body), `"total":1`) {
			t.Errorf("%s: %s", q, r.body)
		}
	}
	// Read-only through the API.
	if r := do(t, "DELETE", base+"/StructureDefinition/CRS-Referral", nil); r.status != http.StatusMethodNotAllowed && r.status != http.StatusForbidden && r.status != http.StatusBadRequest {
		t.Errorf("delete a profile: %d", r.status)
	}
	// $expand by url and by id, with filter and paging.
	r := do(t, "GET", base+"/ValueSet/$expand?url="+url.QueryEscape(profiles.DefaultCanonicalBase+"/ValueSet/crs-visit-type")+"&filter=review", nil)
	if r.status != 200 || !strings.Contains(string(r.body), "mdt-review") || !strings.Contains(string(r.body), `"total":2`) {
		t.Errorf("$expand: %d %s", r.status, r.body)
	}
	r = do(t, "GET", base+"/ValueSet/crs-exit-route/$expand?count=2&offset=1", nil)
	if r.status != 200 || strings.Count(string(r.body), `"code"`) != 2 {
		t.Errorf("$expand by id: %d %s", r.status, r.body)
	}
	r = do(t, "POST", base+"/ValueSet/$expand", []byte(`{"resourceType":"Parameters","parameter":[{"name":"url","valueUri":"`+profiles.DefaultCanonicalBase+`/ValueSet/crs-care-call-pattern"}]}`))
	if r.status != 200 || !strings.Contains(string(r.body), "double") {
		t.Errorf("POST $expand: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", base+"/ValueSet/$expand?url=https://example.org/none", nil); r.status != http.StatusNotFound {
		t.Errorf("unknown value set: %d", r.status)
	}
	// The CapabilityStatement names the profiles and the operations.
	r = do(t, "GET", base+"/metadata", nil)
	for _, want := range []string{sd + "CRS-Referral", sd + "CRS-Patient", `"validate"`, `"expand"`} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("CapabilityStatement lacks %s", want)
		}
	}
}
