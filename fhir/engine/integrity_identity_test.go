package engine

import (
	"reflect"
	"sort"
	"testing"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// identityBodies are Patients active, inactive, merged, linked otherwise,
// with several numbers, none, or odd keys.
var identityBodies = []string{
	`{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"},{"system":"x","value":"1"}]}`,
	`{"resourceType":"Patient","active":false,"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]}`,
	`{"resourceType":"Patient","active":true,"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"},{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000017"}]}`,
	`{"resourceType":"Patient","link":[{"other":{"reference":"Patient/b"},"type":"seealso"},{"other":{"reference":"Patient/a"},"type":"replaced-by"}],"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]}`,
	`{"resourceType":"Patient","link":[{"other":{"reference":"Patient/b"},"type":"replaces"}],"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":""}]}`,
	`{"resourceType":"Patient","name":[{"family":"Nobody"}]}`,
	`{"resourceType":"Patient","Identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"Active":false}`,
	`{"resourceType":"Patient","identifier":[{"System":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]}`,
	`{"resourceType":"Patient","active":false}`,
	`{"resourceType":"Patient","active":true,"link":[{"other":{"reference":"Patient/b"},"type":"seealso"}],"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]}`,
}

// TestPatientIdentityAsParsed: patientIdentity reads what a full parse and
// holdsIdentity read, for active, inactive, merged and odd Patients.
func TestPatientIdentityAsParsed(t *testing.T) {
	for _, body := range identityBodies {
		obj, err := fhir.Parse([]byte(body), fhir.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		ids, _ := obj["identifier"].([]any)
		for _, x := range ids {
			ident, _ := x.(map[string]any)
			if number, _ := ident["value"].(string); ident["system"] == nhsNumberSystem {
				want = append(want, number)
			}
		}
		holds, got, ok := patientIdentity([]byte(body))
		if !ok || holds != holdsIdentity(obj) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: holds %v numbers %q ok %v; a full parse says holds %v numbers %q", body, holds, got, ok, holdsIdentity(obj), want)
		}
	}
	if _, _, ok := patientIdentity([]byte(`[1]`)); ok {
		t.Error("an array read as a Patient")
	}
}

// TestWrittenIdentityAsBody: a written Patient's identity read from its
// search values is the one read from its body.
func TestWrittenIdentityAsBody(t *testing.T) {
	reg, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range identityBodies {
		obj, err := fhir.Parse([]byte(body), fhir.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		index, err := reg.Extract("Patient", obj)
		if err != nil {
			t.Fatal(err)
		}
		holds, got, ok := writtenIdentity(store.Version{Type: "Patient", Body: []byte(body)}, index)
		wholds, want, wok := patientIdentity([]byte(body))
		// An empty number is no number (nhsNumbersClear skips it).
		nonEmpty := func(list []string) []string {
			var out []string
			for _, n := range list {
				if n != "" {
					out = append(out, n)
				}
			}
			sort.Strings(out)
			return out
		}
		if ok != wok || holds != wholds || !reflect.DeepEqual(nonEmpty(got), nonEmpty(want)) {
			t.Errorf("%s: from the search values holds %v numbers %q; from the body holds %v numbers %q", body, holds, got, wholds, want)
		}
	}
}
