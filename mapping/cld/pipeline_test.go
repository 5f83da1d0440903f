package cld_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"crs/mapping"
	"crs/mapping/cld"
	"crs/mapping/mappingtest"
)

// slowDoor writes each transaction late, so that an importer that looked up
// its next batch before the write it depends on was done would certainly see
// the record as it was before the write.
type slowDoor struct {
	mapping.Door
	delay time.Duration
}

func (d slowDoor) Transaction(ctx context.Context, entries []mapping.Entry) ([]mapping.EntryResult, error) {
	time.Sleep(d.delay)
	return d.Door.Transaction(ctx, entries)
}

// TestPipelinedBatchesOfOnePerson imports the sample one row a batch, each
// batch written while the next is mapped, through a door that writes late:
// the person's later rows (the service after the request, the review that
// matches by the LA id the first row linked and ends the episode the service
// made) wait for the write of the rows before them, and the outcome is the
// one of the same batches written one after the other (the code before the
// pipeline gave this summary).
func TestPipelinedBatchesOfOnePerson(t *testing.T) {
	e := newEnv(t)
	data, err := os.ReadFile("testdata/cld-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	door := slowDoor{Door: &mapping.EngineDoor{Engine: e.Engine, Principal: e.council}, delay: 30 * time.Millisecond}
	org, err := mapping.FindOrganization(ctx, door, "WCC01")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep := mapping.NewReport(&out)
	err = cld.Import(ctx, door, e.run("cld-sample.csv", org), bytes.NewReader(data), cld.Options{LACode: "E10000031", BatchRows: 1}, rep)
	if ferr := rep.Flush(); err != nil || ferr != nil {
		t.Fatal(err, ferr)
	}
	// Alice's Patient and episode are written by two batches each; a third
	// names them unchanged.
	if want := (mapping.Summary{Rows: 6, Created: 2, Updated: 2, Unchanged: 3, Held: 1, Skipped: 3}); rep.Summary != want {
		t.Fatalf("one row a batch: %v, want %v\n%s", rep.Summary, want, out.String())
	}
	eps := e.Search(t, "EpisodeOfCare", "patient=Patient/alice")
	if len(eps) != 1 || eps[0]["status"] != "finished" || !strings.Contains(mappingtest.JSON(eps[0]), `"code":"independent"`) {
		t.Fatalf("episode: %v", eps)
	}
	// Every line's outcome is reported once.
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")[1:]
	if len(lines) != 4 {
		t.Fatalf("report: %q", lines)
	}
	// Again: nothing created; the request the first run skipped (its
	// episode came later in the file) is linked now, as one batch at a time
	// did before the pipeline.
	if sum, report, err := e.importFile(t, "cld-sample.csv", data, cld.Options{BatchRows: 1}); err != nil || sum != (mapping.Summary{Rows: 6, Updated: 2, Unchanged: 5, Held: 1, Skipped: 3}) {
		t.Fatalf("again: %v %v\n%s", sum, err, report)
	}
}
