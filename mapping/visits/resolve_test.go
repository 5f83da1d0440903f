package visits_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"crs/mapping"
	"crs/mapping/mappingtest"
	"crs/mapping/visits"
	"crs/profiles"
)

// TestResolveHeldVisit: the visit held for an unknown client reference is
// imported once a person completes its Task naming the Patient: the client
// reference is linked, the visit stored at its original line with its
// Provenance, the Task marked re-imported; a second resolve does nothing and
// the file then imports with nothing held.
func TestResolveHeldVisit(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/visits-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	if sum, report, err := e.importFile(t, "visits-sample.csv", data, visits.Options{}); err != nil || sum.Held != 1 {
		t.Fatal(err, sum, report)
	}
	if n := e.CompleteHeld(t, e.provider, "C-99", "alice"); n != 1 {
		t.Fatalf("%d Tasks completed", n)
	}
	door := &mapping.EngineDoor{Engine: e.Engine, Principal: e.provider}
	org, err := mapping.FindOrganization(context.Background(), door, "VN1A2")
	if err != nil {
		t.Fatal(err)
	}
	run := &mapping.Run{ID: "run-resolve", Source: "visits", File: "held-for-review Tasks", Org: org, ODS: "VN1A2", Time: time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.Profiles}
	var out strings.Builder
	rep := mapping.NewReport(&out)
	if err := visits.Resolve(context.Background(), door, run, visits.Options{}, rep); err != nil {
		t.Fatal(err)
	}
	_ = rep.Flush()
	if rep.Rows != 1 || rep.Created != 1 || rep.Held != 0 || rep.Rejected != 0 {
		t.Fatalf("resolve: %v\n%s", rep.Summary, out.String())
	}
	alice := e.Search(t, "Patient", "_id=alice")
	if !strings.Contains(mappingtest.JSON(alice), `"value":"C-99"`) {
		t.Fatalf("the client reference is not linked: %v", alice)
	}
	v4 := e.Search(t, "Encounter", "identifier=https://community-recovery.example.org/fhir/Id/visit/VN1A2|V-4")
	if len(v4) != 1 || !strings.Contains(mappingtest.JSON(v4), "Patient/alice") {
		t.Fatalf("the held visit: %v", v4)
	}
	e.Origin(t, "Encounter", v4[0]["id"].(string), "agency", "visits-sample.csv", "5")
	if len(e.ResolvedTasks(t)) != 1 {
		t.Fatal("the Task is not marked re-imported")
	}
	// The tag keeps it out of the next run's search, however many accumulate.
	const tag = "https://community-recovery.example.org/fhir/CodeSystem/crs-task-state|re-imported"
	if n, m := len(e.Search(t, "Task", "status=completed&_tag="+tag)), len(e.Search(t, "Task", "status=completed&_tag:not="+tag)); n != 1 || m != 0 {
		t.Fatalf("tagged re-imported: %d, untagged completed: %d; want 1 and 0", n, m)
	}
	rep = mapping.NewReport(nil)
	if err := visits.Resolve(context.Background(), door, run, visits.Options{}, rep); err != nil || rep.Rows != 0 {
		t.Fatalf("second resolve: %v %v", err, rep.Summary)
	}
	if sum, report, err := e.importFile(t, "visits-sample.csv", data, visits.Options{}); err != nil || sum.Held != 0 || sum.Created != 0 {
		t.Fatalf("re-import after resolving: %v %v\n%s", err, sum, report)
	}
}
