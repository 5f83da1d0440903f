package cld

import (
	"reflect"
	"testing"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/mapping"
)

// TestNewPatientAsTyped: a new person's Patient tree is the one the typed
// model writes, with and without a postcode district.
func TestNewPatientAsTyped(t *testing.T) {
	for _, district := range []string{"CV21", ""} {
		pat := fm.Patient{Identifier: []fm.Identifier{{System: ptr(mapping.NHSNumberSystem), Value: ptr("9000000009")}}}
		if district != "" {
			pat.Address = []fm.Address{{Use: ptr(fm.AddressUseHome), PostalCode: ptr(district)}}
		}
		if got, want := newPatientTree("9000000009", district), toObject(pat); !reflect.DeepEqual(map[string]any(got), map[string]any(want)) {
			t.Errorf("district %q: %v, want %v", district, got, want)
		}
	}
}
