package careplans_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"crs/mapping"
	"crs/mapping/careplans"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// TestResolveHeldPlan: a plan of two rows for an unknown client reference
// is held whole (the Task holds both rows); once a person completes the Task
// naming the Patient, the plan is imported with both actions; a second
// resolve does nothing and the file then imports with nothing held. Tasks of
// another importer (a held visit of the same provider) are left alone.
func TestResolveHeldPlan(t *testing.T) {
	e := newEnv(t)
	const file = "Plan_ID,Client_Reference,NHS_Number,Plan_Start,Plan_End,Plan_Status,Calls_Per_Day,Carers_Per_Call,Goal_ID,Goal_Text,Goal_Due_Date,Action_ID,Action,Action_Who,Action_When,Action_Status,Action_Review_Date\n" +
		"P-9,C-55,,2026-11-21,,Active,4,1,G-9,Get up and dressed,2026-12-20,A-91,Prompt getting dressed,Carer,Morning call,In progress,2026-11-28\n" +
		"P-9,C-55,,2026-11-21,,Active,4,1,G-9,Get up and dressed,2026-12-20,A-92,Lay out clothes the night before,Carer,Evening call,Not started,\n"
	if sum, report, err := e.importFile(t, "plans.csv", []byte(file), careplans.Options{}); err != nil || sum.Held != 1 {
		t.Fatal(err, sum, report)
	}
	tasks := e.Search(t, "Task", "status=requested")
	if len(tasks) != 1 || !strings.Contains(mappingtest.JSON(tasks[0]["input"]), "A-91") || !strings.Contains(mappingtest.JSON(tasks[0]["input"]), "A-92") {
		t.Fatalf("the held plan's Task holds both rows: %v", tasks)
	}
	if n := e.CompleteHeld(t, e.provider, "C-55", "alice"); n != 1 {
		t.Fatalf("%d Tasks completed", n)
	}
	door := &mapping.EngineDoor{Engine: e.Engine, Principal: e.provider}
	org, err := mapping.FindOrganization(context.Background(), door, "VN1A2")
	if err != nil {
		t.Fatal(err)
	}
	// A visits run of the same provider does not take the plan's Task.
	visitsRun := &mapping.Run{ID: "run-v", Source: "visits", File: "held-for-review Tasks", Org: org, ODS: "VN1A2", Time: time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.Profiles}
	rep := mapping.NewReport(nil)
	if err := mapping.ResolveHeld(context.Background(), door, visitsRun, mapping.HeldSource{Columns: careplans.Columns,
		Reimport: func(context.Context, *mapping.Run, io.Reader, *mapping.Report) error {
			t.Fatal("a visits run re-imported a care plan")
			return nil
		}}, false, rep); err != nil {
		t.Fatal(err)
	}
	run := &mapping.Run{ID: "run-resolve", Source: "careplans", File: "held-for-review Tasks", Org: org, ODS: "VN1A2", Time: time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.Profiles}
	var out strings.Builder
	rep = mapping.NewReport(&out)
	if err := careplans.Resolve(context.Background(), door, run, careplans.Options{}, rep); err != nil {
		t.Fatal(err)
	}
	_ = rep.Flush()
	if rep.Rows != 2 || rep.Held != 0 || rep.Rejected != 0 || rep.Created < 2 {
		t.Fatalf("resolve: %v\n%s", rep.Summary, out.String())
	}
	plans := e.Search(t, "CarePlan", "identifier=https://community-recovery.example.org/fhir/Id/care-plan/VN1A2|P-9")
	if len(plans) != 1 || !strings.Contains(mappingtest.JSON(plans), "Prompt getting dressed") || !strings.Contains(mappingtest.JSON(plans), "Lay out clothes") {
		t.Fatalf("the held plan with both actions: %v", plans)
	}
	if len(e.ResolvedTasks(t)) != 1 {
		t.Fatal("the Task is not marked re-imported")
	}
	rep = mapping.NewReport(nil)
	if err := careplans.Resolve(context.Background(), door, run, careplans.Options{}, rep); err != nil || rep.Rows != 0 {
		t.Fatalf("second resolve: %v %v", err, rep.Summary)
	}
	if sum, report, err := e.importFile(t, "plans.csv", []byte(file), careplans.Options{}); err != nil || sum.Held != 0 || sum.Created != 0 {
		t.Fatalf("re-import after resolving: %v %v\n%s", err, sum, report)
	}
}
