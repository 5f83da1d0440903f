package fhir_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"crs/fhir"
)

// encodingJSON is what MarshalSorted promised before it had its own writer:
// encoding/json's bytes, without HTML escaping.
func encodingJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// TestMarshalSortedIsEncodingJSON: MarshalSorted writes exactly encoding/json's
// bytes (the audit chain's hashes were computed over them), for every kind of
// value and string escape.
func TestMarshalSortedIsEncodingJSON(t *testing.T) {
	var nilMap map[string]any
	var nilSlice []any
	values := []any{
		nil, true, false, "", "plain", json.Number("1.50"), json.Number(""), 3.25, 7,
		"quote \" backslash \\ controls \b\f\n\r\t\x01\x1f <html> & \u2028\u2029 é 😀 bad \xff\xfe utf-8",
		nilMap, nilSlice, map[string]any{}, []any{},
		map[string]any{"b": 1, "a": []any{"x", map[string]any{"z": nil, "_z": "e", "Z": false}}, "": "empty key", "é": "k", "a\u2028": "sep"},
		map[string]any{"typed": []string{"a", "b"}, "struct": struct{ A int }{1}, "nilmap": nilMap, "nilslice": nilSlice},
		[]any{json.Number("1e3"), map[string]any{"resourceType": "Patient", "id": "x", "meta": map[string]any{"versionId": "1"}}},
	}
	for i, v := range values {
		want, werr := encodingJSON(v)
		got, gerr := fhir.MarshalSorted(v)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Errorf("value %d: MarshalSorted = %s (%v), encoding/json = %s (%v)", i, got, gerr, want, werr)
		}
	}
	if _, err := fhir.MarshalSorted(map[string]any{"n": json.Number("1x")}); err == nil {
		t.Error("an invalid json.Number was written, want encoding/json's error")
	}
}

// FuzzMarshalSorted: for any JSON document, MarshalSorted of its parsed tree is
// encoding/json's encoding of the same tree.
func FuzzMarshalSorted(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"AuditEvent","agent":[{"who":{"display":"crs"},"requestor":false}],"recorded":"2026-11-29T12:00:00.000Z"}`,
		`{"b":[1,2.50,-3e10,true,null,"\u2028\u0001\"\\"],"a":{"":{}}}`,
		`[[],{},"",0]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return
		}
		want, werr := encodingJSON(v)
		got, gerr := fhir.MarshalSorted(v)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("MarshalSorted = %s (%v), encoding/json = %s (%v)", got, gerr, want, werr)
		}
	})
}
