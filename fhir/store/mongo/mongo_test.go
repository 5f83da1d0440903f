package mongo

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/mongo/mongotest"
	"crs/fhir/store/storetest"
)

// ferret returns a fresh database on the test process's FerretDB.
func ferret(t testing.TB) string { return mongotest.URI(t) }

// freshURI names a new database on the same server as uri.
func freshURI(uri string) string { return mongotest.Fresh(uri) }

func open(t testing.TB, uri string) *Store {
	t.Helper()
	s, err := Open(context.Background(), uri, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceFerretDB(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, ferret(t))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestConformanceMongoDB runs the suite against a real MongoDB when
// CRS_TEST_MONGODB_URI names one.
func TestConformanceMongoDB(t *testing.T) {
	base := os.Getenv("CRS_TEST_MONGODB_URI")
	if base == "" {
		t.Skip("CRS_TEST_MONGODB_URI is not set: no real MongoDB to check against here")
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, freshURI(base))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func put(t *testing.T, tx store.Tx, vid int, res string) {
	t.Helper()
	obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := search.Default().Extract(fhir.ResourceType(obj), obj)
	if err != nil {
		t.Fatal(err)
	}
	v := store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: vid, Method: "PUT", Body: []byte(res)}
	if err := tx.Put(context.Background(), v, idx); err != nil {
		t.Fatal(err)
	}
}

// TestRecoveryAfterCrash: a write cut off half-way (its journal left open, as
// when the server is killed mid-bundle) leaves no trace once the store opens
// again.
func TestRecoveryAfterCrash(t *testing.T) {
	uri := ferret(t)
	s := open(t, uri)
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		put(t, tx, 1, `{"resourceType":"Patient","id":"kept","gender":"male"}`)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The crash: a journal is opened and changes made, and nothing more.
	id := "crashed-write"
	if _, err := s.jrn.InsertOne(ctx, journalDoc{ID: id, State: "open"}); err != nil {
		t.Fatal(err)
	}
	tx := &txn{reader: reader{s: s, journal: id}, s: s}
	put(t, tx, 1, `{"resourceType":"Patient","id":"half","gender":"female"}`)
	put(t, tx, 2, `{"resourceType":"Patient","id":"kept","gender":"female"}`)
	if v, err := tx.Read(ctx, "Patient", "kept"); err != nil || v.VersionID != 2 {
		t.Fatalf("the write in flight does not see itself: %+v %v", v, err)
	}
	if n, _ := s.res.CountDocuments(ctx, map[string]any{"pend": id}); n != 2 {
		t.Fatalf("the cut-off write should be in the database before recovery: %d documents", n)
	}
	s.Close()
	s = open(t, uri)
	defer s.Close()
	if _, err := s.Read(ctx, "Patient", "half"); fhir.KindOf(err) != fhir.NotFound {
		t.Errorf("half-written resource survived recovery: %v", err)
	}
	if v, err := s.Read(ctx, "Patient", "kept"); err != nil || v.VersionID != 1 || !strings.Contains(string(v.Body), "male") {
		t.Errorf("the committed version was not restored: %+v %v", v, err)
	}
	if _, err := s.VRead(ctx, "Patient", "kept", 2); fhir.KindOf(err) != fhir.NotFound {
		t.Errorf("the cut-off version survived: %v", err)
	}
	res, err := s.Search(ctx, mustQuery(t, "Patient", "gender=female"))
	if err != nil || len(res.Matches) != 0 {
		t.Errorf("search sees the cut-off write: %+v %v", res, err)
	}
}

func mustQuery(t *testing.T, typ, qs string) *fhir.Query {
	t.Helper()
	var raw []fhir.RawParam
	for _, part := range strings.Split(qs, "&") {
		name, value, _ := strings.Cut(part, "=")
		raw = append(raw, fhir.RawParam{Name: name, Value: value})
	}
	q, err := search.Default().ParseQuery(typ, raw, search.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q.Total == "" {
		q.Total = fhir.TotalAccurate
	}
	return q
}

// TestNoOperatorInjection: query values that look like MongoDB operators are
// values, never operators.
func TestNoOperatorInjection(t *testing.T) {
	s := open(t, ferret(t))
	defer s.Close()
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		put(t, tx, 1, `{"resourceType":"Patient","id":"p1","identifier":[{"system":"s","value":"v"}],"name":[{"family":"Smith"}]}`)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, qs := range []string{`_id={"\$gt":""}`, `_id=\$ne`, `identifier={"\$ne":null}`, `identifier=s|{"\$regex":".*"}`, `name={"\$where":"1"}`, `_id=\$where`, `name:exact={"\$gt":""}`} {
		res, err := s.Search(ctx, mustQuery(t, "Patient", qs))
		if err != nil {
			t.Errorf("%s: %v", qs, err)
			continue
		}
		if res.Total != 0 || len(res.Matches) != 0 {
			t.Errorf("%s matched %d", qs, res.Total)
		}
	}
	for _, id := range []string{`{"$gt":""}`, "$ne", `a","$where":"b`} {
		if _, err := s.Read(ctx, "Patient", id); fhir.KindOf(err) != fhir.NotFound {
			t.Errorf("read %q: %v", id, err)
		}
	}
}

// TestRecoveryFinishesACommit: a crash after the commit point but before every
// change was applied is finished, not undone, when the store opens.
func TestRecoveryFinishesACommit(t *testing.T) {
	uri := ferret(t)
	s := open(t, uri)
	ctx := context.Background()
	id := "committing-write"
	if _, err := s.jrn.InsertOne(ctx, journalDoc{ID: id, State: "open"}); err != nil {
		t.Fatal(err)
	}
	tx := &txn{reader: reader{s: s, journal: id}, s: s}
	put(t, tx, 1, `{"resourceType":"Patient","id":"a","gender":"female"}`)
	put(t, tx, 1, `{"resourceType":"Patient","id":"b","gender":"female"}`)
	if _, err := s.jrn.UpdateOne(ctx, map[string]any{"_id": id}, map[string]any{"$set": map[string]any{"state": "committing"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, uri)
	defer s.Close()
	res, err := s.Search(ctx, mustQuery(t, "Patient", "gender=female"))
	if err != nil || res.Total != 2 {
		t.Errorf("a committed write was not finished: %+v %v", res, err)
	}
}
