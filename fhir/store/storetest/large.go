package storetest

import (
	"fmt"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// largeLimits admit queries far past the server's default limits: a store must
// evaluate whatever the parser lets through, whatever the limits are set to.
var largeLimits = search.Limits{MaxRepeats: 5000, MaxParams: 5000, MaxOr: 5000, MaxValues: 100000, MaxIncludes: 100, MaxChain: 4, MaxChained: 5000, MaxSort: 8}

// list returns n comma-separated values, each format with its index.
func list(format string, n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(format, i)
	}
	return strings.Join(items, ",")
}

// testSearchLarge checks that long OR lists, many repeated (ANDed) parameters
// and long lists inside chains and _has are answered like short ones: no
// backend may fail on the size of the statement it builds (SQLite's
// expression depth limit is 1000: the 1,000 _id values and the 1,000
// repetitions would pass it as flat OR and AND chains). The other shapes are
// smaller, to keep the suite quick under -race.
func testSearchLarge(t *testing.T, s store.Store) {
	const n = 12
	for i := 0; i < n; i++ {
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"Organization","id":"o%d","name":"org%d"}`, i, i))
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","name":[{"family":"fam%d"}],"birthDate":"20%02d-01-01","gender":"male",`+
			`"identifier":[{"system":"urn:sys","value":"v%d"}],"managingOrganization":{"reference":"Organization/o%d"},"generalPractitioner":[{"reference":"Practitioner/x%d"}]}`, i, i, i, i, i, i))
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"Goal","id":"g%d","lifecycleStatus":"active","description":{"text":"goal %d"},"subject":{"reference":"Patient/p%d"}}`, i, i, i))
	}
	repeated := func(format string, k int) []fhir.RawParam {
		name, value, _ := strings.Cut(format, "=")
		ps := make([]fhir.RawParam, k)
		for i := range ps {
			ps[i] = fhir.RawParam{Name: name, Value: fmt.Sprintf(value, i)}
		}
		return ps
	}
	one := func(name, value string) []fhir.RawParam { return []fhir.RawParam{{Name: name, Value: value}} }
	for _, c := range []struct {
		name   string
		params []fhir.RawParam
		want   int
	}{
		{"1,000 _id values", one("_id", list("p%d", 1000)), n},
		{"500 name values", one("name", list("fam%d", 500)), n},
		{"1,000 identifier values with system", one("identifier", list("urn:sys|v%d", 1000)), n},
		{"1,000 identifier values with system, :not", one("identifier:not", list("urn:sys|v%d", 1000)), 0},
		{"system and code must match together", one("identifier", "urn:sys|v1,urn:other|v2,urn:sys|nothing"), 1},
		{"1,000 reference values", one("general-practitioner", list("Practitioner/x%d", 1000)), n},
		{"300 date values with ge", one("birthdate", list("ge2%03d", 300)), n},
		{"1,000 repetitions of a parameter", repeated("birthdate=gt1%03d", 1000), n},
		{"300 repetitions of a negation", repeated("_id:not=q%d", 300), n},
		{"25 repetitions of a chain", repeated("organization._id:not=zz%d", 25), n},
		{"200 chained values", one("organization.name", list("org%d", 200)), n},
		{"500 reverse-chained values", one("_has:Goal:subject:_id", list("g%d", 500)), n},
	} {
		q, err := registry.ParseQuery("Patient", c.params, search.ParseOptions{DefaultCount: 1000, MaxCount: 1000, Limits: largeLimits})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		q.Total = fhir.TotalAccurate
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if len(res.Matches) != c.want || res.Total != c.want {
			t.Errorf("%s: %d matches, total %d, want %d", c.name, len(res.Matches), res.Total, c.want)
		}
	}
}
