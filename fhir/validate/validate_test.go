package validate

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"crs/fhir"
)

// examples holds the R4 examples of the served types (testdata/README.md).
const examples = "../../testdata/r4/examples"

var v = func() *Validator {
	v, err := New()
	if err != nil {
		panic(err)
	}
	return v
}()

func parse(t testing.TB, s string) map[string]any {
	t.Helper()
	obj, err := fhir.Parse([]byte(s), fhir.Limits{})
	if err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return obj
}

func errorsOf(issues []fhir.Issue) []fhir.Issue {
	var out []fhir.Issue
	for _, is := range issues {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			out = append(out, is)
		}
	}
	return out
}

// TestExamplesValid: every R4 example of the served types, and the Bundle
// examples, validate without errors.
func TestExamplesValid(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examples, "*.json"))
	n := 0
	for _, f := range files {
		data, _ := os.ReadFile(f)
		obj := parse(t, string(data))
		rt := fhir.ResourceType(obj)
		if !fhir.Served(rt) && rt != "Bundle" {
			continue
		}
		n++
		if errs := errorsOf(v.Validate(obj)); len(errs) > 0 {
			t.Errorf("%s: %+v", filepath.Base(f), errs)
		}
	}
	if n < 100 {
		t.Fatalf("only %d examples", n)
	}
	t.Logf("%d examples valid", n)
}

func TestInvalid(t *testing.T) {
	cases := []struct {
		name string
		res  string
		expr string
	}{
		{"bogus status", `{"resourceType":"ServiceRequest","status":"bogus","intent":"order","subject":{"reference":"Patient/1"}}`, "ServiceRequest.status"},
		{"no intent", `{"resourceType":"ServiceRequest","status":"active","subject":{"reference":"Patient/1"}}`, "ServiceRequest.intent"},
		{"no subject", `{"resourceType":"ServiceRequest","status":"active","intent":"plan"}`, "ServiceRequest.subject"},
		{"unknown element", `{"resourceType":"Patient","foo":1}`, "Patient.foo"},
		{"nested unknown element", `{"resourceType":"Patient","name":[{"family":"x","nick":"y"}]}`, "Patient.name[0].nick"},
		{"bad date", `{"resourceType":"Patient","birthDate":"2026-13-01"}`, "Patient.birthDate"},
		{"number for string", `{"resourceType":"Patient","name":[{"family":5}]}`, "Patient.name[0].family"},
		{"bad gender", `{"resourceType":"Patient","gender":"x"}`, "Patient.gender"},
		{"number in given", `{"resourceType":"Patient","name":[{"given":["a",2]}]}`, "Patient.name[0].given[1]"},
		{"encounter without status", `{"resourceType":"Encounter","class":{"code":"HH"}}`, "Encounter.status"},
		{"encounter without class", `{"resourceType":"Encounter","status":"finished"}`, "Encounter.class"},
		{"contained error", `{"resourceType":"ServiceRequest","status":"active","intent":"plan","subject":{"reference":"#p"},"contained":[{"resourceType":"ServiceRequest","id":"p","status":"nope","intent":"plan","subject":{"reference":"Patient/1"}}]}`, "ServiceRequest.contained[0].status"},
		{"contained unknown type", `{"resourceType":"Patient","contained":[{"resourceType":"Nonsense"}]}`, "Patient.contained[0].resourceType"},
		{"extension without url", `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`, "Patient.extension[0].url"},
		{"bad quantity comparator", `{"resourceType":"Encounter","status":"finished","class":{"code":"HH"},"length":{"value":1,"comparator":"~"}}`, "Encounter.length.comparator"},
		{"array for single", `{"resourceType":"Patient","gender":["male"]}`, "Patient.gender"},
		{"bad primitive extension", `{"resourceType":"Patient","_birthDate":{"bogus":1}}`, "Patient.birthDate.bogus"},
		{"bad id", `{"resourceType":"Patient","id":"a b"}`, "Patient.id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := errorsOf(v.Validate(parse(t, c.res)))
			var got []string
			for _, e := range errs {
				got = append(got, e.Expression)
				if e.Expression == c.expr {
					if e.Diagnostics == "" {
						t.Fatal("issue without diagnostics")
					}
					return
				}
			}
			sort.Strings(got)
			t.Fatalf("no error at %s; errors at %s", c.expr, strings.Join(got, ", "))
		})
	}
}

func TestKnown(t *testing.T) {
	for rt, want := range map[string]bool{"Patient": true, "Observation": true, "Bundle": true, "Nonsense": false, "Resource": false, "HumanName": false, "": false} {
		if v.Known(rt) != want {
			t.Errorf("Known(%q) = %v", rt, !want)
		}
	}
}

func FuzzValidate(f *testing.F) {
	f.Add(`{"resourceType":"Patient","name":[{"family":"x"}]}`)
	f.Add(`{"resourceType":"ServiceRequest","status":"bogus","contained":[{"resourceType":"Patient","gender":1}]}`)
	f.Add(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Goal"}}]}`)
	f.Add(`{"resourceType":"Nonsense"}`)
	f.Fuzz(func(t *testing.T, s string) {
		obj, err := fhir.Parse([]byte(s), fhir.Limits{MaxBytes: 1 << 16, MaxDepth: 32})
		if err != nil {
			return
		}
		_ = v.Validate(obj)
	})
}

// BenchmarkValidateServiceRequest validates the R4 ServiceRequest examples
// (parsed beforehand) and reports resources per second.
func BenchmarkValidateServiceRequest(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join(examples, "ServiceRequest-*.json"))
	var res []map[string]any
	for _, f := range files {
		data, _ := os.ReadFile(f)
		res = append(res, parse(b, string(data)))
	}
	for _, r := range res {
		if errs := errorsOf(v.Validate(r)); len(errs) > 0 {
			b.Fatalf("%v", errs)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v.Validate(res[i%len(res)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}
