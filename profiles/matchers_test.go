package profiles

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSliceMatchersRemembered: every example gives the same issues when its
// profiles' slice matchers are compiled for it (a fresh Set) as when they
// were remembered from the checks before (the same Set, again), and each
// slice's matcher is compiled once.
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
	m1, _ := p.sliceMatcher("Organization.identifier:odsOrganisationCode")
	m2, _ := p.sliceMatcher("Organization.identifier:odsOrganisationCode")
	if m1 == nil || reflect.ValueOf(m1).Pointer() != reflect.ValueOf(m2).Pointer() {
		t.Errorf("the ODS slice's matcher was compiled again")
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
