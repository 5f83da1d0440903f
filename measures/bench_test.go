package measures

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
)

// benchRegion loads a demo region of CRS_BENCH_EPISODES episodes (default the
// published 1,150; make bench also runs 11,500) once per benchmark binary run.
// With CRS_BENCH_DIR set, the region's database is kept in that directory
// (region-N.db) and reused by later runs instead of loading it again (a 10x
// load takes minutes); a half-loaded database is removed first.
var benchRegions = map[int]*engine.Engine{}

func benchEngine(b *testing.B) (*engine.Engine, int) {
	n := 1150
	if s := os.Getenv("CRS_BENCH_EPISODES"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = v
		}
	}
	if e := benchRegions[n]; e != nil {
		return e, n
	}
	var e *engine.Engine
	if dir := os.Getenv("CRS_BENCH_DIR"); dir != "" {
		path := filepath.Join(dir, fmt.Sprintf("region-%d.db", n))
		done := path + ".loaded"
		if _, err := os.Stat(done); err == nil {
			e = newEngineAt(&onceTB{&testing.T{}}, path, false)
			benchRegions[n] = e
			return e, n
		}
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
				b.Fatal(err)
			}
		}
		e = newEngineAt(&onceTB{&testing.T{}}, path, false)
		defer func() {
			if !b.Failed() {
				if err := os.WriteFile(done, nil, 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}()
	} else {
		e = newEngine(&onceTB{&testing.T{}}, false)
	}
	d := NewDemo(DemoOptions{Seed: 1, Now: testNow, Episodes: n})
	st, err := d.Load(adminCtx(), e, false)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d episodes (%d resources) in %v", n, st.Resources, st.Took)
	benchRegions[n] = e
	return e, n
}

// BenchmarkEvaluateMeasure: $evaluate-measure over six months, every
// stratifier, per measure (the engine's reads included).
func BenchmarkEvaluateMeasure(b *testing.B) {
	eng, n := benchEngine(b)
	svc, err := NewService(eng, "", func() time.Time { return testNow })
	if err != nil {
		b.Fatal(err)
	}
	params := []fhir.RawParam{{Name: "periodStart", Value: "2026-05-29"}, {Name: "periodEnd", Value: "2026-11-29"}}
	for _, id := range MeasureIDs() {
		b.Run(fmt.Sprintf("episodes=%d/%s", n, id), func(b *testing.B) {
			cpu := processCPU()
			for i := 0; i < b.N; i++ {
				if _, err := svc.EvaluateMeasure(devCtx(), id, params); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkCaseloadPage: the server time of the MDT page for the whole region
// and for one locality.
func BenchmarkCaseloadPage(b *testing.B) {
	eng, n := benchEngine(b)
	svc, err := NewService(eng, "", func() time.Time { return testNow })
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []Filter{{}, {Locality: "south-warwickshire"}, {Locality: "south-warwickshire", Provider: "demo-prov-dove"}} {
		q := ""
		if f.Locality != "" {
			q = "?locality=" + f.Locality
		}
		if f.Provider != "" {
			q += "&provider=" + f.Provider
		}
		cl, err := svc.caseload.Caseload(devCtx(), f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("episodes=%d/people=%d", n, len(cl.Rows)), func(b *testing.B) {
			cpu := processCPU()
			defer func() { reportCPU(b, cpu) }()
			for i := 0; i < b.N; i++ {
				r := httptest.NewRequest(http.MethodGet, "/"+q, nil)
				r = r.WithContext(auth.WithPrincipal(r.Context(), &auth.Principal{Anonymous: true}))
				w := httptest.NewRecorder()
				svc.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
