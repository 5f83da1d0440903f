package sqlite

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// firstsFixture is n AuditEvent-like first versions with their search values.
func firstsFixture(n int) ([]store.Version, [][]fhir.IndexValue) {
	var vs []store.Version
	var index [][]fhir.IndexValue
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i := range n {
		id := fmt.Sprintf("ae-%03d", i)
		vs = append(vs, store.Version{Type: "AuditEvent", ID: id, VersionID: 1, LastUpdated: at.Add(time.Duration(i) * time.Millisecond),
			Method: "POST", Body: []byte(`{"resourceType":"AuditEvent","id":"` + id + `"}`)})
		index = append(index, []fhir.IndexValue{
			{Param: "_id", Type: fhir.TypeToken, Code: id},
			{Param: "action", Type: fhir.TypeToken, Code: []string{"R", "E"}[i%2]},
			{Param: "date", Type: fhir.TypeDate, Low: at.Add(time.Duration(i) * time.Millisecond), High: at.Add(time.Duration(i+1) * time.Millisecond)},
			{Param: "entity", Type: fhir.TypeReference, RefType: "Patient", RefID: fmt.Sprintf("p%d", i%7)},
		})
	}
	return vs, index
}

// TestPutFirstsIsPut: first versions stored with PutFirsts (more than one
// INSERT's worth, after other writes so that row ids do not start at 1)
// leave exactly the rows of versions, current and every index table that
// Put one by one leaves, and are read, searched and found last as Put's.
func TestPutFirstsIsPut(t *testing.T) {
	ctx := context.Background()
	vs, index := firstsFixture(maxFirstsPerInsert + 9)
	run := func(bulk bool) *Store {
		s := openTemp(t)
		// Earlier writes, one of them updated: versions and current ids differ.
		for vid := 1; vid <= 2; vid++ {
			v := store.Version{Type: "Patient", ID: "p1", VersionID: vid, LastUpdated: time.Unix(1700000000, 0), Method: "PUT", Body: []byte(`{"resourceType":"Patient","id":"p1"}`)}
			if err := s.Write(ctx, func(tx store.Tx) error {
				return tx.Put(ctx, v, []fhir.IndexValue{{Param: "_id", Type: fhir.TypeToken, Code: "p1"}})
			}); err != nil {
				t.Fatal(err)
			}
		}
		err := s.Write(ctx, func(tx store.Tx) error {
			if bulk {
				return tx.(*txn).PutFirsts(ctx, vs, index)
			}
			for i, v := range vs {
				if err := tx.Put(ctx, v, index[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bulk, single := run(true), run(false)
	for _, table := range append([]string{"versions", "current"}, indexTables...) {
		if got, want := dumpTable(t, bulk, table), dumpTable(t, single, table); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: with PutFirsts\n%q\nwith Put\n%q", table, got, want)
		}
	}
	v, err := bulk.Read(ctx, "AuditEvent", "ae-070")
	if err != nil || string(v.Body) != string(vs[70].Body) {
		t.Fatalf("read ae-070: %v %s", err, v.Body)
	}
	if err := bulk.Write(ctx, func(tx store.Tx) error {
		last, err := tx.Last(ctx, "AuditEvent")
		if err == nil && last.ID != vs[len(vs)-1].ID {
			t.Errorf("last AuditEvent %s, want %s", last.ID, vs[len(vs)-1].ID)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestPutFirstsConflict: a first version of a resource that exists fails
// as Put's would (Conflict), and the transaction leaves nothing of the batch.
func TestPutFirstsConflict(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	vs, index := firstsFixture(10)
	if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, vs[5], index[5]) }); err != nil {
		t.Fatal(err)
	}
	err := s.Write(ctx, func(tx store.Tx) error { return tx.(*txn).PutFirsts(ctx, vs, index) })
	if fhir.KindOf(err) != fhir.Conflict {
		t.Fatalf("PutFirsts over an existing resource: %v, want a conflict", err)
	}
	if n := countRows(t, s, "versions", "type = 'AuditEvent'"); n != 1 {
		t.Fatalf("%d AuditEvent versions after the failed batch, want the 1 stored before", n)
	}
	if n := countRows(t, s, "idx_token", "type = 'AuditEvent'"); n != 2 {
		t.Fatalf("%d AuditEvent token rows after the failed batch, want the 2 stored before", n)
	}
}
