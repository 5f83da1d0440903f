package therapy_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"crs/auth"
	"crs/mapping"
	"crs/mapping/mappingtest"
	"crs/mapping/therapy"
)

type env struct {
	*mappingtest.Env
	provider *auth.Principal
}

// newEnv is an engine as cmd/crs wires it with the fixtures stored, and the
// therapy-service importing.
func newEnv(t testing.TB) *env {
	return &env{Env: mappingtest.New(t, "testdata/fixtures.json"), provider: mappingtest.Principal("therapy-service", "T1A2", "")}
}

func (e *env) importFile(t testing.TB, name string, data []byte, opt therapy.Options) (mapping.Summary, string, error) {
	t.Helper()
	return e.ImportFile(t, e.provider, "therapy", "T1A2", name, data, func(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, rep *mapping.Report) error {
		return therapy.Import(ctx, door, run, r, opt, rep)
	})
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
	sr := e.Search(t, "ServiceRequest", "_id=alice-ref")
	if s := mappingtest.JSON(sr); !strings.Contains(s, `"valueCode":"accepted"`) || !strings.Contains(s, `"reference":"Organization/physio"`) {
		t.Fatalf("screening: %s", s)
	}
	goals := e.Search(t, "Goal", "subject=Patient/alice")
	if s := mappingtest.JSON(goals); len(goals) != 1 || !strings.Contains(s, `"detailString":"500 m without a rest"`) || !strings.Contains(s, `"lifecycleStatus":"active"`) || !strings.Contains(s, `"startDate":"2026-11-22"`) {
		t.Fatalf("goals: %s", s)
	}
	// Each resource's Provenance names the file, its meta.source the row.
	e.Origin(t, "ServiceRequest", "alice-ref", "physio", "therapy-sample.csv", "2")
	e.Origin(t, "Goal", goals[0]["id"].(string), "physio", "therapy-sample.csv", "3")
	e.Origin(t, "Patient", "alice", "physio", "therapy-sample.csv", "2")
	before := map[string]int{}
	for _, rt := range []string{"Patient", "ServiceRequest", "Goal", "Provenance", "Task"} {
		before[rt] = e.Versions(t, rt)
	}
	sum, report, err = e.importFile(t, "therapy-sample.csv", data, therapy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := (mapping.Summary{Rows: 4, Unchanged: 2, Held: 1, Rejected: 1}); sum != want {
		t.Fatalf("second import: %v, want %v\n%s", sum, want, report)
	}
	for rt, n := range before {
		if got := e.Versions(t, rt); got != n {
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
