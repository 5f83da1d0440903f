package sqlite

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// TestIntersectPlan checks the plan that intersects two large lookups (a
// provider's referrals awaiting a start): it serves a page when the driving
// set is one to walk and the intersection is smaller, and every page and
// Bundle.total (accurate and bounded, on the first page and later ones) equals
// the driving-set plan's, with a deleted match left out.
func TestIntersectPlan(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	// 60 referrals: active when i%10 == 0 (6), performer prov(i%4), subject
	// p(i%3); sr40 (active, prov0) is deleted after. Then 5 active ones of
	// prov3 with no authoredOn (sorted last, absent from the sort's index).
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 60; i++ {
			status := "completed"
			if i%10 == 0 {
				status = "active"
			}
			res := fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"%s","intent":"plan","subject":{"reference":"Patient/p%d"},"performer":[{"reference":"Organization/prov%d"}],"authoredOn":"2026-05-%02dT09:00:00Z"}`, i, status, i%3, i%4, 1+i%28)
			if err := putFirst(ctx, tx, reg, res); err != nil {
				return err
			}
		}
		for i := 60; i < 65; i++ {
			res := fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"active","intent":"plan","subject":{"reference":"Patient/p%d"},"performer":[{"reference":"Organization/prov3"}]}`, i, i%3)
			if err := putFirst(ctx, tx, reg, res); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, store.Version{Type: "ServiceRequest", ID: "sr40", VersionID: 2, LastUpdated: time.Now(), Method: "DELETE", Deleted: true}, nil)
	}); err != nil {
		t.Fatal(err)
	}
	const walkFrom = 4
	for _, c := range []struct {
		query string
		want  string // the plan's start
	}{
		// prov1's referrals are odd-numbered: none is active.
		{"status=active&performer=Organization/prov1&_sort=-authored&_count=2", "drive: intersection of status (10 rows) and performer (15 rows), 0 rows"},
		{"status=active&performer=Organization/prov2&_sort=-authored&_count=2", "drive: intersection of status (10 rows) and performer (15 rows), 3 rows"},
		{"status=active&performer=Organization/prov0&_sort=authored&_count=1", "drive: intersection of status (10 rows) and performer (14 rows), 2 rows"},
		// Unsorted, the partner is intersected only when a sample counted it
		// (here performer drove, small enough that status was not sampled).
		{"performer=Organization/prov2&status=active&_count=2", "walk: index rows of performer in row id order"},
		{"status=active&performer=Organization/prov2&subject=Patient/p1&_sort=-authored,_id&_count=1", "drive: intersection of status (10 rows) and performer (15 rows), 3 rows"},
		// A large intersection: a sorted page walks the sort's index passing
		// over every other row; an unsorted one walks as before (the total
		// is the intersection's).
		{"status=completed&performer=Organization/prov1&_sort=-authored&_count=2", "drive: intersection of status (54 rows) and performer (15 rows), 15 rows, index of _sort authored descending, 3 rows walked"},
		{"status=completed&performer=Organization/prov1&_count=2", "walk: "},
		// The sort's index runs out before the page fills: every candidate.
		{"status=active&performer=Organization/prov3&_sort=-authored&_count=2", "drive: intersection of status (10 rows) and performer (20 rows), 5 rows$"},
		{"status=active&performer=Organization/prov3&subject=Patient/p1&_sort=authored&_count=1", "drive: intersection of status (10 rows) and performer (20 rows), 5 rows$"},
		// One set small enough to build: the driving set, as before.
		{"status=active&subject=Patient/p1&_count=2", "drive: driving set status"},
	} {
		q := parseQuery(t, reg, "ServiceRequest", c.query)
		q.Total = fhir.TotalNone
		from := walkFrom
		if strings.HasPrefix(c.want, "drive: driving set") {
			from = 11
		}
		checkPlanAgainstDrivingSet(t, s, c.query, q, from, c.want, []int{0, 2, 3})
	}
}

// checkPlanAgainstDrivingSet runs q, parsed from query, (its total off) with the walk allowed from
// from rows and requires: the plan to start with want (to equal it when want
// ends in "$"), every page to equal the driving-set plan's, and the total, at
// each of limits (0: unbounded) on the first page and the next, to be the
// driving set's (-1 where it reaches the limit).
func checkPlanAgainstDrivingSet(t *testing.T, s *Store, query string, q *fhir.Query, from int, want string, limits []int) {
	t.Helper()
	ctx := context.Background()
	res, err := search(ctx, s.read, q, from)
	if err != nil {
		t.Fatal(err)
	}
	if prefix, whole := strings.CutSuffix(want, "$"); !strings.HasPrefix(res.Plan, prefix) || (whole && res.Plan != prefix) {
		t.Errorf("%s: plan %q, want %q…", query, res.Plan, want)
	}
	all := allPages(t, s, q, never)
	if got := allPages(t, s, q, from); fmt.Sprint(got) != fmt.Sprint(all) {
		t.Errorf("%s: all pages with the plan give %v, with the driving set %v", query, got, all)
	}
	for _, limit := range limits {
		counted := *q
		counted.Total, counted.TotalLimit = fhir.TotalAccurate, limit
		wantTotal := len(all)
		if limit > 0 && wantTotal >= limit {
			wantTotal = -1
		}
		for _, cur := range []string{"", res.Next} {
			counted.Cursor = cur
			r, err := search(ctx, s.read, &counted, from)
			if err != nil {
				t.Fatal(err)
			}
			if r.Total != wantTotal {
				t.Errorf("%s (cursor %q, total limit %d): total %d, want %d", query, cur, limit, r.Total, wantTotal)
			}
			if res.Next == "" {
				break
			}
		}
	}
}

// putFirst stores res, a resource with an id, as its first version with the
// search values reg extracts.
func putFirst(ctx context.Context, tx store.Tx, reg *fsearch.Registry, res string) error {
	return putVersion(ctx, tx, reg, 1, "POST", res)
}

// parseQuery parses qs ("a=1&b=2") as a search of typ.
func parseQuery(t testing.TB, reg *fsearch.Registry, typ, qs string) *fhir.Query {
	t.Helper()
	var raw []fhir.RawParam
	for _, part := range strings.Split(qs, "&") {
		name, value, _ := strings.Cut(part, "=")
		raw = append(raw, fhir.RawParam{Name: name, Value: value})
	}
	q, err := reg.ParseQuery(typ, raw, fsearch.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return q
}
