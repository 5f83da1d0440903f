package storetest

import (
	"fmt"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/store"
)

// testServerPlans holds the shapes a backend may answer on its database
// server rather than in its own code (the MongoDB backend's compiled filters,
// plan.go there), each next to its edge: several values of one parameter on
// one resource (where a condition with two bounds must hold for one and the
// same value, and a server that tests each bound against any value would
// answer too much), one-sided date prefixes whose exactness rests on that
// argument (ge, le), sort keys that are missing or tied across page
// boundaries in both directions, equality keys of every kind, and the access
// shape (a reverse chain holding a chain) sorted and paged with its total.
func testServerPlans(t *testing.T, s store.Store) {
	// Goal.target.due: t1 has two due dates, t2 one, t3 none.
	put(t, s, 1, `{"resourceType":"Goal","id":"t1","lifecycleStatus":"active","description":{"text":"a"},"subject":{"reference":"Patient/p1"},"target":[{"dueDate":"2026-01-10"},{"dueDate":"2026-03-01"}]}`)
	put(t, s, 1, `{"resourceType":"Goal","id":"t2","lifecycleStatus":"active","description":{"text":"b"},"subject":{"reference":"Patient/p1"},"target":[{"dueDate":"2026-02-15"}]}`)
	put(t, s, 1, `{"resourceType":"Goal","id":"t3","lifecycleStatus":"completed","description":{"text":"c"},"subject":{"reference":"Patient/p2"}}`)
	expect(t, s, "Goal", map[string]string{
		"target-date=ge2026-02-01":                       "t1 t2",
		"target-date=le2026-01-31":                       "t1",
		"target-date=le2026-02-15":                       "t1 t2",
		"target-date=eq2026-02":                          "t2",
		"target-date=2026-02,2026-03":                    "t1 t2",
		"target-date=ne2026-02":                          "t1",
		"target-date=gt2026-02-20":                       "t1",
		"target-date=lt2026-01-11":                       "t1",
		"target-date=sa2026-02-20":                       "t1",
		"target-date=eb2026-01-11":                       "t1",
		"target-date=ap2026-02-15":                       "t2",
		"target-date:missing=true":                       "t3",
		"target-date=eq2026-02&subject=p1":               "t2",
		"target-date=ge2026-03&target-date=le2026-01-10": "t1",
	})
	for qs, want := range map[string]string{
		"_sort=target-date":           "t1 t2 t3",
		"_sort=-target-date":          "t1 t2 t3",
		"_sort=target-date&_count=1":  "t1 t2 t3",
		"_sort=-target-date&_count=2": "t1 t2 t3",
		"target-date=eq2026-02,eq2026-03&_sort=-target-date&_count=1": "t1 t2",
		"target-date=eq2026-02,eq2026-03&_count=1":                    "t1 t2",
	} {
		if got := sorted(t, s, "Goal", qs); got != want {
			t.Errorf("Goal?%s: %s, want %s", qs, got, want)
		}
	}
	// Totals of a plan that is not exact on every server, bounded or not.
	q := query(t, "Goal", "target-date=eq2026-02,eq2026-03&_count=1")
	for _, c := range []struct{ limit, want int }{{0, 2}, {3, 2}, {2, -1}} {
		q.TotalLimit = c.limit
		res, err := s.Search(ctx, q)
		if err != nil || res.Total != c.want || len(res.Matches) != 1 || res.Next == "" {
			t.Errorf("total limit %d: %+v %v, want total %d", c.limit, res, err, c.want)
		}
	}

	// Sort keys missing and tied, in both directions, at every page size.
	for i, family := range []string{"Baker", "Adams", "", "Baker", "", "Ωmega"} {
		name := ""
		if family != "" {
			name = fmt.Sprintf(`,"name":[{"family":%q}]`, family)
		}
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"s%d","gender":"unknown"%s}`, i, name))
	}
	for _, c := range []struct{ qs, want string }{
		{"_sort=family", "s1 s0 s3 s5 s2 s4"},
		{"_sort=-family", "s5 s0 s3 s1 s2 s4"},
		{"gender=unknown&_sort=family", "s1 s0 s3 s5 s2 s4"},
		{"family=baker,ωm&_sort=-family", "s5 s0 s3"},
		{"family:missing=true&_sort=family", "s2 s4"},
	} {
		for n := 1; n <= 4; n++ {
			qs := fmt.Sprintf("%s&_count=%d", c.qs, n)
			if got := sorted(t, s, "Patient", qs); got != c.want {
				t.Errorf("Patient?%s: %s, want %s", qs, got, c.want)
			}
		}
	}

	// Equality keys of every kind, alone, ORed and negated.
	put(t, s, 1, `{"resourceType":"ServiceRequest","id":"r1","status":"active","intent":"plan","subject":{"reference":"Patient/p1"},"requester":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RKB"}},"identifier":[{"system":"urn:crs","value":"1"}],"instantiatesUri":["http://example.org/plan/a"]}`)
	put(t, s, 1, `{"resourceType":"ServiceRequest","id":"r2","status":"completed","intent":"plan","subject":{"reference":"http://other.example/fhir/Patient/p1"},"requester":{"reference":"Organization/o1"},"identifier":[{"system":"urn:other","value":"1"}]}`)
	expect(t, s, "ServiceRequest", map[string]string{
		"identifier=urn:crs|":                          "r1",
		"identifier=urn:crs|,urn:other|":               "r1 r2",
		"identifier=1":                                 "r1 r2",
		"identifier:not=urn:crs|1":                     "r2",
		"subject=p1":                                   "r1",
		"subject=http://other.example/fhir/Patient/p1": "r2",
		"requester:identifier=RKB":                     "r1",
		"requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|RKB": "r1",
		"requester=o1":                               "r2",
		"requester:Organization=o1":                  "r2",
		"instantiates-uri=http://example.org/plan/a": "r1",
		"instantiates-uri:below=http://example.org":  "r1",
		"status:not=active,completed":                "",
	})

	// The access shape: a reverse chain holding a chain, sorted and paged.
	pathway(t, s)
	for _, c := range []struct {
		qs    string
		want  string
		total int
	}{
		{"_has:ServiceRequest:subject:requester:Organization.identifier=RWK&_sort=family&_count=1", "p2 p1", 2},
		{"_has:ServiceRequest:subject:requester:Organization.identifier=RWK&family=smi&_count=1", "p1", 1},
		{"_has:ServiceRequest:subject:requester:Organization.identifier=nobody&_count=1", "", 0},
	} {
		if got := sorted(t, s, "Patient", c.qs); got != c.want {
			t.Errorf("Patient?%s: %s, want %s", c.qs, got, c.want)
		}
		res, err := s.Search(ctx, query(t, "Patient", c.qs))
		if err != nil || res.Total != c.total {
			t.Errorf("Patient?%s: total %+v %v, want %d", c.qs, res, err, c.total)
		}
	}
	q = query(t, "Patient", "_has:ServiceRequest:subject:requester:Organization.identifier=RWK&_count=0")
	q.Total = fhir.TotalAccurate
	if res, err := s.Search(ctx, q); err != nil || res.Total != 2 || len(res.Matches) != 0 {
		t.Errorf("count only: %+v %v", res, err)
	}
	if n := strings.Count(sorted(t, s, "Patient", "_sort=-family&_count=3"), " ") + 1; n != 8 {
		t.Errorf("every Patient sorted: %d", n)
	}
}
