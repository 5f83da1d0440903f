package careplans_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"crs/auth"
	"crs/mapping"
	"crs/mapping/careplans"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

type env struct {
	*mappingtest.Env
	provider *auth.Principal
}

// newEnv is an engine as cmd/crs wires it with the fixtures stored, and the
// care-provider importing.
func newEnv(t testing.TB) *env {
	return &env{Env: mappingtest.New(t, "testdata/fixtures.json"), provider: mappingtest.Principal("care-provider", "VN1A2", "")}
}

func (e *env) importFile(t testing.TB, name string, data []byte, opt careplans.Options) (mapping.Summary, string, error) {
	t.Helper()
	return e.ImportFile(t, e.provider, "careplans", "VN1A2", name, data, func(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, rep *mapping.Report) error {
		return careplans.Import(ctx, door, run, r, opt, rep)
	})
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
	plans := e.Search(t, "CarePlan", "subject=Patient/alice")
	s := mappingtest.JSON(plans)
	for _, w := range []string{`"valueInteger":4`, `"code":"single"`, `"reference":"ServiceRequest/alice-ref"`, `"description":"Put kettle and cups within reach"`, `"status":"completed"`, `"display":"Occupational therapist"`, `"text":"review by 2026-11-28"`} {
		if !strings.Contains(s, w) {
			t.Errorf("want %s in %s", w, s)
		}
	}
	goals := e.Search(t, "Goal", "subject=Patient/alice")
	if len(goals) != 2 || !strings.Contains(mappingtest.JSON(goals), "I want to make my own breakfast, like before") {
		t.Fatalf("goals: %v", goals)
	}
	e.Origin(t, "CarePlan", plans[0]["id"].(string), "agency", "careplans-sample.csv", "2,3,4")
	for _, g := range goals {
		e.Origin(t, "Goal", g["id"].(string), "agency", "careplans-sample.csv", map[bool]string{true: "2", false: "4"}[strings.Contains(mappingtest.JSON(g), "breakfast")])
	}
	before := map[string]int{}
	for _, rt := range []string{"Patient", "CarePlan", "Goal", "Provenance", "Task"} {
		before[rt] = e.Versions(t, rt)
	}
	sum, report, err = e.importFile(t, "careplans-sample.csv", data, careplans.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (mapping.Summary{Rows: 5, Unchanged: 3, Held: 1, Rejected: 1}); sum != want {
		t.Fatalf("second import: %v, want %v\n%s", sum, want, report)
	}
	for rt, n := range before {
		if got := e.Versions(t, rt); got != n {
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

// TestForeignFHIRPlan: a record system's own FHIR CarePlan (another profile,
// intent order, its own references) is mapped onto the CRS Care Plan rather
// than rejected: calls per day from its daily timings, singles from the
// referral; a plan whose subject has no NHS number is rejected saying so.
func TestForeignFHIRPlan(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/careplan-foreign.json")
	if err != nil {
		t.Fatal(err)
	}
	door := &mapping.EngineDoor{Engine: e.Engine, Principal: e.provider}
	org, err := mapping.FindOrganization(context.Background(), door, "VN1A2")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []mapping.Summary{{Rows: 2, Created: 1, Rejected: 1}, {Rows: 2, Unchanged: 1, Rejected: 1}} {
		run := &mapping.Run{ID: "run-fhir", Source: "careplans", File: "careplan-foreign.json", Org: org, ODS: "VN1A2", Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
			Base: profiles.DefaultCanonicalBase, Profiles: e.Profiles}
		var out bytes.Buffer
		rep := mapping.NewReport(&out)
		if err := careplans.ImportFHIR(context.Background(), door, run, bytes.NewReader(data), careplans.Options{}, rep); err != nil {
			t.Fatal(err)
		}
		_ = rep.Flush()
		if rep.Summary != want {
			t.Fatalf("import %d: %v, want %v\n%s", i, rep.Summary, want, out.String())
		}
		if !strings.Contains(out.String(), "2,CarePlan.subject,rejected,the subject carries no NHS number") {
			t.Fatalf("report: %s", out.String())
		}
	}
	plans := e.Search(t, "CarePlan", "subject=Patient/alice")
	s := mappingtest.JSON(plans)
	for _, w := range []string{`"valueInteger":4`, `"code":"single"`, `"intent":"plan"`, `"reference":"ServiceRequest/alice-ref"`, `"value":"https://dscr.example.org/care-plan|778"`, `"display":"Carer"`, `"scheduledString":"Week 2"`} {
		if !strings.Contains(s, w) {
			t.Errorf("want %s in %s", w, s)
		}
	}
	if strings.Contains(s, "their-carer-7") || strings.Contains(s, "their-goal-1") {
		t.Errorf("the sender's references were carried over: %s", s)
	}
}
