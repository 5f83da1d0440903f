package engine_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
)

// BenchmarkExport loads a region of CRS_BENCH_RESOURCES resources and reports
// the rate of a system-level export of every type through the engine
// (ExportType: pages of 500, policy hook, shaping, emitted to a counter)
// beside the raw rate of reading the same rows from the store in the same
// pages, and the heap in use at the end (flat: pages are not kept).
func BenchmarkExport(b *testing.B) {
	r := loadRegion(b, regionSize())
	defer r.st.Close()
	ctx := context.Background()
	types := fhir.ServedTypes()
	b.Run("engine", func(b *testing.B) {
		var total int
		start := time.Now()
		for i := 0; i < b.N; i++ {
			for _, t := range types {
				n, err := r.eng.ExportType(ctx, engine.ExportRequest{Type: t}, func([]byte) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
				total += n
			}
		}
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "resources/s")
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	})
	b.Run("raw-store", func(b *testing.B) {
		var total int
		start := time.Now()
		for i := 0; i < b.N; i++ {
			for _, t := range types {
				q := &fhir.Query{Type: t, Count: 500, Total: fhir.TotalNone}
				for {
					res, err := r.st.Search(ctx, q)
					if err != nil {
						b.Fatal(err)
					}
					total += len(res.Matches)
					if res.Next == "" {
						break
					}
					q.Cursor = res.Next
				}
			}
		}
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "resources/s")
	})
}
