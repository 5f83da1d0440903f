package fhirpath

import (
	"encoding/json"
	"strings"
	"testing"
)

const patient = `{"resourceType":"Patient","id":"p1","active":true,
 "name":[{"use":"official","family":"Smith","given":["Ann","B"]},{"use":"nickname","given":["Annie"]}],
 "birthDate":"1970-01-02","_birthDate":{"extension":[{"url":"http://example.org/time","valueDateTime":"1970-01-02T10:00:00Z"}]},
 "deceasedBoolean":false,
 "generalPractitioner":[{"reference":"Practitioner/9"},{"reference":"https://x.org/fhir/Organization/3/_history/2"}],
 "extension":[{"url":"http://example.org/a","valueQuantity":{"value":1.50,"unit":"kg"}},{"url":"http://example.org/b","valueString":"s"}]}`

func parse(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// show renders a collection: each item's JSON, prefixed by its type if known.
func show(items []Item) string {
	parts := make([]string, 0, len(items))
	for _, it := range items {
		b, _ := json.Marshal(it.Value)
		s := string(b)
		if it.Value == nil && it.Ext != nil {
			e, _ := json.Marshal(it.Ext)
			s = "ext" + string(e)
		}
		if it.Type != "" {
			s = it.Type + ":" + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// TestSubset: every construct of the documented subset, evaluated.
func TestSubset(t *testing.T) {
	res := parse(t, patient)
	cases := []struct{ expr, want string }{
		{"Patient.id", `"p1"`},
		{"Resource.id", `"p1"`},
		{"Practitioner.id", ``},
		{"name.family", `"Smith"`},
		{"Patient.name.given", `"Ann" "B" "Annie"`},
		{"name.given[1]", `"B"`},
		{"name.where(use = 'official').given", `"Ann" "B"`},
		{"name.where(use != 'official').given", `"Annie"`},
		{"name.given.first()", `"Ann"`},
		{"name.given.last()", `"Annie"`},
		{"name.given.count()", `integer:3`},
		{"name.exists()", `boolean:true`},
		{"name.exists(use = 'maiden')", `boolean:false`},
		{"address.empty()", `boolean:true`},
		{"active.not()", `boolean:false`},
		{"active = true", `boolean:true`},
		{"active and deceased", `boolean:false`},
		{"active or deceased", `boolean:true`},
		{"name.family | name.given.first()", `"Smith" "Ann"`},
		{"(name.family)", `"Smith"`},
		{"deceased", `boolean:false`},
		{"deceased is boolean", `boolean:true`},
		{"deceased as dateTime", ``},
		{"extension.value.ofType(Quantity).value", `1.50`},
		{"extension.value as Quantity", `Quantity:{"unit":"kg","value":1.50}`},
		{"extension('http://example.org/b').value", `string:"s"`},
		{"birthDate.extension('http://example.org/time').value", `dateTime:"1970-01-02T10:00:00Z"`},
		{"birthDate.hasValue()", `boolean:true`},
		{"generalPractitioner.where(resolve() is Practitioner)", `{"reference":"Practitioner/9"}`},
		{"generalPractitioner.resolve().ofType(Organization)", `Organization:{"reference":"https://x.org/fhir/Organization/3/_history/2"}`},
		{"name.given.where($this = 'B')", `"B"`},
		{"'x'", `string:"x"`},
	}
	for _, c := range cases {
		e, err := Compile(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if got := show(e.Eval(res)); got != c.want {
			t.Errorf("%s: %s, want %s", c.expr, got, c.want)
		}
	}
}

// TestRejected: what is outside the subset is an error naming it, never a
// silently empty result.
func TestRejected(t *testing.T) {
	for _, src := range []string{
		"name.select(given)", "a < b", "a + b", "%resource.id", "name.given.substring(1)", "resolve()",
		"name.where(use = 'x'", "name..given", "a implies b", "a xor b", "name.given.all(true)", "",
	} {
		if _, err := Compile(src); err == nil {
			t.Errorf("%q compiled", src)
		}
	}
}

func TestRootTypes(t *testing.T) {
	e, err := Compile("Patient.name | Practitioner.name | name")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.RootTypes(), ","); got != "Patient,Practitioner," {
		t.Errorf("RootTypes: %q", got)
	}
}

func TestEvalFocusTyped(t *testing.T) {
	e, err := Compile("Patient.id")
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]any{"id": "x"} // no resourceType: the caller vouches for it
	if got := show(e.EvalFocus([]Item{{Value: res, Type: "Patient"}})); got != `"x"` {
		t.Errorf("typed focus: %s", got)
	}
	if got := show(e.Eval(res)); got != `` {
		t.Errorf("untyped focus: %s", got)
	}
}

func TestReferenceType(t *testing.T) {
	for ref, want := range map[string]string{
		"Patient/1": "Patient", "Patient/1/_history/2": "Patient", "http://x/fhir/Patient/1": "Patient",
		"#c1": "", "urn:uuid:1234": "", "1": "", "": "", "patient/1": "",
	} {
		if got := ReferenceType(ref); got != want {
			t.Errorf("%q: %q, want %q", ref, got, want)
		}
	}
}
