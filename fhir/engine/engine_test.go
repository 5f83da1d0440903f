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

// FuzzBundle feeds arbitrary bodies to the transaction/batch processor: it must
// answer every one with a result or a client error, never a panic or an
// internal error, and a failed transaction must store nothing.
func FuzzBundle(f *testing.F) {
	for _, name := range []string{"Bundle-bundle-transaction.json", "Bundle-bundle-request-simplesummary.json"} {
		if data, err := os.ReadFile(filepath.Join("../../../shared/fhir-r4/examples", name)); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"urn:uuid:1"}},"request":{"method":"POST","url":"Goal"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?name=x"}},{"request":{"method":"DELETE","url":"Patient/1"}}]}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","gender":"bogus"},"request":{"method":"PUT","url":"Patient?identifier=a|b"}}]}`))
	st, err := sqlite.Open(filepath.Join(f.TempDir(), "fuzz.db"), sqlite.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	v, err := validate.New()
	if err != nil {
		f.Fatal(err)
	}
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
