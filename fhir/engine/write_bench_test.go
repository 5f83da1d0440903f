package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"crs/fhir/engine"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
)

// benchEngine is an engine on an SQLite store without fsync (synchronous=NORMAL),
// so that the figures show the engine's own work (parse, validate, index,
// encode) rather than the disk's.
func benchEngine(b *testing.B) *engine.Engine {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	v, err := validate.New()
	if err != nil {
		b.Fatal(err)
	}
	return engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://bench/fhir"})
}

// BenchmarkEngineCreate creates the R4 ServiceRequest example from 8 goroutines
// (each create parses, validates, indexes and encodes the resource once).
func BenchmarkEngineCreate(b *testing.B) {
	body, err := os.ReadFile("../../testdata/r4/examples/ServiceRequest-di.json")
	if err != nil {
		b.Fatal(err)
	}
	eng := benchEngine(b)
	ctx := context.Background()
	// The first create compiles what the engine builds lazily.
	if _, err := eng.Create(ctx, "ServiceRequest", body, ""); err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := eng.Create(ctx, "ServiceRequest", body, ""); err != nil {
				once.Do(func() { b.Error(err) })
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkEngineRead reads one stored ServiceRequest by id from 8 goroutines.
func BenchmarkEngineRead(b *testing.B) {
	body, err := os.ReadFile("../../testdata/r4/examples/ServiceRequest-di.json")
	if err != nil {
		b.Fatal(err)
	}
	eng := benchEngine(b)
	ctx := context.Background()
	res, err := eng.Create(ctx, "ServiceRequest", body, "")
	if err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := eng.Read(ctx, "ServiceRequest", res.Version.ID); err != nil {
				once.Do(func() { b.Error(err) })
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}
