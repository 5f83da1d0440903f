package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
	"crs/profiles"
)

// TestBatchedCreateChecks: the "as written" policy check of a transaction's
// creates is asked once per type and chunk of ids (createcheck.go); an entry
// outside the caller's bounds is still refused, naming that entry, whatever
// its place among many that are within them, and nothing is stored.
func TestBatchedCreateChecks(t *testing.T) {
	st, _ := openStore(t)
	eng := twoCouncils(t, st)
	ctx := council()
	la := profiles.DefaultCanonicalBase + "/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority"
	pat := func(code string) string {
		return fmt.Sprintf(`{"resourceType":"Patient","extension":[{"url":%q,"valueCoding":{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":%q}}]}`, la, code)
	}
	bundle := func(codes ...string) []byte {
		var entries []string
		for _, c := range codes {
			entries = append(entries, `{"resource":`+pat(c)+`,"request":{"method":"POST","url":"Patient"}}`)
		}
		return transaction(entries...)
	}
	count := func() int { return stored(t, st, "Patient") }
	before := count()
	var many []string
	for i := 0; i < 150; i++ { // more than one chunk
		many = append(many, "E10000031")
	}
	b, err := eng.Bundle(ctx, bundle(many...), engine.SearchOptions{})
	if err != nil {
		t.Fatalf("150 creates within the council's bounds: %v", err)
	}
	if len(b.Entry) != 150 || count() != before+150 {
		t.Fatalf("%d entries answered, %d stored; want 150", len(b.Entry), count()-before)
	}
	for _, at := range []int{0, 77, 149} {
		codes := append([]string(nil), many...)
		codes[at] = "E08000026" // Coventry's resident: not this council's to create
		before := count()
		_, err := eng.Bundle(ctx, bundle(codes...), engine.SearchOptions{})
		if fhir.KindOf(err) != fhir.Forbidden || !strings.Contains(err.Error(), fmt.Sprintf("entry %d ", at)) {
			t.Errorf("one of 150 outside the bounds, at %d: %v, want 403 naming entry %d", at, err, at)
		}
		if count() != before {
			t.Errorf("a refused transaction stored %d Patients", count()-before)
		}
	}
}

// TestBatchedChainCreateChecks: the council's episodes (create condition
// patient:Patient.responsible-la=…, a chain) are cleared by one search of the
// Patients they point to (createcheck_chain.go): 150 episodes of its own
// resident, and of a resident created in the same transaction, are stored;
// one episode of another council's resident among them is still refused,
// naming its entry, and nothing is stored.
func TestBatchedChainCreateChecks(t *testing.T) {
	st, _ := openStore(t)
	eng := twoCouncils(t, st)
	ctx := council()
	la := profiles.DefaultCanonicalBase + "/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority"
	episode := func(patient string) string {
		return `{"resource":{"resourceType":"EpisodeOfCare","status":"active","patient":{"reference":"` + patient + `"}},"request":{"method":"POST","url":"EpisodeOfCare"}}`
	}
	count := func() int { return stored(t, st, "EpisodeOfCare") }
	newPatient := fmt.Sprintf(`{"fullUrl":"urn:uuid:6b0f7c1e-1d2a-4c55-9a0e-2f3b4c5d6e7f","resource":{"resourceType":"Patient","extension":[{"url":%q,"valueCoding":{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":"E10000031"}}]},"request":{"method":"POST","url":"Patient"}}`, la)
	var many []string
	for i := 0; i < 150; i++ {
		many = append(many, episode("Patient/pat-a"))
	}
	before := count()
	if _, err := eng.Bundle(ctx, transaction(append(append([]string{newPatient}, many...), episode("urn:uuid:6b0f7c1e-1d2a-4c55-9a0e-2f3b4c5d6e7f"), episode("urn:uuid:6b0f7c1e-1d2a-4c55-9a0e-2f3b4c5d6e7f"))...), engine.SearchOptions{}); err != nil {
		t.Fatalf("152 episodes within the council's bounds: %v", err)
	}
	if got := count() - before; got != 152 {
		t.Fatalf("%d episodes stored, want 152", got)
	}
	for _, at := range []int{0, 77, 149} {
		entries := append([]string(nil), many...)
		entries[at] = episode("Patient/pat-b") // Coventry's resident
		before := count()
		_, err := eng.Bundle(ctx, transaction(entries...), engine.SearchOptions{})
		if fhir.KindOf(err) != fhir.Forbidden || !strings.Contains(err.Error(), fmt.Sprintf("entry %d ", at)) {
			t.Errorf("one of 150 episodes outside the bounds, at %d: %v, want 403 naming entry %d", at, err, at)
		}
		if count() != before {
			t.Errorf("a refused transaction stored %d episodes", count()-before)
		}
	}
}

// stored counts the resources of type rt in st.
func stored(t *testing.T, st store.Store, rt string) int {
	t.Helper()
	res, err := st.Search(context.Background(), &fhir.Query{Type: rt, Count: 1000, Total: fhir.TotalAccurate})
	if err != nil {
		t.Fatal(err)
	}
	return res.Total
}

// transaction is a transaction Bundle of entries (JSON).
func transaction(entries ...string) []byte {
	return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
}

// TestBatchedNHSNumberChecks: the one-holder-per-NHS-number check of a
// transaction's Patients is one search for all their numbers
// (integrity_batch.go); a Patient whose number another holds is still refused
// naming the holder, whether the other is stored or in the same transaction.
func TestBatchedNHSNumberChecks(t *testing.T) {
	ctx := context.Background()
	for name, st := range integrityStores(t) {
		t.Run(name, func(t *testing.T) {
			e := integrityEngine(t, st, engine.EnforceStrict)
			if _, err := e.Update(ctx, "Patient", "held", patient("held", "9000000009", ""), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Update(ctx, "Patient", "merged", patient("merged", "9434765919", `,"active":false`), 0); err != nil {
				t.Fatal(err)
			}
			tx := func(numbers ...string) []byte {
				var entries []string
				for _, n := range numbers {
					entries = append(entries, `{"resource":`+string(patient("", n, ""))+`,"request":{"method":"POST","url":"Patient"}}`)
				}
				return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
			}
			// Distinct new numbers, and one only an inactive record has: stored.
			if _, err := e.Bundle(ctx, tx("9434765870", "9434765889", "9434765919"), engine.SearchOptions{}); err != nil {
				t.Fatalf("three new holders: %v", err)
			}
			// One number held already, among new ones: refused, naming the holder.
			_, err := e.Bundle(ctx, tx("9434765897", "9000000009", "9434765900"), engine.SearchOptions{})
			if fhir.KindOf(err) != fhir.Conflict || !strings.Contains(err.Error(), "Patient/held") {
				t.Errorf("a number held already: %v, want a conflict naming Patient/held", err)
			}
			// The same new number twice in one transaction: refused.
			if _, err := e.Bundle(ctx, tx("9434765927", "9434765897", "9434765927"), engine.SearchOptions{}); fhir.KindOf(err) != fhir.Conflict {
				t.Errorf("one number twice: %v, want a conflict", err)
			}
		})
	}
}

// TestBatchedConditionalCreates: the conditions of a transaction's
// conditional creates keyed on one identifier are searched together
// (condcreate_batch.go); each entry still gets its own answer: 200 with the
// record its condition finds, 201 for the ones that find none, and a
// condition matching two records is still 412.
func TestBatchedConditionalCreates(t *testing.T) {
	st, v := openStore(t)
	e := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir"})
	ctx := context.Background()
	const sys = "https://example.org/Id/visit"
	enc := func(id string) string {
		return `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"identifier":[{"system":"` + sys + `","value":"` + id + `"}]}`
	}
	bundle := func(ids ...string) []byte {
		var entries []string
		for _, id := range ids {
			entries = append(entries, `{"resource":`+enc(id)+`,"request":{"method":"POST","url":"Encounter","ifNoneExist":"identifier=`+sys+`|`+id+`"}}`)
		}
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	var first []string
	for i := 0; i < 120; i++ {
		first = append(first, fmt.Sprintf("v%d", i))
	}
	b, err := e.Bundle(ctx, bundle(first...), engine.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, en := range b.Entry {
		if en.Response.Status != "201 Created" {
			t.Fatalf("entry %d of new visits: %s, want 201", i, en.Response.Status)
		}
	}
	// v5 and v110 exist (one in each chunk); the others are new.
	b, err = e.Bundle(ctx, bundle("n1", "v5", "n2", "n3", "v110", "n4"), engine.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"201 Created", "200 OK", "201 Created", "201 Created", "200 OK", "201 Created"}
	for i, en := range b.Entry {
		if en.Response.Status != want[i] {
			t.Errorf("entry %d: %s, want %s", i, en.Response.Status, want[i])
		}
	}
	res, err := st.Search(ctx, &fhir.Query{Type: "Encounter", Count: 1, Total: fhir.TotalAccurate})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != 124 {
		t.Errorf("%d Encounters stored, want 124", res.Total)
	}
	// Two records with one key: the condition is ambiguous.
	if _, err := e.Create(ctx, "Encounter", []byte(enc("v7")), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Bundle(ctx, bundle("n9", "v7"), engine.SearchOptions{}); fhir.KindOf(err) != fhir.TooManyMatches {
		t.Errorf("an ambiguous condition among others: %v, want 412", err)
	}
}
