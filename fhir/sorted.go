package fhir

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// MarshalSorted encodes v as compact JSON with object keys sorted, as
// encoding/json does (without HTML escaping): the canonical form that hashes
// and comparisons use (the audit trail's hash chain is computed over it, so it
// never changes). The trees Parse produces (maps, []any, strings,
// json.Number, bools, nil) are written directly, several times faster than
// encoding/json's reflection (every materialised AuditEvent is hashed over
// this); any other value is handed to encoding/json, so the bytes are
// encoding/json's in every case (TestMarshalSortedIsEncodingJSON,
// FuzzMarshalSorted).
func MarshalSorted(v any) ([]byte, error) {
	return appendSorted(make([]byte, 0, 1024), v)
}

// appendSorted appends v as MarshalSorted encodes it.
func appendSorted(dst []byte, v any) ([]byte, error) {
	switch t := v.(type) {
	case map[string]any:
		if t == nil {
			return append(dst, "null"...), nil
		}
		var arr [16]string
		keys := arr[:0]
		for k := range t {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, strings.Compare)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendSorted(dst, t[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case []any:
		if t == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, item := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendSorted(dst, item); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case string:
		return appendString(dst, t), nil
	case bool:
		if t {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case nil:
		return append(dst, "null"...), nil
	default:
		// json.Number, numbers, structs, typed maps and slices: encoding/json's
		// own bytes (and its errors).
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...), nil
	}
}

// AppendJSONString appends s as a JSON string the way Marshal and
// MarshalSorted write strings (encoding/json's escapes, without HTML
// escaping), for writers of documents whose shape they know.
func AppendJSONString(dst []byte, s string) []byte {
	return appendString(dst, s)
}
