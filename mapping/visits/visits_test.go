package visits_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"crs/auth"
	"crs/mapping"
	"crs/mapping/mappingtest"
	"crs/mapping/visits"
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

func (e *env) importFile(t testing.TB, name string, data []byte, opt visits.Options) (mapping.Summary, string, error) {
	t.Helper()
	return e.ImportFile(t, e.provider, "visits", "VN1A2", name, data, func(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, rep *mapping.Report) error {
		return visits.Import(ctx, door, run, r, opt, rep)
	})
}

// TestSampleVisits: delivered, completed and missed visits become Encounters
// on Alice's episode (strict profiles), the client reference is linked on the
// way, an unknown client is held, a visit before the episode is rejected; a
// second import changes nothing.
func TestSampleVisits(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/visits-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	sum, report, err := e.importFile(t, "visits-sample.csv", data, visits.Options{})
	if err != nil {
		t.Fatal(err, report)
	}
	if want := (mapping.Summary{Rows: 5, Created: 3, Updated: 1, Held: 1, Rejected: 1}); sum != want {
		t.Fatalf("first import: %v, want %v\n%s", sum, want, report)
	}
	if !strings.Contains(report, "6,Planned_Start,rejected,a visit for a person with no episode") {
		t.Errorf("report:\n%s", report)
	}
	encs := e.Search(t, "Encounter", "episode-of-care=EpisodeOfCare/alice-ep&_count=50")
	if len(encs) != 3 {
		t.Fatalf("encounters: %d", len(encs))
	}
	all := mappingtest.JSON(encs)
	for _, w := range []string{`"code":"home-assessment"`, `"code":"missed"`, `"status":"cancelled"`, `"start":"2026-11-21T14:10:00Z"`, `"value":"K15"`, `"code":"HH"`} {
		if !strings.Contains(all, w) {
			t.Errorf("want %s in %s", w, all)
		}
	}
	// Every resource the import wrote has its Provenance (one for the
	// transaction's creates, one for its updates) and its row (meta.source).
	lines := map[string]string{"V-1": "2", "V-2": "3", "V-3": "4"}
	var created map[string]any
	for _, enc := range encs {
		visit := enc["identifier"].([]any)[0].(map[string]any)["value"].(string)
		p := e.Origin(t, "Encounter", enc["id"].(string), "agency", "visits-sample.csv", lines[visit])
		if created == nil {
			created = p
		} else if p["id"] != created["id"] {
			t.Errorf("the visits of one transaction have different Provenances: %v and %v", p["id"], created["id"])
		}
	}
	if n := len(created["target"].([]any)); n != 3 || !strings.Contains(mappingtest.JSON(created), `"code":"CREATE"`) {
		t.Errorf("the Provenance of the created visits: %d targets, want 3: %v", n, created)
	}
	if p := e.Origin(t, "Patient", "alice", "agency", "visits-sample.csv", "2"); !strings.Contains(mappingtest.JSON(p), `"code":"UPDATE"`) {
		t.Errorf("the Provenance of the linked Patient: %v", p)
	}
	if a := e.Search(t, "Patient", "identifier=https://community-recovery.example.org/fhir/Id/provider-client/VN1A2|C-77"); len(a) != 1 || a[0]["id"] != "alice" {
		t.Fatalf("client reference link: %v", a)
	}
	before := map[string]int{}
	for _, rt := range []string{"Patient", "Encounter", "Provenance", "Task"} {
		before[rt] = e.Versions(t, rt)
	}
	sum, report, err = e.importFile(t, "visits-sample.csv", data, visits.Options{})
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

// TestColumnMap: another system's column names, given as data.
func TestColumnMap(t *testing.T) {
	e := newEnv(t)
	cols, err := visits.ParseColumnMap([]byte(`{"Visit_ID":"CallRef","Client_Reference":"ServiceUserID","Planned_Start":"ScheduledStart","Status":"CallStatus","NHS_Number":"NHSNo"}`))
	if err != nil {
		t.Fatal(err)
	}
	data := "CallRef,ServiceUserID,NHSNo,ScheduledStart,CallStatus\nX-1,S-1,9000000009,2026-11-22T09:00:00Z,Cancelled\n"
	sum, report, err := e.importFile(t, "other.csv", []byte(data), visits.Options{Columns: cols})
	if err != nil || sum.Created != 1 {
		t.Fatal(err, sum, report)
	}
	if _, err := visits.ParseColumnMap([]byte(`{"Shoe":"x"}`)); err == nil {
		t.Fatal("an unknown field in a column map was accepted")
	}
	if _, _, err := e.importFile(t, "default.csv", []byte(data), visits.Options{}); err == nil || !strings.Contains(err.Error(), "missing column(s) Visit_ID, Client_Reference, Planned_Start, Status") {
		t.Fatalf("default columns on another system's file: %v", err)
	}
}

// FuzzVisits: any file gives a summary, a report or a file error, never a
// panic.
func FuzzVisits(f *testing.F) {
	data, err := os.ReadFile("testdata/visits-sample.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte("Visit_ID,Client_Reference,Planned_Start,Status\nV,C,31/12/2026 25:00,delivered\n"))
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = e.importFile(t, "fuzz.csv", data, visits.Options{DryRun: true})
	})
}

// BenchmarkVisitsImport: visit rows into SQLite in-process through the engine
// as the care provider (strict profiles, policy, audit), each visit an
// Encounter with its Provenance.
func BenchmarkVisitsImport(b *testing.B) {
	const rows = 1000
	e := newEnv(b)
	files := make([][]byte, b.N)
	for i := range files {
		var s strings.Builder
		s.WriteString("Visit_ID,Client_Reference,NHS_Number,Carer_IDs,Planned_Start,Actual_Start,Actual_End,Status\n")
		for r := 0; r < rows; r++ {
			fmt.Fprintf(&s, "B-%d-%d,C-77,9000000009,K12,2026-11-22 08:00,2026-11-22 08:05,2026-11-22 08:34,Delivered\n", i, r)
		}
		files[i] = []byte(s.String())
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), mappingtest.CPUTime()
	for i := 0; i < b.N; i++ {
		sum, report, err := e.importFile(b, "bench.csv", files[i], visits.Options{})
		if err != nil || sum.Created != rows {
			b.Fatal(err, sum, report)
		}
	}
	mappingtest.ReportRate(b, b.N*rows, start, cpu0)
}
