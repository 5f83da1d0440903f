package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"crs/fhir"
	fhirsearch "crs/fhir/search"
	"crs/fhir/store"
)

// BenchmarkKeysWriteCost: what keeping the denormalised keys costs the writes
// that maintain them. Creates of the pathway's records, each its own write
// call from 8 goroutines (group commit), in the order a person's records
// arrive: Patient (with a council), ServiceRequest (performer and requester
// organisations), EpisodeOfCare, two Encounters, a Goal and a CarePlan; then
// every 20th person's referral reassigned to another provider (an update).
// keys (those kept) and nokeys run in the same process, one after the other;
// durable is synchronous=FULL as served, nosync shows the CPU cost without the
// fsync; reverse-keys adds the reverse keys on Patient that are not kept.
func BenchmarkKeysWriteCost(b *testing.B) {
	reverse, err := parseKeys(reverseKeys)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		opt  Options
		keys keySet
	}{
		{"durable/nokeys", Options{}, nil},
		{"durable/keys", Options{}, defaultKeys},
		{"nosync/nokeys", Options{NoSync: true}, nil},
		{"nosync/keys", Options{NoSync: true}, defaultKeys},
		{"nosync/reverse-keys", Options{NoSync: true}, reverse},
	} {
		b.Run(c.name, func(b *testing.B) { benchmarkPathwayWrites(b, c.opt, c.keys) })
	}
}

func benchmarkPathwayWrites(b *testing.B, opt Options, keys keySet) {
	s, err := openKeys(filepath.Join(b.TempDir(), "crs.db"), opt, keys)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	reg := fhirsearch.Default()
	ctx := context.Background()
	write := func(vid int, res string) error {
		obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
		if err != nil {
			return err
		}
		index, err := reg.Extract(fhir.ResourceType(obj), obj)
		if err != nil {
			return err
		}
		v := store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: vid, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}
		return s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, index) })
	}
	for i := 0; i < 20; i++ {
		if err := write(1, fmt.Sprintf(`{"resourceType":"Organization","id":"o%d","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"P%d"}]}`, i, i)); err != nil {
			b.Fatal(err)
		}
	}
	sr := func(p, prov int) string {
		return fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"active","intent":"plan","subject":{"reference":"Patient/p%d"},"requester":{"reference":"Organization/o%d"},"performer":[{"reference":"Organization/o%d"}]}`, p, p, (p+1)%20, prov)
	}
	person := func(p int) []string {
		return []string{
			fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","extension":[{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority","valueCodeableConcept":{"coding":[{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":"E0700021%d"}]}}],"name":[{"family":"Smith"}],"managingOrganization":{"reference":"Organization/o%d"}}`, p, p%3, p%20),
			sr(p, p%20),
			fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":"ep%d","status":"active","patient":{"reference":"Patient/p%d"},"managingOrganization":{"reference":"Organization/o%d"}}`, p, p, p%20),
			fmt.Sprintf(`{"resourceType":"Encounter","id":"e%d-0","status":"finished","class":{"code":"HH"},"subject":{"reference":"Patient/p%d"},"serviceProvider":{"reference":"Organization/o%d"}}`, p, p, p%20),
			fmt.Sprintf(`{"resourceType":"Encounter","id":"e%d-1","status":"finished","class":{"code":"HH"},"subject":{"reference":"Patient/p%d"},"serviceProvider":{"reference":"Organization/o%d"}}`, p, p, p%20),
			fmt.Sprintf(`{"resourceType":"Goal","id":"g%d","lifecycleStatus":"active","description":{"text":"tea"},"subject":{"reference":"Patient/p%d"}}`, p, p),
			fmt.Sprintf(`{"resourceType":"CarePlan","id":"cp%d","status":"active","intent":"plan","subject":{"reference":"Patient/p%d"}}`, p, p),
		}
	}
	var n atomic.Int64
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := int(n.Add(1))
			for _, res := range person(p) {
				if err := write(1, res); err != nil {
					b.Error(err)
					return
				}
			}
			if p%20 == 0 {
				if err := write(2, sr(p, (p+7)%20)); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)*7/b.Elapsed().Seconds(), "creates/s")
	// CPU time per create: on a loaded machine, the figure that other
	// processes disturb least.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*7), "cpu-µs/create")
	b.ReportMetric(float64(s.writes.Load())/float64(max(1, s.commits.Load())), "writes/commit")
	b.ReportMetric(float64(s.execNanos.Load())/1000/float64(max(1, s.writes.Load())), "exec-µs/write")
	b.ReportMetric(float64(s.commitNanos.Load())/1000/float64(max(1, s.commits.Load())), "µs/commit")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkKeysQueries: the policy's organisation chains as the care
// provider's searches carry them, with the keys and without (the chains'
// joins), on 3,000 people of 20 providers (CRS_BENCH_PEOPLE sets the number),
// each with a referral, an episode and two goals. Reports the median and
// 95th percentile over 200 runs.
func BenchmarkKeysQueries(b *testing.B) {
	people := 3000
	if n, err := strconv.Atoi(os.Getenv("CRS_BENCH_PEOPLE")); err == nil && n > 0 {
		people = n
	}
	const org = "https://fhir.nhs.uk/Id/ods-organization-code|P3"
	queries := []struct{ name, typ, query string }{
		{"referrals", "ServiceRequest", "performer:Organization.identifier=" + org + "&status=active&_count=20"},
		{"episodes", "EpisodeOfCare", "organization:Organization.identifier=" + org + "&status=active&_count=20"},
		{"people", "Patient", "_has:ServiceRequest:subject:performer:Organization.identifier=" + org + "&_count=20"},
		{"goals", "Goal", "subject:Patient._has:ServiceRequest:subject:performer:Organization.identifier=" + org + "&lifecycle-status=active&_count=20"},
		{"one-goal", "Goal", "_id=g17-0&subject:Patient._has:ServiceRequest:subject:performer:Organization.identifier=" + org},
	}
	for _, keys := range []bool{false, true} {
		s, err := Open(filepath.Join(b.TempDir(), "crs.db"), Options{NoSync: true, NoKeys: !keys})
		if err != nil {
			b.Fatal(err)
		}
		reg := fhirsearch.Default()
		ctx := context.Background()
		var puts []func(store.Tx) error
		add := func(res string) {
			obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
			if err != nil {
				b.Fatal(err)
			}
			index, err := reg.Extract(fhir.ResourceType(obj), obj)
			if err != nil {
				b.Fatal(err)
			}
			v := store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}
			puts = append(puts, func(tx store.Tx) error { return tx.Put(ctx, v, index) })
		}
		for i := 0; i < 20; i++ {
			add(fmt.Sprintf(`{"resourceType":"Organization","id":"o%d","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"P%d"}]}`, i, i))
		}
		for p := 0; p < people; p++ {
			add(fmt.Sprintf(`{"resourceType":"Patient","id":"p%d"}`, p))
			add(fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr%d","status":"active","intent":"plan","subject":{"reference":"Patient/p%d"},"requester":{"reference":"Organization/o%d"},"performer":[{"reference":"Organization/o%d"}]}`, p, p, (p+1)%20, p%20))
			add(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":"ep%d","status":"active","patient":{"reference":"Patient/p%d"},"managingOrganization":{"reference":"Organization/o%d"}}`, p, p, p%20))
			for g := 0; g < 2; g++ {
				add(fmt.Sprintf(`{"resourceType":"Goal","id":"g%d-%d","lifecycleStatus":"active","description":{"text":"tea"},"subject":{"reference":"Patient/p%d"}}`, p, g, p))
			}
		}
		for len(puts) > 0 {
			n := min(len(puts), 500)
			batch := puts[:n]
			puts = puts[n:]
			if err := s.Write(ctx, func(tx store.Tx) error {
				for _, put := range batch {
					if err := put(tx); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		name := "chains"
		if keys {
			name = "keys"
		}
		for _, c := range queries {
			q := parseQuery(b, reg, c.typ, c.query)
			q.Total, q.TotalLimit = fhir.TotalAccurate, 500
			b.Run(c.name+"/"+name, func(b *testing.B) {
				lat := make([]time.Duration, 0, 200)
				for i := 0; i < 200; i++ {
					t0 := time.Now()
					if _, err := s.Search(ctx, q); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := s.Search(ctx, q); err != nil {
						b.Fatal(err)
					}
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
			})
		}
		s.Close()
	}
}
