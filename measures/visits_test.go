package measures

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"crs/fhir"
)

// TestFirstVisitChunks: referrals whose deadlines have all passed are read up
// to their latest deadline (rounded up to the next second, so a visit that
// starts on the deadline is found); those whose clock still runs, and only
// those, are read whole; a referral without an episode or without a clock is
// not read.
func TestFirstVisitChunks(t *testing.T) {
	now := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	ds := []deadline{{func(r *Referral) time.Time { return r.DRD }, day}, {func(r *Referral) time.Time { return r.Authored }, 3 * day}}
	at := func(s string) time.Time { return instant(s) }
	rs := []*Referral{
		{Episode: "late", DRD: at("2026-11-01T10:00:00.5Z"), Authored: at("2026-10-31T10:00:00Z")}, // 3 days after authored: 11-03T10:00
		{Episode: "drd-only", DRD: at("2026-11-20T08:00:00Z")},
		{Episode: "running", DRD: at("2026-11-20T08:00:00Z"), Authored: at("2026-11-27T09:00:00Z")}, // 3-day clock runs until 11-30
		{Episode: "", DRD: at("2026-11-01T08:00:00Z")},
		{Episode: "no-clock"},
	}
	got := firstVisitChunks(rs, ds, now, 100)
	want := []visitChunk{
		{episodes: []string{"EpisodeOfCare/late", "EpisodeOfCare/drd-only"}, before: "2026-11-21T08:00:01Z"},
		{episodes: []string{"EpisodeOfCare/running"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("chunks = %+v, want %+v", got, want)
	}
	got = firstVisitChunks(rs[:2], ds, now, 1)
	want = []visitChunk{
		{episodes: []string{"EpisodeOfCare/late"}, before: "2026-11-03T10:00:01Z"},
		{episodes: []string{"EpisodeOfCare/drd-only"}, before: "2026-11-21T08:00:01Z"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("chunks of one = %+v, want %+v", got, want)
	}
	if at, ok := by(ds, &Referral{DRD: at("2026-11-01T10:00:00.5Z")}); !ok || !at.Equal(instant("2026-11-02T10:00:00.5Z")) {
		t.Errorf("by = %v %v", at, ok)
	}
}

// TestCheapLoadsMatchFullLoads: every Measure evaluated over what its rules
// ask for (the first visits by their deadlines, the assessments by episode)
// gives the same report as over every visit of every episode, for clocks
// where the demo's latest referrals are still running, where they have all
// run out, and earlier in the region (visits in the future of the clock).
func TestCheapLoadsMatchFullLoads(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the 1,150-episode demo region")
	}
	eng := region(t)
	full := Needs{Visits: true, Arrivals: true, Plans: true}
	ctx := devCtx()
	for _, now := range []time.Time{testNow, testNow.Add(-36 * time.Hour), testNow.Add(4 * day), testNow.AddDate(0, -2, 0)} {
		ev := NewEvaluator(eng, "", func() time.Time { return now })
		regFull, err := load(ctx, eng, ev.base, Filter{}, full, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range MeasureIDs() {
			m, err := ev.measure(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := load(ctx, eng, ev.base, Filter{}, needsOf(m), now)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range goldenPeriods {
				req, err := ParseRequest(id, []fhir.RawParam{{Name: "periodStart", Value: p[0]}, {Name: "periodEnd", Value: p[1]}, {Name: "reportType", Value: "subject-list"}})
				if err != nil {
					t.Fatal(err)
				}
				a, b := reportJSON(t, ev.evaluate(m, req, regFull), now), reportJSON(t, ev.evaluate(m, req, reg), now)
				if a != b {
					t.Errorf("now %v, %s %v: the cheap load's report differs from the full load's", now, id, p)
				}
			}
		}
	}
}

func reportJSON(t *testing.T, res *Result, now time.Time) string {
	t.Helper()
	rep := res.Report("", now)
	delete(rep, "id")
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
