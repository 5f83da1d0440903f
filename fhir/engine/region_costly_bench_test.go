package engine_test

import (
	"context"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/validate"
)

// costlyQueries would scan a large part of the region: each must answer
// within the query timeout or stop with 400 too-costly, never run on.
var costlyQueries = []struct{ rt, query string }{
	{"Encounter", "status:missing=true&_sort=-date"},
	{"Encounter", "status:not=finished&_total=accurate"},
	{"Goal", "_has:CarePlan:goal:_has:Provenance:target:agent=Organization/prov1"},
	{"Patient", "_has:Goal:subject:_has:CarePlan:goal:_has:Provenance:target:agent=Organization/prov1"},
	{"CarePlan", "subject:Patient.organization:Organization.name:contains=care&_sort=date&_total=accurate"},
	{"Encounter", "class:not=HH&_sort=-date&_total=accurate&_count=500"},
}

// BenchmarkCostlyQueries loads the region (CRS_BENCH_RESOURCES) and plants the
// costly queries against it with a 2-second query timeout, failing when one
// runs past the timeout (with slack for the machine) or fails otherwise; it
// logs each query's outcome and time.
func BenchmarkCostlyQueries(b *testing.B) {
	r := loadRegion(b, regionSize())
	defer r.st.Close()
	v, err := validate.New()
	if err != nil {
		b.Fatal(err)
	}
	const timeout = 2 * time.Second
	eng := engine.New(engine.Config{Store: r.st, Validator: v, Elements: v, Base: "http://bench/fhir", QueryTimeout: timeout})
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		for _, c := range costlyQueries {
			params, err := engine.ParseQueryString(c.query)
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			_, err = eng.Search(ctx, c.rt, params, engine.SearchOptions{})
			d := time.Since(t0)
			outcome := "answered"
			switch {
			case fhir.KindOf(err) == fhir.TooCostly:
				outcome = "stopped: too costly"
			case err != nil:
				b.Fatalf("%s?%s: %v", c.rt, c.query, err)
			}
			if d > timeout+time.Second {
				b.Errorf("%s?%s: %s after %s, past the %s timeout", c.rt, c.query, outcome, d.Round(time.Millisecond), timeout)
			}
			b.Logf("%s?%s: %s in %s", c.rt, c.query, outcome, d.Round(time.Millisecond))
		}
	}
}
