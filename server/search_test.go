package server_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"crs/fhir"
)

// seedPathway writes a small episode over HTTP.
func seedPathway(t *testing.T, base string) {
	t.Helper()
	for _, r := range []string{
		`{"resourceType":"Organization","id":"trust","name":"Warwick Hospital"}`,
		`{"resourceType":"Organization","id":"agency","name":"Home Care Ltd"}`,
		`{"resourceType":"Practitioner","id":"ot1","name":[{"family":"Patel"}]}`,
		`{"resourceType":"Patient","id":"p1","name":[{"family":"Smith"}],"managingOrganization":{"reference":"Organization/agency"}}`,
		`{"resourceType":"Patient","id":"p2","name":[{"family":"Jones"}]}`,
		`{"resourceType":"ServiceRequest","id":"sr1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"requester":{"reference":"Organization/trust"}}`,
		`{"resourceType":"EpisodeOfCare","id":"ep1","status":"active","patient":{"reference":"Patient/p1"},"managingOrganization":{"reference":"Organization/agency"},"referralRequest":[{"reference":"ServiceRequest/sr1"}]}`,
		`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"HH"},"subject":{"reference":"Patient/p1"},"episodeOfCare":[{"reference":"EpisodeOfCare/ep1"}],"participant":[{"individual":{"reference":"Practitioner/ot1"}}]}`,
		`{"resourceType":"Encounter","id":"e2","status":"finished","class":{"code":"HH"},"subject":{"reference":"Patient/p2"}}`,
		`{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","description":{"text":"make my own tea"},"subject":{"reference":"Patient/p1"}}`,
		`{"resourceType":"Goal","id":"g2","lifecycleStatus":"active","description":{"text":"walk"},"subject":{"reference":"Patient/p2"}}`,
		`{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},"basedOn":[{"reference":"ServiceRequest/sr1"}],"goal":[{"reference":"Goal/g1"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">plan</div>"}}`,
		`{"resourceType":"Provenance","id":"prov1","target":[{"reference":"CarePlan/cp1"}],"recorded":"2026-11-20T10:00:00Z","agent":[{"who":{"reference":"Organization/agency"}}]}`,
	} {
		obj, _ := fhir.Parse([]byte(r), fhir.Limits{})
		if res := do(t, "PUT", base+"/"+fhir.ResourceType(obj)+"/"+fhir.ID(obj), []byte(r)); res.status != 201 {
			t.Fatalf("%s: %d %s", r, res.status, res.body)
		}
	}
}

// modes returns "Type/id:mode" of each entry, sorted.
func modes(t *testing.T, b map[string]any) string {
	var out []string
	for _, e := range entries(t, b) {
		res := e["resource"].(map[string]any)
		mode := ""
		if s, ok := e["search"].(map[string]any); ok {
			mode = ":" + s["mode"].(string)
		}
		out = append(out, fhir.ResourceType(res)+"/"+fhir.ID(res)+mode)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestIncludesSummaryElements(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	seedPathway(t, base)
	cases := []struct{ query, want string }{
		{"CarePlan?status=active&_include=CarePlan:goal", "CarePlan/cp1:match Goal/g1:include"},
		{"CarePlan?_include=CarePlan:subject:Patient&_include=CarePlan:goal", "CarePlan/cp1:match Goal/g1:include Patient/p1:include"},
		{"CarePlan?_include=*", "CarePlan/cp1:match Encounter/e1:include Goal/g1:include Patient/p1:include ServiceRequest/sr1:include"},
		{"Patient?name=smith&_revinclude=Goal:subject", "Goal/g1:include Patient/p1:match"},
		{"CarePlan?_include=CarePlan:subject&_include:iterate=Patient:organization", "CarePlan/cp1:match Organization/agency:include Patient/p1:include"},
		{"CarePlan?_include=CarePlan:subject&_include=Patient:organization", ""},                  // not iterate: a 400
		{"Encounter?_include:iterate=Encounter:part-of", "Encounter/e1:match Encounter/e2:match"}, // circular iterate ends
		{"ServiceRequest?subject.name=smith", "ServiceRequest/sr1:match"},
		{"Patient?_has:Goal:subject:description=tea", ""}, // description is a token? no: Goal has no description param → 400
		{"Patient/p1/Goal", "Goal/g1:match"},
		{"Patient/p2/Encounter", "Encounter/e2:match"},
		{"EpisodeOfCare/ep1/Encounter", "Encounter/e1:match"},
	}
	for _, c := range cases {
		r := do(t, "GET", base+"/"+c.query, nil)
		if c.want == "" {
			if r.status != 400 {
				t.Errorf("%s: %d, want 400: %s", c.query, r.status, r.body)
			}
			continue
		}
		if r.status != 200 {
			t.Errorf("%s: %d %s", c.query, r.status, r.body)
			continue
		}
		if got := modes(t, r.json(t)); got != c.want {
			t.Errorf("%s:\n got  %s\n want %s", c.query, got, c.want)
		}
	}
	// _summary=count: the total only.
	b := do(t, "GET", base+"/Goal?_summary=count", nil).json(t)
	if fmt.Sprint(b["total"]) != "2" || b["entry"] != nil {
		t.Errorf("_summary=count: %v", b)
	}
	// _elements keeps the named elements (and id, meta) and marks the resource.
	b = do(t, "GET", base+"/Patient?_id=p1&_elements=name", nil).json(t)
	p := entries(t, b)[0]["resource"].(map[string]any)
	if p["name"] == nil || p["managingOrganization"] != nil || !strings.Contains(fmt.Sprint(p["meta"]), "SUBSETTED") {
		t.Errorf("_elements: %v", p)
	}
	// _summary=data drops the narrative; _summary=true keeps summary elements only.
	b = do(t, "GET", base+"/CarePlan?_summary=data", nil).json(t)
	if cp := entries(t, b)[0]["resource"].(map[string]any); cp["text"] != nil || cp["status"] == nil {
		t.Errorf("_summary=data: %v", cp)
	}
	b = do(t, "GET", base+"/CarePlan?_summary=true", nil).json(t)
	if cp := entries(t, b)[0]["resource"].(map[string]any); cp["text"] != nil || cp["goal"] != nil || cp["status"] == nil || cp["subject"] == nil {
		t.Errorf("_summary=true: %v", cp)
	}
	b = do(t, "GET", base+"/CarePlan?_summary=text", nil).json(t)
	if cp := entries(t, b)[0]["resource"].(map[string]any); cp["text"] == nil || cp["goal"] != nil || cp["status"] == nil {
		t.Errorf("_summary=text: %v", cp)
	}
}

func TestEverything(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	seedPathway(t, base)
	r := do(t, "GET", base+"/EpisodeOfCare/ep1/$everything", nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	b := r.json(t)
	want := "CarePlan/cp1:match EpisodeOfCare/ep1:match Goal/g1:match Encounter/e1:match Organization/agency:match Organization/trust:match Patient/p1:match Practitioner/ot1:match Provenance/prov1:match ServiceRequest/sr1:match"
	wantSorted := strings.Fields(want)
	sort.Strings(wantSorted)
	if got := modes(t, b); got != strings.Join(wantSorted, " ") {
		t.Errorf("episode $everything:\n got  %s\n want %s", got, strings.Join(wantSorted, " "))
	}
	if first := entries(t, b)[0]["resource"].(map[string]any); fhir.ID(first) != "ep1" {
		t.Errorf("the episode is not first: %v", first)
	}
	// Patient $everything: nothing of the other patient.
	got := modes(t, do(t, "GET", base+"/Patient/p1/$everything", nil).json(t))
	if strings.Contains(got, "p2") || strings.Contains(got, "g2") || strings.Contains(got, "e2") || !strings.Contains(got, "Goal/g1") || !strings.Contains(got, "CarePlan/cp1") {
		t.Errorf("patient $everything: %s", got)
	}
	// _type and paging.
	b = do(t, "GET", base+"/EpisodeOfCare/ep1/$everything?_type=Goal,CarePlan", nil).json(t)
	if got := modes(t, b); got != "CarePlan/cp1:match Goal/g1:match" {
		t.Errorf("_type: %s", got)
	}
	seen := map[string]bool{}
	url := base + "/EpisodeOfCare/ep1/$everything?_count=3"
	for pages := 0; url != "" && pages < 10; pages++ {
		b := do(t, "GET", url, nil).json(t)
		for _, e := range entries(t, b) {
			res := e["resource"].(map[string]any)
			seen[fhir.ResourceType(res)+"/"+fhir.ID(res)] = true
		}
		url = linkURL(b, "next")
	}
	if len(seen) != 10 {
		t.Errorf("paging $everything saw %d resources", len(seen))
	}
	if b := do(t, "GET", base+"/EpisodeOfCare/ep1/$everything?_since=2100-01-01T00:00:00Z", nil).json(t); fmt.Sprint(b["total"]) != "0" {
		t.Errorf("_since in the future: %v", b["total"])
	}
	for _, bad := range []string{"/Goal/g1/$everything", "/EpisodeOfCare/nothere/$everything", "/EpisodeOfCare/ep1/$everything?_type=Nonsense", "/EpisodeOfCare/ep1/$everything?bogus=1"} {
		if r := do(t, "GET", base+bad, nil); r.status < 400 || r.status >= 500 {
			t.Errorf("%s: %d", bad, r.status)
		}
	}
}
