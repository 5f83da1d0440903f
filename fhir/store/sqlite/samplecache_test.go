package sqlite

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// putReferrals stores n referrals sr<from>… : active when i is even,
// performer prov(i%4), subject p(i%100), authored on a day of May 2026.
func putReferrals(t *testing.T, s *Store, from, n int) {
	t.Helper()
	reg := fsearch.Default()
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := from; i < from+n; i++ {
			status := "completed"
			if i%2 == 0 {
				status = "active"
			}
			res := fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"%s","intent":"plan","subject":{"reference":"Patient/p%d"},"performer":[{"reference":"Organization/prov%d"}],"authoredOn":"2026-05-%02dT09:00:00Z"}`, i, status, i%100, i%4, 1+i%28)
			if err := putFirst(ctx, tx, reg, res); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// answer is every page's ids of q and its totals (unbounded and bounded at
// 5, on the first page), planned with walkFrom and the counts of stats.
func answer(t *testing.T, s *Store, q *fhir.Query, walkFrom int, stats *sampleCache) string {
	t.Helper()
	ctx := context.Background()
	out := ""
	for _, limit := range []int{0, 5} {
		page := *q
		page.Cursor, page.Total, page.TotalLimit = "", fhir.TotalAccurate, limit
		for i := 0; ; i++ {
			if i > 200 {
				t.Fatalf("%v: more than 200 pages", q)
			}
			res, err := searchStats(ctx, s.read, &page, walkFrom, stats)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				out += " total=" + strconv.Itoa(res.Total)
			}
			out += fmt.Sprint(ids(res))
			if res.Next == "" {
				break
			}
			page.Cursor = res.Next
		}
	}
	return out
}

// TestSampleCacheStaleCounts: the planner's cached counts only choose the
// plan. Every query's pages and totals are the same with no cache, with the
// counts it cached, and with each entry replaced by a count far off the
// truth (the least the cache keeps, exactly; "20,000 or more"; a million,
// exactly); and after the writes that empty the active referrals, with the
// entries made stale on purpose (still saying 1,000 or more) so that they
// are not invalidated.
func TestSampleCacheStaleCounts(t *testing.T) {
	s := openTemp(t)
	putReferrals(t, s, 0, 2400)
	reg := fsearch.Default()
	queries := []string{
		"status=active&performer=Organization/prov2&_count=100",
		"status=active&performer=Organization/prov0&_sort=-authored&_count=90",
		"status=completed&subject=Patient/p3&_count=5",
		"intent=plan&status=active&_count=300",
		"intent=plan&status=active&performer=Organization/prov1&_sort=authored&_count=40",
		"authored=ge2026-05-20&status=active&_count=200",
		"status=active&status:not=completed&_count=300",
	}
	perturbations := []func(sampleEntry) sampleEntry{
		func(e sampleEntry) sampleEntry { e.n, e.limit = cacheFrom, 1<<30; return e },
		func(e sampleEntry) sampleEntry { e.n, e.limit = sampleLimit*bigSample, sampleLimit*bigSample; return e },
		func(e sampleEntry) sampleEntry { e.n, e.limit = 1000000, 1<<30; return e },
	}
	changed := 0 // queries whose first page's plan a perturbation changed
	plan := func(q *fhir.Query, walkFrom int, stats *sampleCache) string {
		res, err := searchStats(context.Background(), s.read, q, walkFrom, stats)
		if err != nil {
			t.Fatal(err)
		}
		return res.Plan
	}
	check := func(stage string) {
		t.Helper()
		for _, walkFrom := range []int{sampleLimit, 50} {
			for _, qs := range queries {
				q := parseQuery(t, reg, "ServiceRequest", qs)
				want := answer(t, s, q, walkFrom, nil)
				stats := newSampleCache(s.keys)
				if got := answer(t, s, q, walkFrom, stats); got != want {
					t.Errorf("%s, %s (walk from %d), counts cached: %s, want %s", stage, qs, walkFrom, got, want)
				}
				if len(stats.entries) == 0 && stage == "as written" && walkFrom == sampleLimit {
					t.Errorf("%s: no count cached", qs)
				}
				uncached := plan(q, walkFrom, nil)
				for i, f := range perturbations {
					for k, e := range stats.entries {
						stats.entries[k] = f(e)
					}
					if plan(q, walkFrom, stats) != uncached {
						changed++
					}
					if got := answer(t, s, q, walkFrom, stats); got != want {
						t.Errorf("%s, %s (walk from %d), counts perturbed (%d): %s, want %s", stage, qs, walkFrom, i, got, want)
					}
				}
			}
		}
	}
	check("as written")
	// Every active referral deleted: status=active has no rows, but a
	// cached count planted fresh (as of the last write) says 20,000 or more.
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 2400; i += 2 {
			if err := tx.Put(ctx, store.Version{Type: "ServiceRequest", ID: "sr" + strconv.Itoa(i), VersionID: 2, LastUpdated: time.Now(), Method: "DELETE", Deleted: true}, nil); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("after deleting the active ones")
	if changed == 0 {
		t.Error("no perturbed count changed a plan: the test does not reach the cache")
	}
	t.Logf("%d plans changed by perturbed counts", changed)
	q := parseQuery(t, reg, "ServiceRequest", "status=active&performer=Organization/prov2&_count=7")
	if got := answer(t, s, q, sampleLimit, nil); got != " total=0[] total=0[]" {
		t.Errorf("after deleting the active ones: %s, want none", got)
	}
}

// TestSampleCacheBounds: a count under cacheFrom is never kept; a kept count
// serves smaller limits (and a larger one when it was exact), is dropped once
// its type has seen a tenth of it in writes (through the store's writer),
// not by writes to another type, and after maxSampleAge; the cache holds at
// most maxSamples entries.
func TestSampleCacheBounds(t *testing.T) {
	s := openTemp(t)
	putReferrals(t, s, 0, 2400)
	reg := fsearch.Default()
	ctx := context.Background()
	c := s.stats
	q := parseQuery(t, reg, "ServiceRequest", "status=active&performer=Organization/prov2&_count=7")
	if _, err := s.Search(ctx, q); err != nil {
		t.Fatal(err)
	}
	// status=active (1,200 rows) is kept; performer=prov2 (600) is not.
	var key string
	for k, e := range c.entries {
		if e.typ != "ServiceRequest" || e.n < cacheFrom {
			t.Errorf("kept %+v", e)
		}
		key = k
	}
	if len(c.entries) != 1 {
		t.Fatalf("%d entries kept, want 1 (status=active)", len(c.entries))
	}
	e := c.entries[key]
	if e.n != 1200 || e.limit != sampleLimit*bigSample {
		// the second sample, bounded by performer's 600 + 1, counts it to
		// 601 only, which is under cacheFrom: the first sample's 1,000 is kept.
		if e.n != sampleLimit || e.limit != sampleLimit {
			t.Fatalf("entry %+v, want status=active's first sample (1,000 or more)", e)
		}
	}
	for _, c2 := range []struct{ limit, want int }{{10, 10}, {sampleLimit, sampleLimit}} {
		if n, _, ok := c.get("ServiceRequest", key, c2.limit); !ok || n != c2.want {
			t.Errorf("get to %d: %d, %v; want %d", c2.limit, n, ok, c2.want)
		}
	}
	if _, _, ok := c.get("ServiceRequest", key, sampleLimit+1); ok {
		t.Error("a count of 1,000 or more served a limit above 1,000")
	}
	c.put("ServiceRequest", "small", sampleLimit*bigSample, cacheFrom-1, 0)
	if _, ok := c.entries["small"]; ok {
		t.Error("a count under cacheFrom was kept")
	}
	c.put("ServiceRequest", "exact", sampleLimit*bigSample, 1500, c.writes["ServiceRequest"])
	if n, _, ok := c.get("ServiceRequest", "exact", 1<<20); !ok || n != 1500 {
		t.Errorf("exact count to a larger limit: %d, %v", n, ok)
	}
	// Writes to another type leave it; a tenth of its count in writes to
	// its own type drops it.
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 200; i++ {
			res := fmt.Sprintf(`{"resourceType":"Patient","id":"p%d"}`, i)
			if err := putFirst(ctx, tx, reg, res); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := c.get("ServiceRequest", key, 10); !ok {
		t.Error("writes to Patient dropped a ServiceRequest count")
	}
	putReferrals(t, s, 2400, e.n/driftShare)
	if _, _, ok := c.get("ServiceRequest", key, 10); !ok {
		t.Errorf("%d writes (a tenth of %d) dropped the count", e.n/driftShare, e.n)
	}
	putReferrals(t, s, 2400+e.n/driftShare, 1)
	if _, _, ok := c.get("ServiceRequest", key, 10); ok {
		t.Errorf("%d writes (past a tenth of %d) left the count", e.n/driftShare+1, e.n)
	}
	if _, ok := c.entries[key]; ok {
		t.Error("a stale entry was left in the cache")
	}
	// Age.
	now := time.Now()
	c.now = func() time.Time { return now }
	c.put("ServiceRequest", "aged", sampleLimit, sampleLimit, c.writes["ServiceRequest"])
	c.now = func() time.Time { return now.Add(maxSampleAge + time.Second) }
	if _, _, ok := c.get("ServiceRequest", "aged", 10); ok {
		t.Error("a count older than maxSampleAge served")
	}
	// Bounded: the oldest go first.
	c.now = time.Now
	for i := 0; i < maxSamples+50; i++ {
		c.put("Goal", "k"+strconv.Itoa(i), sampleLimit, sampleLimit, 0)
	}
	if len(c.entries) > maxSamples {
		t.Errorf("%d entries, more than %d", len(c.entries), maxSamples)
	}
	if _, _, ok := c.get("Goal", "k"+strconv.Itoa(maxSamples+49), 10); !ok {
		t.Error("the newest entry was evicted")
	}
}
