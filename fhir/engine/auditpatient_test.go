package engine

import (
	"os"
	"path/filepath"
	"testing"

	"crs/fhir"
	"crs/fhir/store"
)

// TestPatientOfScan: the scan of a body's top level names the same patient as
// decoding the whole body, for every R4 example in the repository (as stored,
// and re-encoded in definition order, as crs stores them) and for bodies
// shaped to trip it; bodies it cannot follow fall back to decoding.
func TestPatientOfScan(t *testing.T) {
	files, err := filepath.Glob("../../testdata/r4/examples/*.json")
	if err != nil || len(files) < 10 {
		t.Fatalf("%d examples (%v)", len(files), err)
	}
	patients := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := fhir.Parse(body, fhir.Limits{})
		if err != nil {
			continue
		}
		stored, err := fhir.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{body, stored} {
			want := patientParsed(b)
			if got := PatientOf(store.Version{Type: "X", Body: b}); got != want {
				t.Errorf("%s: PatientOf = %q, decoding gives %q", f, got, want)
			}
			if _, ok := patientScan(b); !ok {
				t.Errorf("%s: the scan did not follow a plain body", f)
			}
			if want != "" {
				patients++
			}
		}
	}
	if patients == 0 {
		t.Fatal("no example names a patient: the comparison proved nothing")
	}
	for _, c := range []struct {
		body, want string
		scanned    bool
	}{
		{`{"subject":{"reference":"Patient/a"}}`, "Patient/a", true},
		{`{"patient":{"reference":"Patient/b"},"subject":{"reference":"Group/g"}}`, "Patient/b", true},
		{`{"patient":{"reference":"Patient/b"},"subject":{"reference":"Patient/s"}}`, "Patient/s", true},
		{` { "text" : {"div":"<div>\"subject\":{\"reference\":\"Patient/x\"}</div>"} , "contained":[{"subject":{"reference":"Patient/c"}}] } `, "", true},
		{`{"subject":"Patient/a"}`, "", true},
		{`{"subject":{"reference":"Patient/\u0061"}}`, "Patient/a", true},
		{`{"subj\u0065ct":{"reference":"Patient/e"}}`, patientParsed([]byte(`{"subj\u0065ct":{"reference":"Patient/e"}}`)), false},
		{`{"subject":{"reference":"Patient/1"},"subject":{"reference":"Patient/2"}}`, patientParsed([]byte(`{"subject":{"reference":"Patient/1"},"subject":{"reference":"Patient/2"}}`)), false},
		{`{}`, "", true},
		{`[]`, "", false},
		{`{"subject":{"reference":"Patient/a"}`, "", false},
	} {
		_, ok := patientScan([]byte(c.body))
		if got := PatientOf(store.Version{Type: "X", Body: []byte(c.body)}); got != c.want || ok != c.scanned {
			t.Errorf("%s: PatientOf = %q (scanned %v), want %q (scanned %v)", c.body, got, ok, c.want, c.scanned)
		}
	}
}

// FuzzPatientOf: for any body that decodes, the scan and the decoding name
// the same patient.
func FuzzPatientOf(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Encounter","subject":{"reference":"Patient/a","display":"A"},"status":"finished"}`,
		`{"patient":{"reference":"Patient/b"},"subject":{"reference":"Group/g"},"x":[1,{"y":"]"}]}`,
		` {"a":"\\\"","subject" : {"reference":"Patient/\u00e9"}} `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := fhir.Parse(body, fhir.Limits{}); err != nil {
			return
		}
		want := patientParsed(body)
		if got := PatientOf(store.Version{Type: "X", Body: body}); got != want {
			t.Fatalf("PatientOf(%s) = %q, decoding gives %q", body, got, want)
		}
	})
}

// BenchmarkPatientOf: what an audited read of a 1 KB ServiceRequest pays to
// name its patient.
func BenchmarkPatientOf(b *testing.B) {
	body, err := os.ReadFile("../../testdata/r4/examples/ServiceRequest-di.json")
	if err != nil {
		b.Fatal(err)
	}
	v := store.Version{Type: "ServiceRequest", ID: "di", Body: body}
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			PatientOf(v)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			patientParsed(body)
		}
	})
}
