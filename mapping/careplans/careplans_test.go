package careplans_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/mapping"
	"crs/mapping/careplans"
	"crs/profiles"
)

type env struct {
	eng             *engine.Engine
	prof            *profiles.Set
	provider, admin *auth.Principal
}

// newEnv is an engine as cmd/crs wires it (strict profiles, the access
// policy, audit) with the fixtures stored.
func newEnv(t testing.TB) *env {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	prof, err := profiles.Load("")
	if err != nil {
		t.Fatal(err)
	}
	params, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range prof.SearchParameters() {
		if err := params.Add(sp); err != nil {
			t.Fatal(err)
		}
	}
	policy, err := auth.LoadPolicy("", params)
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://crs.test/fhir", Params: params,
		Profiles: prof, Enforcement: engine.EnforceStrict, Access: policy, Audit: true})
	if err := eng.InstallConformance(context.Background()); err != nil {
		t.Fatal(err)
	}
	all := auth.ParseScopes("system/*.cruds")
	e := &env{eng: eng, prof: prof,
		provider: &auth.Principal{ClientID: "agency-ecm", Org: "VN1A2", Roles: []string{"care-provider"}, Scopes: all},
		admin:    &auth.Principal{ClientID: "admin", Roles: []string{"admin"}, Scopes: all}}
	fixtures, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Bundle(auth.WithPrincipal(context.Background(), e.admin), fixtures, engine.SearchOptions{}); err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	return e
}

func (e *env) importFile(t testing.TB, name string, data []byte, opt careplans.Options) (mapping.Summary, string, error) {
	t.Helper()
	door := &mapping.EngineDoor{Engine: e.eng, Principal: e.provider}
	org, err := mapping.FindOrganization(context.Background(), door, "VN1A2")
	if err != nil {
		t.Fatal(err)
	}
	run := &mapping.Run{ID: "run-" + name, Source: "careplans", File: name, Org: org, ODS: "VN1A2", Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.prof}
	var out bytes.Buffer
	rep := mapping.NewReport(&out)
	err = careplans.Import(context.Background(), door, run, bytes.NewReader(data), opt, rep)
	_ = rep.Flush()
	return rep.Summary, out.String(), err
}

func (e *env) search(t testing.TB, rt, query string) []map[string]any {
	t.Helper()
	raw, err := engine.ParseQueryString(query)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.eng.Search(auth.WithPrincipal(context.Background(), e.admin), rt, raw, engine.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, en := range b.Entry {
		var m map[string]any
		if err := json.Unmarshal(en.Resource, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func (e *env) versions(t testing.TB, rt string) int {
	t.Helper()
	b, err := e.eng.History(auth.WithPrincipal(context.Background(), e.admin), rt, "", []fhir.RawParam{{Name: "_count", Value: "500"}})
	if err != nil {
		t.Fatal(err)
	}
	return len(b.Entry)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSamplePlans: a plan of three actions under two goals becomes the CRS
// CarePlan (strict profiles) with its Goals, each with its Provenance; an
// unknown client is held; a bad calls-per-day rejects its plan; a second
// import changes nothing.
func TestSamplePlans(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/careplans-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	sum, report, err := e.importFile(t, "careplans-sample.csv", data, careplans.Options{})
	if err != nil {
		t.Fatal(err, report)
	}
	if want := (mapping.Summary{Rows: 5, Created: 3, Updated: 1, Held: 1, Rejected: 1}); sum != want {
		t.Fatalf("first import: %v, want %v\n%s", sum, want, report)
	}
	if !strings.Contains(report, `6,Calls_Per_Day,rejected,"""four"" is not a number of calls a day`) {
		t.Errorf("report:\n%s", report)
	}
	plans := e.search(t, "CarePlan", "subject=Patient/alice")
	s := mustJSON(plans)
	for _, w := range []string{`"valueInteger":4`, `"code":"single"`, `"reference":"ServiceRequest/alice-ref"`, `"description":"Put kettle and cups within reach"`, `"status":"completed"`, `"display":"Occupational therapist"`, `"text":"review by 2026-11-28"`} {
		if !strings.Contains(s, w) {
			t.Errorf("want %s in %s", w, s)
		}
	}
	goals := e.search(t, "Goal", "subject=Patient/alice")
	if len(goals) != 2 || !strings.Contains(mustJSON(goals), "I want to make my own breakfast, like before") {
		t.Fatalf("goals: %v", goals)
	}
	if p := e.search(t, "Provenance", "target=CarePlan/"+plans[0]["id"].(string)); len(p) != 1 || !strings.Contains(mustJSON(p), "careplans-sample.csv#line=4") {
		t.Fatalf("Provenance of the plan: %v", p)
	}
	before := map[string]int{}
	for _, rt := range []string{"Patient", "CarePlan", "Goal", "Provenance", "Task"} {
		before[rt] = e.versions(t, rt)
	}
	sum, report, err = e.importFile(t, "careplans-sample.csv", data, careplans.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (mapping.Summary{Rows: 5, Unchanged: 3, Held: 1, Rejected: 1}); sum != want {
		t.Fatalf("second import: %v, want %v\n%s", sum, want, report)
	}
	for rt, n := range before {
		if got := e.versions(t, rt); got != n {
			t.Errorf("second import: %s has %d versions, had %d", rt, got, n)
		}
	}
}

// FuzzCarePlans: any file gives a summary, a report or a file error, never a
// panic.
func FuzzCarePlans(f *testing.F) {
	data, err := os.ReadFile("testdata/careplans-sample.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("Plan_ID,Client_Reference,Plan_Start,Calls_Per_Day,Carers_Per_Call\nP,C,2026-01-01,4,3\nQ,C,x,4,1\nP,C,2026-01-01,4,1\n"))
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = e.importFile(t, "fuzz.csv", data, careplans.Options{DryRun: true})
	})
}
