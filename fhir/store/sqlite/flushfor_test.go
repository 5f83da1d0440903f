package sqlite

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// TestSearchInTransactionSeesItsWrites checks that a search inside a write
// transaction, which inserts only the buffered rows of the tables it reads
// (flushFor), answers as the same search does once the same writes are committed one by
// one: chains, reverse chains (the care provider's condition on a CarePlan,
// read through the referral's denormalised key), a reference key
// (subject:Patient.organization), sorts and :of-type, after a referral is
// reassigned, a plan's person changed, a referral created, a key's target
// changed (stale keys) and a resource updated twice in the transaction.
func TestSearchInTransactionSeesItsWrites(t *testing.T) {
	reg := fsearch.Default()
	ctx := context.Background()
	const ods = "https://fhir.nhs.uk/Id/ods-organization-code"
	org := func(id, code string) string {
		return `{"resourceType":"Organization","id":"` + id + `","identifier":[{"system":"` + ods + `","value":"` + code + `"}]}`
	}
	pat := func(id, family, org string) string {
		return `{"resourceType":"Patient","id":"` + id + `","name":[{"family":"` + family + `"}],"managingOrganization":{"reference":"Organization/` + org + `"},` +
			`"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"https://example.org/mrn","value":"` + id + `"}]}`
	}
	sr := func(id, pat, org string) string {
		return `{"resourceType":"ServiceRequest","id":"` + id + `","status":"active","intent":"order","subject":{"reference":"Patient/` + pat + `"},"performer":[{"reference":"Organization/` + org + `"}],"requester":{"reference":"Organization/` + org + `"}}`
	}
	plan := func(id, pat, status, created string) string {
		return `{"resourceType":"CarePlan","id":"` + id + `","status":"` + status + `","intent":"plan","subject":{"reference":"Patient/` + pat + `"},"created":"` + created + `"}`
	}
	searches := []string{
		"CarePlan?_id=cp1&subject:Patient._has:ServiceRequest:subject:performer:Organization.identifier=" + ods + "|P1",
		"CarePlan?_id=cp2&subject:Patient._has:ServiceRequest:subject:performer:Organization.identifier=" + ods + "|P1",
		"CarePlan?subject:Patient._has:ServiceRequest:subject:performer:Organization.identifier=" + ods + "|P2",
		"Patient?_has:ServiceRequest:subject:performer:Organization.identifier=" + ods + "|P1",
		"Patient?_has:ServiceRequest:subject:status=active",
		"CarePlan?subject:Patient.organization=Organization/o1",
		"CarePlan?subject:Patient.family=Smith&status=active",
		"CarePlan?status=active&_sort=-date",
		"Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|pb",
		"ServiceRequest?performer:Organization.identifier=" + ods + "|P1",
	}
	steps := []string{
		org("o1", "P1"), org("o2", "P2"),
		pat("pa", "Smith", "o1"), pat("pb", "Jones", "o2"),
		sr("s1", "pa", "o1"),
		plan("cp1", "pa", "active", "2026-01-01"),
		"search",
		plan("cp2", "pb", "draft", "2026-01-02"),
		"search",
		sr("s1", "pa", "o2"), // the person's referral reassigned
		"search",
		plan("cp1", "pb", "active", "2026-01-03"), // the plan's person changed
		"search",
		sr("s2", "pb", "o1"), // a referral created
		"search",
		org("o2", "P1"), // a key's target changed: the keys are stale
		"search",
		pat("pb", "Smith", "o1"), plan("cp2", "pb", "active", "2026-01-04"),
		plan("cp2", "pb", "active", "2026-01-05"), // updated twice
		"search",
	}
	parse := func(s string) *fhir.Query {
		typ, query, _ := strings.Cut(s, "?")
		var raw []fhir.RawParam
		for _, kv := range strings.Split(query, "&") {
			name, value, _ := strings.Cut(kv, "=")
			raw = append(raw, fhir.RawParam{Name: name, Value: value})
		}
		q, err := reg.ParseQuery(typ, raw, fsearch.ParseOptions{DefaultCount: 100, MaxCount: 100})
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return q
	}
	ids := func(r interface {
		Search(context.Context, *fhir.Query) (*store.SearchResult, error)
	}, s string) string {
		res, err := r.Search(ctx, parse(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		var out []string
		for _, v := range res.Matches {
			out = append(out, v.ID)
		}
		if !strings.Contains(s, "_sort") {
			slices.Sort(out)
		}
		return strings.Join(out, ",")
	}
	vids := map[string]int{}
	version := func(body string) (store.Version, []fhir.IndexValue) {
		obj, err := fhir.Parse([]byte(body), fhir.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		typ := fhir.ResourceType(obj)
		index, err := reg.Extract(typ, obj)
		if err != nil {
			t.Fatal(err)
		}
		key := typ + "/" + obj["id"].(string)
		vids[key]++
		return store.Version{Type: typ, ID: obj["id"].(string), VersionID: vids[key],
			LastUpdated: time.Unix(1700000000, 0), Method: "PUT", Body: []byte(body)}, index
	}

	// One by one, committed: what each search must answer.
	single := openTemp(t)
	var want []string
	for _, s := range steps {
		if s == "search" {
			for _, q := range searches {
				want = append(want, ids(single, q))
			}
			continue
		}
		v, index := version(s)
		if err := single.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, index) }); err != nil {
			t.Fatal(err)
		}
	}
	// In one transaction per search, so that it finds its rows buffered (no
	// other search flushed them), at each point of the same writes.
	got := make([]string, len(want))
	for k, q := range searches {
		clear(vids)
		batched := openTemp(t)
		n := 0
		err := batched.Write(ctx, func(tx store.Tx) error {
			for _, s := range steps {
				if s == "search" {
					got[n*len(searches)+k] = ids(tx, q)
					n++
					continue
				}
				v, index := version(s)
				if err := tx.Put(ctx, v, index); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, table := range indexTables {
			if g, w := dumpTable(t, batched, table), dumpTable(t, single, table); !slices.Equal(g, w) {
				t.Errorf("%s: in one transaction\n%q\none by one\n%q", table, g, w)
			}
		}
	}
	t.Logf("answers: %q", want)
	n := 0
	for step, s := range steps {
		if s != "search" {
			continue
		}
		for _, q := range searches {
			if got[n] != want[n] {
				t.Errorf("after step %d, %s: in the transaction %q, committed %q", step, q, got[n], want[n])
			}
			n++
		}
	}
}
