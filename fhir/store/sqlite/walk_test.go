package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// TestWalkEqualRun: a sorted walk whose pages end inside a run of equal sort
// values (a day's referrals, all authored at the same time) gives the
// driving set's pages and totals, whichever plan walks: the sort's index
// passing over the rows outside an intersection, or every row probed. The
// walk orders the index rows alone and probes only those the page reads
// (walk.go), so the order within a run (row id ascending) is the walk's own.
func TestWalkEqualRun(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	// 90 referrals over three days, 30 a day at the same minute: active when
	// i%3 != 0, performer prov(i%2); sr31 deleted after.
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 90; i++ {
			status := "active"
			if i%3 == 0 {
				status = "completed"
			}
			res := fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"%s","intent":"plan","performer":[{"reference":"Organization/prov%d"}],"authoredOn":"2026-05-%02dT09:00:00Z"}`, i, status, i%2, 1+i%3)
			if err := putFirst(ctx, tx, reg, res); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, store.Version{Type: "ServiceRequest", ID: "sr31", VersionID: 2, LastUpdated: time.Now(), Method: "DELETE", Deleted: true}, nil)
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		query string
		want  string // the plan's start
	}{
		{"status=active&performer=Organization/prov1&_sort=-authored&_count=4", "drive: intersection of status (59 rows) and performer (44 rows), 29 rows, index of _sort authored descending"},
		{"status=active&performer=Organization/prov0&_sort=authored&_count=7", "drive: intersection of status (59 rows) and performer (45 rows), 30 rows, index of _sort authored,"},
		{"status=active&_sort=-authored&_count=6", "walk: index of _sort authored descending"},
		{"performer=Organization/prov1&_sort=authored&_count=5", "walk: index of _sort authored,"},
	} {
		q := parseQuery(t, reg, "ServiceRequest", c.query)
		q.Total = fhir.TotalNone
		checkPlanAgainstDrivingSet(t, s, c.query, q, 4, c.want, []int{0, 10, 100})
	}
}
