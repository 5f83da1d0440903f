package cld_test

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/mapping"
	"crs/mapping/cld"
)

// jsonDoor is the in-process door as it was: each transaction encoded as a
// JSON Bundle and posted to the engine, which parses it back.
type jsonDoor struct{ *mapping.EngineDoor }

func (d jsonDoor) Transaction(ctx context.Context, entries []mapping.Entry) ([]mapping.EntryResult, error) {
	body, err := mapping.TransactionBundle(entries)
	if err != nil {
		return nil, err
	}
	b, err := d.Engine.Bundle(d.Context(ctx), body, engine.SearchOptions{Minimal: true})
	if err != nil {
		return nil, err
	}
	out := make([]mapping.EntryResult, len(b.Entry))
	for i, e := range b.Entry {
		out[i] = mapping.EntryResult{Status: e.Response.Status, Location: e.Response.Location}
	}
	return out, nil
}

// TestTreeDoorStoresWhatJSONDoorStores: the sample imported through the
// engine door (resources handed over as trees) leaves the same record, the
// same summary and the same report as through a door that posts each
// transaction as JSON.
func TestTreeDoorStoresWhatJSONDoorStores(t *testing.T) {
	data, err := os.ReadFile("testdata/cld-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	ids := regexp.MustCompile(`(Patient|EpisodeOfCare|Provenance|Task|Organization)/[A-Za-z0-9.-]+`)
	record := func(asJSON bool) (string, mapping.Summary, string) {
		e := newEnv(t)
		var door mapping.Door = &mapping.EngineDoor{Engine: e.Engine, Principal: e.council}
		if asJSON {
			door = jsonDoor{&mapping.EngineDoor{Engine: e.Engine, Principal: e.council}}
		}
		ctx := context.Background()
		org, err := mapping.FindOrganization(ctx, door, "WCC01")
		if err != nil {
			t.Fatal(err)
		}
		var report bytes.Buffer
		rep := mapping.NewReport(&report)
		if err := cld.Import(ctx, door, e.run("cld-sample.csv", org), bytes.NewReader(data), cld.Options{LACode: "E10000031"}, rep); err != nil {
			t.Fatal(err)
		}
		if err := rep.Flush(); err != nil {
			t.Fatal(err)
		}
		var all []string
		for _, rt := range []string{"Patient", "EpisodeOfCare", "Provenance", "Task"} {
			for _, r := range e.Search(t, rt, "_count=500") {
				delete(r, "id")
				delete(r, "meta")
				body, err := fhir.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, ids.ReplaceAllString(string(body), "$1/ID"))
			}
		}
		sort.Strings(all)
		return strings.Join(all, "\n"), rep.Summary, ids.ReplaceAllString(report.String(), "$1/ID")
	}
	wantRecord, wantSum, wantReport := record(true)
	gotRecord, gotSum, gotReport := record(false)
	if gotSum != wantSum || gotReport != wantReport {
		t.Fatalf("tree door: %v\n%s\nJSON door: %v\n%s", gotSum, gotReport, wantSum, wantReport)
	}
	if !strings.Contains(wantRecord, "LA-1001") || gotRecord != wantRecord {
		t.Fatalf("tree door stored:\n%s\nJSON door stored:\n%s", gotRecord, wantRecord)
	}
}
