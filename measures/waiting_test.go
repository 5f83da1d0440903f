package measures

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir/engine"
)

// plantWaiting writes, through the engine, a referral accepted (status
// active) whose care has not started: no EpisodeOfCare. It returns its id.
func plantWaiting(t *testing.T, eng *engine.Engine, n, provider int, locality string, referred time.Time) string {
	t.Helper()
	d := NewDemo(DemoOptions{Seed: 98, Now: testNow, Episodes: 1})
	e := demoEpisode{n: n, locality: locality, provider: provider, pattern: "single",
		drd: referred.Add(-time.Hour), referred: referred, admit: referred.Add(-5 * day), arrival: testNow.Add(2 * day),
		given: "Waiting", family: "Person", gender: "male", birth: "1941-02-03", calls: 4}
	first, second := d.resources(e)
	if len(second) != 0 {
		t.Fatal("a waiting referral has updates")
	}
	var entries []map[string]any
	for _, r := range first {
		if r["resourceType"] == "EpisodeOfCare" {
			t.Fatal("a waiting referral has an episode")
		}
		entries = append(entries, put(r))
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if _, err := eng.Bundle(devCtx(), body, engine.SearchOptions{Minimal: true}); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("demo-%04d", n)
}

// TestWaitingPeople: people whose referral is accepted but whose care has not
// started are on the caseload, first, with how long they have waited and
// the 24-hour and 3-day flags once those clocks have run out; a locality
// shows those of the care providers working there; a care provider sees only
// its own.
func TestWaitingPeople(t *testing.T) {
	eng := newEngine(t, true)
	loadDemo(t, eng, 40)
	long := plantWaiting(t, eng, 9201, 6, "rugby", testNow.Add(-4*day-5*time.Hour))         // Greenway, Rugby
	fresh := plantWaiting(t, eng, 9202, 3, "south-warwickshire", testNow.Add(-5*time.Hour)) // Dove, South Warwickshire
	cs := NewCaseloads(eng, "", func() time.Time { return testNow })

	rowsOf := func(cl *Caseload) map[string]*Row {
		m := map[string]*Row{}
		for _, r := range cl.Rows {
			m[r.Referral.ID] = r
		}
		return m
	}
	cl, err := cs.Caseload(devCtx(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	rows := rowsOf(cl)
	l, f := rows[long], rows[fresh]
	if l == nil || f == nil {
		t.Fatalf("the waiting people are not on the caseload: %v %v", l, f)
	}
	if !l.Waiting || !f.Waiting || !l.WaitingSince.Equal(testNow.Add(-4*day-5*time.Hour)) || l.WaitingFor != "4 d 5 h" || f.WaitingFor != "5 h" {
		t.Errorf("waiting: %v since %v (%s); %v (%s)", l.Waiting, l.WaitingSince, l.WaitingFor, f.Waiting, f.WaitingFor)
	}
	codes := func(r *Row) string {
		var s []string
		for _, f := range r.Flags {
			s = append(s, f.Code)
		}
		return strings.Join(s, ",")
	}
	if codes(l) != "late-start,no-start-3-days" || codes(f) != "" {
		t.Errorf("flags: long wait %q, fresh %q", codes(l), codes(f))
	}
	for i := 1; i < len(cl.Rows); i++ {
		a, b := cl.Rows[i-1], cl.Rows[i]
		if (!a.Waiting && b.Waiting) || (a.Waiting && b.Waiting && b.WaitingSince.Before(a.WaitingSince)) {
			t.Errorf("row %d: the waiting are not first, longest wait first", i)
		}
	}
	for _, r := range cl.Rows {
		if r.Waiting != (r.Referral.Episode == "") {
			t.Errorf("referral %s: waiting %v with episode %q", r.Referral.ID, r.Waiting, r.Referral.Episode)
		}
	}

	// A locality: the waiting of the providers working there.
	for _, c := range []struct {
		locality string
		in, out  string
	}{{"rugby", long, fresh}, {"south-warwickshire", fresh, long}} {
		cl, err := cs.Caseload(devCtx(), Filter{Locality: c.locality})
		if err != nil {
			t.Fatal(err)
		}
		rows := rowsOf(cl)
		if rows[c.in] == nil || rows[c.out] != nil {
			t.Errorf("%s: has %s %v, has %s %v", c.locality, c.in, rows[c.in] != nil, c.out, rows[c.out] != nil)
		}
	}
	// A care provider: its own waiting people only.
	cl, err = cs.Caseload(providerCtx("VDEM7"), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	rows = rowsOf(cl)
	if rows[long] == nil || rows[fresh] != nil {
		t.Errorf("Greenway sees its waiting person %v, Dove's %v", rows[long] != nil, rows[fresh] != nil)
	}

	// The page says so.
	svc, err := NewService(eng, "", func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/?locality=rugby", nil)
	r = r.WithContext(auth.WithPrincipal(r.Context(), &auth.Principal{Anonymous: true}))
	w := httptest.NewRecorder()
	svc.ServeHTTP(w, r)
	page := w.Body.String()
	if w.Code != 200 || !strings.Contains(page, "Waiting since 25 Nov 2026 04:00 (4 d 5 h)") || !strings.Contains(page, `flag-no-start-3-days`) {
		i := strings.Index(page, long)
		t.Errorf("the page does not show the waiting person: %d\n%s", w.Code, page[max(i-200, 0):min(i+1500, len(page))])
	}
}
