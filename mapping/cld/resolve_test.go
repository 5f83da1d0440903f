package cld_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"crs/auth"
	"crs/mapping"
	"crs/mapping/cld"
	"crs/mapping/mappingtest"
)

// TestResolveHeldRow: a person completes the held row's Task naming the
// Patient; the next run links the row's identifiers to that Patient, marks
// the Task re-imported and imports the row; a later import of the same file
// matches the row without holding it.
func TestResolveHeldRow(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/cld-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	if sum, report, err := e.importFile(t, "cld-sample.csv", data, cld.Options{}); err != nil || sum.Held != 1 {
		t.Fatal(err, sum, report)
	}
	ctx := auth.WithPrincipal(context.Background(), e.Admin)
	carol := `{"resourceType":"Patient","id":"carol","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}],"birthDate":"1950-01-01","extension":[{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority","valueCoding":{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":"E10000031"}}]}`
	if _, err := e.Engine.Update(ctx, "Patient", "carol", []byte(carol), 0); err != nil {
		t.Fatal(err)
	}
	tasks := e.Search(t, "Task", "status=requested")
	if len(tasks) != 1 {
		t.Fatalf("tasks: %v", tasks)
	}
	task := tasks[0]
	task["status"] = "completed"
	task["output"] = []any{map[string]any{"type": map[string]any{"text": "patient"}, "valueReference": map[string]any{"reference": "Patient/carol"}}}
	council := auth.WithPrincipal(context.Background(), e.council)
	if _, err := e.Engine.Update(council, "Task", task["id"].(string), []byte(mappingtest.JSON(task)), 0); err != nil {
		t.Fatalf("the council completes its Task: %v", err)
	}

	door := &mapping.EngineDoor{Engine: e.Engine, Principal: e.council}
	org, err := mapping.FindOrganization(context.Background(), door, "WCC01")
	if err != nil {
		t.Fatal(err)
	}
	run := e.run("resolve", org)
	var out strings.Builder
	rep := mapping.NewReport(&out)
	if err := cld.Resolve(context.Background(), door, run, cld.Options{LACode: "E10000031"}, rep); err != nil {
		t.Fatal(err)
	}
	_ = rep.Flush()
	if rep.Rows != 1 || rep.Updated != 1 || rep.Held != 0 {
		t.Fatalf("resolve: %v\n%s", rep.Summary, out.String())
	}
	got := e.Search(t, "Patient", "_id=carol")
	if len(got) != 1 || !strings.Contains(mappingtest.JSON(got[0]), "LA-1003") || got[0]["gender"] != "female" {
		t.Fatalf("carol: %v", got)
	}
	if done := e.Search(t, "Task", "_id="+task["id"].(string)); !strings.Contains(mappingtest.JSON(done[0]), `"text":"re-imported: linked to Patient/carol`) {
		t.Fatalf("task: %v", done)
	}
	if prov := e.Search(t, "Provenance", "target=Patient/carol"); len(prov) != 2 {
		t.Fatalf("Provenance of the link and the row: %d", len(prov))
	}
	// A second resolve does nothing; the file now imports with nothing held.
	rep = mapping.NewReport(nil)
	if err := cld.Resolve(context.Background(), door, run, cld.Options{LACode: "E10000031"}, rep); err != nil || rep.Rows != 0 {
		t.Fatalf("second resolve: %v %v", err, rep.Summary)
	}
	if sum, report, err := e.importFile(t, "cld-sample.csv", data, cld.Options{}); err != nil || sum.Held != 0 || sum.Created+sum.Updated != 0 {
		t.Fatalf("re-import after resolving: %v %v\n%s", err, sum, report)
	}
}
