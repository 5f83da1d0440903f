package profiles

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/validate"
)

func load(t testing.TB) *Set {
	t.Helper()
	s, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func example(t testing.TB, name string) fhir.Object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("examples", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := fhir.Parse(data, fhir.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func errorsOf(issues []fhir.Issue, sev fhir.Severity) []fhir.Issue {
	var out []fhir.Issue
	for _, is := range issues {
		if is.Severity == sev {
			out = append(out, is)
		}
	}
	return out
}

// Every example passes base R4 validation; the valid ones pass the profiles with
// no error, and there are at least two for each pathway profile.
func TestValidExamples(t *testing.T) {
	s := load(t)
	base, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("examples/*.json")
	perType := map[string]int{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		obj := example(t, name)
		if issues := base.Validate(obj); len(errorsOf(issues, fhir.SeverityError)) > 0 {
			t.Errorf("%s fails base validation: %+v", name, issues)
		}
		if !strings.HasPrefix(name, "valid-") {
			continue
		}
		res := s.Check(obj, Options{Strict: true, Mode: "update"})
		if res.HasErrors() {
			t.Errorf("%s: %+v", name, res.Issues)
		}
		perType[fhir.ResourceType(obj)]++
	}
	for _, p := range s.PathwayProfiles() {
		if perType[p.Type] < 2 {
			t.Errorf("%s has %d valid examples, want at least 2", p.Title, perType[p.Type])
		}
	}
}

// Each invalid example fails with the expected issue at the expected place, and
// with nothing else in error.
func TestInvalidExamples(t *testing.T) {
	s := load(t)
	cases := map[string]struct{ expr, msg string }{
		"invalid-Patient-modulus11":                         {"Patient.identifier[0].value", "fails the Modulus 11 check"},
		"invalid-Patient-no-nhs-number":                     {"Patient", "crs-pat-1"},
		"invalid-Patient-bad-local-authority":               {"Patient.extension[0].valueCoding.code", "crs-la-1"},
		"invalid-Organization-no-ods":                       {"Organization.identifier", "at least 1 identifier:odsOrganisationCode required"},
		"invalid-Referral-amount-of-care":                   {"ServiceRequest.quantity", "quantity[x] is not allowed"},
		"invalid-Referral-no-discharge-ready-date":          {"ServiceRequest.extension", "extension:dischargeReadyDate required"},
		"invalid-Referral-bad-call-pattern":                 {"ServiceRequest.extension[1].valueCoding", "not in value set"},
		"invalid-Referral-declined-without-reason":          {"ServiceRequest.extension[2]", "crs-scr-1"},
		"invalid-Referral-requester-not-organization":       {"ServiceRequest.requester.reference", "must be to Organization"},
		"invalid-Referral-intent-order":                     {"ServiceRequest.intent", "must be exactly \"plan\""},
		"invalid-CarePlan-too-long":                         {"CarePlan.period", "crs-cp-1"},
		"invalid-CarePlan-five-calls":                       {"CarePlan.extension[0].valueInteger", "crs-cpd-1"},
		"invalid-Encounter-visit-without-type":              {"Encounter", "crs-enc-1"},
		"invalid-Encounter-visit-without-episode":           {"Encounter", "crs-enc-2"},
		"invalid-Encounter-finished-without-end":            {"Encounter", "crs-enc-3"},
		"invalid-EpisodeOfCare-finished-without-exit-route": {"EpisodeOfCare", "crs-eoc-1"},
		"invalid-EpisodeOfCare-bad-exit-route":              {"EpisodeOfCare.extension[1].valueCoding", "not in value set"},
		"invalid-Goal-no-words":                             {"Goal.description.text", "at least 1 text required"},
		"invalid-Goal-no-due-date":                          {"Goal.target[0].due", "at least 1 due[x] required"},
		"invalid-Goal-no-expressed-by":                      {"Goal.expressedBy", "at least 1 expressedBy required"},
	}
	files, _ := filepath.Glob("examples/invalid-*.json")
	if len(files) != len(cases) {
		t.Errorf("%d invalid examples, %d expectations", len(files), len(cases))
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			res := s.Check(example(t, name), Options{Strict: true, Mode: "update"})
			errs := errorsOf(res.Issues, fhir.SeverityError)
			if len(errs) != 1 {
				t.Fatalf("want exactly one error, got %+v", res.Issues)
			}
			if errs[0].Expression != want.expr || !strings.Contains(errs[0].Diagnostics, want.msg) {
				t.Errorf("got %s: %s; want %s: …%s…", errs[0].Expression, errs[0].Diagnostics, want.expr, want.msg)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	s := load(t)
	res := s.Check(example(t, "warning-EpisodeOfCare-past-six-weeks"), Options{Strict: true})
	if res.HasErrors() || len(res.Issues) != 1 || res.Issues[0].Severity != fhir.SeverityWarning || !strings.Contains(res.Issues[0].Diagnostics, "crs-eoc-2") {
		t.Errorf("%+v", res.Issues)
	}
	// A new care plan that does not start at four calls is recorded with a warning.
	res = s.Check(example(t, "valid-CarePlan-reduced"), Options{Strict: true, Mode: "create"})
	if res.HasErrors() || len(res.Issues) != 1 || !strings.Contains(res.Issues[0].Diagnostics, "crs-cp-2") {
		t.Errorf("%+v", res.Issues)
	}
	if res := s.Check(example(t, "valid-CarePlan-start"), Options{Strict: true, Mode: "create"}); len(res.Issues) != 0 {
		t.Errorf("%+v", res.Issues)
	}
}

func TestStrictAndDeclared(t *testing.T) {
	s := load(t)
	// Strict: the pathway profile applies and is added to meta.profile.
	obj := example(t, "invalid-Goal-no-expressed-by")
	res := s.Check(obj, Options{Strict: true})
	if !res.HasErrors() || len(claimed(obj)) != 1 || claimed(obj)[0] != s.base+"/StructureDefinition/CRS-Goal" {
		t.Errorf("strict: %+v %v", res.Issues, obj["meta"])
	}
	// Declared: a resource that claims no profile is not checked.
	obj = example(t, "invalid-Goal-no-expressed-by")
	if res := s.Check(obj, Options{}); len(res.Issues) != 0 || obj["meta"] != nil {
		t.Errorf("declared: %+v", res.Issues)
	}
	// Declared: a claimed profile is checked; an unknown one is a warning.
	obj["meta"] = map[string]any{"profile": []any{s.base + "/StructureDefinition/CRS-Goal", "https://example.org/other"}}
	res = s.Check(obj, Options{})
	if len(errorsOf(res.Issues, fhir.SeverityError)) != 1 || len(errorsOf(res.Issues, fhir.SeverityWarning)) != 1 {
		t.Errorf("declared with claims: %+v", res.Issues)
	}
	// An explicit profile of another type is an error.
	res = s.Check(example(t, "valid-Goal-tea"), Options{Profile: s.base + "/StructureDefinition/CRS-Patient"})
	if !res.HasErrors() {
		t.Errorf("wrong type: %+v", res.Issues)
	}
}

func TestCanonicalBase(t *testing.T) {
	s, err := Load("https://fhir.example.nhs.uk/crs/")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := s.PathwayProfile("ServiceRequest")
	if !ok || p.URL != "https://fhir.example.nhs.uk/crs/StructureDefinition/CRS-Referral" {
		t.Fatalf("%+v", p)
	}
	for _, r := range s.Resources() {
		if data, _ := fhir.Marshal(r); strings.Contains(string(data), DefaultCanonicalBase) {
			t.Errorf("%s/%s still names the default base", fhir.ResourceType(r), fhir.ID(r))
		}
	}
}

// Every invariant implemented is declared by some profile, and the other way
// round (Load refuses an undeclared key).
func TestInvariantsDeclared(t *testing.T) {
	s := load(t)
	declared := map[string]bool{}
	for _, p := range s.profiles {
		for _, el := range p.Differential {
			for _, c := range el.Constraints {
				declared[c.Key] = true
			}
		}
	}
	var unused []string
	for k := range invariants {
		if !declared[k] {
			unused = append(unused, k)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("invariants no profile declares: %v", unused)
	}
}

func TestNHSNumber(t *testing.T) {
	for n, want := range map[string]bool{
		"9000000009": true, "9449305552": true, "9434765919": true, "9876543210": true, "9999999999": true,
		"9912003890": false, "123": false, "90000000O9": false, "9000000008": false, "": false,
	} {
		if ok, why := ValidNHSNumber(n); ok != want {
			t.Errorf("%q: %v %s", n, ok, why)
		}
	}
}

func TestExpand(t *testing.T) {
	s := load(t)
	vs, err := s.Expand(s.base+"/ValueSet/crs-exit-route", "", 0, -1, fakeNow)
	if err != nil {
		t.Fatal(err)
	}
	exp := vs["expansion"].(map[string]any)
	if exp["total"] != 7 || len(exp["contains"].([]any)) != 7 {
		t.Errorf("%v", exp)
	}
	vs, _ = s.Expand(s.base+"/ValueSet/crs-exit-route", "CARE", 1, 1, fakeNow)
	exp = vs["expansion"].(map[string]any)
	if exp["total"] != 2 || len(exp["contains"].([]any)) != 1 {
		t.Errorf("%v", exp)
	}
	if _, err := s.Expand("https://example.org/nothing", "", 0, -1, fakeNow); fhir.KindOf(err) != fhir.NotFound {
		t.Errorf("%v", err)
	}
	if _, err := s.Expand("https://fhir.hl7.org.uk/ValueSet/UKCore-NHSNumberUnavailableReason", "", 0, -1, fakeNow); fhir.KindOf(err) != fhir.NotSupported {
		t.Errorf("incomplete: %v", err)
	}
}

var fakeNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// docs/profiles.md is what go generate ./profiles writes now.
func TestDocsUpToDate(t *testing.T) {
	data, err := os.ReadFile("../docs/profiles.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != load(t).Markdown() {
		t.Error("docs/profiles.md is stale: run go generate ./profiles")
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Every literal reference in a valid or warning example points at another
// example, so the examples load together and a reader can follow each one
// (invalid examples may point anywhere: they show one mistake each).
func TestExampleReferencesResolve(t *testing.T) {
	files, _ := filepath.Glob("examples/*.json")
	have := map[string]bool{}
	refs := map[string][]string{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		obj := example(t, name)
		have[fhir.ResourceType(obj)+"/"+fhir.ID(obj)] = true
		var walk func(any)
		walk = func(x any) {
			switch v := x.(type) {
			case map[string]any:
				for k, e := range v {
					if s, ok := e.(string); ok && k == "reference" {
						refs[name] = append(refs[name], s)
					} else {
						walk(e)
					}
				}
			case []any:
				for _, e := range v {
					walk(e)
				}
			}
		}
		walk(obj)
	}
	for name, rs := range refs {
		if strings.HasPrefix(name, "invalid-") {
			continue
		}
		for _, r := range rs {
			if !strings.HasPrefix(r, "#") && !strings.HasPrefix(r, "urn:") && !have[r] {
				t.Errorf("%s refers to %s, which no example provides", name, r)
			}
		}
	}
}

// A Patient without the responsible local authority is stored with a warning
// (crs-pat-2): no council sees it until it carries one.
func TestPatientWithoutLocalAuthorityWarns(t *testing.T) {
	s := load(t)
	obj := example(t, "valid-Patient-nhs-number")
	delete(obj, "extension")
	res := s.Check(obj, Options{Strict: true, Mode: "create"})
	if res.HasErrors() {
		t.Fatalf("errors: %+v", res.Issues)
	}
	warns := errorsOf(res.Issues, fhir.SeverityWarning)
	if len(warns) != 1 || !strings.Contains(warns[0].Diagnostics, "crs-pat-2") {
		t.Errorf("warnings %+v, want crs-pat-2", warns)
	}
	if res := s.Check(example(t, "valid-Patient-nhs-number"), Options{Strict: true, Mode: "create"}); len(errorsOf(res.Issues, fhir.SeverityWarning)) != 0 {
		t.Errorf("a Patient with the extension warns: %+v", res.Issues)
	}
}
