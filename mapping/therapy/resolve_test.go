package therapy_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"crs/mapping"
	"crs/mapping/mappingtest"
	"crs/mapping/therapy"
	"crs/profiles"
)

// TestResolveHeldTherapyRecord: the goal held for an unknown client
// reference is imported once a person completes its Task naming the Patient;
// a second resolve does nothing and the file then imports with nothing held.
func TestResolveHeldTherapyRecord(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/therapy-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	if sum, report, err := e.importFile(t, "therapy-sample.csv", data, therapy.Options{}); err != nil || sum.Held != 1 {
		t.Fatal(err, sum, report)
	}
	if n := e.CompleteHeld(t, e.provider, "TC-9", "alice"); n != 1 {
		t.Fatalf("%d Tasks completed", n)
	}
	door := &mapping.EngineDoor{Engine: e.Engine, Principal: e.provider}
	org, err := mapping.FindOrganization(context.Background(), door, "T1A2")
	if err != nil {
		t.Fatal(err)
	}
	run := &mapping.Run{ID: "run-resolve", Source: "therapy", File: "held-for-review Tasks", Org: org, ODS: "T1A2", Time: time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.Profiles}
	var out strings.Builder
	rep := mapping.NewReport(&out)
	if err := therapy.Resolve(context.Background(), door, run, therapy.Options{}, rep); err != nil {
		t.Fatal(err)
	}
	_ = rep.Flush()
	if rep.Rows != 1 || rep.Created != 1 || rep.Held != 0 || rep.Rejected != 0 {
		t.Fatalf("resolve: %v\n%s", rep.Summary, out.String())
	}
	if alice := e.Search(t, "Patient", "_id=alice"); !strings.Contains(mappingtest.JSON(alice), `"value":"TC-9"`) {
		t.Fatalf("the client reference is not linked: %v", alice)
	}
	if goals := e.Search(t, "Goal", "patient=Patient/alice"); !strings.Contains(mappingtest.JSON(goals), "Make a cup of tea") {
		t.Fatalf("the held goal: %v", goals)
	}
	if len(e.ResolvedTasks(t)) != 1 {
		t.Fatal("the Task is not marked re-imported")
	}
	rep = mapping.NewReport(nil)
	if err := therapy.Resolve(context.Background(), door, run, therapy.Options{}, rep); err != nil || rep.Rows != 0 {
		t.Fatalf("second resolve: %v %v", err, rep.Summary)
	}
	if sum, report, err := e.importFile(t, "therapy-sample.csv", data, therapy.Options{}); err != nil || sum.Held != 0 || sum.Created != 0 {
		t.Fatalf("re-import after resolving: %v %v\n%s", err, sum, report)
	}
}
