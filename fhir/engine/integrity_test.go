package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
	"crs/fhir/store/mongo"
	"crs/fhir/store/mongo/mongotest"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
)

// integrityStores opens each backend the integrity checks must hold on.
func integrityStores(t *testing.T) map[string]store.Store {
	t.Helper()
	lite, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	mg, err := mongo.Open(context.Background(), mongotest.URI(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mg.Close() })
	return map[string]store.Store{"sqlite": lite, "mongo": mg}
}

func integrityEngine(t *testing.T, st store.Store, mode engine.Enforcement) *engine.Engine {
	t.Helper()
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	return engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://crs.test/fhir", Enforcement: mode})
}

func patient(id, nhs string, extra string) []byte {
	idField := ""
	if id != "" {
		idField = `"id":"` + id + `",`
	}
	return []byte(`{"resourceType":"Patient",` + idField + `"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhs + `"}]` + extra + `}`)
}

// TestOneActivePatientPerNHSNumber: strict mode refuses a second active
// Patient with an NHS number already held, inside the write's transaction, on
// every backend; inactive or merged records (replaced-by) do not hold it.
func TestOneActivePatientPerNHSNumber(t *testing.T) {
	ctx := context.Background()
	for name, st := range integrityStores(t) {
		t.Run(name, func(t *testing.T) {
			e := integrityEngine(t, st, engine.EnforceStrict)
			if _, err := e.Update(ctx, "Patient", "p1", patient("p1", "9000000009", ""), 0); err != nil {
				t.Fatal(err)
			}
			_, err := e.Update(ctx, "Patient", "p2", patient("p2", "9000000009", ""), 0)
			if fhir.KindOf(err) != fhir.Conflict || !strings.Contains(err.Error(), "Patient/p1") {
				t.Fatalf("second active Patient with the number: %v, want a conflict naming Patient/p1", err)
			}
			if _, err := e.Read(ctx, "Patient", "p2"); fhir.KindOf(err) != fhir.NotFound {
				t.Errorf("the refused Patient was stored: %v", err)
			}
			if _, err := e.Create(ctx, "Patient", patient("", "9000000009", ""), ""); fhir.KindOf(err) != fhir.Conflict {
				t.Errorf("create: %v, want a conflict", err)
			}
			// The old record merged into a new one: both may carry the number.
			if _, err := e.Update(ctx, "Patient", "p3", patient("p3", "9000000009", `,"link":[{"other":{"reference":"Patient/p1"},"type":"replaced-by"}]`), 0); err != nil {
				t.Errorf("a merged (replaced-by) record: %v", err)
			}
			if _, err := e.Update(ctx, "Patient", "p4", patient("p4", "9000000009", `,"active":false`), 0); err != nil {
				t.Errorf("an inactive record: %v", err)
			}
			// Updating the holder itself is fine.
			if _, err := e.Update(ctx, "Patient", "p1", patient("p1", "9000000009", `,"gender":"female"`), 0); err != nil {
				t.Errorf("update of the holder: %v", err)
			}
			// Two in one transaction: refused, nothing stored.
			tx := `{"resourceType":"Bundle","type":"transaction","entry":[
			 {"resource":` + string(patient("", "9434765919", "")) + `,"request":{"method":"POST","url":"Patient"}},
			 {"resource":` + string(patient("", "9434765919", "")) + `,"request":{"method":"POST","url":"Patient"}}]}`
			if _, err := e.Bundle(ctx, []byte(tx), engine.SearchOptions{}); fhir.KindOf(err) != fhir.Conflict {
				t.Errorf("a transaction with two holders: %v, want a conflict", err)
			}
			// Declared mode leaves identity to the sender.
			d := integrityEngine(t, st, engine.EnforceDeclared)
			if _, err := d.Update(ctx, "Patient", "p5", patient("p5", "9000000009", ""), 0); err != nil {
				t.Errorf("declared mode: %v", err)
			}
		})
	}
}

// TestDeleteOfAReferencedRecord: strict mode refuses to delete a record others
// point at (409 naming them) unless the delete cascades; a transaction that
// deletes both is fine whatever its order.
func TestDeleteOfAReferencedRecord(t *testing.T) {
	ctx := context.Background()
	for name, st := range integrityStores(t) {
		t.Run(name, func(t *testing.T) {
			e := integrityEngine(t, st, engine.EnforceStrict)
			for _, w := range []struct{ rt, id, body string }{
				{"Patient", "p1", string(patient("p1", "9000000009", ""))},
				{"Goal", "g1", `{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","description":{"text":"tea"},"subject":{"reference":"Patient/p1"}}`},
				{"CarePlan", "cp1", `{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"goal":[{"reference":"Goal/g1"}]}`},
			} {
				if _, err := e.Update(ctx, w.rt, w.id, []byte(w.body), 0); err != nil {
					t.Fatalf("%s/%s: %v", w.rt, w.id, err)
				}
			}
			_, err := e.Delete(ctx, "Patient", "p1", 0)
			if fhir.KindOf(err) != fhir.Conflict || !strings.Contains(err.Error(), "Goal/g1") || !strings.Contains(err.Error(), "CarePlan/cp1") {
				t.Fatalf("delete of a referenced Patient: %v, want a conflict naming Goal/g1 and CarePlan/cp1", err)
			}
			if _, err := e.Read(ctx, "Patient", "p1"); err != nil {
				t.Fatalf("the refused delete removed the Patient: %v", err)
			}
			// Deleting the leaves first, in one transaction in any order, is fine.
			tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Goal/g1"}},{"request":{"method":"DELETE","url":"CarePlan/cp1"}}]}`
			if _, err := e.Bundle(ctx, []byte(tx), engine.SearchOptions{}); err != nil {
				t.Fatalf("transaction deleting the goal and the plan that points at it: %v", err)
			}
			if _, err := e.Update(ctx, "Goal", "g2", []byte(`{"resourceType":"Goal","id":"g2","lifecycleStatus":"active","description":{"text":"walk"},"subject":{"reference":"Patient/p1"}}`), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Delete(engine.WithCascadeDelete(ctx), "Patient", "p1", 0); err != nil {
				t.Fatalf("cascading delete: %v", err)
			}
			for _, k := range [][2]string{{"Patient", "p1"}, {"Goal", "g2"}} {
				if _, err := e.Read(ctx, k[0], k[1]); fhir.KindOf(err) != fhir.Gone {
					t.Errorf("%s/%s after the cascade: %v, want gone", k[0], k[1], err)
				}
			}
			// A reference by absolute URL under this server's base counts too,
			// and a cascade deletes every referrer, past the first page of names.
			if _, err := e.Update(ctx, "Patient", "p2", patient("p2", "9434765870", ""), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Update(ctx, "Goal", "abs", []byte(`{"resourceType":"Goal","id":"abs","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"http://crs.test/fhir/Patient/p2"}}`), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Delete(ctx, "Patient", "p2", 0); fhir.KindOf(err) != fhir.Conflict || !strings.Contains(err.Error(), "Goal/abs") {
				t.Fatalf("delete of a Patient referenced by absolute URL: %v, want a conflict naming Goal/abs", err)
			}
			for i := 0; i < 14; i++ {
				body := fmt.Sprintf(`{"resourceType":"Goal","id":"many%d","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"Patient/p2"}}`, i)
				if _, err := e.Update(ctx, "Goal", fmt.Sprintf("many%d", i), []byte(body), 0); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.Delete(engine.WithCascadeDelete(ctx), "Patient", "p2", 0); err != nil {
				t.Fatalf("cascading delete of 15 referrers: %v", err)
			}
			for i := 0; i < 14; i++ {
				if _, err := e.Read(ctx, "Goal", fmt.Sprintf("many%d", i)); fhir.KindOf(err) != fhir.Gone {
					t.Errorf("Goal/many%d after the cascade: %v, want gone", i, err)
				}
			}
			if _, err := e.Read(ctx, "Goal", "abs"); fhir.KindOf(err) != fhir.Gone {
				t.Errorf("Goal/abs after the cascade: %v, want gone", err)
			}
			// Declared mode does not check.
			d := integrityEngine(t, st, engine.EnforceDeclared)
			if _, err := d.Update(ctx, "Patient", "p9", patient("p9", "9434765919", ""), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Update(ctx, "Goal", "g9", []byte(`{"resourceType":"Goal","id":"g9","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"Patient/p9"}}`), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Delete(ctx, "Patient", "p9", 0); err != nil {
				t.Errorf("declared mode: %v", err)
			}
		})
	}
}
