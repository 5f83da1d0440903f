package search

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"crs/fhir"
)

const examples = r4 + "/examples"

func load(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(examples, name))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := fhir.Parse(b, fhir.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func find(vals []fhir.IndexValue, param string) []fhir.IndexValue {
	var out []fhir.IndexValue
	for _, v := range vals {
		if v.Param == param {
			out = append(out, v)
		}
	}
	return out
}

func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestExtractExamples checks values extracted from the official R4 examples.
func TestExtractExamples(t *testing.T) {
	tok := func(system, code string) fhir.IndexValue { return fhir.IndexValue{System: system, Code: code} }
	ref := func(typ, id string) fhir.IndexValue { return fhir.IndexValue{RefType: typ, RefID: id} }
	str := func(s string) fhir.IndexValue { return fhir.IndexValue{Str: s} }
	date := func(lo, hi string) fhir.IndexValue {
		v := fhir.IndexValue{}
		if lo != "" {
			v.Low = day(lo)
		}
		if hi != "" {
			v.High = day(hi)
		}
		return v
	}
	cases := []struct {
		file, param string
		want        []fhir.IndexValue // compared on the fields the parameter type uses
	}{
		{"Patient-example.json", "family", []fhir.IndexValue{str("chalmers"), str("windsor")}},
		{"Patient-example.json", "given", []fhir.IndexValue{str("peter"), str("james"), str("jim")}},
		{"Patient-example.json", "birthdate", []fhir.IndexValue{date("1974-12-25T00:00:00Z", "1974-12-26T00:00:00Z")}},
		{"Patient-example.json", "identifier", []fhir.IndexValue{tok("urn:oid:1.2.36.146.595.217.0.1", "12345")}},
		{"Patient-example.json", "identifier:of-type", []fhir.IndexValue{{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: "MR", Text: "12345"}}},
		{"Patient-example.json", "gender", []fhir.IndexValue{tok("", "male")}},
		{"Patient-example.json", "active", []fhir.IndexValue{tok("", "true")}},
		{"Patient-example.json", "deceased", []fhir.IndexValue{tok("", "false")}},
		{"Patient-example.json", "organization", []fhir.IndexValue{ref("Organization", "1")}},
		{"Patient-example.json", "address-city", []fhir.IndexValue{str("pleasantville")}},
		{"Patient-example.json", "phone", []fhir.IndexValue{tok("phone", "(03) 5555 6473"), tok("phone", "(03) 3410 5613"), tok("phone", "(03) 5555 8834")}},
		{"Patient-example.json", "email", nil},
		{"Patient-example.json", "_id", []fhir.IndexValue{tok("", "example")}},
		{"Patient-example.json", "link", nil},
		{"Patient-f001.json", "deceased", []fhir.IndexValue{tok("", "false")}},
		{"Patient-glossy.json", "general-practitioner", []fhir.IndexValue{ref("Practitioner", "example")}},
		{"ServiceRequest-example.json", "subject", []fhir.IndexValue{ref("Patient", "example")}},
		{"ServiceRequest-example.json", "patient", []fhir.IndexValue{ref("Patient", "example")}},
		{"ServiceRequest-example.json", "status", []fhir.IndexValue{tok("", "completed")}},
		{"ServiceRequest-example.json", "code", []fhir.IndexValue{{System: "http://snomed.info/sct", Code: "303653007", Text: "computed tomography of head"}}},
		{"ServiceRequest-do-not-turn.json", "authored", []fhir.IndexValue{date("2017-02-01T17:23:07Z", "2017-02-01T17:23:08Z")}},
		{"ServiceRequest-do-not-turn.json", "requester", []fhir.IndexValue{ref("Practitioner", "example")}},
		{"ServiceRequest-do-not-turn.json", "priority", []fhir.IndexValue{tok("", "stat")}},
		{"ServiceRequest-ft4.json", "occurrence", []fhir.IndexValue{date("2015-08-27T02:33:27Z", "2015-08-27T02:33:28Z")}},
		{"ServiceRequest-ft4.json", "code", []fhir.IndexValue{{System: "http://loinc.org", Code: "3024-7", Text: "free t4|thyroxine t4 free mass volume in serum or plasma"}}},
		{"Encounter-example.json", "status", []fhir.IndexValue{tok("", "in-progress")}},
		{"Encounter-example.json", "class", []fhir.IndexValue{{System: "http://terminology.hl7.org/CodeSystem/v3-ActCode", Code: "IMP", Text: "inpatient encounter"}}},
		{"Encounter-f001.json", "date", []fhir.IndexValue{date("", "")}}, // checked below: no period in f001
		{"Encounter-f001.json", "length", []fhir.IndexValue{{System: "http://unitsofmeasure.org", Code: "min", Exact: "min", Num: 140, NumLow: 139.5, NumHi: 140.5}}},
		{"Encounter-f203.json", "date", []fhir.IndexValue{date("2013-03-11T00:00:00Z", "2013-03-21T00:00:00Z")}},
		{"Encounter-home.json", "date", []fhir.IndexValue{date("2015-01-17T16:00:00+10:00", "2015-01-17T16:30:01+10:00")}}, // end to the second, exclusive
		{"CarePlan-integrate.json", "activity-date", []fhir.IndexValue{date("2012-09-10T00:00:00Z", ""), date("2012-08-27T00:00:00Z", ""), date("2012-07-23T00:00:00Z", ""), date("2012-07-10T00:00:00Z", "")}},
		{"CarePlan-example.json", "date", []fhir.IndexValue{date("", "2017-06-02T00:00:00Z")}},
		{"CarePlan-example.json", "activity-code", []fhir.IndexValue{{System: "http://loinc.org", Code: "3141-9", Text: "weight measured"}, {System: "http://snomed.info/sct", Code: "27113001", Text: "body weight"}}},
		{"CarePlan-example.json", "category", []fhir.IndexValue{{Text: "weight management plan"}}},
		{"CarePlan-example.json", "instantiates-uri", []fhir.IndexValue{{Exact: "http://example.org/protocol-for-obesity"}}},
		{"Goal-example.json", "target-date", []fhir.IndexValue{date("2016-04-05T00:00:00Z", "2016-04-06T00:00:00Z")}},
		{"Goal-example.json", "start-date", []fhir.IndexValue{date("2015-04-05T00:00:00Z", "2015-04-06T00:00:00Z")}},
		{"Goal-example.json", "lifecycle-status", []fhir.IndexValue{tok("", "on-hold")}},
		{"Provenance-example.json", "agent", []fhir.IndexValue{ref("Practitioner", "xcda-author"), ref("Device", "software")}},
		{"AuditEvent-example.json", "agent", []fhir.IndexValue{{Code: "Grahame"}, {System: "urn:oid:2.16.840.1.113883.4.2", Code: "2.16.840.1.113883.4.2"}}},
		{"AuditEvent-example.json", "entity-name", []fhir.IndexValue{{Str: "grahame s laptop", Exact: "Grahame's Laptop"}}},
		{"Organization-hl7.json", "name", []fhir.IndexValue{{Str: "health level seven international", Exact: "Health Level Seven International"}, {Str: "hl7 international", Exact: "HL7 International"}}}, // name | alias
	}
	r := Default()
	for _, c := range cases {
		obj := load(t, c.file)
		all, err := r.Extract(fhir.ResourceType(obj), obj)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		got := find(all, c.param)
		if c.file == "Encounter-f001.json" && c.param == "date" {
			if len(got) != 0 {
				t.Errorf("%s %s: %+v", c.file, c.param, got)
			}
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("%s %s: got %d values %+v, want %d", c.file, c.param, len(got), got, len(c.want))
			continue
		}
		for i, w := range c.want {
			g := got[i]
			w.Param, w.Type = c.param, g.Type
			if d, ok := r.Param(fhir.ResourceType(obj), strings.TrimSuffix(c.param, ":of-type")); !ok || g.Type != d.Type {
				t.Errorf("%s %s: value of type %s", c.file, c.param, g.Type)
			}
			switch g.Type {
			case fhir.TypeString:
				if w.Exact == "" {
					w.Exact = g.Exact
				}
			case fhir.TypeDate:
				w.Low, w.High = w.Low.UTC(), w.High.UTC()
				if !g.Low.Equal(w.Low) || !g.High.Equal(w.High) {
					t.Errorf("%s %s[%d]: [%v, %v), want [%v, %v)", c.file, c.param, i, g.Low, g.High, w.Low, w.High)
				}
				continue
			case fhir.TypeQuantity:
				if g.Num != w.Num || !near(g.NumLow, w.NumLow) || !near(g.NumHi, w.NumHi) {
					t.Errorf("%s %s[%d]: %+v, want %+v", c.file, c.param, i, g, w)
				}
				g.Num, g.NumLow, g.NumHi = w.Num, w.NumLow, w.NumHi
			}
			if g != w {
				t.Errorf("%s %s[%d]:\n got %+v\nwant %+v", c.file, c.param, i, g, w)
			}
		}
	}
}

// TestPrimitiveExtensionOnly: a primitive with only an extension (no value)
// yields no value and no error, while its extension stays reachable.
func TestPrimitiveExtensionOnly(t *testing.T) {
	obj := load(t, "Patient-newborn.json")
	delete(obj, "birthDate") // keep _birthDate: the birth time extension only
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	vals, err := r.Extract("Patient", obj)
	if err != nil {
		t.Fatal(err)
	}
	if b := find(vals, "birthdate"); len(b) != 0 {
		t.Errorf("birthdate from an extension-only primitive: %+v", b)
	}
	if g := find(vals, "gender"); len(g) != 1 || g[0].Code != "male" {
		t.Errorf("gender: %+v", g)
	}
	err = r.Add(map[string]any{
		"resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/birth-time", "code": "birth-time",
		"base": []any{"Patient"}, "type": "date",
		"expression": "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value",
	})
	if err != nil {
		t.Fatal(err)
	}
	vals, err = r.Extract("Patient", obj)
	if err != nil {
		t.Fatal(err)
	}
	if b := find(vals, "birth-time"); len(b) != 1 || !b[0].Low.Equal(day("2017-05-09T16:11:00Z")) || !b[0].High.Equal(day("2017-05-09T16:11:01Z")) {
		t.Errorf("birth-time: %+v", b)
	}
}

// servedExamples returns every example resource of a served type: the example
// files and the entries of the example Bundles.
func servedExamples(t testing.TB) map[string]map[string]any {
	files, _ := filepath.Glob(filepath.Join(examples, "*.json"))
	if len(files) == 0 {
		t.Fatal("no R4 examples in", examples)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		obj := load(t, filepath.Base(f))
		if fhir.Served(fhir.ResourceType(obj)) {
			out[filepath.Base(f)] = obj
		}
		entries, _ := obj["entry"].([]any)
		for i, e := range entries {
			em, _ := e.(map[string]any)
			if res, ok := em["resource"].(map[string]any); ok && fhir.Served(fhir.ResourceType(res)) {
				out[fmt.Sprintf("%s#entry%d", filepath.Base(f), i)] = res
			}
		}
	}
	return out
}

// TestExtractEveryExample: extraction succeeds on every example of the served
// types, finds values in each, and every value has its parameter's type and
// the fields that type uses.
func TestExtractEveryExample(t *testing.T) {
	r := Default()
	seen := map[string]bool{}
	n := 0
	for name, obj := range servedExamples(t) {
		rt := fhir.ResourceType(obj)
		vals, err := r.Extract(rt, obj)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(vals) == 0 {
			t.Errorf("%s: no index values", name)
		}
		for _, v := range vals {
			code := strings.TrimSuffix(v.Param, ":of-type")
			d, ok := r.Param(rt, code)
			if !ok || d.Type != v.Type {
				t.Errorf("%s: value %+v of parameter %s", name, v, code)
				continue
			}
			seen[rt+"."+code] = true
			if !filled(v) {
				t.Errorf("%s: empty value %+v", name, v)
			}
		}
		n++
	}
	if n < 120 {
		t.Fatalf("only %d examples", n)
	}
	t.Logf("%d examples, %d parameters with values", n, len(seen))
}

// filled reports whether an index value carries what its type needs.
func filled(v fhir.IndexValue) bool {
	switch v.Type {
	case fhir.TypeToken:
		return v.Code != "" || v.System != "" || v.Text != ""
	case fhir.TypeString:
		return v.Exact != ""
	case fhir.TypeURI:
		return v.Exact != ""
	case fhir.TypeDate:
		return (!v.Low.IsZero() || !v.High.IsZero()) && (v.Low.IsZero() || v.High.IsZero() || v.Low.Before(v.High))
	case fhir.TypeNumber, fhir.TypeQuantity:
		return v.NumLow <= v.Num && v.Num <= v.NumHi && v.NumLow < v.NumHi
	case fhir.TypeReference:
		return v.RefID != "" && v.RefType != "" || v.Exact != "" || v.Code != ""
	}
	return false
}

// TestUnsupportedParameters lists every R4 parameter of the served types the
// server cannot evaluate. Only composite parameters (context-type-quantity,
// context-type-value of the conformance resources) may be here: they combine
// two values of one useContext, which the index does not keep together. No
// expression of a served type is outside the FHIRPath subset.
func TestUnsupportedParameters(t *testing.T) {
	r := Default()
	n := 0
	var list []string
	for _, rt := range fhir.ServedTypes() {
		for code, why := range r.Unsupported(rt) {
			d, _ := r.lookup(rt, code)
			list = append(list, rt+"."+code+": "+why)
			if d.param.Type != fhir.TypeComposite {
				t.Errorf("%s.%s unsupported: %s", rt, code, why)
			}
			if _, ok := r.Param(rt, code); ok {
				t.Errorf("%s.%s: Param returns an unsupported parameter", rt, code)
			}
		}
		params := r.Params(rt)
		if !sort.SliceIsSorted(params, func(i, j int) bool { return params[i].Code < params[j].Code }) {
			t.Errorf("%s: Params not sorted", rt)
		}
		for _, base := range []string{"_id", "_lastUpdated", "_profile", "_tag", "_security", "_source"} {
			if _, ok := r.Param(rt, base); !ok {
				t.Errorf("%s: no %s", rt, base)
			}
		}
		n += len(params)
	}
	sort.Strings(list)
	t.Logf("%d supported search parameters over %d types; unsupported:\n%s", n, len(fhir.ServedTypes()), strings.Join(list, "\n"))
	if n < 400 || len(list) != 13 { // the context-type composites of the six conformance types, and Group.characteristic-value
		t.Fatalf("%d supported, %d unsupported", n, len(list))
	}
}

func TestBaseParams(t *testing.T) {
	r := Default()
	res := parseJSON(t, `{"resourceType":"Goal","id":"g1","meta":{"lastUpdated":"2026-11-22T10:00:00.123Z","profile":["http://example.org/StructureDefinition/p"],
		"source":"http://example.org/src#1","tag":[{"system":"http://example.org/tags","code":"t1","display":"Tag One"}],"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}}`)
	vals, err := r.Extract("Goal", res)
	if err != nil {
		t.Fatal(err)
	}
	check := func(param string, want fhir.IndexValue) {
		t.Helper()
		got := find(vals, param)
		want.Param = param
		if len(got) == 1 {
			want.Type = got[0].Type
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: %+v, want %+v", param, got, want)
		}
	}
	check("_id", fhir.IndexValue{Code: "g1"})
	check("_lastUpdated", fhir.IndexValue{Low: day("2026-11-22T10:00:00.123Z").UTC(), High: day("2026-11-22T10:00:00.124Z").UTC()})
	check("_profile", fhir.IndexValue{Exact: "http://example.org/StructureDefinition/p"})
	check("_source", fhir.IndexValue{Exact: "http://example.org/src#1"})
	check("_tag", fhir.IndexValue{System: "http://example.org/tags", Code: "t1", Text: "tag one"})
	check("_security", fhir.IndexValue{System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"})
	if d, _ := r.Param("Goal", "_lastUpdated"); d.Expression != "Goal.meta.lastUpdated" {
		t.Errorf("_lastUpdated expression %q", d.Expression)
	}
}

// TestConversions covers data type shapes the examples do not.
func TestConversions(t *testing.T) {
	r := Default()
	cases := []struct {
		rt, res, param string
		want           []fhir.IndexValue
	}{
		{"Goal", `{"description":{"text":"Lose Weight"},"category":[{"text":"Diet only"}]}`, "category",
			[]fhir.IndexValue{{Text: "diet only"}}},
		{"Goal", `{"category":[{"coding":[{"system":"s","code":"c","display":"Diet"}],"text":"Diet"}]}`, "category",
			[]fhir.IndexValue{{System: "s", Code: "c", Text: "diet"}}},
		{"Goal", `{"category":[{"coding":[{"system":"s","code":"c"},{"display":"no code"}],"text":"Diet"}]}`, "category",
			[]fhir.IndexValue{{System: "s", Code: "c", Text: "diet"}}},
		{"Goal", `{"subject":{"reference":"Patient/p1/_history/3"}}`, "subject", []fhir.IndexValue{{RefType: "Patient", RefID: "p1"}}},
		{"Goal", `{"subject":{"reference":"http://other.example/fhir/Patient/p1"}}`, "subject", []fhir.IndexValue{{Exact: "http://other.example/fhir/Patient/p1"}}},
		{"Goal", `{"subject":{"reference":"#contained"}}`, "subject", nil},
		{"Goal", `{"subject":{"display":"someone"}}`, "subject", nil},
		{"Goal", `{"subject":{"identifier":{"system":"s","value":"v"},"display":"x"}}`, "subject", []fhir.IndexValue{{System: "s", Code: "v"}}},
		{"Goal", `{"subject":{"reference":"Group/g1"}}`, "patient", nil},
		{"Goal", `{"subject":{"reference":"Patient/p1"}}`, "patient", []fhir.IndexValue{{RefType: "Patient", RefID: "p1"}}},
		{"Goal", `{"target":[{"dueDuration":{"value":3}},{"dueDate":"2026-11"}]}`, "target-date",
			[]fhir.IndexValue{{Low: day("2026-11-01T00:00:00Z"), High: day("2026-12-01T00:00:00Z")}}},
		{"Encounter", `{"length":{"value":2.50,"comparator":"<","system":"http://unitsofmeasure.org","code":"h","unit":"hours"}}`, "length",
			[]fhir.IndexValue{{Num: 2.5, NumLow: negInf, NumHi: 2.505, System: "http://unitsofmeasure.org", Code: "h", Exact: "hours"}}},
		{"Encounter", `{"period":{"start":"2026-11-01","end":"2026-11-03"}}`, "date",
			[]fhir.IndexValue{{Low: day("2026-11-01T00:00:00Z"), High: day("2026-11-04T00:00:00Z")}}},
		{"Encounter", `{"period":{"start":"not a date"}}`, "date", nil},
		{"CarePlan", `{"activity":[{"detail":{"scheduledTiming":{"event":["2026-11-01T10:00:00Z","2026-11-02"]}}},{"detail":{"scheduledString":"daily"}},{"detail":{"scheduledTiming":{"repeat":{"boundsPeriod":{"start":"2026"}}}}}]}`, "activity-date",
			[]fhir.IndexValue{{Low: day("2026-11-01T10:00:00Z"), High: day("2026-11-01T10:00:01Z")}, {Low: day("2026-11-02T00:00:00Z"), High: day("2026-11-03T00:00:00Z")}, {Low: day("2026-01-01T00:00:00Z")}}},
		{"Patient", `{"telecom":[{"system":"email","value":"a@example.org"},{"system":"phone","value":"1"}]}`, "email", []fhir.IndexValue{{System: "email", Code: "a@example.org"}}},
		{"Patient", `{"name":[{"text":"Dr Ann Smith","prefix":["Dr"],"suffix":["PhD"]}]}`, "name",
			[]fhir.IndexValue{{Str: "dr ann smith", Exact: "Dr Ann Smith"}, {Str: "dr", Exact: "Dr"}, {Str: "phd", Exact: "PhD"}}},
		{"Patient", `{"address":[{"line":["1 Rue Émile"],"district":"Mitte","country":"DE"}]}`, "address",
			[]fhir.IndexValue{{Str: "1 rue emile", Exact: "1 Rue Émile"}, {Str: "mitte", Exact: "Mitte"}, {Str: "de", Exact: "DE"}}},
		{"Patient", `{"identifier":[{"system":"s","value":"1"},{"system":"s","value":"1"}]}`, "identifier", []fhir.IndexValue{{System: "s", Code: "1"}}},
		{"Patient", `{"deceasedDateTime":"2020"}`, "death-date", []fhir.IndexValue{{Low: day("2020-01-01T00:00:00Z"), High: day("2021-01-01T00:00:00Z")}}},
		{"Patient", `{"deceasedDateTime":"2020"}`, "deceased", []fhir.IndexValue{{Code: "true"}}},
		{"Patient", `{}`, "deceased", []fhir.IndexValue{{Code: "false"}}},
		{"ConceptMap", `{"sourceCanonical":"http://example.org/ValueSet/a|1.0"}`, "source", []fhir.IndexValue{{Exact: "http://example.org/ValueSet/a|1.0"}}},
		{"ValueSet", `{"useContext":[{"code":{"code":"age"},"valueRange":{"low":{"value":18,"unit":"a"},"high":{"value":65}}}]}`, "context-quantity",
			[]fhir.IndexValue{{Num: 18, NumLow: 17.5, NumHi: 65.5, Exact: "a"}}},
		{"ValueSet", `{"useContext":[{"code":{"code":"x"},"valueQuantity":{"value":5,"currency":"EUR"}}]}`, "context-quantity",
			[]fhir.IndexValue{{Num: 5, NumLow: 4.5, NumHi: 5.5, System: "urn:iso:std:iso:4217", Code: "EUR"}}},
		{"ValueSet", `{"useContext":[{"code":{"code":"x"},"valueCodeableConcept":{"coding":[{"system":"s","code":"c"}]}}]}`, "context",
			[]fhir.IndexValue{{System: "s", Code: "c"}}},
		{"AuditEvent", `{"entity":[{"what":{"reference":"Patient/1"}},{"what":{"reference":"Patient/1"}}]}`, "patient", []fhir.IndexValue{{RefType: "Patient", RefID: "1"}}},
	}
	for _, c := range cases {
		body := `{"resourceType":"` + c.rt + `"`
		if c.res != "{}" {
			body += "," + strings.TrimPrefix(c.res, "{")
		} else {
			body += "}"
		}
		res := parseJSON(t, body)
		vals, err := r.Extract(c.rt, res)
		if err != nil {
			t.Fatal(err)
		}
		got := find(vals, c.param)
		ok := len(got) == len(c.want)
		for i := 0; ok && i < len(got); i++ {
			w := c.want[i]
			w.Param, w.Type = c.param, got[i].Type
			w.Low, w.High = w.Low.UTC(), w.High.UTC()
			if w.Low.Equal(time.Time{}.UTC()) {
				w.Low = time.Time{}
			}
			if w.High.Equal(time.Time{}.UTC()) {
				w.High = time.Time{}
			}
			g := got[i]
			ok = g.Low.Equal(w.Low) && g.High.Equal(w.High) && near(g.NumLow, w.NumLow) && near(g.NumHi, w.NumHi)
			g.Low, g.High, g.NumLow, g.NumHi = w.Low, w.High, w.NumLow, w.NumHi
			ok = ok && g == w
		}
		if !ok {
			t.Errorf("%s %s %s:\n got %+v\nwant %+v", c.rt, c.res, c.param, got, c.want)
		}
	}
}

func TestExtractWrongType(t *testing.T) {
	if _, err := Default().Extract("Goal", map[string]any{"resourceType": "Patient"}); fhir.KindOf(err) != fhir.Invalid {
		t.Fatalf("got %v", err)
	}
	if vals, err := Default().Extract("Nonsense", map[string]any{"resourceType": "Nonsense"}); err != nil || len(vals) != 0 {
		t.Fatalf("got %v %v", vals, err)
	}
}

func TestAdd(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	pathway := map[string]any{
		"resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/pathway", "code": "pathway",
		"base": []any{"ServiceRequest", "CarePlan"}, "type": "reference", "target": []any{"PlanDefinition"},
		"expression": "ServiceRequest.extension('http://example.org/pathway').value | CarePlan.extension('http://example.org/pathway').value | Task.extension('x').value",
	}
	if err := r.Add(pathway); err != nil {
		t.Fatal(err)
	}
	d, ok := r.Param("CarePlan", "pathway")
	if !ok || d.Expression != "CarePlan.extension('http://example.org/pathway').value" || d.Targets[0] != "PlanDefinition" {
		t.Fatalf("%+v", d)
	}
	if _, ok := Default().Param("CarePlan", "pathway"); ok {
		t.Fatal("Add on a New registry changed Default")
	}
	sr := parseJSON(t, `{"resourceType":"ServiceRequest","extension":[{"url":"http://example.org/pathway","valueReference":{"reference":"PlanDefinition/cancer-2ww"}}]}`)
	vals, err := r.Extract("ServiceRequest", sr)
	if err != nil {
		t.Fatal(err)
	}
	if p := find(vals, "pathway"); len(p) != 1 || p[0].RefType != "PlanDefinition" || p[0].RefID != "cancer-2ww" {
		t.Fatalf("pathway: %+v", p)
	}
	if _, err := r.ParseQuery("ServiceRequest", []fhir.RawParam{{Name: "pathway", Value: "PlanDefinition/cancer-2ww"}}, ParseOptions{}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range r.Params("ServiceRequest") {
		found = found || p.Code == "pathway"
	}
	if !found {
		t.Fatal("Params does not list an added parameter")
	}
	bad := []map[string]any{
		{"code": "x", "base": []any{"Patient"}, "type": "token", "expression": "Patient.name.substring(1)"},
		{"code": "x", "base": []any{"Patient"}, "type": "token", "expression": "Patient.link.other.resolve().name"},
		{"code": "x", "base": []any{"Patient"}, "type": "composite", "expression": "Patient.name"},
		{"code": "x", "base": []any{"Patient"}, "type": "special", "expression": "Patient.name"},
		{"code": "x", "base": []any{"Patient"}, "type": "token"},
		{"code": "x", "base": []any{"Patient"}, "type": "nonsense", "expression": "Patient.name"},
		{"code": "x", "base": []any{"Patient"}, "type": "token", "expression": "Practitioner.name"},
		{"code": "_x", "base": []any{"Patient"}, "type": "token", "expression": "Patient.name"},
		{"code": "a.b", "base": []any{"Patient"}, "type": "token", "expression": "Patient.name"},
		{"code": "x", "type": "token", "expression": "Patient.name"},
		{"code": "x", "base": []any{"patient"}, "type": "token", "expression": "Patient.name"},
		{"resourceType": "Patient", "code": "x", "base": []any{"Patient"}, "type": "token", "expression": "Patient.name"},
	}
	for _, sp := range bad {
		if err := r.Add(sp); err == nil {
			t.Errorf("accepted %v", sp)
		} else if fhir.KindOf(err) != fhir.Invalid {
			t.Errorf("%v: %v", sp, err)
		}
		if _, ok := r.Param("Patient", "x"); ok {
			t.Errorf("%v added", sp)
		}
	}
	// Resource as base adds to every served type.
	if err := r.Add(map[string]any{"code": "has-text", "base": []any{"DomainResource"}, "type": "token", "expression": "DomainResource.text.exists()"}); err != nil {
		t.Fatal(err)
	}
	for _, rt := range fhir.ServedTypes() {
		if _, ok := r.Param(rt, "has-text"); !ok {
			t.Errorf("%s: no has-text", rt)
		}
	}
}

// TestAddConcurrent: Add publishes while extraction and parsing go on (run
// with -race).
func TestAddConcurrent(t *testing.T) {
	r, err := New()
	if err != nil {
		t.Fatal(err)
	}
	obj := parseJSON(t, `{"resourceType":"Patient","id":"p","gender":"male"}`)
	done := make(chan bool)
	go func() {
		for i := 0; i < 50; i++ {
			code := "p" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			if err := r.Add(map[string]any{"code": code, "base": []any{"Patient"}, "type": "token", "expression": "Patient.gender"}); err != nil {
				t.Error(err)
			}
		}
		close(done)
	}()
	for {
		select {
		case <-done:
			vals, _ := r.Extract("Patient", obj)
			if n := len(find(vals, "pxb")); n != 1 { // the last one added
				t.Fatalf("pxb: %d values", n)
			}
			return
		default:
			if _, err := r.Extract("Patient", obj); err != nil {
				t.Fatal(err)
			}
			_ = r.Params("Patient")
		}
	}
}

func FuzzExtract(f *testing.F) {
	f.Add("Patient", `{"resourceType":"Patient","name":[{"family":"x","given":["a",null]}],"birthDate":"2020","_birthDate":{"extension":[{"url":"u"}]}}`)
	f.Add("Patient", `{"resourceType":"Patient","deceasedBoolean":true,"telecom":[{"system":"phone","value":"1"}]}`)
	f.Add("Patient", `{"resourceType":"Patient","name":"notalist","gender":1,"link":[{"other":{"reference":5}}],"meta":{"lastUpdated":[]}}`)
	f.Add("ServiceRequest", `{"resourceType":"ServiceRequest","occurrenceTiming":{"event":["2026-13-01",7]},"quantityRange":{"low":{"value":"x"}},"subject":{"reference":"Patient/1/_history/"}}`)
	f.Add("Encounter", `{"resourceType":"Encounter","length":{"value":1e400},"period":{"start":"2026-02-30"},"class":{"coding":"x"}}`)
	b, err := os.ReadFile(filepath.Join(examples, "ServiceRequest-example.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("ServiceRequest", string(b))
	r := Default()
	f.Fuzz(func(t *testing.T, rt, s string) {
		obj, err := fhir.Parse([]byte(s), fhir.DefaultLimits)
		if err != nil {
			return
		}
		vals, err := r.Extract(fhir.ResourceType(obj), obj)
		if err != nil {
			t.Fatalf("extract: %v", err)
		}
		for _, v := range vals {
			if v.Param == "" || v.Type == "" {
				t.Fatalf("value without parameter: %+v", v)
			}
		}
		_, _ = r.Extract(rt, obj)
		var back any
		b, _ := json.Marshal(obj)
		_ = json.Unmarshal(b, &back)
	})
}

// BenchmarkExtract extracts the index values of each ServiceRequest example in
// turn.
func BenchmarkExtract(b *testing.B) {
	r := Default()
	files, _ := filepath.Glob(filepath.Join(examples, "ServiceRequest-*.json"))
	sort.Strings(files)
	var res []map[string]any
	for _, f := range files {
		res = append(res, load(b, filepath.Base(f)))
	}
	if len(res) == 0 {
		b.Fatal("no R4 examples in", examples)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		vals, err := r.Extract("ServiceRequest", res[i%len(res)])
		if err != nil {
			b.Fatal(err)
		}
		n += len(vals)
	}
	b.ReportMetric(float64(n)/float64(b.N), "values/op")
}
