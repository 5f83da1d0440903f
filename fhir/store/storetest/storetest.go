// Package storetest is the conformance suite of store.Store: every promise the
// interface makes, as subtests that each get a fresh store. Every backend's test
// is a few lines that call Run, the way testing/fstest.TestFS serves every fs.FS.
//
// Resources are indexed and queries parsed with the real search registry, so the
// suite also proves that the backend evaluates the values the engine produces.
// Search semantics tested (the R4 search page): token system|code, code, |code,
// system|; string starts-with on the normalised value, :exact, :contains; date
// prefixes on ranges (eq: the stored range lies within the search range; ne: not
// eq; gt/lt: the stored range extends after/before it; ge/le: gt/lt or eq;
// sa/eb: entirely after/before; ap: overlaps the search range widened by 10%);
// number and quantity prefixes with precision ranges; references by Type/id and
// id; uri exact, :below, :above; :missing; :not; OR within a parameter, AND
// across parameters; _sort on several keys; keyset paging; totals; queries far
// larger than the server's default limits (thousands of OR values, a thousand
// ANDed parameters, long lists in chains and _has).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// Run runs the conformance suite. newStore must return an empty store; Run
// closes it.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	runTests(t, newStore, nil)
}

// conformanceTest is one group of the suite.
type conformanceTest struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

func allTests() []conformanceTest {
	return []conformanceTest{
		{"Versions", testVersions},
		{"Tombstones", testTombstones},
		{"VRead", testVRead},
		{"History", testHistory},
		{"WriteAtomic", testWriteAtomic},
		{"WriteIsolated", testWriteIsolated},
		{"ConcurrentIfMatch", testConcurrentIfMatch},
		{"ConcurrentCreates", testConcurrentCreates},
		{"SearchToken", testSearchToken},
		{"SearchString", testSearchString},
		{"SearchDate", testSearchDate},
		{"SearchNumberQuantity", testSearchNumberQuantity},
		{"SearchReference", testSearchReference},
		{"SearchURI", testSearchURI},
		{"SearchMissingNot", testSearchMissingNot},
		{"SearchOrAnd", testSearchOrAnd},
		{"SearchLarge", testSearchLarge},
		{"SearchReindex", testSearchReindex},
		{"ReindexInTransaction", testReindexInTransaction},
		{"SearchInTransaction", testSearchInTransaction},
		{"ConcurrentFailures", testConcurrentFailures},
		{"SearchChain", testSearchChain},
		{"SearchHas", testSearchHas},
		{"SearchCompartment", testSearchCompartment},
		{"Sort", testSort},
		{"Paging", testPaging},
		{"PagingWhileWriting", testPagingWhileWriting},
		{"Totals", testTotals},
		{"BadCursor", testBadCursor},
		{"Last", testLast},
		{"EarlyStop", testEarlyStop},
		{"DenormalisedKeys", testDenormalisedKeys},
		{"ServerPlans", testServerPlans},
	}
}

// RunGroups runs the named groups of the conformance suite only (for a
// backend's variant that changes what those groups test).
func RunGroups(t *testing.T, newStore func(t *testing.T) store.Store, names ...string) {
	runTests(t, newStore, names)
}

// runTests runs the groups named in only, or every group when only is nil.
func runTests(t *testing.T, newStore func(t *testing.T) store.Store, only []string) {
	for _, tc := range allTests() {
		if only != nil && !slices.Contains(only, tc.name) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
}

var ctx = context.Background()

var registry = search.Default()

// put stores res (a JSON resource with resourceType and id) as version vid.
func put(t *testing.T, s store.Store, vid int, res string) store.Version {
	t.Helper()
	v, err := tryPut(s, vid, res)
	if err != nil {
		t.Fatalf("put %s: %v", res, err)
	}
	return v
}

func version(t testing.TB, vid int, res string) (store.Version, []fhir.IndexValue) {
	t.Helper()
	obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
	if err != nil {
		t.Fatalf("bad test resource %s: %v", res, err)
	}
	rt, id := fhir.ResourceType(obj), fhir.ID(obj)
	now := time.Now().UTC()
	obj["meta"] = map[string]any{"versionId": fmt.Sprint(vid), "lastUpdated": now.Format(time.RFC3339Nano)}
	index, err := registry.Extract(rt, obj)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := fhir.Marshal(obj)
	method := "PUT"
	if vid == 1 {
		method = "POST"
	}
	return store.Version{Type: rt, ID: id, VersionID: vid, LastUpdated: now, Method: method, Body: body}, index
}

func tryPut(s store.Store, vid int, res string) (store.Version, error) {
	var tb testing.TB = &testing.T{}
	v, index := version(tb, vid, res)
	return v, s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, index) })
}

func del(t *testing.T, s store.Store, typ, id string, vid int) {
	t.Helper()
	v := store.Version{Type: typ, ID: id, VersionID: vid, LastUpdated: time.Now().UTC(), Deleted: true, Method: "DELETE"}
	if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, nil) }); err != nil {
		t.Fatal(err)
	}
}

func kind(err error) fhir.Kind {
	if err == nil {
		return -1
	}
	return fhir.KindOf(err)
}

func testVersions(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a","gender":"male"}`)
	if _, err := tryPut(s, 1, `{"resourceType":"Patient","id":"a"}`); kind(err) != fhir.Conflict {
		t.Fatalf("second version 1: %v", err)
	}
	if _, err := tryPut(s, 3, `{"resourceType":"Patient","id":"a"}`); kind(err) != fhir.Conflict {
		t.Fatalf("version 3 after 1: %v", err)
	}
	if _, err := tryPut(s, 2, `{"resourceType":"Patient","id":"new"}`); kind(err) != fhir.Conflict {
		t.Fatalf("version 2 of a new resource: %v", err)
	}
	if _, err := s.Read(ctx, "Patient", "new"); kind(err) != fhir.NotFound {
		t.Fatalf("a rejected put was stored: %v", err)
	}
	v2 := put(t, s, 2, `{"resourceType":"Patient","id":"a","gender":"female"}`)
	got, err := s.Read(ctx, "Patient", "a")
	if err != nil || got.VersionID != 2 || string(got.Body) != string(v2.Body) || got.Deleted {
		t.Fatalf("read: %+v %v", got, err)
	}
	if !got.LastUpdated.Equal(v2.LastUpdated.Truncate(time.Microsecond)) && !got.LastUpdated.Equal(v2.LastUpdated) {
		t.Fatalf("lastUpdated %v, want %v", got.LastUpdated, v2.LastUpdated)
	}
	if _, err := s.Read(ctx, "Patient", "none"); kind(err) != fhir.NotFound {
		t.Fatalf("read of nothing: %v", err)
	}
	if _, err := s.Read(ctx, "Goal", "a"); kind(err) != fhir.NotFound {
		t.Fatalf("ids are per type: %v", err)
	}
}

func testTombstones(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a","gender":"male"}`)
	del(t, s, "Patient", "a", 2)
	got, err := s.Read(ctx, "Patient", "a")
	if err != nil || !got.Deleted || got.Body != nil || got.VersionID != 2 || got.Method != "DELETE" {
		t.Fatalf("read of a deleted resource: %+v %v", got, err)
	}
	if n := count(t, s, "Patient", "gender=male"); n != 0 {
		t.Fatalf("search found a deleted resource: %d", n)
	}
	put(t, s, 3, `{"resourceType":"Patient","id":"a","gender":"male"}`)
	if n := count(t, s, "Patient", "gender=male"); n != 1 {
		t.Fatalf("search after re-create: %d", n)
	}
}

func testVRead(t *testing.T, s store.Store) {
	v1 := put(t, s, 1, `{"resourceType":"Patient","id":"a","gender":"male"}`)
	put(t, s, 2, `{"resourceType":"Patient","id":"a","gender":"female"}`)
	del(t, s, "Patient", "a", 3)
	got, err := s.VRead(ctx, "Patient", "a", 1)
	if err != nil || string(got.Body) != string(v1.Body) || got.Method != "POST" {
		t.Fatalf("vread 1: %+v %v", got, err)
	}
	if got, err := s.VRead(ctx, "Patient", "a", 3); err != nil || !got.Deleted {
		t.Fatalf("vread of the tombstone: %+v %v", got, err)
	}
	if _, err := s.VRead(ctx, "Patient", "a", 4); kind(err) != fhir.NotFound {
		t.Fatalf("vread 4: %v", err)
	}
	if _, err := s.VRead(ctx, "Patient", "b", 1); kind(err) != fhir.NotFound {
		t.Fatalf("vread of nothing: %v", err)
	}
}

func testHistory(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a"}`)
	put(t, s, 1, `{"resourceType":"Goal","id":"g","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"Patient/a"}}`)
	put(t, s, 2, `{"resourceType":"Patient","id":"a","gender":"male"}`)
	time.Sleep(5 * time.Millisecond)
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	put(t, s, 1, `{"resourceType":"Patient","id":"b"}`)
	del(t, s, "Patient", "a", 3)

	ids := func(q store.HistoryQuery) []string {
		var out []string
		for {
			res, err := s.History(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range res.Versions {
				out = append(out, fmt.Sprintf("%s/%s/%d", v.Type, v.ID, v.VersionID))
			}
			if res.Next == "" {
				return out
			}
			q.Cursor = res.Next
		}
	}
	eq := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("history %v, want %v", got, want)
		}
	}
	eq(ids(store.HistoryQuery{Type: "Patient", ID: "a", Count: 1}), "Patient/a/3", "Patient/a/2", "Patient/a/1")
	eq(ids(store.HistoryQuery{Type: "Patient", Count: 2}), "Patient/a/3", "Patient/b/1", "Patient/a/2", "Patient/a/1")
	eq(ids(store.HistoryQuery{Count: 10}), "Patient/a/3", "Patient/b/1", "Patient/a/2", "Goal/g/1", "Patient/a/1")
	eq(ids(store.HistoryQuery{Since: mid, Count: 10}), "Patient/a/3", "Patient/b/1")
	res, err := s.History(ctx, store.HistoryQuery{Count: 2})
	if err != nil || res.Total != 5 || len(res.Versions) != 2 || res.Next == "" {
		t.Fatalf("history page: %+v %v", res, err)
	}
	if !res.Versions[0].Deleted || res.Versions[0].Body != nil {
		t.Fatalf("the delete in history: %+v", res.Versions[0])
	}
}

func testWriteAtomic(t *testing.T, s store.Store) {
	boom := errors.New("boom")
	err := s.Write(ctx, func(tx store.Tx) error {
		for _, id := range []string{"x1", "x2"} {
			v, index := version(t, 1, `{"resourceType":"Patient","id":"`+id+`","gender":"male"}`)
			if err := tx.Put(ctx, v, index); err != nil {
				return err
			}
		}
		// Reads inside the transaction see its writes.
		if v, err := tx.Read(ctx, "Patient", "x1"); err != nil || v.VersionID != 1 {
			t.Errorf("read inside the transaction: %v", err)
		}
		q := query(t, "Patient", "gender=male")
		if res, err := tx.Search(ctx, q); err != nil || len(res.Matches) != 2 {
			t.Errorf("search inside the transaction: %v %v", res, err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write returned %v, want the function's error", err)
	}
	for _, id := range []string{"x1", "x2"} {
		if _, err := s.Read(ctx, "Patient", id); kind(err) != fhir.NotFound {
			t.Fatalf("a failed transaction left %s: %v", id, err)
		}
	}
	if n := count(t, s, "Patient", "gender=male"); n != 0 {
		t.Fatalf("a failed transaction left index values: %d", n)
	}
	if res, _ := s.History(ctx, store.HistoryQuery{Count: 10}); res.Total != 0 {
		t.Fatalf("a failed transaction left history: %d", res.Total)
	}
	// A panic inside fn is an error, not a crash, and leaves nothing either.
	err = s.Write(ctx, func(tx store.Tx) error {
		v, index := version(t, 1, `{"resourceType":"Patient","id":"p"}`)
		_ = tx.Put(ctx, v, index)
		panic("bad write function")
	})
	if err == nil {
		t.Fatal("a panicking write function succeeded")
	}
	if _, err := s.Read(ctx, "Patient", "p"); kind(err) != fhir.NotFound {
		t.Fatalf("a panicking write left its put: %v", err)
	}
	put(t, s, 1, `{"resourceType":"Patient","id":"after"}`)
}

func testWriteIsolated(t *testing.T, s store.Store) {
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Write(ctx, func(tx store.Tx) error {
			v, index := version(t, 1, `{"resourceType":"Patient","id":"iso","gender":"other"}`)
			if err := tx.Put(ctx, v, index); err != nil {
				return err
			}
			close(inside)
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
			return nil
		})
	}()
	select {
	case <-inside:
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not start")
	}
	if _, err := s.Read(ctx, "Patient", "iso"); kind(err) != fhir.NotFound {
		t.Errorf("an uncommitted write is visible to Read: %v", err)
	}
	if n := count(t, s, "Patient", "gender=other"); n != 0 {
		t.Errorf("an uncommitted write is visible to Search: %d", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "Patient", "iso"); err != nil {
		t.Fatalf("committed write not visible: %v", err)
	}
}

func testConcurrentIfMatch(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"c"}`)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			v, index := version(t, 2, fmt.Sprintf(`{"resourceType":"Patient","id":"c","name":[{"family":"w%d"}]}`, i))
			err := s.Write(ctx, func(tx store.Tx) error {
				cur, err := tx.Read(ctx, "Patient", "c")
				if err != nil {
					return err
				}
				if cur.VersionID != 1 { // If-Match: W/"1"
					return fhir.Errorf(fhir.PreconditionFailed, "", "version %d", cur.VersionID)
				}
				return tx.Put(ctx, v, index)
			})
			mu.Lock()
			defer mu.Unlock()
			switch kind(err) {
			case -1:
				wins++
			case fhir.PreconditionFailed, fhir.Conflict:
				conflicts++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 || conflicts != 7 {
		t.Fatalf("%d writers won and %d lost; want exactly one winner", wins, conflicts)
	}
	if v, _ := s.Read(ctx, "Patient", "c"); v.VersionID != 2 {
		t.Fatalf("version %d", v.VersionID)
	}
}

func testConcurrentCreates(t *testing.T, s store.Store) {
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := tryPut(s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"n%d","gender":"unknown"}`, i))
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, s, "Patient", "gender=unknown"); n != 100 {
		t.Fatalf("%d of 100 concurrent creates found", n)
	}
}

// query parses a query string for rt with the real registry.
func query(t testing.TB, rt, qs string) *fhir.Query {
	t.Helper()
	var raw []fhir.RawParam
	for _, part := range strings.Split(qs, "&") {
		if part == "" {
			continue
		}
		n, v, _ := strings.Cut(part, "=")
		raw = append(raw, fhir.RawParam{Name: n, Value: v})
	}
	q, err := registry.ParseQuery(rt, raw, search.ParseOptions{DefaultCount: 1000, MaxCount: 1000})
	if err != nil {
		t.Fatalf("query %s: %v", qs, err)
	}
	q.Total = fhir.TotalAccurate
	return q
}

// ids returns the sorted ids of every match of a query over all pages.
func ids(t testing.TB, s store.Store, rt, qs string) []string {
	t.Helper()
	q := query(t, rt, qs)
	var out []string
	for {
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatalf("search %s?%s: %v", rt, qs, err)
		}
		for _, v := range res.Matches {
			out = append(out, v.ID)
		}
		if res.Next == "" {
			break
		}
		q.Cursor = res.Next
	}
	sort.Strings(out)
	return out
}

func count(t testing.TB, s store.Store, rt, qs string) int { return len(ids(t, s, rt, qs)) }

// expect checks the matches of each query.
func expect(t *testing.T, s store.Store, rt string, cases map[string]string) {
	t.Helper()
	qs := make([]string, 0, len(cases))
	for q := range cases {
		qs = append(qs, q)
	}
	sort.Strings(qs)
	for _, q := range qs {
		got := strings.Join(ids(t, s, rt, q), " ")
		if got != cases[q] {
			t.Errorf("%s?%s: got [%s], want [%s]", rt, q, got, cases[q])
		}
	}
}

func testSearchToken(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"gender":"male"}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"b","identifier":[{"system":"urn:other","value":"9000000009"},{"value":"nosys"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:trust","value":"MRN-7"}],"gender":"female"}`)
	put(t, s, 1, `{"resourceType":"Encounter","id":"e","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HH","display":"home health"},"type":[{"coding":[{"system":"http://snomed.info/sct","code":"270420001"}],"text":"Seen in own home"}]}`)
	expect(t, s, "Patient", map[string]string{
		"identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009": "a",
		"identifier=9000000009":                                   "a b",
		"identifier=|nosys":                                       "b",
		"identifier=|9000000009":                                  "",
		"identifier=urn:other|":                                   "b",
		"gender=male":                                             "a",
		"gender=male,female":                                      "a b",
		"gender:not=male":                                         "b",
		"_id=a":                                                   "a",
		"_id=a,b":                                                 "a b",
		"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-7": "b",
		"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|other": "",
		"identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NH|MRN-7": "",
		"identifier=MRN-7": "b",
	})
	expect(t, s, "Encounter", map[string]string{
		"class=HH":                              "e",
		"type=http://snomed.info/sct|270420001": "e",
		"type:text=own home":                    "e",
		"class:text=health":                     "e",
		"type:text=hospital":                    "",
	})
}

func testSearchString(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a","name":[{"family":"Smith","given":["Ann","Marie"]}],"address":[{"city":"Rugby","postalCode":"CV21 1AA"}]}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"b","name":[{"family":"Smithson"}]}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"c","name":[{"family":"Gómez-Péréz"}]}`)
	expect(t, s, "Patient", map[string]string{
		"family=smi":              "a b",
		"family=SMITH":            "a b",
		"family:exact=Smith":      "a",
		"family:exact=smith":      "",
		"family:contains=ths":     "b",
		"name=marie":              "a",
		"given=ann":               "a",
		"family=gomez":            "c",
		"family=Gómez":            "c",
		"address-city=rug":        "a",
		"address-postalcode=cv21": "a",
		"family=jones":            "",
	})
}

func testSearchDate(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"d1","birthDate":"2026-11-05"}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"d2","birthDate":"2026-12"}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"d3","birthDate":"2025"}`)
	put(t, s, 1, `{"resourceType":"Encounter","id":"open","status":"in-progress","class":{"code":"HH"},"period":{"start":"2026-11-20T10:00:00Z"}}`)
	put(t, s, 1, `{"resourceType":"Encounter","id":"closed","status":"finished","class":{"code":"HH"},"period":{"start":"2026-11-01T09:00:00Z","end":"2026-11-01T10:00:00Z"}}`)
	expect(t, s, "Patient", map[string]string{
		"birthdate=2026-11":                       "d1",
		"birthdate=2026":                          "d1 d2",
		"birthdate=eq2026-11-05":                  "d1",
		"birthdate=ne2026-11-05":                  "d2 d3",
		"birthdate=gt2026-11":                     "d2",
		"birthdate=lt2026-11":                     "d3",
		"birthdate=ge2026-11":                     "d1 d2",
		"birthdate=le2026-11":                     "d1 d3",
		"birthdate=sa2026-11-05":                  "d2",
		"birthdate=eb2026-11-05":                  "d3",
		"birthdate=ap2026-11-05":                  "d1",
		"birthdate=2026-11-05T12:00:00Z":          "",
		"birthdate=ge2026-11&birthdate=lt2026-12": "d1",
	})
	expect(t, s, "Encounter", map[string]string{
		"date=2026-11-01":   "closed",
		"date=gt2026-11-21": "open",
		"date=lt2026-11-02": "closed",
		"date=ge2026-11-20": "open",
		"date=sa2026-11-10": "open",
		"date=eb2026-11-10": "closed",
	})
	// _lastUpdated is a date too.
	if n := count(t, s, "Patient", "_lastUpdated=gt2000-01-01"); n != 3 {
		t.Errorf("_lastUpdated: %d", n)
	}
}

func testSearchNumberQuantity(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"RelatedPerson","id":"r","patient":{"reference":"Patient/p"}}`)
	// Encounter.length is a Duration (quantity).
	put(t, s, 1, `{"resourceType":"Encounter","id":"q1","status":"finished","class":{"code":"HH"},"length":{"value":1.5,"unit":"h","system":"http://unitsofmeasure.org","code":"h"}}`)
	put(t, s, 1, `{"resourceType":"Encounter","id":"q2","status":"finished","class":{"code":"HH"},"length":{"value":30,"unit":"min","system":"http://unitsofmeasure.org","code":"min"}}`)
	put(t, s, 1, `{"resourceType":"Encounter","id":"q3","status":"finished","class":{"code":"HH"},"length":{"value":2.0,"unit":"h","system":"http://unitsofmeasure.org","code":"h"}}`)
	expect(t, s, "Encounter", map[string]string{
		"length=1.5":                             "q1",
		"length=2":                               "q1 q3", // 2 means [1.5, 2.5)
		"length=2.0":                             "q3",
		"length=1.5|http://unitsofmeasure.org|h": "q1",
		"length=1.5|http://unitsofmeasure.org|min": "",
		"length=gt1.5":                           "q2 q3",
		"length=lt2":                             "q1",
		"length=ge2|http://unitsofmeasure.org|h": "q3",
		"length=le1.5":                           "q1",
		"length=ne2.0":                           "q1 q2",
		"length=ap30":                            "q2",
		"length=sa1.5|http://unitsofmeasure.org|h": "q3",
		"length=eb2|http://unitsofmeasure.org|h":   "q1",
		"length=1.5,30":                            "q1 q2",
	})
}

func testSearchReference(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","description":{"text":"a"},"subject":{"reference":"Patient/p1"}}`)
	put(t, s, 1, `{"resourceType":"Goal","id":"g2","lifecycleStatus":"active","description":{"text":"b"},"subject":{"reference":"Group/p1"}}`)
	put(t, s, 1, `{"resourceType":"Goal","id":"g3","lifecycleStatus":"active","description":{"text":"c"},"subject":{"reference":"http://other.example/fhir/Patient/p1"}}`)
	put(t, s, 1, `{"resourceType":"ServiceRequest","id":"s1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"requester":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RKB"}}}`)
	expect(t, s, "Goal", map[string]string{
		"subject=Patient/p1": "g1",
		"subject=p1":         "g1 g2",
		"subject:Patient=p1": "g1",
		"patient=p1":         "g1",
		"subject=http://other.example/fhir/Patient/p1": "g3",
		"subject=Patient/other":                        "",
	})
	expect(t, s, "ServiceRequest", map[string]string{
		"requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|RKB": "s1",
		"requester:identifier=RKB": "s1",
		"subject=Patient/p1":       "s1",
	})
}

func testSearchURI(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"ValueSet","id":"v1","url":"http://example.org/fhir/ValueSet/a","status":"active"}`)
	put(t, s, 1, `{"resourceType":"ValueSet","id":"v2","url":"http://example.org/fhir/ValueSet/b","status":"active"}`)
	put(t, s, 1, `{"resourceType":"ValueSet","id":"v3","url":"http://example.org/other","status":"active"}`)
	expect(t, s, "ValueSet", map[string]string{
		"url=http://example.org/fhir/ValueSet/a":           "v1",
		"url=http://example.org/fhir/ValueSet":             "",
		"url:below=http://example.org/fhir/ValueSet":       "v1 v2",
		"url:below=http://example.org":                     "v1 v2 v3",
		"url:above=http://example.org/fhir/ValueSet/a/x/y": "v1",
	})
}

func testSearchMissingNot(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a","gender":"male","birthDate":"1950"}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"b","gender":"female"}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"c"}`)
	expect(t, s, "Patient", map[string]string{
		"gender:missing=true":    "c",
		"gender:missing=false":   "a b",
		"birthdate:missing=true": "b c",
		"gender:not=male":        "b c",
		"gender:not=male,female": "c",
	})
}

func testSearchOrAnd(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a","gender":"male","name":[{"family":"Hill"}]}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"b","gender":"female","name":[{"family":"Hill"}]}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"c","gender":"male","name":[{"family":"Dale"},{"family":"Hill"}]}`)
	expect(t, s, "Patient", map[string]string{
		"gender=male&family=hill":       "a c",
		"gender=male,female&family=dal": "c",
		"family=hill&family=dale":       "c",
		"family=hill,dale":              "a b c",
	})
}

func testSearchReindex(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a","gender":"male"}`)
	put(t, s, 2, `{"resourceType":"Patient","id":"a","gender":"female"}`)
	expect(t, s, "Patient", map[string]string{"gender=male": "", "gender=female": "a"})
}

// testReindexInTransaction replaces a resource's search values inside the
// transaction that first wrote them: searches in it and after it see only the
// newest.
func testReindexInTransaction(t *testing.T, s store.Store) {
	err := s.Write(ctx, func(tx store.Tx) error {
		for vid, gender := range []string{"male", "female", "other"} {
			v, index := version(t, vid+1, `{"resourceType":"Patient","id":"a","gender":"`+gender+`"}`)
			if err := tx.Put(ctx, v, index); err != nil {
				return err
			}
			if vid == 0 {
				continue // the second version replaces values no search has read yet
			}
			for _, g := range []string{"male", "female", "other"} {
				res, err := tx.Search(ctx, query(t, "Patient", "gender="+g))
				if err != nil {
					return err
				}
				if want := map[bool]int{true: 1, false: 0}[g == gender]; len(res.Matches) != want {
					t.Errorf("after version %d (%s), gender=%s inside the transaction: %d matches, want %d", vid+1, gender, g, len(res.Matches), want)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, s, "Patient", map[string]string{"gender=male": "", "gender=female": "", "gender=other": "a"})
}

// testConcurrentFailures runs concurrent writes of which every other one fails
// after its put: the stores that commit several writes at once must keep each
// failure to its own write, with no search values left behind by it.
func testConcurrentFailures(t *testing.T, s store.Store) {
	const n = 32
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			v, index := version(t, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"c%d","gender":"male","name":[{"family":"F%d"}]}`, i, i))
			errs[i] = s.Write(ctx, func(tx store.Tx) error {
				if err := tx.Put(ctx, v, index); err != nil {
					return err
				}
				if i%2 == 1 {
					return boom
				}
				return nil
			})
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 1 && !errors.Is(err, boom) {
			t.Errorf("write %d: %v, want its own error", i, err)
		}
		if i%2 == 0 && err != nil {
			t.Errorf("write %d failed with a neighbour: %v", i, err)
		}
	}
	if got := count(t, s, "Patient", "gender=male"); got != n/2 {
		t.Errorf("gender=male: %d matches, want %d", got, n/2)
	}
	for i := 0; i < n; i++ {
		want := map[bool]int{true: 1, false: 0}[i%2 == 0]
		if got := count(t, s, "Patient", fmt.Sprintf("family:exact=F%d", i)); got != want {
			t.Errorf("family:exact=F%d: %d matches, want %d", i, got, want)
		}
	}
}

// sorted returns the ids of all matches in the order the store gives them.
func sorted(t *testing.T, s store.Store, rt, qs string) string {
	t.Helper()
	q := query(t, rt, qs)
	var out []string
	for {
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range res.Matches {
			out = append(out, v.ID)
		}
		if res.Next == "" {
			return strings.Join(out, " ")
		}
		q.Cursor = res.Next
	}
}

func testSort(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a","name":[{"family":"Bravo"}],"birthDate":"1960","gender":"male"}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"b","name":[{"family":"Alpha"},{"family":"Zulu"}],"birthDate":"1950","gender":"female"}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"c","name":[{"family":"Charlie"}],"gender":"male"}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"d","birthDate":"1970","gender":"male"}`)
	cases := map[string]string{
		"_sort=family":              "b a c d",
		"_sort=-family":             "b c a d",
		"_sort=birthdate":           "b a d c",
		"_sort=-birthdate":          "d a b c",
		"_sort=gender,-birthdate":   "b d a c",
		"_sort=gender,family":       "b a c d",
		"_sort=family&_count=1":     "b a c d",
		"_sort=-birthdate&_count=2": "d a b c",
		"_count=1":                  "a b c d",
	}
	for q, want := range cases {
		if got := sorted(t, s, "Patient", q); got != want {
			t.Errorf("Patient?%s: %s, want %s", q, got, want)
		}
	}
}

func testPaging(t *testing.T, s store.Store) {
	for i := 0; i < 23; i++ {
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"p%02d","gender":"other","name":[{"family":"F%02d"}]}`, i, 22-i))
	}
	q := query(t, "Patient", "gender=other&_count=5&_sort=family")
	var got []string
	pages := 0
	for {
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != 23 {
			t.Fatalf("total %d", res.Total)
		}
		if len(res.Matches) > 5 {
			t.Fatalf("page of %d", len(res.Matches))
		}
		for _, v := range res.Matches {
			got = append(got, v.ID)
		}
		pages++
		if res.Next == "" {
			break
		}
		q.Cursor = res.Next
	}
	if pages != 5 || len(got) != 23 || got[0] != "p22" || got[22] != "p00" {
		t.Fatalf("%d pages: %v", pages, got)
	}
	// _count=0: the total only.
	q = query(t, "Patient", "gender=other&_count=0")
	res, err := s.Search(ctx, q)
	if err != nil || len(res.Matches) != 0 || res.Total != 23 {
		t.Fatalf("_count=0: %+v %v", res, err)
	}
}

func testPagingWhileWriting(t *testing.T, s store.Store) {
	for i := 0; i < 20; i++ {
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"p%02d","gender":"other","name":[{"family":"M%02d"}]}`, i, i))
	}
	for _, qs := range []string{"gender=other&_count=4", "gender=other&_count=4&_sort=family"} {
		q := query(t, "Patient", qs)
		seen := map[string]int{}
		for page := 0; ; page++ {
			res, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range res.Matches {
				seen[v.ID]++
			}
			// Writes between pages: new resources sorting first and last.
			put(t, s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"new-%d-%d","gender":"other","name":[{"family":"A%02d"}]}`, len(qs), page, page))
			put(t, s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"late-%d-%d","gender":"other","name":[{"family":"Z%02d"}]}`, len(qs), page, page))
			if res.Next == "" || page > 40 {
				break
			}
			q.Cursor = res.Next
		}
		for i := 0; i < 20; i++ {
			if n := seen[fmt.Sprintf("p%02d", i)]; n != 1 {
				t.Errorf("%s: p%02d seen %d times while writes happened", qs, i, n)
			}
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("%s: %s seen %d times", qs, id, n)
			}
		}
	}
}

func testTotals(t *testing.T, s store.Store) {
	for i := 0; i < 7; i++ {
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"t%d","gender":"male"}`, i))
	}
	// Two names that both match given=ann: a bounded count counts resources,
	// not index rows, whichever plan counts.
	for i := 0; i < 7; i++ {
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"n%d","gender":"female","name":[{"given":["Ann","Anna"]}]}`, i))
	}
	for _, qs := range []string{"given=ann&_count=2", "given=ann&gender=female&_count=2", "given=ann&gender:not=male&_count=2"} {
		q := query(t, "Patient", qs)
		for _, c := range []struct{ limit, want int }{{8, 7}, {7, -1}, {3, -1}, {1, -1}, {0, 7}} {
			q.TotalLimit = c.limit
			res, err := s.Search(ctx, q)
			if err != nil || res.Total != c.want || len(res.Matches) != 2 {
				t.Fatalf("%s, total limit %d: %+v %v, want total %d", qs, c.limit, res, err, c.want)
			}
		}
	}
	q := query(t, "Patient", "gender=male&_count=2")
	res, err := s.Search(ctx, q)
	if err != nil || res.Total != 7 || len(res.Matches) != 2 {
		t.Fatalf("accurate: %+v %v", res, err)
	}
	q.Total = fhir.TotalNone
	res, err = s.Search(ctx, q)
	if err != nil || res.Total != -1 || len(res.Matches) != 2 {
		t.Fatalf("none: %+v %v", res, err)
	}
	// A bounded count: exact below the limit, unknown at or past it, and the
	// page the same either way.
	q.Total = fhir.TotalAccurate
	for _, c := range []struct{ limit, want int }{{8, 7}, {7, -1}, {3, -1}, {0, 7}} {
		q.TotalLimit = c.limit
		res, err = s.Search(ctx, q)
		if err != nil || res.Total != c.want || len(res.Matches) != 2 || res.Next == "" {
			t.Fatalf("total limit %d: %+v %v, want total %d", c.limit, res, err, c.want)
		}
	}
}

func testBadCursor(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Patient","id":"a"}`)
	for _, c := range []string{"nonsense", "e30", "!!!", `{"k":[],"r":1}`} {
		q := query(t, "Patient", "_sort=family")
		q.Cursor = c
		if _, err := s.Search(ctx, q); kind(err) != fhir.Invalid {
			t.Errorf("cursor %q: %v", c, err)
		}
	}
	if _, err := s.History(ctx, store.HistoryQuery{Count: 1, Cursor: "-x-"}); kind(err) != fhir.Invalid {
		t.Errorf("history cursor: %v", err)
	}
}

// pathway writes a small pathway: two patients, referrals, an episode with
// encounters, goals and a care plan.
func pathway(t *testing.T, s store.Store) {
	for _, r := range []string{
		`{"resourceType":"Organization","id":"trust","name":"Warwick Hospital","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RWK"}]}`,
		`{"resourceType":"Organization","id":"agency","name":"Home Care Ltd","partOf":{"reference":"Organization/trust"}}`,
		`{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"name":[{"family":"Smith"}],"managingOrganization":{"reference":"Organization/agency"}}`,
		`{"resourceType":"Patient","id":"p2","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449305552"}],"name":[{"family":"Jones"}]}`,
		`{"resourceType":"ServiceRequest","id":"sr1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"requester":{"reference":"Organization/trust"}}`,
		`{"resourceType":"ServiceRequest","id":"sr2","status":"completed","intent":"plan","subject":{"reference":"Patient/p2"},"requester":{"reference":"Organization/trust"}}`,
		`{"resourceType":"EpisodeOfCare","id":"ep1","status":"active","patient":{"reference":"Patient/p1"},"managingOrganization":{"reference":"Organization/agency"}}`,
		`{"resourceType":"Encounter","id":"e1","status":"finished","class":{"code":"HH"},"subject":{"reference":"Patient/p1"},"episodeOfCare":[{"reference":"EpisodeOfCare/ep1"}]}`,
		`{"resourceType":"Encounter","id":"e2","status":"finished","class":{"code":"HH"},"subject":{"reference":"Patient/p2"}}`,
		`{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","description":{"text":"make my own tea"},"subject":{"reference":"Patient/p1"}}`,
		`{"resourceType":"Goal","id":"g2","lifecycleStatus":"completed","description":{"text":"walk"},"subject":{"reference":"Patient/p2"}}`,
		`{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"encounter":{"reference":"Encounter/e1"},"goal":[{"reference":"Goal/g1"}]}`,
	} {
		put(t, s, 1, r)
	}
}

func testSearchChain(t *testing.T, s store.Store) {
	pathway(t, s)
	expect(t, s, "ServiceRequest", map[string]string{
		"subject.identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009": "sr1",
		"subject:Patient.name=jones":                                      "sr2",
		"subject.name=nobody":                                             "",
		"requester:Organization.identifier=RWK":                           "sr1 sr2",
		"subject.organization.name=home":                                  "sr1",
		"subject.organization.partof.name=warwick":                        "sr1",
		"subject.name=smith&status=completed":                             "",
		// With a plain parameter beside it the chain may probe instead of drive.
		"subject.name=smith&status=active":                                    "sr1",
		"status=active,completed&subject.name=jones":                          "sr2",
		"subject.name=smith,jones&requester.identifier=RWK&status:not=active": "sr2",
		"subject.organization.name=home&subject.name=smith&intent=plan":       "sr1",
	})
	expect(t, s, "CarePlan", map[string]string{
		"encounter.episode-of-care.status=active": "cp1",
		"goal.lifecycle-status=completed":         "",
	})
}

func testSearchHas(t *testing.T, s store.Store) {
	pathway(t, s)
	expect(t, s, "Patient", map[string]string{
		"_has:Goal:subject:lifecycle-status=active":                    "p1",
		"_has:Goal:subject:lifecycle-status=active,completed":          "p1 p2",
		"_has:ServiceRequest:subject:status=completed":                 "p2",
		"_has:Encounter:subject:_has:CarePlan:encounter:status=active": "p1",
		"_has:Goal:patient:lifecycle-status=cancelled":                 "",
		"_has:Goal:subject:lifecycle-status=active&name=jones":         "",
		// With a plain parameter beside it the reverse chain may probe.
		"_has:Goal:subject:lifecycle-status=active&name=smith":                                                  "p1",
		"name=smith,jones&_has:Goal:subject:lifecycle-status=completed":                                         "p2",
		"name:missing=false&_has:Encounter:subject:_has:CarePlan:encounter:status=active&identifier=9000000009": "p1",
		"gender:missing=true&_has:Goal:subject:lifecycle-status:not=active":                                     "p2",
	})
}

func testSearchCompartment(t *testing.T, s store.Store) {
	pathway(t, s)
	comp := func(rt, ctype, cid string, params ...string) string {
		q := query(t, rt, "")
		q.Compartment = &fhir.Compartment{Type: ctype, ID: cid, Params: params}
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range res.Matches {
			out = append(out, v.ID)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	for _, c := range []struct{ got, want string }{
		{comp("Goal", "Patient", "p1", "patient"), "g1"},
		{comp("ServiceRequest", "Patient", "p2", "subject", "performer"), "sr2"},
		{comp("Encounter", "EpisodeOfCare", "ep1", "episode-of-care"), "e1"},
		{comp("Patient", "Patient", "p1", "link"), "p1"},
		{comp("Goal", "Patient", "nobody", "patient"), ""},
	} {
		if c.got != c.want {
			t.Errorf("compartment: got [%s], want [%s]", c.got, c.want)
		}
	}
}

// testLast: Last names the version of a type written last, inside the writing
// transaction too, and nothing when the type has none.
func testLast(t *testing.T, s store.Store) {
	put(t, s, 1, `{"resourceType":"Goal","id":"a","lifecycleStatus":"active","description":{"text":"a"},"subject":{"reference":"Patient/p"}}`)
	put(t, s, 1, `{"resourceType":"Patient","id":"p"}`)
	put(t, s, 1, `{"resourceType":"Goal","id":"b","lifecycleStatus":"active","description":{"text":"b"},"subject":{"reference":"Patient/p"}}`)
	put(t, s, 2, `{"resourceType":"Goal","id":"a","lifecycleStatus":"completed","description":{"text":"a"},"subject":{"reference":"Patient/p"}}`)
	err := s.Write(ctx, func(tx store.Tx) error {
		v, err := tx.Last(ctx, "Goal")
		if err != nil || v.ID != "a" || v.VersionID != 2 || len(v.Body) == 0 {
			t.Errorf("last Goal: %+v %v", v, err)
		}
		if _, err := tx.Last(ctx, "CarePlan"); kind(err) != fhir.NotFound {
			t.Errorf("no CarePlan: %v", err)
		}
		c, idx := version(t, 1, `{"resourceType":"Goal","id":"c","lifecycleStatus":"active","description":{"text":"c"},"subject":{"reference":"Patient/p"}}`)
		if err := tx.Put(ctx, c, idx); err != nil {
			return err
		}
		if v, err := tx.Last(ctx, "Goal"); err != nil || v.ID != "c" {
			t.Errorf("last Goal inside the transaction: %+v %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
