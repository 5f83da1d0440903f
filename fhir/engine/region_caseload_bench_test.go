package engine_test

import (
	"context"
	"encoding/json"
	"math/rand"
	"net/url"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
)

// localityCaseload reads the caseload of one care provider in one locality as
// the MDT page needs it (their active plans, last visit and goals), in a
// short sequence of searches, none with a total (_total=none: the page reads
// what it shows and counts nothing): the people (a page of up to 300), then
// their active care plans and their goals (one search each for all of them,
// followed through its pages), and each person's last visit
// (Encounter?subject=…&_sort=-date&_count=1, one search per person: a
// driving set of that person's visits). The searches after the people's run
// on workers goroutines (the MDT page runs its searches in parallel,
// measures/), each on its own.
//
// With everyVisit it is the previous round's sequence instead: every search
// with the default total, and the visits one search for all of them, newest
// first, followed through every page (the first visit of a person seen is
// the last one), so that every visit is read. It returns the number of
// people and of resources read.
func localityCaseload(ctx context.Context, e *engine.Engine, prov int, locality string, everyVisit bool, workers int) (people, read int, err error) {
	noTotal := fhir.RawParam{Name: "_total", Value: "none"}
	who := []fhir.RawParam{
		{Name: "organization", Value: "Organization/prov" + strconv.Itoa(prov)},
		{Name: "address", Value: locality},
		{Name: "_count", Value: "300"},
	}
	if !everyVisit {
		who = append(who, noTotal)
	}
	var b *engine.Bundle
	pprof.Do(ctx, pprof.Labels("step", "people"), func(ctx context.Context) {
		b, err = e.Search(ctx, "Patient", who, engine.SearchOptions{})
	})
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
	if everyVisit {
		read = len(refs)
		for _, q := range []struct {
			rt     string
			params []fhir.RawParam
		}{
			{"CarePlan", []fhir.RawParam{{Name: "subject", Value: subjects}, {Name: "status", Value: "active"}, {Name: "_count", Value: "500"}}},
			{"Goal", []fhir.RawParam{{Name: "subject", Value: subjects}, {Name: "_count", Value: "500"}}},
			{"Encounter", []fhir.RawParam{{Name: "subject", Value: subjects}, {Name: "_sort", Value: "-date"}, {Name: "_count", Value: "500"}}},
		} {
			var n int
			pprof.Do(ctx, pprof.Labels("step", q.rt), func(ctx context.Context) {
				n, err = searchAll(ctx, e, q.rt, q.params)
			})
			if err != nil {
				return 0, 0, err
			}
			read += n
		}
		return len(refs), read, nil
	}
	jobs := []func() (int, error){
		step(ctx, "CarePlan", func(ctx context.Context) (int, error) {
			return searchAll(ctx, e, "CarePlan", []fhir.RawParam{{Name: "subject", Value: subjects}, {Name: "status", Value: "active"}, {Name: "_count", Value: "500"}, noTotal})
		}),
		step(ctx, "Goal", func(ctx context.Context) (int, error) {
			return searchAll(ctx, e, "Goal", []fhir.RawParam{{Name: "subject", Value: subjects}, {Name: "_count", Value: "500"}, noTotal})
		}),
	}
	for _, ref := range refs {
		jobs = append(jobs, step(ctx, "last-visit", func(ctx context.Context) (int, error) {
			b, err := e.Search(ctx, "Encounter", []fhir.RawParam{{Name: "subject", Value: ref}, {Name: "_sort", Value: "-date"}, {Name: "_count", Value: "1"}, noTotal}, engine.SearchOptions{})
			if err != nil {
				return 0, err
			}
			return len(b.Entry), nil
		}))
	}
	n, err := runJobs(jobs, workers)
	return len(refs), len(refs) + n, err
}

// step is f as a job whose CPU profile samples carry the label step=name
// (go tool pprof -tagfocus step=last-visit).
func step(ctx context.Context, name string, f func(context.Context) (int, error)) func() (int, error) {
	return func() (n int, err error) {
		pprof.Do(ctx, pprof.Labels("step", name), func(ctx context.Context) { n, err = f(ctx) })
		return n, err
	}
}

// runJobs runs jobs on workers goroutines and returns the sum of their
// counts, or the first error.
func runJobs(jobs []func() (int, error), workers int) (int, error) {
	next := make(chan func() (int, error))
	type result struct {
		n   int
		err error
	}
	done := make(chan result, workers)
	for w := 0; w < workers; w++ {
		go func() {
			var r result
			for job := range next {
				if r.err != nil {
					continue
				}
				n, err := job()
				r.n, r.err = r.n+n, err
			}
			done <- r
		}()
	}
	for _, job := range jobs {
		next <- job
	}
	close(next)
	total := 0
	var first error
	for w := 0; w < workers; w++ {
		r := <-done
		total += r.n
		if first == nil {
			first = r.err
		}
	}
	return total, first
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
// CRS_BENCH_DB) and reports the p50 and p95 latency and the CPU time of a
// locality's caseload for one care provider (localityCaseload: up to 300
// people, their active plans, goals and last visit), each run a different
// provider and locality: last-visit is the MDT page's sequence, one search
// at a time; last-visit-parallel the same with the searches after the
// people's on two goroutines (faster, but each SQLite read connection in use
// maps its own mmap_size of the file, which the resident set counts once per
// connection); every-visit the previous round's sequence (every visit read,
// newest first).
func BenchmarkLocalityCaseload(b *testing.B) {
	r := loadRegion(b, regionSize())
	defer r.st.Close()
	// The SQLite store refreshes its statistics (ANALYZE) when it opens,
	// before its first write: an empty write waits for that, so that the
	// first runs do not share the CPU with it.
	if err := r.st.Write(context.Background(), func(store.Tx) error { return nil }); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		everyVisit bool
		workers    int
	}{{"last-visit", false, 1}, {"last-visit-parallel", false, 2}, {"every-visit", true, 1}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			rnd := rand.New(rand.NewSource(3))
			runs := max(benchRuns()/4, 5)
			lat := make([]time.Duration, 0, runs)
			var people, read int
			cpu0 := engine.CPUTime(b)
			for i := 0; i < runs; i++ {
				p := rnd.Intn(r.people)
				t0 := time.Now()
				n, m, err := localityCaseload(ctx, r.eng, p%providers, localities[p%3], c.everyVisit, c.workers)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				people, read = people+n, read+m
			}
			cpu := engine.CPUTime(b) - cpu0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := rnd.Intn(r.people)
				if _, _, err := localityCaseload(ctx, r.eng, p%providers, localities[p%3], c.everyVisit, c.workers); err != nil {
					b.Fatal(err)
				}
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(people)/float64(runs), "people/caseload")
			b.ReportMetric(float64(read)/float64(runs), "resources/caseload")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(runs), "cpu-ms/caseload")
		})
	}
}
