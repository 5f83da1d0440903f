// Package fhir is the protocol-independent core of crs: the error type and its
// kinds, lossless JSON resources, search parameter definitions and extraction, the
// backend-neutral search query value, and the engine that runs every FHIR
// interaction (see engine.go). It never imports an HTTP framework or a database.
package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Object is a JSON object as decoded by Parse: values are map[string]any, []any,
// string, json.Number (number text kept as sent), bool or nil.
type Object = map[string]any

// Limits bound what Parse accepts before any other work is done.
type Limits struct {
	MaxBytes int // largest body accepted, in bytes
	MaxDepth int // deepest nesting of objects and arrays accepted
}

// DefaultPageSize is the page size of a search without _count, and
// MaxPageSize the largest page a client may ask for (clamped), unless
// configured otherwise (crs serve --default-count, --max-count).
const (
	DefaultPageSize = 20
	MaxPageSize     = 500
)

// DefaultLimits are the limits used when none are configured.
var DefaultLimits = Limits{MaxBytes: 4 << 20, MaxDepth: 64}

// ValidID reports whether id is a valid FHIR logical id: 1 to 64 of A-Z a-z
// 0-9 - . (the one implementation: search extraction calls it for every
// reference it indexes, so it is a loop, not a regular expression).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Parse decodes a JSON resource body losslessly: numbers keep their text, every
// element is kept. It enforces the size and depth limits, rejects malformed JSON,
// duplicate keys, a top level that is not an object and a missing resourceType.
// Errors are Invalid (or TooLarge) with a FHIRPath-like location.
func Parse(body []byte, lim Limits) (Object, error) {
	if lim.MaxBytes > 0 && len(body) > lim.MaxBytes {
		return nil, Errorf(TooLarge, "", "body of %d bytes exceeds the limit of %d bytes", len(body), lim.MaxBytes)
	}
	if err := checkText(body); err != nil {
		return nil, err
	}
	d := &decoder{dec: json.NewDecoder(bytes.NewReader(body)), maxDepth: lim.MaxDepth}
	d.dec.UseNumber()
	v, err := d.value(0, "")
	if err != nil {
		return nil, err
	}
	if _, err := d.dec.Token(); err != io.EOF {
		return nil, Errorf(Invalid, "", "malformed JSON: unexpected data after the resource")
	}
	obj, ok := v.(Object)
	if !ok {
		return nil, Errorf(Invalid, "", "the body must be a JSON object (a FHIR resource)")
	}
	rt, ok := obj["resourceType"].(string)
	if !ok || rt == "" {
		return nil, Errorf(Invalid, "resourceType", "the resource has no resourceType")
	}
	return obj, nil
}

type decoder struct {
	dec      *json.Decoder
	maxDepth int
}

func (d *decoder) syntax(err error, path string) error {
	var se *json.SyntaxError
	msg := err.Error()
	if errors.As(err, &se) {
		msg = fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	} else if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "unexpected end of JSON"
	}
	return Errorf(Invalid, path, "malformed JSON: %s", msg)
}

func (d *decoder) value(depth int, path string) (any, error) {
	tok, err := d.dec.Token()
	if err != nil {
		return nil, d.syntax(err, path)
	}
	return d.fromToken(tok, depth, path)
}

func (d *decoder) fromToken(tok json.Token, depth int, path string) (any, error) {
	switch t := tok.(type) {
	case json.Delim:
		if d.maxDepth > 0 && depth >= d.maxDepth {
			return nil, Errorf(Invalid, path, "nesting deeper than the limit of %d", d.maxDepth)
		}
		switch t {
		case '{':
			obj := make(Object)
			for d.dec.More() {
				kt, err := d.dec.Token()
				if err != nil {
					return nil, d.syntax(err, path)
				}
				key, ok := kt.(string)
				if !ok {
					return nil, Errorf(Invalid, path, "malformed JSON: object key expected")
				}
				child := joinPath(path, key)
				if _, dup := obj[key]; dup {
					return nil, Errorf(Invalid, child, "duplicate JSON property %q", key)
				}
				v, err := d.value(depth+1, child)
				if err != nil {
					return nil, err
				}
				obj[key] = v
			}
			if _, err := d.dec.Token(); err != nil {
				return nil, d.syntax(err, path)
			}
			return obj, nil
		case '[':
			arr := []any{}
			for i := 0; d.dec.More(); i++ {
				v, err := d.value(depth+1, path+"["+strconv.Itoa(i)+"]")
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := d.dec.Token(); err != nil {
				return nil, d.syntax(err, path)
			}
			return arr, nil
		}
		return nil, Errorf(Invalid, path, "malformed JSON: unexpected %q", t.String())
	default:
		return t, nil // string, json.Number, bool, nil
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// ResourceType returns the resourceType of a parsed resource, or "".
func ResourceType(obj Object) string {
	s, _ := obj["resourceType"].(string)
	return s
}

// ID returns the id of a parsed resource, or "".
func ID(obj Object) string {
	s, _ := obj["id"].(string)
	return s
}

// Reference is a parsed literal reference such as "Patient/123" or
// "Patient/123/_history/2", relative to this server.
type Reference struct {
	Type, ID, Version string
}

// ParseReference parses a relative literal reference "Type/id[/_history/vid]". It
// also accepts an absolute URL whose path ends in such a reference when it starts
// with base (the server's own base URL). ok is false for anything else. It is
// the one reference parser (search extraction calls it for every reference).
func ParseReference(ref, base string) (Reference, bool) {
	if base != "" && strings.HasPrefix(ref, base) {
		ref = strings.TrimPrefix(strings.TrimPrefix(ref, base), "/")
	}
	i := strings.IndexByte(ref, '/')
	if i < 2 || ref[0] < 'A' || ref[0] > 'Z' {
		return Reference{}, false
	}
	typ := ref[:i]
	for j := 1; j < len(typ); j++ {
		if c := typ[j]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return Reference{}, false
		}
	}
	id, rest, hasRest := strings.Cut(ref[i+1:], "/")
	if !ValidID(id) {
		return Reference{}, false
	}
	r := Reference{Type: typ, ID: id}
	if hasRest {
		vid, found := strings.CutPrefix(rest, "_history/")
		if !found || !ValidID(vid) {
			return Reference{}, false
		}
		r.Version = vid
	}
	return r, true
}
