package engine_test

import (
	"context"
	"encoding/json"
	"math/rand"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
)

// localityCaseload reads the caseload of one care provider in one locality as
// the MDT page needs it, in a short sequence of searches: the people (a page
// of up to 300), then for all of them at once their active care plans, their
// goals, and their visits newest first (the first visit seen of a person is
// the last one). It returns the number of people and of resources read.
func localityCaseload(ctx context.Context, e *engine.Engine, prov int, locality string) (people, read int, err error) {
	b, err := e.Search(ctx, "Patient", []fhir.RawParam{
		{Name: "organization", Value: "Organization/prov" + strconv.Itoa(prov)},
		{Name: "address", Value: locality},
		{Name: "_count", Value: "300"},
	}, engine.SearchOptions{})
	if err != nil {
		return 0, 0, err
	}
	refs := make([]string, 0, len(b.Entry))
	for _, en := range b.Entry {
		var r struct{ ID string }
		if err := json.Unmarshal(en.Resource, &r); err != nil {
			return 0, 0, err
		}
		refs = append(refs, "Patient/"+r.ID)
	}
	if len(refs) == 0 {
		return 0, 0, nil
	}
	subjects := strings.Join(refs, ",")
	read = len(refs)
	for _, q := range []struct {
		rt     string
		params []fhir.RawParam
	}{
		{"CarePlan", []fhir.RawParam{{Name: "subject", Value: subjects}, {Name: "status", Value: "active"}, {Name: "_count", Value: "500"}}},
		{"Goal", []fhir.RawParam{{Name: "subject", Value: subjects}, {Name: "_count", Value: "500"}}},
		{"Encounter", []fhir.RawParam{{Name: "subject", Value: subjects}, {Name: "_sort", Value: "-date"}, {Name: "_count", Value: "500"}}},
	} {
		n, err := searchAll(ctx, e, q.rt, q.params)
		if err != nil {
			return 0, 0, err
		}
		read += n
	}
	return len(refs), read, nil
}

// searchAll runs a search and follows its next links, returning the number
// of entries read.
func searchAll(ctx context.Context, e *engine.Engine, rt string, params []fhir.RawParam) (int, error) {
	n := 0
	for {
		b, err := e.Search(ctx, rt, params, engine.SearchOptions{})
		if err != nil {
			return 0, err
		}
		n += len(b.Entry)
		next := ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			return n, nil
		}
		u, err := url.Parse(next)
		if err != nil {
			return 0, err
		}
		if params, err = engine.ParseQueryString(u.RawQuery); err != nil {
			return 0, err
		}
	}
}

// BenchmarkLocalityCaseload loads the region (CRS_BENCH_RESOURCES, kept with
// CRS_BENCH_DB) and reports the p50 and p95 latency of a locality's caseload
// for one care provider (localityCaseload: up to 300 people, their active
// plans, goals and visits), each run a different provider and locality.
func BenchmarkLocalityCaseload(b *testing.B) {
	r := loadRegion(b, regionSize())
	defer r.st.Close()
	ctx := context.Background()
	rnd := rand.New(rand.NewSource(3))
	runs := max(benchRuns()/4, 5)
	lat := make([]time.Duration, 0, runs)
	var people, read int
	for i := 0; i < runs; i++ {
		p := rnd.Intn(r.people)
		t0 := time.Now()
		n, m, err := localityCaseload(ctx, r.eng, p%providers, localities[p%3])
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		people, read = people+n, read+m
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := rnd.Intn(r.people)
		if _, _, err := localityCaseload(ctx, r.eng, p%providers, localities[p%3]); err != nil {
			b.Fatal(err)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(people)/float64(runs), "people/caseload")
	b.ReportMetric(float64(read)/float64(runs), "resources/caseload")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}
