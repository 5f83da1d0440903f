package storetest

import (
	"testing"

	"crs/fhir/store"
)

// testSearchInTransaction: a search inside a transaction sees every search
// value the transaction wrote before it, of its own type and others, whatever
// the parameter's table, through chains and _has; and values not yet read by
// a search are stored with the transaction all the same (a store may write
// search values late, but none is lost).
func testSearchInTransaction(t *testing.T, s store.Store) {
	resources := []string{
		`{"resourceType":"Patient","id":"p","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"name":[{"family":"Intx"}],"gender":"male","birthDate":"1950-02-03"}`,
		`{"resourceType":"Encounter","id":"e","status":"finished","class":{"code":"IMP"},"subject":{"reference":"Patient/p"}}`,
		`{"resourceType":"ServiceRequest","id":"sr","status":"active","intent":"plan","subject":{"reference":"Patient/p"},"encounter":{"reference":"Encounter/e"},"authoredOn":"2026-11-20T10:00:00Z"}`,
	}
	searches := []struct{ rt, qs string }{
		{"Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"},
		{"ServiceRequest", "subject=Patient/p"},
		{"Patient", "family=intx"},
		{"Encounter", "subject.gender=male"},
		{"Patient", "_has:ServiceRequest:subject:status=active"},
		{"ServiceRequest", "authored=2026-11-20&_sort=-authored"},
		{"Patient", "birthdate=1950-02-03"},
	}
	err := s.Write(ctx, func(tx store.Tx) error {
		for i, res := range resources {
			v, index := version(t, 1, res)
			if err := tx.Put(ctx, v, index); err != nil {
				return err
			}
			if i == 0 {
				// Only the Patient is written: it is found by a search of its
				// own type, and no other type matches yet.
				if res, err := tx.Search(ctx, query(t, "Patient", searches[0].qs)); err != nil || len(res.Matches) != 1 {
					t.Errorf("inside the transaction, after the Patient: %s?%s: %v %v", searches[0].rt, searches[0].qs, res, err)
				}
			}
		}
		for _, q := range searches {
			if res, err := tx.Search(ctx, query(t, q.rt, q.qs)); err != nil || len(res.Matches) != 1 {
				t.Errorf("inside the transaction: %s?%s: %v %v", q.rt, q.qs, res, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range searches {
		if n := count(t, s, q.rt, q.qs); n != 1 {
			t.Errorf("after the transaction: %s?%s: %d matches, want 1", q.rt, q.qs, n)
		}
	}
	// Values no search inside the transaction read are stored too.
	expect(t, s, "Encounter", map[string]string{"status=finished": "e", "class=IMP": "e", "subject=Patient/p": "e"})
	expect(t, s, "ServiceRequest", map[string]string{"encounter=Encounter/e": "sr", "intent=plan": "sr"})
	expect(t, s, "Patient", map[string]string{"gender=male": "p"})
}
