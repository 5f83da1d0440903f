package sqlite

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// countTo is a statement that runs as long as its argument says.
const countTo = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT COUNT(*) FROM c`

// TestStmtCacheInterrupted: a cached statement interrupted by its context's
// deadline (SQLite's interrupt) answers correctly when it runs again, on the
// read pool and on the writer's connection, and stays one cache entry.
func TestStmtCacheInterrupted(t *testing.T) {
	s := openTemp(t)
	check := func(name string, c *stmtCache) {
		before := c.len()
		for round := range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			var n int
			err := c.QueryRowContext(ctx, countTo, 1_000_000_000).Scan(&n)
			cancel()
			if err == nil {
				t.Fatalf("%s round %d: a billion rows counted in 20ms (%d)", name, round, n)
			}
			if err := c.QueryRowContext(context.Background(), countTo, 1000+round).Scan(&n); err != nil || n != 1000+round {
				t.Fatalf("%s round %d: after an interrupt got %d, %v; want %d", name, round, n, err, 1000+round)
			}
		}
		if c.len() != before+1 {
			t.Errorf("%s: %d statements cached, want %d", name, c.len(), before+1)
		}
	}
	check("read pool", s.rq)
	if err := s.Write(context.Background(), func(store.Tx) error {
		check("writer", s.wq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestStmtCacheSearchAfterCancel: a search cancelled by its context, then run
// again, finds what it found before; a search in a write transaction sees the
// transaction's writes through the writer's cache.
func TestStmtCacheSearchAfterCancel(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	put := func(tx store.Tx, i int) error {
		res := fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","gender":"female","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"%d"}]}`, i, 9000000000+i)
		obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
		if err != nil {
			return err
		}
		index, err := reg.Extract("Patient", obj)
		if err != nil {
			return err
		}
		return tx.Put(ctx, store.Version{Type: "Patient", ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}, index)
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := range 300 {
			if err := put(tx, i); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	query := func(s string) *fhir.Query {
		var raw []fhir.RawParam
		for _, part := range strings.Split(s, "&") {
			name, value, _ := strings.Cut(part, "=")
			raw = append(raw, fhir.RawParam{Name: name, Value: value})
		}
		q, err := reg.ParseQuery("Patient", raw, fsearch.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		q.Total = fhir.TotalAccurate
		return q
	}
	ids := func(r *store.SearchResult) string {
		var out []string
		for _, m := range r.Matches {
			out = append(out, m.ID)
		}
		return strings.Join(out, ",")
	}
	q := query("gender=female&_sort=-identifier&_count=5")
	want, err := s.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if want.Total != 300 || ids(want) != "p299,p298,p297,p296,p295" {
		t.Fatalf("found %d: %s", want.Total, ids(want))
	}
	cached := s.rq.len()
	for range 3 {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Search(cctx, q); err == nil {
			t.Fatal("a cancelled search answered")
		}
		got, err := s.Search(ctx, q)
		if err != nil || got.Total != want.Total || ids(got) != ids(want) {
			t.Fatalf("after a cancelled search: %v, %d %s; want %d %s", err, got.Total, ids(got), want.Total, ids(want))
		}
	}
	if s.rq.len() != cached {
		t.Errorf("the same search cached %d statements, then %d", cached, s.rq.len())
	}
	// Inside a write: the new patient is seen by the writer's statements, and
	// not by the read pool's until the commit.
	if err := s.Write(ctx, func(tx store.Tx) error {
		if err := put(tx, 999); err != nil {
			return err
		}
		for range 2 {
			got, err := tx.Search(ctx, query("identifier=9000000999"))
			if err != nil {
				return err
			}
			if ids(got) != "p999" {
				return fmt.Errorf("in the transaction found %q", ids(got))
			}
		}
		got, err := s.Search(ctx, query("identifier=9000000999"))
		if err != nil || ids(got) != "" {
			return fmt.Errorf("outside the transaction found %q, %v", ids(got), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s.wq.len() == 0 {
		t.Error("the writer's cache is empty after BEGIN, a search and COMMIT")
	}
	s.Close()
	if s.rq.len() != 0 || s.wq.len() != 0 {
		t.Errorf("after Close %d read and %d writer statements cached", s.rq.len(), s.wq.len())
	}
}

// TestStmtCacheEviction: a statement evicted while its rows are open keeps
// answering until they close, on the read pool (database/sql defers the close)
// and on the writer's connection (the cache retires it until release); many
// readers sharing a small cache get their own answers.
func TestStmtCacheEviction(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	series := func(k int) string {
		return fmt.Sprintf(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT x * %d FROM c`, k)
	}
	evict := func(name string, c *stmtCache) {
		rows, err := c.QueryContext(ctx, series(1), 100)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		sum := 0
		for i := 0; rows.Next(); i++ {
			var x int
			if err := rows.Scan(&x); err != nil {
				t.Fatal(err)
			}
			sum += x
			if i == 10 {
				// Evict series(1) while its rows are open.
				for k := 2; k < 2+c.max+2; k++ {
					var y int
					if err := c.QueryRowContext(ctx, series(k), 1).Scan(&y); err != nil || y != k {
						t.Fatalf("%s: series %d: %d, %v", name, k, y, err)
					}
				}
			}
		}
		if err := rows.Err(); err != nil || sum != 5050 {
			t.Fatalf("%s: an evicted statement's rows summed %d, %v; want 5050", name, sum, err)
		}
		if c.len() != c.max {
			t.Errorf("%s: %d statements cached, want %d", name, c.len(), c.max)
		}
	}
	small := newStmtCache(s.read, 4, false)
	defer small.close()
	evict("read pool", small)
	if err := s.Write(ctx, func(store.Tx) error {
		small := newStmtCache(s.wq.db, 4, true)
		defer small.close()
		evict("writer", small)
		if len(small.retired) == 0 {
			t.Error("the writer's cache closed evicted statements during the transaction")
		}
		small.release()
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				k, n := 1+(g+i)%7, 1+i%5
				rows, err := small.QueryContext(ctx, series(k), n)
				if err != nil {
					t.Error(err)
					return
				}
				sum := 0
				for rows.Next() {
					var x int
					_ = rows.Scan(&x)
					sum += x
				}
				rows.Close()
				if want := k * n * (n + 1) / 2; sum != want {
					t.Errorf("series %d to %d: %d, want %d", k, n, sum, want)
				}
			}
		}()
	}
	wg.Wait()
}
