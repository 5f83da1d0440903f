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

// TestPlannerDriver checks which parameter drives a search: the one that finds
// fewest rows, chains and _has included, whatever their order in the query.
func TestPlannerDriver(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	var puts []func(store.Tx) error
	add := func(res string) {
		obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		index, err := reg.Extract(fhir.ResourceType(obj), obj)
		if err != nil {
			t.Fatal(err)
		}
		v := store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}
		puts = append(puts, func(tx store.Tx) error { return tx.Put(ctx, v, index) })
	}
	// 40 people, 3 of them with organisation o1; 1,200 active care plans and
	// goals spread over them, so "status=active" saturates the first sample.
	for i := 0; i < 40; i++ {
		org := "o2"
		if i < 3 {
			org = "o1"
		}
		add(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","managingOrganization":{"reference":"Organization/%s"}}`, i, org))
	}
	for i := 0; i < 1200; i++ {
		add(fmt.Sprintf(`{"resourceType":"CarePlan","id":"cp%d","status":"active","intent":"plan","subject":{"reference":"Patient/p%d"}}`, i, i%40))
		add(fmt.Sprintf(`{"resourceType":"Goal","id":"g%d","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"Patient/p%d"}}`, i, i%40))
	}
	// 300 draft plans: "intent=plan" (1,500) and "status=active" (1,200) both
	// saturate the first sample; the second tells them apart, counting the
	// later one only past the fewest found so far.
	for i := 0; i < 300; i++ {
		add(fmt.Sprintf(`{"resourceType":"CarePlan","id":"draft%d","status":"draft","intent":"plan","subject":{"reference":"Patient/p%d"}}`, i, i%40))
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		for _, put := range puts {
			if err := put(tx); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		typ, query string
		want       int
	}{
		{"CarePlan", "status=active&subject:Patient.organization=Organization/o1", 1},
		{"CarePlan", "subject:Patient.organization=Organization/o1&status=active", 0},
		{"Patient", "_has:Goal:subject:lifecycle-status=active&organization=Organization/o1", 1},
		{"Patient", "organization=Organization/o2&_has:Goal:subject:lifecycle-status=active", 0},
		{"CarePlan", "status:not=active&subject=Patient/p1", 1},
		{"CarePlan", "intent=plan&status=active", 1},
		{"CarePlan", "status=active&intent=plan", 0},
	} {
		q := parseQuery(t, reg, c.typ, c.query)
		pl := &planner{ctx: ctx, db: s.read}
		got, err := pl.driver(c.typ, q.Params)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s?%s: parameter %d drives, want %d", c.typ, c.query, got, c.want)
		}
	}
	// A total bounded by a limit, counted through a chain's own driver
	// (chainTotal), equals the matches counted page by page.
	for _, c := range []struct{ typ, query string }{
		{"CarePlan", "status=active&subject:Patient.organization=Organization/o1"},
		{"CarePlan", "subject:Patient.organization=Organization/o2&status=active"},
		{"CarePlan", "subject:Patient.organization=Organization/o1&status=draft"},
		{"CarePlan", "subject:Patient.organization=Organization/o2&status=completed"},
		{"Goal", "subject:Patient.organization=Organization/o1"},
		{"Goal", "subject:Patient.organization=Organization/o2&lifecycle-status=cancelled"},
	} {
		q := parseQuery(t, reg, c.typ, c.query)
		q.Total, q.Count = fhir.TotalNone, 500
		all := len(allPages(t, s, q, never))
		for _, limit := range []int{1, 20, 89, 90, 91, 1000, 5000} {
			counted := *q
			counted.Total, counted.TotalLimit, counted.Count = fhir.TotalAccurate, limit, 0
			res, err := search(ctx, s.read, &counted, never)
			if err != nil {
				t.Fatal(err)
			}
			want := all
			if all >= limit {
				want = -1
			}
			if res.Total != want {
				t.Errorf("%s?%s with a total limit of %d: total %d, want %d (%d matches)", c.typ, c.query, limit, res.Total, want, all)
			}
		}
	}
}

// TestPlanChoice checks which plan serves a page, and that the walk and the
// driving set give the same pages: a small driving set is built; from walkFrom
// rows a page walks the sort key's index or the type's rows in id order.
func TestPlanChoice(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 30; i++ {
			res := fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"active","intent":"plan","subject":{"reference":"Patient/p%d"},"authoredOn":"2026-05-%02dT09:00:00Z"}`, i, i%3, 1+i%28)
			obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
			if err != nil {
				return err
			}
			index, err := reg.Extract("ServiceRequest", obj)
			if err != nil {
				return err
			}
			if err := tx.Put(ctx, store.Version{Type: "ServiceRequest", ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}, index); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		query    string
		walkFrom int
		want     string
	}{
		{"status=active&_sort=-authored&_count=5", sampleLimit, "drive: driving set status, 30 rows"},
		{"status=active&_sort=-authored&_count=5", 10, "walk: index of _sort authored descending, 6 rows walked of a budget of 30"},
		// Unsorted, a driver whose index rows are in row id order (one typed
		// reference) is walked itself; status (no system) is not.
		{"status=active&subject=Patient/p1&_count=2", 5, "walk: type ServiceRequest in row id order, 8 rows walked of a budget of 30"},
		{"subject=Patient/p1&status=active&_count=3", 5, "walk: index rows of subject in row id order, 4 rows walked of a budget of unbounded"},
		{"subject=Patient/p1&status=active&_count=20", 5, "walk: index rows of subject in row id order, 10 rows walked of a budget of unbounded"},
		{"status=active&_count=5", 10, "drive: driving set status, the only condition, not sampled"},
		{"subject=Patient/p1&status=active&_count=50", 5, "walk: index rows of subject in row id order, 10 rows walked of a budget of unbounded"},
		{"status:not=active&_count=5", 10, "walk: type ServiceRequest in row id order, 30 rows walked of a budget of unbounded"},
		{"_sort=authored&_count=2", sampleLimit, "walk: index of _sort authored, 3 rows walked of a budget of unbounded"},
		{"_sort=status,authored&_count=2", sampleLimit, "walk: index of _sort status (then 1 more keys per run of equal values), 3 rows walked of a budget of unbounded"},
		{"_sort=status,-authored&subject=Patient/p1&_count=5", 5, "walk: index of _sort status (then 1 more keys per run of equal values), 10 rows walked of a budget of 10, then drive from there"},
		// Sorted walks probe the small sets sampled as materialised lists.
		{"subject=Patient/p1&status=active&_sort=-authored&_count=2", 5, "drive: intersection of subject (10 rows) and status (30 rows), 10 rows, index of _sort authored descending, 3 rows walked of a budget of unbounded passing over the rest"},
		{"subject=Patient/p2&status=active&_sort=authored&_count=4", 5, "drive: intersection of subject (10 rows) and status (30 rows), 10 rows, index of _sort authored, 5 rows walked of a budget of unbounded passing over the rest"},
		{"_sort=status,-authored&subject=Patient/p1&_count=2", 5, "walk: index of _sort status (then 1 more keys per run of equal values), 9 rows walked of a budget of 10"},
	} {
		q := parseQuery(t, reg, "ServiceRequest", c.query)
		q.Total = fhir.TotalNone
		res, err := search(ctx, s.read, q, c.walkFrom)
		if err != nil {
			t.Fatal(err)
		}
		if res.Plan != c.want {
			t.Errorf("%s (walk from %d): plan %q, want %q", c.query, c.walkFrom, res.Plan, c.want)
		}
		base, err := search(ctx, s.read, q, never)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids(res), res.Next) != fmt.Sprint(ids(base), base.Next) {
			t.Errorf("%s: walk gives %v %q, driving set %v %q", c.query, ids(res), res.Next, ids(base), base.Next)
		}
		// Every later page too: each page's plan continues from the cursor.
		all := allPages(t, s, q, never)
		if got := allPages(t, s, q, c.walkFrom); fmt.Sprint(got) != fmt.Sprint(all) {
			t.Errorf("%s: all pages with the plan give %v, with the driving set %v", c.query, got, all)
		}
		// Bundle.total, whether the first page holds every match (then it is
		// that page's length, not counted) or not, on the first page and the
		// second.
		// With a total limit too: below, at and past the number of matches
		// (a first page in row id order counts only the matches after it,
		// or none when it reaches the limit itself: pagetotal.go).
		counted := *q
		counted.Total = fhir.TotalAccurate
		for _, limit := range []int{0, 2, q.Count, q.Count + 1, q.Count + 2, len(all), len(all) + 1, 100} {
			counted.TotalLimit = limit
			want := len(all)
			if limit > 0 && want >= limit {
				want = -1
			}
			for _, cur := range []string{"", res.Next} {
				counted.Cursor = cur
				r, err := search(ctx, s.read, &counted, c.walkFrom)
				if err != nil {
					t.Fatal(err)
				}
				if r.Total != want {
					t.Errorf("%s (cursor %q, total limit %d): total %d, want %d", c.query, cur, limit, r.Total, want)
				}
				if res.Next == "" {
					break
				}
			}
		}
	}
}

// allPages follows q's pages from the first, each planned with walkFrom, and
// returns the ids of every page in order.
func allPages(t *testing.T, s *Store, q *fhir.Query, walkFrom int) []string {
	t.Helper()
	page := *q
	page.Cursor = ""
	var out []string
	for i := 0; i < 100; i++ {
		res, err := search(context.Background(), s.read, &page, walkFrom)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ids(res)...)
		if res.Next == "" {
			return out
		}
		page.Cursor = res.Next
	}
	t.Fatalf("%v: more than 100 pages", q)
	return nil
}

func ids(res *store.SearchResult) []string {
	var out []string
	for _, v := range res.Matches {
		out = append(out, v.ID)
	}
	return out
}

// TestWalkLowYield: a sorted walk that finds no match at the rate it needs
// hands over to the driving set early (here after 67 of its budget of 200
// rows: "subject=Patient/p1" and "status:not=completed" never meet), with the
// same pages as the driving set alone.
func TestWalkLowYield(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 600; i++ {
			status := "active"
			if i%3 == 1 {
				status = "completed"
			}
			res := fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"%s","intent":"plan","subject":{"reference":"Patient/p%d"},"authoredOn":"2026-05-%02dT09:00:00Z"}`, i, status, i%3, 1+i%28)
			obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
			if err != nil {
				return err
			}
			index, err := reg.Extract("ServiceRequest", obj)
			if err != nil {
				return err
			}
			if err := tx.Put(ctx, store.Version{Type: "ServiceRequest", ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}, index); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ query, want string }{
		// Two lookups that never meet are proven so by their intersection
		// (intersect.go); a low-yield walk still hands over early when no
		// second lookup can be intersected (a negation cannot).
		{"subject=Patient/p1&status:not=completed&_sort=-authored&_count=2", "walk: index of _sort authored descending, 67 rows walked of a budget of 200, then drive from there"},
		{"subject=Patient/p1&status=active&_sort=-authored&_count=2", "drive: intersection of subject (200 rows) and status (400 rows), 0 rows"},
		{"subject=Patient/p2&status=active&_sort=-authored&_count=2", "drive: intersection of subject (200 rows) and status (400 rows), 200 rows, index of _sort authored descending, 3 rows walked of a budget of unbounded passing over the rest"},
	} {
		q := parseQuery(t, reg, "ServiceRequest", c.query)
		q.Total = fhir.TotalNone
		res, err := search(ctx, s.read, q, 5)
		if err != nil {
			t.Fatal(err)
		}
		if res.Plan != c.want {
			t.Errorf("%s: plan %q, want %q", c.query, res.Plan, c.want)
		}
		if got, want := allPages(t, s, q, 5), allPages(t, s, q, never); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: all pages with the plan give %v, with the driving set %v", c.query, got, want)
		}
	}
}
