package fhir

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMarshalOrder: resourceType first, then the order of the definition, a
// primitive's extension after it, the context followed into data types,
// backbone elements, choice types and nested resources; unknown elements last.
func TestMarshalOrder(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"patient",
			`{"zzz":1,"gender":"female","_birthDate":{"extension":[{"valueString":"x","url":"u"}],"id":"b"},"birthDate":"1970-01-01","name":[{"given":["A"],"family":"B","use":"official"}],"meta":{"lastUpdated":"2026-01-01T00:00:00Z","versionId":"1"},"id":"p","resourceType":"Patient","_zzz":{"id":"z"}}`,
			`{"resourceType":"Patient","id":"p","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00Z"},"name":[{"use":"official","family":"B","given":["A"]}],"gender":"female","birthDate":"1970-01-01","_birthDate":{"id":"b","extension":[{"url":"u","valueString":"x"}]},"zzz":1,"_zzz":{"id":"z"}}`},
		{"outcome",
			`{"issue":[{"expression":["Patient.gender"],"diagnostics":"d","code":"invalid","severity":"error"}],"resourceType":"OperationOutcome"}`,
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"d","expression":["Patient.gender"]}]}`},
		{"choice types and backbone elements",
			`{"resourceType":"Observation","valueQuantity":{"unit":"kg","value":1.50},"status":"final","component":[{"valueCodeableConcept":{"text":"t","coding":[{"code":"c","system":"s"}]},"code":{"text":"x"}}]}`,
			`{"resourceType":"Observation","status":"final","valueQuantity":{"value":1.50,"unit":"kg"},"component":[{"code":{"text":"x"},"valueCodeableConcept":{"coding":[{"system":"s","code":"c"}],"text":"t"}}]}`},
		{"nested resources",
			`{"type":"batch-response","resourceType":"Bundle","entry":[{"response":{"status":"201","location":"l"},"resource":{"status":"active","resourceType":"Goal","lifecycleStatus":"active"},"fullUrl":"f"}]}`,
			`{"resourceType":"Bundle","type":"batch-response","entry":[{"fullUrl":"f","resource":{"resourceType":"Goal","lifecycleStatus":"active","status":"active"},"response":{"status":"201","location":"l"}}]}`},
		{"content reference",
			`{"resourceType":"Questionnaire","status":"draft","item":[{"type":"group","linkId":"1","item":[{"type":"string","text":"q","linkId":"1.1"}]}]}`,
			`{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","text":"q","type":"string"}]}]}`},
		{"not a resource: names in order",
			`{"b":1,"a":{"d":2,"c":3}}`,
			`{"a":{"c":3,"d":2},"b":1}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var v any
			if strings.HasPrefix(c.in, `{"b"`) {
				if err := json.Unmarshal([]byte(c.in), &v); err != nil {
					t.Fatal(err)
				}
			} else {
				obj, err := Parse([]byte(c.in), DefaultLimits)
				if err != nil {
					t.Fatal(err)
				}
				v = obj
			}
			got, err := Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// TestMarshalSortedIsCanonical: the canonical form (audit hashes) stays the
// sorted encoding/json one.
func TestMarshalSortedIsCanonical(t *testing.T) {
	obj, err := Parse([]byte(`{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z","s":"<&>\u2028"}`), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	got, err := MarshalSorted(obj)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"recorded":"2026-01-01T00:00:00Z","resourceType":"AuditEvent","s":"<&>\u2028","type":{"code":"rest"}}`; string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestMarshalExamples: every R4 example re-encodes to the same content, with
// resourceType first.
func TestMarshalExamples(t *testing.T) {
	files, _ := filepath.Glob("../testdata/r4/examples/*.json")
	if len(files) < 100 {
		t.Fatalf("only %d examples", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := Parse(data, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Marshal(obj)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !strings.HasPrefix(string(out), `{"resourceType":`) {
			t.Errorf("%s: %.60s", f, out)
		}
		back, err := Parse(out, DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		a, _ := MarshalSorted(obj)
		b, _ := MarshalSorted(back)
		if string(a) != string(b) {
			t.Errorf("%s: content changed", f)
		}
	}
}

// FuzzMarshalString: strings are written exactly as encoding/json writes them
// without HTML escaping; numbers are refused exactly when encoding/json refuses
// them.
func FuzzMarshalString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\/\b\f\n\r\t\x00\x1f", "<&>", "\u2028\u2029", "\xff\xfe", "é漢🙂", "1.50", "-0e+1", "01", "1.", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := MarshalSorted(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
		_, errStd := MarshalSorted(json.Number(s))
		_, err := Marshal(json.Number(s))
		if (err == nil) != (errStd == nil) {
			t.Fatalf("number %q: %v, encoding/json: %v", s, err, errStd)
		}
	})
}

// BenchmarkMarshal encodes the R4 ServiceRequest example: Marshal (the order of
// the definition), KeyOrder + MarshalOrdered (the client's order, what a write
// costs), MarshalSorted (encoding/json, what Marshal cost before) and, for
// scale, Parse.
func BenchmarkMarshal(b *testing.B) {
	data, err := os.ReadFile("../testdata/r4/examples/ServiceRequest-di.json")
	if err != nil {
		b.Fatal(err)
	}
	obj, err := Parse(data, DefaultLimits)
	if err != nil {
		b.Fatal(err)
	}
	clientOrder := func(v any) ([]byte, error) { return MarshalOrdered(v, KeyOrder(data)) }
	parse := func(any) ([]byte, error) { _, err := Parse(data, DefaultLimits); return nil, err }
	for _, c := range []struct {
		name string
		enc  func(any) ([]byte, error)
	}{{"definition-order", Marshal}, {"client-order", clientOrder}, {"sorted", MarshalSorted}, {"parse-for-scale", parse}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.enc(obj); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
