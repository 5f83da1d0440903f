package profiles

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"crs/fhir"
)

// TestSliceMatchersRemembered: every example gives the same issues when its
// profiles' slice matchers are compiled for it (a fresh Set) as when they
// were remembered from the checks before (the same Set, again), and a
// slice's matcher is remembered once compiled.
func TestSliceMatchersRemembered(t *testing.T) {
	files, _ := filepath.Glob("examples/*.json")
	fresh := func(name string) Result {
		return load(t).Check(example(t, name), Options{Strict: true, Mode: "update"})
	}
	s := load(t)
	for pass := 0; pass < 2; pass++ {
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".json")
			got := s.Check(example(t, name), Options{Strict: true, Mode: "update"})
			if want := fresh(name); !reflect.DeepEqual(got.Issues, want.Issues) {
				t.Errorf("pass %d, %s: %+v, want %+v", pass, name, got.Issues, want.Issues)
			}
		}
	}
	p := s.profiles[s.base+"/StructureDefinition/CRS-Organization"]
	if p == nil {
		t.Fatal("no CRS-Organization profile")
	}
	if _, ok := p.matchers.Load("Organization.identifier:odsOrganisationCode"); !ok {
		t.Errorf("the ODS slice's matcher was not remembered")
	}
}

// TestContainsPatternScalars: a scalar matches a pattern as their printed
// forms do (strings compared directly).
func TestContainsPatternScalars(t *testing.T) {
	for _, tc := range []struct {
		v, pattern any
		want       bool
	}{
		{"a", "a", true}, {"a", "b", false}, {"", "", true}, {nil, "", false},
		{json.Number("1"), "1", true}, {true, "true", true}, {"1", json.Number("1"), true}, {3, "3", true},
		{map[string]any{"system": "s", "code": "c", "display": "d"}, map[string]any{"system": "s", "code": "c"}, true},
		{map[string]any{"system": "s", "code": "x"}, map[string]any{"system": "s", "code": "c"}, false},
	} {
		if got := containsPattern(tc.v, tc.pattern); got != tc.want {
			t.Errorf("containsPattern(%#v, %#v) = %v, want %v", tc.v, tc.pattern, got, tc.want)
		}
	}
}

// TestExtensionPaths: an extension found deep in a resource is reported at
// its whole FHIRPath, and its context is the element holding it.
func TestExtensionPaths(t *testing.T) {
	s := load(t)
	pat := example(t, "valid-Patient-nhs-number")
	pat["address"] = []any{map[string]any{"postalCode": "CV21"}, map[string]any{"postalCode": "CV22", "extension": []any{
		map[string]any{"url": "http://example.org/other", "valueString": "x"},
		map[string]any{"url": s.base + "/StructureDefinition/Extension-CRS-CallsPerDay", "valueInteger": json.Number("9")},
	}}}
	res := s.Check(pat, Options{Strict: true, Mode: "update"})
	var found []string
	for _, is := range errorsOf(res.Issues, fhir.SeverityError) {
		found = append(found, is.Expression+": "+is.Diagnostics)
	}
	want := "Patient.address[1].extension[1]: extension " + s.base + "/StructureDefinition/Extension-CRS-CallsPerDay may be used on CarePlan, EpisodeOfCare, not on Patient.address"
	if len(found) == 0 || found[0] != want {
		t.Fatalf("errors %q, want first %q", found, want)
	}
}
