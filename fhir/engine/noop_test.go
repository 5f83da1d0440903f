package engine_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"crs/fhir/engine"
	"crs/fhir/store"
	"crs/fhir/store/mongo"
	"crs/fhir/store/mongo/mongotest"
)

// TestUnchangedUpdateStoresNothing: an update whose content equals the current
// version (server-owned meta aside) stores no new version, in a transaction
// entry and a plain update alike, on both backends; a real change still does.
func TestUnchangedUpdateStoresNothing(t *testing.T) {
	backends := map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store { st, _ := openStore(t); return st },
		"mongo": func(t *testing.T) store.Store {
			st, err := mongo.Open(context.Background(), mongotest.URI(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			_, v := openStore(t)
			eng := engine.New(engine.Config{Store: open(t), Validator: v, Elements: v, Base: "http://test/fhir"})
			ctx := context.Background()
			body := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"7","lastUpdated":"2020-01-01T00:00:00Z"},"gender":"female","birthDate":"1941-03-14"}`
			res, err := eng.Update(ctx, "Patient", "p1", []byte(body), 0)
			if err != nil || !res.Created {
				t.Fatalf("first update: %+v %v", res, err)
			}
			res, err = eng.Update(ctx, "Patient", "p1", []byte(body), 0)
			if err != nil || !res.NoOp || res.Version.VersionID != 1 {
				t.Fatalf("unchanged update: NoOp %v version %d, %v", res.NoOp, res.Version.VersionID, err)
			}
			tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"gender":"male"},"request":{"method":"PUT","url":"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"}}]}`
			for i := 0; i < 2; i++ {
				if _, err := eng.Bundle(ctx, []byte(tx), engine.SearchOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			h, err := eng.History(ctx, "Patient", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Entry) != 2 {
				t.Fatalf("history after unchanged re-writes: %d versions, want 2", len(h.Entry))
			}
			changed := `{"resourceType":"Patient","id":"p1","gender":"female","birthDate":"1941-03-15"}`
			res, err = eng.Update(ctx, "Patient", "p1", []byte(changed), 0)
			if err != nil || res.NoOp || res.Version.VersionID != 2 {
				t.Fatalf("changed update: NoOp %v version %d, %v", res.NoOp, res.Version.VersionID, err)
			}
		})
	}
}
