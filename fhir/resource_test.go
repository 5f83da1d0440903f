package fhir

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	lim := Limits{MaxBytes: 200, MaxDepth: 5}
	cases := []struct {
		name string
		body string
		kind Kind   // Internal means success
		expr string // the issue's expression; on success, text the re-encoding must contain
	}{
		{"ok", `{"resourceType":"Patient","a":[1.50,{"b":null}]}`, Internal, `[1.50,{"b":null}]`},
		{"decimal text kept", `{"resourceType":"Patient","x":1.500}`, Internal, `"x":1.500`},
		{"empty", ``, Invalid, ""},
		{"malformed", `{"resourceType":"Patient"`, Invalid, ""},
		{"trailing data", `{"resourceType":"Patient"} {}`, Invalid, ""},
		{"array", `[]`, Invalid, ""},
		{"string", `"x"`, Invalid, ""},
		{"no type", `{"id":"1"}`, Invalid, "resourceType"},
		{"type not a string", `{"resourceType":1}`, Invalid, "resourceType"},
		{"duplicate", `{"resourceType":"Patient","name":[{"family":"a","family":"b"}]}`, Invalid, "name[0].family"},
		{"too deep", `{"resourceType":"Patient","a":{"b":{"c":{"d":{"e":{}}}}}}`, Invalid, "a.b.c.d.e"},
		{"too large", `{"resourceType":"Patient","text":"` + strings.Repeat("x", 200) + `"}`, TooLarge, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj, err := Parse([]byte(c.body), lim)
			if c.kind == Internal {
				if err != nil {
					t.Fatal(err)
				}
				b, _ := Marshal(obj)
				again, err := Parse(b, lim)
				if err != nil || !sameJSON(obj, again) || !strings.Contains(string(b), c.expr) {
					t.Fatalf("re-encoded %s as %s", c.body, b)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %s", c.body)
			}
			e := AsError(err)
			if e.Kind != c.kind {
				t.Fatalf("kind %v, want %v: %v", e.Kind, c.kind, err)
			}
			if c.expr != "" && e.Issues[0].Expression != c.expr {
				t.Fatalf("expression %q, want %q", e.Issues[0].Expression, c.expr)
			}
		})
	}
}

func TestMarshalKeepsNumberText(t *testing.T) {
	obj, err := Parse([]byte(`{"resourceType":"Observation","valueQuantity":{"value":1.50},"n":1e3,"s":"<&>"}`), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"value":1.50`, `"n":1e3`, `"s":"<&>"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s missing from %s", want, b)
		}
	}
}

func TestParseReference(t *testing.T) {
	cases := []struct {
		in   string
		want Reference
		ok   bool
	}{
		{"Patient/123", Reference{"Patient", "123", ""}, true},
		{"Patient/123/_history/2", Reference{"Patient", "123", "2"}, true},
		{"http://x/fhir/Patient/1", Reference{"Patient", "1", ""}, true},
		{"http://other/fhir/Patient/1", Reference{}, false},
		{"#contained", Reference{}, false},
		{"patient/1", Reference{}, false},
	}
	for _, c := range cases {
		got, ok := ParseReference(c.in, "http://x/fhir")
		if ok != c.ok || got != c.want {
			t.Errorf("%s: %v %v", c.in, got, ok)
		}
	}
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient"}`, `{"resourceType":"Patient","a":[1.50,{"b":null}]}`,
		`[`, `{"resourceType":"P","x":{"x":{"x":{}}}}`, `{"a":1,"a":2}`, `"\u0000"`, `{"resourceType":"Patient"}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		obj, err := Parse(b, Limits{MaxBytes: 1 << 16, MaxDepth: 16})
		if err != nil {
			if AsError(err).Kind == Internal {
				t.Fatalf("internal error for client input: %v", err)
			}
			return
		}
		out, err := Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out, Limits{MaxBytes: 1 << 20, MaxDepth: 16})
		if err != nil {
			t.Fatalf("re-encoded resource does not parse: %v: %s", err, out)
		}
		out2, _ := Marshal(again)
		if string(out) != string(out2) {
			t.Fatalf("encoding not stable:\n%s\n%s", out, out2)
		}
	})
}
