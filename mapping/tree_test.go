package mapping

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// stdTree is what toObject made before decodeTree: encoding/json with
// UseNumber.
func stdTree(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errTree
	}
	return v, nil
}

var treeSeeds = []string{
	`{}`, `[]`, `{"a":[1,-2.5e3,0.10,true,false,null,"x"],"b":{"c":{}}}`,
	`{"s":"quote \" backslash \\ slash \/ \b\f\n\r\t \u00e9 \u20ac \ud83d\ude00 lone \ud800 x \udc00 \ud800\u0041"}`,
	`{"html":"\u003cb\u003e \u0026"}`, ` { "spaced" : [ 1 , 2 ] } `, `{"n":1e400}`, `{"dup":1,"dup":2}`,
	`{"a":}`, `{"a":1,}`, `[1 2]`, `{"a":"\x"}`, `{"a":tru}`, `{"a":01}`, `{"a":"unterminated}`, `"top"`, `{"a":1}x`,
	`{"a":"` + "\xff" + `"}`, `{"a":"` + "\x01" + `"}`,
}

// TestDecodeTreeAsEncodingJSON: decodeTree gives what encoding/json gives,
// or refuses (and toObject falls back to encoding/json).
func TestDecodeTreeAsEncodingJSON(t *testing.T) {
	for _, s := range treeSeeds {
		checkTree(t, []byte(s))
	}
	enc := fm.Encounter{Status: fm.EncounterStatusFinished, Identifier: []fm.Identifier{{System: Ptr("http://x"), Value: Ptr("v<1>&\u2028")}},
		Class: fm.Coding{Code: Ptr("HH")}, Period: &fm.Period{Start: Ptr("2026-11-29T10:00:00Z")}}
	b, _ := json.Marshal(enc)
	checkTree(t, b)
	if got := toObject(enc); !reflect.DeepEqual(map[string]any(got), mustStd(t, b)) {
		t.Fatalf("toObject: %v", got)
	}
}

func mustStd(t *testing.T, b []byte) map[string]any {
	v, err := stdTree(b)
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

func checkTree(t *testing.T, b []byte) {
	t.Helper()
	got, err := decodeTree(b)
	if err != nil {
		return // refused: encoding/json decides
	}
	want, werr := stdTree(b)
	if werr != nil {
		t.Fatalf("%q: decodeTree accepted what encoding/json refuses (%v)", b, werr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: got %#v, want %#v", b, got, want)
	}
}

func FuzzDecodeTree(f *testing.F) {
	for _, s := range treeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkTree(t, b) })
}
