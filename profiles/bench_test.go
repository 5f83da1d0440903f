package profiles

import (
	"path/filepath"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/validate"
)

// BenchmarkFullValidation is what a write of a pathway resource costs in
// validation: base R4 (schema and table) then the pathway profile with its
// invariants, on one core over the valid profile examples.
func BenchmarkFullValidation(b *testing.B) {
	s := load(b)
	base, err := validate.New()
	if err != nil {
		b.Fatal(err)
	}
	files, _ := filepath.Glob("examples/valid-*.json")
	var res []fhir.Object
	for _, f := range files {
		res = append(res, example(b, strings.TrimSuffix(filepath.Base(f), ".json")))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := res[i%len(res)]
		if issues := base.Validate(r); fhir.IssuesError(fhir.Invalid, issues) != nil {
			b.Fatal(issues)
		}
		if out := s.Check(r, Options{Strict: true, Mode: "update"}); out.HasErrors() {
			b.Fatal(out.Issues)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// FuzzCheck: whatever passes base validation, the profile check answers with
// issues, never a panic.
func FuzzCheck(f *testing.F) {
	files, _ := filepath.Glob("examples/*.json")
	for _, file := range files {
		f.Add(string(mustRead(f, file)))
	}
	s := load(f)
	base, err := validate.New()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		obj, err := fhir.Parse([]byte(body), fhir.DefaultLimits)
		if err != nil || !base.Known(fhir.ResourceType(obj)) {
			return
		}
		if fhir.IssuesError(fhir.Invalid, base.Validate(obj)) != nil {
			return
		}
		for _, strict := range []bool{true, false} {
			res := s.Check(obj, Options{Strict: strict, Mode: "create"})
			for _, is := range res.Issues {
				if is.Diagnostics == "" {
					t.Fatalf("an issue without a message: %+v", is)
				}
			}
			_ = References(obj, res.Allowed)
		}
	})
}
