package measures

import (
	"sync"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
)

var (
	regionOnce sync.Once
	regionEng  *engine.Engine
)

// region returns an engine holding the full demo region (1,150 episodes,
// seed 1), loaded once for the package's tests.
func region(t *testing.T) *engine.Engine {
	t.Helper()
	return shared(t, &regionOnce, &regionEng, false, 1150)
}

// shared loads a region of n episodes into *eng once (with the access policy
// when policy is set) and returns it.
func shared(t *testing.T, once *sync.Once, eng **engine.Engine, policy bool, n int) *engine.Engine {
	t.Helper()
	once.Do(func() {
		e := newEngine(&onceTB{t}, policy)
		loadDemo(t, e, n)
		*eng = e
	})
	if *eng == nil {
		t.Fatal("the demo region did not load")
	}
	return *eng
}

// onceTB keeps the shared region's temporary directory alive after the first
// test that asked for it ends: it is removed when the process exits.
type onceTB struct{ *testing.T }

func (o *onceTB) TempDir() string {
	dir, err := osMkdirTemp()
	if err != nil {
		o.Fatal(err)
	}
	return dir
}
func (o *onceTB) Cleanup(func()) {}

func evaluate(t *testing.T, eng *engine.Engine, id, start, end string) *Result {
	t.Helper()
	req, err := ParseRequest(id, []fhir.RawParam{{Name: "periodStart", Value: start}, {Name: "periodEnd", Value: end}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := NewEvaluator(eng, "", func() time.Time { return testNow }).Evaluate(devCtx(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestCalibration: the demo region's MeasureReports reproduce what it was
// calibrated to: 53% of packages started within three days (±4 points), 85%
// accepted by therapy (±3 points), with weekly variation (the weekly 3-day
// share ranges over at least 10 points), and a caseload today of a few hundred.
func TestCalibration(t *testing.T) {
	eng := region(t)
	start, end := "2026-05-29", "2026-11-29"
	check := func(id string, want, tol float64) *Result {
		res := evaluate(t, eng, id, start, end)
		s := res.Groups[0].Figures.Score
		if s == nil {
			t.Fatalf("%s: no score", id)
		}
		t.Logf("%s: %.3f (%d / %d)", id, *s, res.Groups[0].Figures.Counts["numerator"], res.Groups[0].Figures.Counts["denominator"])
		if *s < want-tol || *s > want+tol {
			t.Errorf("%s = %.3f, want %.2f ± %.2f", id, *s, want, tol)
		}
		return res
	}
	three := check("crs-care-start-3-days", 0.53, 0.04)
	check("crs-therapy-accepted", 0.85, 0.03)
	lo, hi := 1.0, 0.0
	for _, f := range three.Groups[0].Strata["week"] {
		if f.Score != nil && f.Counts["denominator"] >= 20 {
			lo, hi = min(lo, *f.Score), max(hi, *f.Score)
		}
	}
	t.Logf("weekly 3-day share from %.2f to %.2f", lo, hi)
	if hi-lo < 0.10 {
		t.Errorf("weekly 3-day share varies only from %.2f to %.2f", lo, hi)
	}
	for _, id := range []string{"crs-care-start-24h", "crs-assessment-2h", "crs-episode-over-six-weeks", "crs-episode-length", "crs-care-calls", "crs-exit-routes"} {
		res := evaluate(t, eng, id, start, end)
		for _, g := range res.Groups {
			if g.Figures.Counts["initial-population"] == 0 {
				t.Errorf("%s#%s: nobody in the initial population", id, g.ID)
			}
			if g.Figures.Score != nil {
				t.Logf("%s#%s: %.3f of %d", id, g.ID, *g.Figures.Score, g.Figures.Counts["initial-population"])
			}
		}
		known := 0
		for v := range res.Groups[0].Strata["locality"] {
			if v != "unknown" { // referrals whose care has not started have no locality yet
				known++
			}
		}
		if known != 3 {
			t.Errorf("%s: %d locality strata, want 3", id, known)
		}
	}
	cl, err := NewCaseloads(eng, "", func() time.Time { return testNow }).Caseload(devCtx(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("caseload today: %d people", len(cl.Rows))
	if len(cl.Rows) < 150 || len(cl.Rows) > 450 {
		t.Errorf("caseload today is %d people, want a few hundred", len(cl.Rows))
	}
}
