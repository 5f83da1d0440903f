package search

import (
	"fmt"
	"strings"
	"testing"

	"crs/fhir"
)

// repeat returns n name=value pairs, the value formatted with the index when
// format has a verb.
func repeat(name, format string, n int) []fhir.RawParam {
	ps := make([]fhir.RawParam, n)
	for i := range ps {
		ps[i] = fhir.RawParam{Name: name, Value: format}
		if strings.Contains(format, "%") {
			ps[i].Value = fmt.Sprintf(format, i)
		}
	}
	return ps
}

// orList returns one value of n comma-separated items.
func orList(format string, n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(format, i)
	}
	return strings.Join(items, ",")
}

// TestLimits checks each query limit at its value (accepted) and one past it
// (a 400 naming the limit), with the defaults and with configured limits.
func TestLimits(t *testing.T) {
	r := Default()
	small := Limits{MaxRepeats: 3, MaxParams: 5, MaxOr: 4, MaxValues: 6, MaxIncludes: 2, MaxChain: 1, MaxChained: 2, MaxSort: 2}
	d := DefaultLimits
	cases := []struct {
		name   string
		limits Limits
		params []fhir.RawParam
		err    string // "" accepted; else a part of the message
	}{
		{"repeats at limit", small, repeat("birthdate", "ge20%02d", 3), ""},
		{"repeats past limit", small, repeat("birthdate", "ge20%02d", 4), "repeated more than 3 times"},
		{"default repeats past limit", Limits{}, repeat("birthdate", "ge2%03d", d.MaxRepeats+1), fmt.Sprintf("repeated more than %d times", d.MaxRepeats)},
		{"params at limit", small, append(repeat("birthdate", "ge20%02d", 3), repeat("family", "f%d", 2)...), ""},
		{"params past limit", small, append(repeat("birthdate", "ge20%02d", 3), repeat("family", "f%d", 3)...), "more than 5 search parameters"},
		{"identical repeats count once", small, repeat("gender", "male", 1000), ""},
		{"or at limit", small, []fhir.RawParam{{Name: "_id", Value: orList("p%d", 4)}}, ""},
		{"or past limit", small, []fhir.RawParam{{Name: "_id", Value: orList("p%d", 5)}}, "5 comma-separated values: the limit is 4"},
		{"default or at limit", Limits{}, []fhir.RawParam{{Name: "_id", Value: orList("p%d", d.MaxOr)}}, ""},
		{"default or past limit", Limits{}, []fhir.RawParam{{Name: "name", Value: orList("n%d", d.MaxOr+1)}}, "the limit is 1000"},
		{"escaped commas are one value", small, []fhir.RawParam{{Name: "name", Value: `a\,b\,c\,d\,e\,f`}}, ""},
		{"values past limit", small, []fhir.RawParam{{Name: "_id", Value: "a,b,c,d"}, {Name: "name", Value: "x,y,z"}}, "more than 6 search values"},
		{"default params past limit", Limits{}, append(repeat("family", "f%d", 20), append(repeat("given", "g%d", 20), repeat("birthdate", "ge2%03d", 11)...)...), "more than 50 search parameters"},
		{"includes at limit", small, []fhir.RawParam{{Name: "_include", Value: "Patient:organization"}, {Name: "_revinclude", Value: "Goal:subject"}}, ""},
		{"includes past limit", small, []fhir.RawParam{{Name: "_include", Value: "Patient:organization"}, {Name: "_revinclude", Value: "Goal:subject"}, {Name: "_revinclude", Value: "CarePlan:subject"}}, "the limit is 2"},
		{"identical includes count once", small, repeat("_include", "Patient:organization", 1000), ""},
		{"chain at limit", small, []fhir.RawParam{{Name: "organization.name", Value: "x"}}, ""},
		{"chain past limit", small, []fhir.RawParam{{Name: "organization.partof.name", Value: "x"}}, "longer than 1 links"},
		{"_has past limit", small, []fhir.RawParam{{Name: "_has:Goal:subject:_has:CarePlan:goal:status", Value: "active"}}, "longer than 1 links"},
		{"default chain past limit", Limits{}, []fhir.RawParam{{Name: "organization.partof.partof.partof.partof.name", Value: "x"}}, "longer than 4 links"},
		{"chained at limit", small, []fhir.RawParam{{Name: "organization.name", Value: "x"}, {Name: "_has:Goal:subject:lifecycle-status", Value: "active"}}, ""},
		{"chained past limit", small, []fhir.RawParam{{Name: "organization.name", Value: "x"}, {Name: "_has:Goal:subject:lifecycle-status", Value: "active"}, {Name: "general-practitioner.name", Value: "y"}}, "more than 2 chained"},
		{"sort at limit", small, []fhir.RawParam{{Name: "_sort", Value: "family,-birthdate"}}, ""},
		{"sort past limit", small, []fhir.RawParam{{Name: "_sort", Value: "family,given,birthdate"}}, "more than 2 keys"},
	}
	for _, c := range cases {
		q, err := r.ParseQuery("Patient", c.params, ParseOptions{Limits: c.limits})
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && err == nil:
			t.Errorf("%s: accepted %d parameters", c.name, len(q.Params))
		case c.err != "" && (fhir.KindOf(err) != fhir.Invalid || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: got %v, want a 400 saying %q", c.name, err, c.err)
		}
	}
	// Identical pairs are dropped, from the query and its links alike.
	q, err := r.ParseQuery("Patient", append(repeat("gender", "male", 3), repeat("_include", "Patient:organization", 3)...), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Params) != 1 || len(q.Include) != 1 || FormatQuery(q, "") != "gender=male&_include=Patient%3Aorganization" {
		t.Errorf("duplicates kept: %d params, %d includes, %s", len(q.Params), len(q.Include), FormatQuery(q, ""))
	}
}
