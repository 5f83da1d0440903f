package engine

import (
	"testing"

	"crs/fhir"
)

// TestInBoundsByIndex: a create's own search values clear it only where a
// token search for the conditions would find it; any other kind of
// condition is left to the search.
func TestInBoundsByIndex(t *testing.T) {
	la := &fhir.SearchParam{Code: "responsible-la", Type: fhir.TypeToken}
	gen := &fhir.SearchParam{Code: "general-practitioner", Type: fhir.TypeReference}
	index := []fhir.IndexValue{
		{Param: "responsible-la", Type: fhir.TypeToken, System: "http://ons", Code: "E10000031"},
		{Param: "gender", Type: fhir.TypeToken, System: "http://g", Code: "female"},
	}
	tok := func(system, code string, hasSystem bool) fhir.Value {
		return fhir.Value{System: system, Code: code, HasSystem: hasSystem}
	}
	no := false
	for name, tc := range map[string]struct {
		conds []fhir.Param
		want  bool
	}{
		"system and code":                 {[]fhir.Param{{Def: la, Values: []fhir.Value{tok("http://ons", "E10000031", true)}}}, true},
		"another code":                    {[]fhir.Param{{Def: la, Values: []fhir.Value{tok("http://ons", "E08000026", true)}}}, false},
		"another system":                  {[]fhir.Param{{Def: la, Values: []fhir.Value{tok("http://other", "E10000031", true)}}}, false},
		"code only":                       {[]fhir.Param{{Def: la, Values: []fhir.Value{tok("", "E10000031", false)}}}, true},
		"no system given as |code":        {[]fhir.Param{{Def: la, Values: []fhir.Value{tok("", "E10000031", true)}}}, false},
		"system only":                     {[]fhir.Param{{Def: la, Values: []fhir.Value{tok("http://ons", "", true)}}}, true},
		"one of an OR-list":               {[]fhir.Param{{Def: la, Values: []fhir.Value{tok("http://ons", "X", true), tok("http://ons", "E10000031", true)}}}, true},
		"AND, one not held":               {[]fhir.Param{{Def: la, Values: []fhir.Value{tok("http://ons", "E10000031", true)}}, {Def: &fhir.SearchParam{Code: "gender", Type: fhir.TypeToken}, Values: []fhir.Value{tok("", "male", false)}}}, false},
		"a value of another parameter":    {[]fhir.Param{{Def: &fhir.SearchParam{Code: "other", Type: fhir.TypeToken}, Values: []fhir.Value{tok("http://ons", "E10000031", true)}}}, false},
		"a modifier":                      {[]fhir.Param{{Def: la, Modifier: "not", Values: []fhir.Value{tok("http://ons", "X", true)}}}, false},
		":missing":                        {[]fhir.Param{{Def: la, Missing: &no}}, false},
		"a reference condition":           {[]fhir.Param{{Def: gen, Values: []fhir.Value{{RefType: "Organization", RefID: "x"}}}}, false},
		"a chain":                         {[]fhir.Param{{Def: gen, Chain: []*fhir.Query{{Type: "Organization"}}}}, false},
		"a reverse chain":                 {[]fhir.Param{{Has: &fhir.Has{Type: "ServiceRequest"}}}, false},
		"no condition (the caller's own)": {nil, false},
	} {
		if got := inBoundsByIndex(tc.conds, index); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}
