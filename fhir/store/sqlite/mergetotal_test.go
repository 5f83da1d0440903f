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

// TestMergeTotal checks the merged count of index runs against the matches
// the driving-set plan finds, counted from every row and from past a row,
// at limits below and past the count: with a deleted match, a match
// updated away, a resource holding one token twice (two displays), and a
// code with two systems, which is not one run and keeps the streamed count.
func TestMergeTotal(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	put := func(tx store.Tx, res string, vid int, deleted bool) error {
		obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
		if err != nil {
			return err
		}
		v := store.Version{Type: "ServiceRequest", ID: fhir.ID(obj), VersionID: vid, LastUpdated: time.Now(), Method: "PUT", Body: []byte(res), Deleted: deleted}
		var index []fhir.IndexValue
		if !deleted {
			if index, err = reg.Extract("ServiceRequest", obj); err != nil {
				return err
			}
		}
		return tx.Put(ctx, v, index)
	}
	sr := func(i int, status string) string {
		cat := map[int]string{
			0: `{"system":"http://a","code":"x"}`,
			1: `{"system":"http://b","code":"x"}`,
			2: `{"system":"http://a","code":"y","display":"one"},{"system":"http://a","code":"y","display":"two"}`,
			3: `{"system":"http://a","code":"z"}`,
		}[i%4]
		return fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"%s","intent":"plan","subject":{"reference":"Patient/p%d"},"category":[{"coding":[%s]}]}`, i, status, i%3, cat)
	}
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i := 0; i < 48; i++ {
			status := "active"
			if i%5 == 4 {
				status = "completed"
			}
			if err := put(tx, sr(i, status), 1, false); err != nil {
				return err
			}
		}
		if err := put(tx, sr(6, "completed"), 2, false); err != nil {
			return err
		}
		return put(tx, `{"resourceType":"ServiceRequest","id":"sr10"}`, 2, true)
	}); err != nil {
		t.Fatal(err)
	}
	rids := map[string]int64{}
	rows, err := s.read.QueryContext(ctx, `SELECT id, rid FROM current WHERE type = 'ServiceRequest'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var rid int64
		if err := rows.Scan(&id, &rid); err != nil {
			t.Fatal(err)
		}
		rids[id] = rid
	}
	rows.Close()
	for _, c := range []struct {
		query  string
		merged bool
	}{
		{"status=active&subject=Patient/p1", true},
		{"subject=Patient/p2&category=http://a|y", true},
		{"status=active&category=http://a|y&subject=Patient/p2", true},
		{"status=active&category=y", true},
		{"status=active&category=x", false},
		{"status=active&category=http://a|x", true},
		{"status=active&category=nothing", true},
		{"status=active&subject=p1", false},
		{"status=active,completed&subject=Patient/p1", false},
		{"status:not=active&subject=Patient/p1", false},
	} {
		q := parseQuery(t, reg, "ServiceRequest", c.query)
		q.Total = fhir.TotalNone
		all := allPages(t, s, q, never)
		for _, after := range []int64{0, rids["sr17"], rids["sr47"]} {
			want := 0
			for _, id := range all {
				if rids[id] > after {
					want++
				}
			}
			for _, limit := range []int{1, 3, 100} {
				got, ok, err := mergeTotal(ctx, s.read, q, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if ok != c.merged {
					t.Errorf("%s: merged %v, want %v", c.query, ok, c.merged)
				}
				if ok && got != min(want, limit) {
					t.Errorf("%s after row %d, limit %d: %d, want %d (%v)", c.query, after, limit, got, min(want, limit), all)
				}
			}
		}
	}
}
