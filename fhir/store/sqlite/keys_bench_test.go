package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
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
			fmt.Sprintf(`{"resourceType":"Patient","id":"p%d","extension":[{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority","valueCodeableConcept":{"coding":[{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":"E0700021%d"}]}}],"name":[{"family":"Smith"}]}`, p, p%3),
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
