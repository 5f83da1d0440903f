package therapy_test

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
	"crs/mapping/therapy"
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
		provider: &auth.Principal{ClientID: "physio-export", Org: "T1A2", Roles: []string{"therapy-service"}, Scopes: all},
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

func (e *env) importFile(t testing.TB, name string, data []byte, opt therapy.Options) (mapping.Summary, string, error) {
	t.Helper()
	door := &mapping.EngineDoor{Engine: e.eng, Principal: e.provider}
	org, err := mapping.FindOrganization(context.Background(), door, "T1A2")
	if err != nil {
		t.Fatal(err)
	}
	run := &mapping.Run{ID: "run-" + name, Source: "therapy", File: name, Org: org, ODS: "T1A2", Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.prof}
	var out bytes.Buffer
	rep := mapping.NewReport(&out)
	err = therapy.Import(context.Background(), door, run, bytes.NewReader(data), opt, rep)
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

// TestSampleTherapy: the screening lands on the referral, the goal becomes a
// Goal (strict profiles), the client reference is linked, an unknown client
// is held, a declined screening without a reason is rejected; a second
// import changes nothing.
func TestSampleTherapy(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/therapy-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	sum, report, err := e.importFile(t, "therapy-sample.csv", data, therapy.Options{})
	if err != nil {
		t.Fatal(err, report)
	}
	if want := (mapping.Summary{Rows: 4, Created: 1, Updated: 2, Held: 1, Rejected: 1}); sum != want {
		t.Fatalf("first import: %v, want %v\n%s", sum, want, report)
	}
	if !strings.Contains(report, "5,Decline_Reason,rejected,a declined screening needs its reason") {
		t.Errorf("report:\n%s", report)
	}
	sr := e.search(t, "ServiceRequest", "_id=alice-ref")
	if s := mustJSON(sr); !strings.Contains(s, `"valueCode":"accepted"`) || !strings.Contains(s, `"reference":"Organization/physio"`) {
		t.Fatalf("screening: %s", s)
	}
	goals := e.search(t, "Goal", "subject=Patient/alice")
	if s := mustJSON(goals); len(goals) != 1 || !strings.Contains(s, `"detailString":"500 m without a rest"`) || !strings.Contains(s, `"lifecycleStatus":"active"`) || !strings.Contains(s, `"startDate":"2026-11-22"`) {
		t.Fatalf("goals: %s", s)
	}
	for _, ref := range []string{"ServiceRequest/alice-ref", "Goal/" + goals[0]["id"].(string), "Patient/alice"} {
		if p := e.search(t, "Provenance", "target="+ref); len(p) != 1 {
			t.Errorf("Provenance of %s: %d", ref, len(p))
		}
	}
	before := map[string]int{}
	for _, rt := range []string{"Patient", "ServiceRequest", "Goal", "Provenance", "Task"} {
		before[rt] = e.versions(t, rt)
	}
	sum, report, err = e.importFile(t, "therapy-sample.csv", data, therapy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (mapping.Summary{Rows: 4, Unchanged: 2, Held: 1, Rejected: 1}); sum != want {
		t.Fatalf("second import: %v, want %v\n%s", sum, want, report)
	}
	for rt, n := range before {
		if got := e.versions(t, rt); got != n {
			t.Errorf("second import: %s has %d versions, had %d", rt, got, n)
		}
	}
}

// FuzzTherapy: any file gives a summary, a report or a file error, never a
// panic.
func FuzzTherapy(f *testing.F) {
	data, err := os.ReadFile("testdata/therapy-sample.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("Record_Type,Record_ID,Client_Reference,Event_Date\ngoal,1,x,2026-02-30\n"))
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = e.importFile(t, "fuzz.csv", data, therapy.Options{DryRun: true})
	})
}
