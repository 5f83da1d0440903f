package cld_test

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
	"crs/mapping/cld"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// env is an engine as cmd/crs wires it with the sample fixtures stored, and
// the council importing.
type env struct {
	*mappingtest.Env
	council *auth.Principal
}

func newEnv(t testing.TB) *env {
	return &env{Env: mappingtest.New(t, "testdata/fixtures.json"), council: mappingtest.Principal("council", "WCC01", "E10000031")}
}

// importFile runs the CLD import of file as the council and returns the
// summary and the report.
func (e *env) importFile(t testing.TB, name string, data []byte, opt cld.Options) (mapping.Summary, string, error) {
	t.Helper()
	var out bytes.Buffer
	sum, err := e.importReader(t, name, bytes.NewReader(data), opt, &out)
	return sum, out.String(), err
}

// importReader is importFile from a reader, the report written to report.
func (e *env) importReader(t testing.TB, name string, r io.Reader, opt cld.Options, report io.Writer) (mapping.Summary, error) {
	t.Helper()
	door := &mapping.EngineDoor{Engine: e.Engine, Principal: e.council}
	ctx := context.Background()
	org, err := mapping.FindOrganization(ctx, door, "WCC01")
	if err != nil {
		t.Fatal(err)
	}
	run := e.run(name, org)
	if opt.LACode == "" {
		opt.LACode = "E10000031"
	}
	rep := mapping.NewReport(report)
	err = cld.Import(ctx, door, run, r, opt, rep)
	if ferr := rep.Flush(); ferr != nil {
		t.Fatal(ferr)
	}
	return rep.Summary, err
}

// run is an import run of the council for file name.
func (e *env) run(name string, org mapping.Current) *mapping.Run {
	return &mapping.Run{ID: "run-" + name, Source: "cld", File: name, Org: org, ODS: "WCC01", Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.Profiles}
}

func TestSampleImportsTwiceIdempotently(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/cld-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	sum, report, err := e.importFile(t, "cld-sample.csv", data, cld.Options{})
	if err != nil {
		t.Fatalf("import: %v\n%s", err, report)
	}
	t.Logf("report:\n%s", report)
	want := mapping.Summary{Rows: 6, Created: 2, Updated: 1, Held: 1, Skipped: 3}
	if sum != want {
		t.Fatalf("first import: %v, want %v\n%s", sum, want, report)
	}
	// Alice: linked to the council's identifier, her episode made from the
	// service event and ended by the review.
	alice := e.Search(t, "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009")
	if len(alice) != 1 || !strings.Contains(mappingtest.JSON(alice[0]), "LA-1001") || !strings.Contains(mappingtest.JSON(alice[0]), "E10000031") {
		t.Fatalf("Alice: %v", alice)
	}
	eps := e.Search(t, "EpisodeOfCare", "patient=Patient/alice")
	if len(eps) != 1 || eps[0]["status"] != "finished" || !strings.Contains(mappingtest.JSON(eps[0]), `"code":"independent"`) || !strings.Contains(mappingtest.JSON(eps[0]), `"code":"rugby"`) ||
		!strings.Contains(mappingtest.JSON(eps[0]), `Extension-CRS-CallsPerDay","valueInteger":4`) {
		t.Fatalf("episode: %v", eps)
	}
	// Every imported resource has its Provenance, naming the file and line.
	// Every imported resource has its Provenance, naming the file, and its
	// rows' lines (meta.source): Alice's request (lines 2-3), service (4)
	// and review (6).
	e.Origin(t, "Patient", "alice", "council", "cld-sample.csv", "2,4,6")
	e.Origin(t, "EpisodeOfCare", eps[0]["id"].(string), "council", "cld-sample.csv", "4,6")
	newPat := e.Search(t, "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9876543210")
	if len(newPat) != 1 || newPat[0]["gender"] != "male" {
		t.Fatalf("new patient: %v", newPat)
	}
	e.Origin(t, "Patient", newPat[0]["id"].(string), "council", "cld-sample.csv", "7,8")
	// The row with no NHS number and an unknown LA id is held as a Task.
	tasks := e.Search(t, "Task", "code=https://community-recovery.example.org/fhir/CodeSystem/crs-task-type|identity-review")
	if len(tasks) != 1 || tasks[0]["status"] != "requested" || !strings.Contains(mappingtest.JSON(tasks[0]), "LA-1003") {
		t.Fatalf("held: %v", tasks)
	}
	before := map[string]int{}
	for _, rt := range []string{"Patient", "EpisodeOfCare", "Provenance", "Task"} {
		before[rt] = e.Versions(t, rt)
	}
	sum, report, err = e.importFile(t, "cld-sample.csv", data, cld.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (mapping.Summary{Rows: 6, Unchanged: 3, Held: 1, Skipped: 3}); sum != want {
		t.Fatalf("second import: %v, want %v\n%s", sum, want, report)
	}
	for rt, n := range before {
		if got := e.Versions(t, rt); got != n {
			t.Errorf("second import: %s has %d versions, had %d", rt, got, n)
		}
	}
}
