package fhir

import (
	"testing"
)

func TestApplyPatch(t *testing.T) {
	doc := `{"resourceType":"CarePlan","status":"active","note":[{"text":"a"},{"text":"b"}],"x":{"y":1.50}}`
	cases := []struct {
		name  string
		patch string
		want  string // expected result, or "" when the patch must fail
		kind  Kind
	}{
		{"replace", `[{"op":"replace","path":"/status","value":"completed"}]`,
			`{"resourceType":"CarePlan","status":"completed","note":[{"text":"a"},{"text":"b"}],"x":{"y":1.50}}`, 0},
		{"add to array end", `[{"op":"add","path":"/note/-","value":{"text":"c"}}]`,
			`{"resourceType":"CarePlan","status":"active","note":[{"text":"a"},{"text":"b"},{"text":"c"}],"x":{"y":1.50}}`, 0},
		{"add at index", `[{"op":"add","path":"/note/0","value":{"text":"z"}}]`,
			`{"resourceType":"CarePlan","status":"active","note":[{"text":"z"},{"text":"a"},{"text":"b"}],"x":{"y":1.50}}`, 0},
		{"remove", `[{"op":"remove","path":"/note/0"}]`,
			`{"resourceType":"CarePlan","status":"active","note":[{"text":"b"}],"x":{"y":1.50}}`, 0},
		{"move", `[{"op":"move","from":"/x/y","path":"/z"}]`,
			`{"resourceType":"CarePlan","status":"active","note":[{"text":"a"},{"text":"b"}],"x":{},"z":1.50}`, 0},
		{"copy", `[{"op":"copy","from":"/note/1","path":"/note/0"}]`,
			`{"resourceType":"CarePlan","status":"active","note":[{"text":"b"},{"text":"a"},{"text":"b"}],"x":{"y":1.50}}`, 0},
		{"test ok", `[{"op":"test","path":"/x/y","value":1.5},{"op":"replace","path":"/status","value":"revoked"}]`,
			`{"resourceType":"CarePlan","status":"revoked","note":[{"text":"a"},{"text":"b"}],"x":{"y":1.50}}`, 0},
		{"escaped pointer", `[{"op":"add","path":"/a~1b~0c","value":true}]`,
			`{"resourceType":"CarePlan","status":"active","note":[{"text":"a"},{"text":"b"}],"x":{"y":1.50},"a/b~c":true}`, 0},
		{"test fails", `[{"op":"test","path":"/status","value":"draft"}]`, "", Unprocessable},
		{"missing path", `[{"op":"remove","path":"/nothing"}]`, "", Unprocessable},
		{"index out of range", `[{"op":"replace","path":"/note/5","value":{}}]`, "", Unprocessable},
		{"leading zero index", `[{"op":"remove","path":"/note/01"}]`, "", Unprocessable},
		{"move into child", `[{"op":"move","from":"/x","path":"/x/y/z"}]`, "", Unprocessable},
		{"unknown op", `[{"op":"frobnicate","path":"/status"}]`, "", Invalid},
		{"no value", `[{"op":"add","path":"/status"}]`, "", Invalid},
		{"not an array", `{"op":"add"}`, "", Invalid},
		{"bad pointer", `[{"op":"remove","path":"status"}]`, "", Invalid},
		{"remove root", `[{"op":"remove","path":""}]`, "", Unprocessable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj, err := Parse([]byte(doc), DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			ops, err := ParsePatch([]byte(c.patch), DefaultLimits)
			if err == nil {
				var res Object
				res, err = ApplyPatch(obj, ops)
				if err == nil {
					if c.want == "" {
						t.Fatalf("patch applied, want error: %v", res)
					}
					want, _ := Parse([]byte(c.want), DefaultLimits)
					got, _ := Marshal(res)
					exp, _ := Marshal(want)
					if string(got) != string(exp) {
						t.Fatalf("got  %s\nwant %s", got, exp)
					}
					return
				}
			}
			if c.want != "" {
				t.Fatalf("unexpected error: %v", err)
			}
			if k := KindOf(err); k != c.kind {
				t.Fatalf("kind %v, want %v (%v)", k, c.kind, err)
			}
		})
	}
}

func FuzzApplyPatch(f *testing.F) {
	f.Add(`[{"op":"add","path":"/a/-","value":1}]`)
	f.Add(`[{"op":"move","from":"/a","path":"/b"}]`)
	f.Add(`[{"op":"copy","from":"/a/0","path":"/a/0"},{"op":"test","path":"/a","value":[1,1]}]`)
	f.Fuzz(func(t *testing.T, patch string) {
		obj, _ := Parse([]byte(`{"resourceType":"Patient","a":[1,{"b":"c"}]}`), DefaultLimits)
		ops, err := ParsePatch([]byte(patch), DefaultLimits)
		if err != nil {
			return
		}
		if _, err := ApplyPatch(obj, ops); err != nil && KindOf(err) == Internal {
			t.Fatalf("internal error: %v", err)
		}
	})
}
