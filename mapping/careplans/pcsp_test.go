package careplans_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"crs/mapping"
	"crs/mapping/careplans"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// importJSON runs careplans.ImportJSON of data as the care provider.
func (e *env) importJSON(t testing.TB, name string, data []byte, opt careplans.Options) (mapping.Summary, string, error) {
	t.Helper()
	door := &mapping.EngineDoor{Engine: e.Engine, Principal: e.provider}
	org, err := mapping.FindOrganization(context.Background(), door, "VN1A2")
	if err != nil {
		t.Fatal(err)
	}
	run := &mapping.Run{ID: "run-" + name, Source: "careplans", File: name, Org: org, ODS: "VN1A2", Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.Profiles}
	var out bytes.Buffer
	rep := mapping.NewReport(&out)
	err = careplans.ImportJSON(context.Background(), door, run, bytes.NewReader(data), opt, rep)
	_ = rep.Flush()
	return rep.Summary, out.String(), err
}

// TestPCSPPlans: care plans as JSON laid out as the PRSB PCSP (goals and
// hopes, each with its actions) become the same CRS CarePlan and Goals as
// the CSV that says the same (strict profiles), each with its Provenance
// naming the plan's place in the file; an unknown client is held; a bad
// calls-per-day rejects its plan naming the JSON member; a second import,
// and then the CSV of the same plans, change nothing.
func TestPCSPPlans(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/careplans-pcsp.json")
	if err != nil {
		t.Fatal(err)
	}
	sum, report, err := e.importJSON(t, "careplans-pcsp.json", data, careplans.Options{})
	if err != nil {
		t.Fatal(err, report)
	}
	if want := (mapping.Summary{Rows: 5, Created: 3, Updated: 1, Held: 1, Rejected: 1}); sum != want {
		t.Fatalf("first import: %v, want %v\n%s", sum, want, report)
	}
	if !strings.Contains(report, `3,callsPerDay,rejected,"""40"" is not a number of calls a day`) {
		t.Errorf("report:\n%s", report)
	}
	plans := e.Search(t, "CarePlan", "subject=Patient/alice")
	s := mappingtest.JSON(plans)
	for _, w := range []string{`"valueInteger":4`, `"code":"single"`, `"reference":"ServiceRequest/alice-ref"`, `"description":"Put kettle and cups within reach"`,
		`"status":"completed"`, `"display":"Occupational therapist"`, `"text":"review by 2026-11-28"`, `"scheduledString":"Afternoon call"`} {
		if !strings.Contains(s, w) {
			t.Errorf("want %s in %s", w, s)
		}
	}
	if len(plans) != 1 || len(plans[0]["activity"].([]any)) != 3 {
		t.Fatalf("plans: %v", plans)
	}
	goals := e.Search(t, "Goal", "subject=Patient/alice")
	if len(goals) != 2 || !strings.Contains(mappingtest.JSON(goals), "Walk to the post box") {
		t.Fatalf("goals: %v", goals)
	}
	if p := e.Origin(t, "CarePlan", plans[0]["id"].(string), "agency", "careplans-pcsp.json", "1"); len(p["entity"].([]any)) != 1 {
		t.Fatalf("Provenance of the plan: %v", p)
	}
	tasks := e.Search(t, "Task", "status=requested")
	if len(tasks) != 1 || !strings.Contains(mappingtest.JSON(tasks[0]["input"]), "Plan_ID,Client_Reference") {
		t.Fatalf("the held plan's Task holds it as CSV rows: %v", tasks)
	}
	before := map[string]int{}
	for _, rt := range []string{"Patient", "CarePlan", "Goal", "Provenance", "Task"} {
		before[rt] = e.Versions(t, rt)
	}
	if sum, report, err = e.importJSON(t, "careplans-pcsp.json", data, careplans.Options{}); err != nil {
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
	delete(before, "Task") // the CSV's held row is another row: its own Task
	csv, err := os.ReadFile("testdata/careplans-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	if sum, report, err = e.importFile(t, "careplans-sample.csv", csv, careplans.Options{}); err != nil || sum.Created+sum.Updated != 0 {
		t.Fatalf("the CSV of the same plans: %v %v\n%s", err, sum, report)
	}
	for rt, n := range before {
		if got := e.Versions(t, rt); got != n {
			t.Errorf("%s has %d versions, had %d", rt, got, n)
		}
	}
}

// TestPCSPBadInput: a file that is not JSON, has members the format does not
// know or holds no plan is a file error with nothing stored; a plan with a
// goal without id, an action without words or a bad date is rejected naming
// where, and the other plans proceed.
func TestPCSPBadInput(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct{ name, file, want string }{
		{"not JSON", `{"plans": [`, "not a JSON object"},
		{"an unknown member", `{"plans": [{"planId": "P", "person": {"clientReference": "C-77"}, "start": "2026-11-21", "callsPerDay": 4, "carersPerCall": 1, "mood": "good"}]}`, `unknown field "mood"`},
		{"no plans", `{"plans": []}`, "holds no plans"},
		{"a list", `[]`, "not a JSON object"},
		{"calls as words", `{"plans": [{"planId": "P", "person": {"clientReference": "C-77"}, "start": "2026-11-21", "callsPerDay": "four", "carersPerCall": 1}]}`, "neither FHIR nor a care plan file"},
	} {
		sum, report, err := e.importJSON(t, "bad.json", []byte(c.file), careplans.Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) || sum.Created != 0 {
			t.Errorf("%s: %v (%v), want a file error with %q\n%s", c.name, err, sum, c.want, report)
		}
	}
	const person = `"person": {"nhsNumber": "9000000009", "clientReference": "C-77"}, "callsPerDay": 4, "carersPerCall": 1`
	file := `{"plans": [
	  {"planId": "P-1", ` + person + `, "start": "2026-11-21", "goalsAndHopes": [{"text": "Cook", "dueDate": "2026-12-01"}]},
	  {"planId": "P-2", ` + person + `, "start": "2026-11-21", "goalsAndHopes": [{"id": "G", "text": "Cook", "dueDate": "2026-12-01", "actions": [{"who": "Carer"}]}]},
	  {"planId": "P-3", ` + person + `, "start": "21 November"},
	  {"planId": "P-4", ` + person + `, "start": "2026-11-21", "actions": [{"action": "Shopping", "status": "Sometimes"}]},
	  {"planId": "P-5", ` + person + `, "start": "2026-11-21"}
	]}`
	sum, report, err := e.importJSON(t, "bad.json", []byte(file), careplans.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		`1,plans[0].goalsAndHopes[0].id,rejected,a goal needs its id`,
		`2,plans[1].goalsAndHopes[0].actions[0].action,rejected,an action needs its words`,
		`3,start,rejected,"""21 November"" is not a date`,
		`4,actions.status,rejected,"unknown code ""Sometimes"": ConceptMap https://community-recovery.example.org/fhir/ConceptMap/careplan-action-status`,
	} {
		if !strings.Contains(report, w) {
			t.Errorf("want %s in the report:\n%s", w, report)
		}
	}
	if sum.Rejected != 4 || sum.Created != 1 {
		t.Errorf("summary %v: want 4 plans rejected and P-5 stored\n%s", sum, report)
	}
}

// FuzzCarePlansJSON: any JSON care plan file gives a summary, a report or a
// file error, never a panic.
func FuzzCarePlansJSON(f *testing.F) {
	data, err := os.ReadFile("testdata/careplans-pcsp.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"plans": [{"planId": "P", "person": {"clientReference": "C"}, "start": "2026-01-01", "callsPerDay": 1e400, "carersPerCall": -1, "goalsAndHopes": [{"id": "", "actions": [{}]}]}]}`))
	f.Add([]byte(`{"resourceType": "Bundle", "type": "collection"}`))
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = e.importJSON(t, "fuzz.json", data, careplans.Options{DryRun: true})
	})
}
