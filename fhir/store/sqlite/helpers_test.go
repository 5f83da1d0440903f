package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// openTemp opens a store with the default options in the test's temporary
// directory, closed when the test ends.
func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "crs.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// queryPlan is the detail column of SQLite's EXPLAIN QUERY PLAN for query
// with args on the store's read pool, one step a line.
func queryPlan(t testing.TB, s *Store, query string, args ...any) []string {
	t.Helper()
	rows, err := s.read.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// putVersion stores res, a resource with an id, as its version vid, written
// by method, with the search values reg extracts.
func putVersion(ctx context.Context, tx store.Tx, reg *fsearch.Registry, vid int, method, res string) error {
	obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
	if err != nil {
		return err
	}
	index, err := reg.Extract(fhir.ResourceType(obj), obj)
	if err != nil {
		return err
	}
	return tx.Put(ctx, store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: vid, LastUpdated: time.Now(), Method: method, Body: []byte(res)}, index)
}
