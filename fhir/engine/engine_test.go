package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
)

// openStore opens a SQLite store (not synced: tests only) in a temporary
// directory, closed when the test ends, and the base validator.
func openStore(tb testing.TB) (*sqlite.Store, *validate.Validator) {
	tb.Helper()
	st, err := sqlite.Open(filepath.Join(tb.TempDir(), "crs.db"), sqlite.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	v, err := validate.New()
	if err != nil {
		tb.Fatal(err)
	}
	return st, v
}

// FuzzBundle feeds arbitrary bodies to the transaction/batch processor: it must
// answer every one with a result or a client error, never a panic or an
// internal error, and a failed transaction must store nothing.
func FuzzBundle(f *testing.F) {
	for _, name := range []string{"Bundle-bundle-transaction.json", "Bundle-bundle-request-simplesummary.json"} {
		data, err := os.ReadFile(filepath.Join("../../testdata/r4/examples", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:4f1e7a3c-0c9e-4b62-9e2b-3e0b8e5f1a2d","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"urn:uuid:4f1e7a3c-0c9e-4b62-9e2b-3e0b8e5f1a2d"}},"request":{"method":"POST","url":"Goal"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?name=x"}},{"request":{"method":"DELETE","url":"Patient/1"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","gender":"bogus"},"request":{"method":"PUT","url":"Patient?identifier=a|b"}}]}`))
	st, v := openStore(f)
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://fuzz/fhir"})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, body []byte) {
		before, err := eng.History(ctx, "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = eng.Bundle(ctx, body, engine.SearchOptions{})
		if err == nil {
			return
		}
		if fhir.KindOf(err) == fhir.Internal {
			t.Fatalf("internal error for client input: %v", err)
		}
		after, err := eng.History(ctx, "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if *after.Total != *before.Total {
			t.Fatalf("a failed bundle stored %d versions", *after.Total-*before.Total)
		}
	})
}

// TestDefaultTotal checks Bundle.total when the client does not ask with
// _total: given below the engine's limit, left out at or past it, and always
// given for _total=accurate and _summary=count.
func TestDefaultTotal(t *testing.T) {
	st, v := openStore(t)
	ctx := context.Background()
	for _, c := range []struct {
		limit   int // the engine's TotalLimit
		query   string
		want    int // -1: no total
		matches int
	}{
		{5, "gender=male&_count=2", 4, 2},
		{4, "gender=male&_count=2", -1, 2},
		{4, "gender=male&_count=2&_total=accurate", 4, 2},
		{4, "gender=male&_summary=count", 4, 0},
		{4, "gender=male&_total=none&_count=2", -1, 2},
		{-1, "gender=male&_count=2", 4, 2},
	} {
		eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", TotalLimit: c.limit})
		if c.limit == 5 {
			for i := 0; i < 4; i++ {
				if _, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"male"}`), ""); err != nil {
					t.Fatal(err)
				}
			}
		}
		params, err := engine.ParseQueryString(c.query)
		if err != nil {
			t.Fatal(err)
		}
		b, err := eng.Search(ctx, "Patient", params, engine.SearchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := -1
		if b.Total != nil {
			got = *b.Total
		}
		if got != c.want || len(b.Entry) != c.matches {
			t.Errorf("limit %d, %s: total %d and %d entries, want %d and %d", c.limit, c.query, got, len(b.Entry), c.want, c.matches)
		}
	}
}
