package search

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"crs/fhir"
)

// r4 holds the R4 examples and search parameters the tests read (testdata/README.md).
const r4 = "../../testdata/r4"

// TestCompileEveryR4Expression: the subset compiles the expression of every R4
// search parameter (all 1,378, not only those of the served types), restricted
// to each of its bases.
func TestCompileEveryR4Expression(t *testing.T) {
	data, err := readGzip(filepath.Join(r4, "search-parameters.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				Code       string   `json:"code"`
				Base       []string `json:"base"`
				Type       string   `json:"type"`
				Expression string   `json:"expression"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range b.Entry {
		r := e.Resource
		if r.Expression == "" {
			continue
		}
		for _, base := range r.Base {
			expr := restrictExpression(r.Expression, base)
			if expr == "" {
				t.Errorf("%s.%s: no branch of %q", base, r.Code, r.Expression)
				continue
			}
			if _, err := compileFor(base, expr); err != nil {
				t.Errorf("%s.%s: %q: %v", base, r.Code, expr, err)
			}
			n++
		}
	}
	if n < 1300 {
		t.Fatalf("only %d expressions", n)
	}
	t.Logf("%d expressions compiled", n)
}

// readGzip returns the uncompressed content of a gzip file.
func readGzip(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(z)
}

// show renders a collection for comparison: each item's JSON, with its type
// when known.
func show(items []item) string {
	parts := make([]string, 0, len(items))
	for _, it := range items {
		b, _ := json.Marshal(it.v)
		s := string(b)
		if it.v == nil && it.ext != nil {
			b, _ = json.Marshal(it.ext)
			s = "_" + string(b)
		}
		if it.typ != "" {
			s = it.typ + ":" + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func parseJSON(t testing.TB, s string) map[string]any {
	t.Helper()
	obj, err := fhir.Parse([]byte(s), fhir.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func TestEval(t *testing.T) {
	patient := `{"resourceType":"Patient","id":"p","active":true,
		"name":[{"use":"official","family":"Chalmers","given":["Peter","James"]},{"use":"usual","given":["Jim"]}],
		"telecom":[{"system":"phone","value":"1"},{"system":"email","value":"a@b"},{"system":"phone","value":"2","use":"work"}],
		"gender":"male","_gender":{"extension":[{"url":"http://x/g","valueCode":"M"}]},
		"_birthDate":{"extension":[{"url":"http://x/bt","valueDateTime":"2017-05-09T17:11:00+01:00"}]},
		"deceasedDateTime":"2020-01-01",
		"multipleBirthInteger":2,
		"extension":[{"url":"http://x/ethnicity","valueCodeableConcept":{"text":"e"}},{"url":"http://x/other","valueString":"o"}],
		"generalPractitioner":[{"reference":"Practitioner/1"},{"reference":"Organization/2"},{"reference":"http://other/fhir/Practitioner/3/_history/1"},{"type":"Practitioner","identifier":{"value":"x"}}]}`
	obs := `{"resourceType":"Observation","valueQuantity":{"value":1.5,"unit":"mg"},"component":[{"valueString":"a"},{"valueQuantity":{"value":2}},{"valueAge":{"value":3}}]}`
	cases := []struct {
		res, expr, want string
	}{
		{patient, "Patient.name.given", `"Peter" "James" "Jim"`},
		{patient, "Patient.name.family | Patient.gender", `"Chalmers" "male"`},
		{patient, "Resource.id", `"p"`},
		{patient, "DomainResource.id", `"p"`},
		{patient, "Observation.id", ``},
		{patient, "id", `"p"`},
		{patient, "Patient.name.where(use='usual').given", `"Jim"`},
		{patient, "Patient.name.where(use!='usual').family", `"Chalmers"`},
		{patient, "Patient.telecom.where(system='phone' and use='work').value", `"2"`},
		{patient, "Patient.telecom.where(system='email' or use='work').value", `"a@b" "2"`},
		{patient, "Patient.telecom.where(system='phone').where(use.exists().not()).value", `"1"`},
		{patient, "Patient.telecom.where($this.system = 'email').value", `"a@b"`},
		{patient, "Patient.generalPractitioner.where(resolve() is Practitioner).reference", `"Practitioner/1" "http://other/fhir/Practitioner/3/_history/1"`},
		{patient, "Patient.generalPractitioner.where(resolve() is Practitioner).identifier.value", `"x"`},
		{patient, "Patient.generalPractitioner.where(resolve().is(Organization)).reference", `"Organization/2"`},
		{patient, "Patient.generalPractitioner.where(resolve().ofType(Organization).exists()).reference", `"Organization/2"`},
		{patient, "Patient.deceased", `dateTime:"2020-01-01"`},
		{patient, "Patient.deceased as dateTime", `dateTime:"2020-01-01"`},
		{patient, "(Patient.deceased as boolean)", ``},
		{patient, "Patient.deceased.as(dateTime)", `dateTime:"2020-01-01"`},
		{patient, "Patient.deceased.ofType(FHIR.dateTime)", `dateTime:"2020-01-01"`},
		{patient, "Patient.deceased is dateTime", `boolean:true`},
		{patient, "Patient.deceased.is(boolean)", `boolean:false`},
		{patient, "Patient.deceased.exists() and Patient.deceased != false", `boolean:true`},
		{`{"resourceType":"Patient","deceasedBoolean":false}`, "Patient.deceased.exists() and Patient.deceased != false", `boolean:false`},
		{`{"resourceType":"Patient"}`, "Patient.deceased.exists() and Patient.deceased != false", `boolean:false`},
		{patient, "Patient.multipleBirth as integer", `integer:2`},
		{patient, "Patient.name.exists()", `boolean:true`},
		{patient, "Patient.link.exists()", `boolean:false`},
		{patient, "Patient.link.empty()", `boolean:true`},
		{patient, "Patient.name.exists(use='temp')", `boolean:false`},
		{patient, "Patient.active.not()", `boolean:false`},
		{patient, "Patient.name.first().given", `"Peter" "James"`},
		{patient, "Patient.name.last().given", `"Jim"`},
		{patient, "Patient.name[1].given", `"Jim"`},
		{patient, "Patient.name.given[5]", ``},
		{patient, "Patient.name.given.count()", `integer:3`},
		{patient, "Patient.active.hasValue()", `boolean:true`},
		{patient, "Patient.extension('http://x/ethnicity').value", `CodeableConcept:{"text":"e"}`},
		{patient, "Patient.extension('http://x/other').value as string", `string:"o"`},
		{patient, "Patient.extension('http://x/none').value", ``},
		{patient, "Patient.gender.extension('http://x/g').value", `code:"M"`},
		{patient, "Patient.birthDate.extension('http://x/bt').value", `dateTime:"2017-05-09T17:11:00+01:00"`},
		{patient, "Patient.birthDate", ``},
		{patient, "Patient.name.where(given = 'Jim').use", `"usual"`},
		{patient, "Patient.name.where(given = 'Peter').use", ``}, // two givens: not equal to one
		{patient, "'a' = 'a'", `boolean:true`},
		{patient, "1.0 = 1", `boolean:true`},
		{patient, "Patient.active = true", `boolean:true`},
		{patient, "Patient.nothing = true", ``},
		{obs, "Observation.value as Quantity", `Quantity:{"unit":"mg","value":1.5}`},
		{obs, "(Observation.value as Quantity).value", `1.5`},
		{obs, "Observation.component.value.ofType(Quantity)", `Quantity:{"value":2} Age:{"value":3}`},
		{obs, "Observation.component.value as string", `string:"a"`},
		{obs, "Observation.component.value.ofType(Quantity).where(value = 3)", `Age:{"value":3}`},
		{`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}},{"resource":{"resourceType":"Patient","id":"p"}}]}`,
			"Bundle.entry[0].resource", `{"id":"c","resourceType":"Composition"}`},
		{`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}},{"resource":{"resourceType":"Patient","id":"p"}}]}`,
			"Bundle.entry.resource.ofType(Patient).id", `"p"`},
		{`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}},{"resource":{"resourceType":"Patient","id":"p"}}]}`,
			"Bundle.entry.resource is Patient", ``}, // plural
		{`{"resourceType":"ConceptMap","sourceCanonical":"http://x/vs"}`, "(ConceptMap.source as uri)", `canonical:"http://x/vs"`},
		{`{"resourceType":"ConceptMap","sourceCanonical":"http://x/vs"}`, "(ConceptMap.source as canonical)", `canonical:"http://x/vs"`},
		{`{"resourceType":"Patient","name":[{"given":["A",null,"C"],"_given":[null,{"extension":[{"url":"u","valueString":"B"}]}]}]}`,
			"Patient.name.given", `"A" "C"`},
		{`{"resourceType":"Patient","name":[{"given":["A",null,"C"],"_given":[null,{"extension":[{"url":"u","valueString":"B"}]}]}]}`,
			"Patient.name.given.extension('u').value", `string:"B"`},
		{`{"resourceType":"Patient","name":"notalist","gender":1,"link":[{"other":{"reference":5}}]}`,
			"Patient.link.other.where(resolve() is Patient) | Patient.name.given | Patient.gender", `1`},
	}
	for _, c := range cases {
		expr, err := compile(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if got := show(expr.eval(parseJSON(t, c.res))); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.expr, got, c.want)
		}
	}
}

// TestCompileRejects: what is outside the subset is an error naming it.
func TestCompileRejects(t *testing.T) {
	cases := map[string]string{
		"Patient.name.substring(1)":               "substring()",
		"%resource.id":                            "%resource",
		"Patient.multipleBirth < 3":               `"<"`,
		"Patient.a + 1":                           `"+"`,
		"Patient.a implies Patient.b":             `"implies"`,
		"Patient.a ~ 'x'":                         `"~"`,
		"-Patient.a":                              `unary`,
		"Patient.link.other.resolve().name":       "resolve()",
		"Patient.link.other.resolve()":            "resolve()",
		"Patient.extension(url)":                  "string literal",
		"Patient.name.where()":                    "where() takes 1",
		"Patient.name.first(1)":                   "first() takes 0",
		"Patient.name.where(use = 'x'":            "')'",
		"Patient.name.where(use = 'x)":            "unterminated string",
		"Patient.name.":                           "element or function name",
		"Patient..name":                           "element or function name",
		"Patient.name[x]":                         "integer index",
		"Patient.name ! 'x'":                      "'!'",
		"Patient.name #":                          "unexpected character",
		"Patient.name as":                         "type name",
		"Patient.name 'x'":                        "unexpected",
		"":                                        "unexpected end",
		"Patient.name.where(use = 'x') | ":        "unexpected end",
		"Patient.name.where(use in 'x' | 'y')":    `"in"`,
		"Patient.name.where(use contains 'x')":    `"contains"`,
		"Patient.telecom.where(system='a') xor 1": `"xor"`,
	}
	for src, want := range cases {
		_, err := compile(src)
		if err == nil {
			t.Errorf("%q compiled", src)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v (want it to mention %s)", src, err, want)
		}
	}
	if _, err := compileFor("Patient", "Patient.name | Practitioner.name"); err == nil {
		t.Error("a branch of another type compiled for Patient")
	}
}

func TestRestrictExpression(t *testing.T) {
	cases := []struct{ expr, rt, want string }{
		{"AllergyIntolerance.code | Condition.code | Patient.x", "Condition", "Condition.code"},
		{"(ActivityDefinition.useContext.value as CodeableConcept) | (CodeSystem.useContext.value as CodeableConcept)", "CodeSystem", "(CodeSystem.useContext.value as CodeableConcept)"},
		{"Patient.telecom.where(system='a|b') | Person.telecom", "Patient", "Patient.telecom.where(system='a|b')"},
		{"Resource.id", "Goal", "Resource.id"},
		{"name.family", "Patient", "name.family"},
		{"Condition.code", "Patient", ""},
	}
	for _, c := range cases {
		if got := restrictExpression(c.expr, c.rt); got != c.want {
			t.Errorf("%s on %s: %q, want %q", c.expr, c.rt, got, c.want)
		}
	}
}

func TestRefType(t *testing.T) {
	cases := map[string]string{
		"Patient/1": "Patient", "Patient/1/_history/2": "Patient", "http://x/fhir/Patient/1": "Patient",
		"http://x/fhir/Patient/1/_history/2": "Patient", "#c1": "", "urn:uuid:1234": "", "1": "", "": "",
		"patient/1": "", "Pat1ent/1": "", "/1": "",
	}
	for ref, want := range cases {
		if got := refType(ref); got != want {
			t.Errorf("%q: %q, want %q", ref, got, want)
		}
	}
}

func ExampleRegistry_Values() {
	r := Default()
	sr := map[string]any{"resourceType": "ServiceRequest", "subject": map[string]any{"reference": "Patient/p1"}}
	for _, v := range r.Values("ServiceRequest", "patient", sr) {
		fmt.Println(v.RefType, v.RefID)
	}
	// Output: Patient p1
}
