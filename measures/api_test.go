package measures

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/validate"
)

var (
	smallOnce sync.Once
	smallEng  *engine.Engine
)

// small returns an engine with the access policy holding a demo region of 150
// episodes, shared by the package's tests (development-mode callers see
// everything; the policy bounds the others).
func small(t *testing.T) *engine.Engine {
	t.Helper()
	return shared(t, &smallOnce, &smallEng, true, 150)
}

const period = "periodStart=2026-05-29&periodEnd=2026-11-29"

// TestEvaluateMeasureHTTP: $evaluate-measure answers a MeasureReport that is
// valid R4, with every stratifier; bad input is a 4xx OperationOutcome that
// names the parameter, never a 500.
func TestEvaluateMeasureHTTP(t *testing.T) {
	eng := small(t)
	srv := pageServer(t, eng)
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		dec.UseNumber() // numbers as sent, as the validator reads them
		var body map[string]any
		if err := dec.Decode(&body); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return resp.StatusCode, body
	}
	for _, id := range MeasureIDs() {
		for _, typ := range []string{"", "&reportType=subject-list"} {
			code, rep := get("/fhir/Measure/" + id + "/$evaluate-measure?" + period + typ)
			if code != 200 || rep["resourceType"] != "MeasureReport" {
				t.Fatalf("%s: %d %v", id, code, rep)
			}
			if issues := fhir.IssuesError(fhir.Invalid, v.Validate(rep)); issues != nil {
				t.Errorf("%s%s: the MeasureReport is not valid R4: %v", id, typ, issues)
			}
			g := mapOf(arr(rep["group"])[0])
			var names []string
			for _, s := range arr(g["stratifier"]) {
				names = append(names, str(mapOf(arr(mapOf(s)["code"])[0])["text"]))
			}
			if strings.Join(names, ",") != "locality,provider,care-pattern,month,week" {
				t.Errorf("%s: stratifiers %v", id, names)
			}
			if typ != "" && rep["contained"] == nil {
				t.Errorf("%s: a subject-list report has no lists", id)
			}
		}
	}
	// POST with a Parameters body gives the same report.
	resp, err := http.Post(srv.URL+"/fhir/Measure/crs-therapy-accepted/$evaluate-measure", "application/fhir+json",
		strings.NewReader(`{"resourceType":"Parameters","parameter":[{"name":"periodStart","valueDate":"2026-05-29"},{"name":"periodEnd","valueDate":"2026-11-29"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var posted map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&posted)
	resp.Body.Close()
	_, got := get("/fhir/Measure/crs-therapy-accepted/$evaluate-measure?" + period)
	if resp.StatusCode != 200 || fmt.Sprint(posted["group"]) != fmt.Sprint(got["group"]) {
		t.Errorf("POST: %d %v", resp.StatusCode, posted)
	}
	for _, c := range []struct {
		path string
		code int
		expr string
	}{
		{"/fhir/Measure/nope/$evaluate-measure?" + period, 404, ""},
		{"/fhir/Measure/crs-care-start-3-days/$evaluate-measure?periodStart=2026-13-01&periodEnd=2026-11-29", 400, "periodStart"},
		{"/fhir/Measure/crs-care-start-3-days/$evaluate-measure?periodStart=2026-06-01", 400, "periodEnd"},
		{"/fhir/Measure/crs-care-start-3-days/$evaluate-measure?periodStart=2026-11-01&periodEnd=2026-06-01", 400, "periodEnd"},
		{"/fhir/Measure/crs-care-start-3-days/$evaluate-measure?" + period + "&periodEnd=2026-12-01", 400, "periodEnd"},
		{"/fhir/Measure/crs-care-start-3-days/$evaluate-measure?" + period + "&subject=Patient/x", 400, "subject"},
		{"/fhir/Measure/crs-care-start-3-days/$evaluate-measure?" + period + "&reportType=population", 400, "reportType"},
		{"/fhir/Measure/crs-care-start-3-days/$evaluate-measure?periodStart=%ZZ&periodEnd=2026-11-29", 400, ""},
		{"/fhir/Measure/bad$id/$evaluate-measure?" + period, 400, ""},
	} {
		code, body := get(c.path)
		if code != c.code || body["resourceType"] != "OperationOutcome" {
			t.Errorf("%s: %d %v, want %d with an OperationOutcome", c.path, code, body, c.code)
			continue
		}
		if c.expr != "" {
			b, _ := json.Marshal(body)
			if !strings.Contains(string(b), `"expression":["`+c.expr+`"]`) {
				t.Errorf("%s: the outcome does not name %s: %s", c.path, c.expr, b)
			}
		}
	}
}

// TestMeasuresCSV: the CSV download carries the same figures as the report.
func TestMeasuresCSV(t *testing.T) {
	eng := small(t)
	srv := pageServer(t, eng)
	resp, err := http.Get(srv.URL + "/mdt/measures.csv?" + period)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("header %v", lines[0])
	}
	req, _ := ParseRequest("crs-care-start-3-days", []fhir.RawParam{{Name: "periodStart", Value: "2026-05-29"}, {Name: "periodEnd", Value: "2026-11-29"}})
	res, err := NewEvaluator(eng, "", func() time.Time { return testNow }).Evaluate(devCtx(), req)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range lines[1:] {
		if l[0] == "crs-care-start-3-days" && l[4] == "" {
			found = true
			f := res.Groups[0].Figures
			if l[8] != itoa(f.Counts["denominator"]) || l[9] != itoa(f.Counts["numerator"]) {
				t.Errorf("CSV %v, report %v", l, f.Counts)
			}
		}
	}
	if !found {
		t.Error("no total line for crs-care-start-3-days")
	}
	for _, bad := range []string{"/mdt/measures.csv", "/mdt/measures.csv?" + period + "&measure=nope", "/mdt/measures.csv?periodStart=x&periodEnd=y"} {
		resp, err := http.Get(srv.URL + bad)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(string(body), `class="message"`) {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
}

func providerCtx(org string) context.Context {
	return auth.WithPrincipal(context.Background(), &auth.Principal{Subject: "p", Org: org, Roles: []string{"care-provider"}, Scopes: auth.ParseScopes("system/*.rs")})
}

// TestMeasuresUnderPolicy: a care provider's figures count its own people
// only; a commissioner (auditor) sees all; a caller whose role grants nothing
// is refused.
func TestMeasuresUnderPolicy(t *testing.T) {
	eng := small(t)
	svc, err := NewService(eng, "", func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	params := []fhir.RawParam{{Name: "periodStart", Value: "2026-05-29"}, {Name: "periodEnd", Value: "2026-11-29"}}
	count := func(rep map[string]any) (int, map[string]int) {
		g := mapOf(arr(rep["group"])[0])
		ip := int(num(mapOf(arr(g["population"])[0])["count"]))
		prov := map[string]int{}
		for _, s := range arr(g["stratifier"]) {
			if str(mapOf(arr(mapOf(s)["code"])[0])["text"]) == "provider" {
				for _, st := range arr(mapOf(s)["stratum"]) {
					prov[str(mapOf(mapOf(st)["value"])["text"])] = int(num(mapOf(arr(mapOf(st)["population"])[0])["count"]))
				}
			}
		}
		return ip, prov
	}
	auditor := auth.WithPrincipal(context.Background(), &auth.Principal{Subject: "a", Roles: []string{"auditor"}, Scopes: auth.ParseScopes("system/*.rs")})
	all, err := svc.EvaluateMeasure(auditor, "crs-care-start-3-days", params)
	if err != nil {
		t.Fatal(err)
	}
	allIP, allProv := count(all)
	mine, err := svc.EvaluateMeasure(providerCtx("VDEM7"), "crs-care-start-3-days", params)
	if err != nil {
		t.Fatal(err)
	}
	ip, prov := count(mine)
	want := allProv["Greenway Homecare (demo)"]
	if ip != want || want == 0 || ip >= allIP {
		t.Errorf("Greenway counts %d referrals (strata %v); the auditor sees %d of its %d", ip, prov, want, allIP)
	}
	if len(prov) != 1 {
		t.Errorf("a provider sees other providers' strata: %v", prov)
	}
	cl, err := NewCaseloads(eng, "", func() time.Time { return testNow }).Caseload(providerCtx("VDEM7"), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range cl.Rows {
		if r.Referral.Provider != "demo-prov-greenway" {
			t.Errorf("Greenway's caseload shows %s's person %s", r.Referral.Provider, r.Name)
		}
	}
	nobody := auth.WithPrincipal(context.Background(), &auth.Principal{Subject: "n", Roles: []string{"no-such-role"}, Scopes: auth.ParseScopes("system/*.rs")})
	if _, err := svc.EvaluateMeasure(nobody, "crs-care-start-3-days", params); fhir.KindOf(err) != fhir.Forbidden && fhir.KindOf(err) != fhir.NotFound {
		t.Errorf("a caller without access: %v, want a refusal", err)
	}
}
