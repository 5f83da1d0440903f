package measures

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"crs/fhir"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/reports.json from the current code")

// goldenPeriods are the periods the golden reports cover: the six months of
// the demo region, one month inside it, and the last week (where referrals
// whose clock is still running sit at the edge of the denominators).
var goldenPeriods = [][2]string{{"2026-05-29", "2026-11-29"}, {"2026-08", "2026-08"}, {"2026-11-22", "2026-11-29"}}

// goldenCaseloads are the caseload pages the golden file covers.
var goldenCaseloads = []Filter{{}, {Locality: "south-warwickshire"}, {Locality: "south-warwickshire", Provider: "demo-prov-dove"}, {Provider: "demo-prov-dove"}}

// TestReportsUnchanged: every Measure's MeasureReport (subject-list, every
// stratifier) over the demo region, and the caseload page's rows, are what
// they were (the page as rendered HTML) when testdata/reports.json
// was written (by the code before the loads were made cheaper; -update
// rewrites it). Reports are compared by the SHA-256 of their JSON without the
// report's id and date; the main group's counts are kept beside it so that a
// change shows where it is.
func TestReportsUnchanged(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the 1,150-episode demo region")
	}
	eng := region(t)
	got := map[string]goldenReport{}
	for _, id := range MeasureIDs() {
		for _, p := range goldenPeriods {
			res := evaluateList(t, eng, id, p[0], p[1])
			rep := res.Report("", testNow)
			delete(rep, "id")
			delete(rep, "date")
			b, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			got[id+" "+p[0]+" "+p[1]] = goldenReport{SHA256: hex.EncodeToString(sum[:]), Counts: res.Groups[0].Figures.Counts}
		}
	}
	svc, err := NewService(eng, "", func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range goldenCaseloads {
		q := url.Values{}
		if f.Locality != "" {
			q.Set("locality", f.Locality)
		}
		if f.Provider != "" {
			q.Set("provider", f.Provider)
		}
		r := httptest.NewRequest(http.MethodGet, "/?"+q.Encode(), nil)
		r = r.WithContext(devCtx())
		w := httptest.NewRecorder()
		svc.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("caseload %v: %d %s", f, w.Code, w.Body)
		}
		sum := sha256.Sum256(w.Body.Bytes())
		got["caseload "+f.Locality+" "+f.Provider] = goldenReport{SHA256: hex.EncodeToString(sum[:]), Counts: map[string]int{"rows": strings.Count(w.Body.String(), "<tr")}}
	}
	path := filepath.Join("testdata", "reports.json")
	if *updateGolden {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]goldenReport
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: not evaluated", k)
		case g.SHA256 != want[k].SHA256:
			t.Errorf("%s: the report changed: counts %v, were %v", k, g.Counts, want[k].Counts)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d reports, %d golden", len(got), len(want))
	}
}

// goldenReport is one MeasureReport's fingerprint.
type goldenReport struct {
	SHA256 string
	Counts map[string]int
}

// evaluateList evaluates Measure id over [start, end] as a subject-list.
func evaluateList(t *testing.T, eng Engine, id, start, end string) *Result {
	t.Helper()
	req, err := ParseRequest(id, []fhir.RawParam{{Name: "periodStart", Value: start}, {Name: "periodEnd", Value: end}, {Name: "reportType", Value: "subject-list"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := NewEvaluator(eng, "", func() time.Time { return testNow }).Evaluate(devCtx(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
