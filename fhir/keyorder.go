package fhir

import (
	"encoding/json"
	"strings"
)

// Order is the order in which a JSON document gives the keys of each of its
// objects, so that a resource can be written back in the order its client sent
// it (MarshalOrdered). The zero of *Order (nil) knows no order.
type Order struct {
	keys  []string // an object's keys as sent
	kids  []*Order // the order of each key's value (nil for scalars)
	items []*Order // the orders of an array's items (nil for scalars)
}

// Member returns the order of the object or array that is the value of key.
func (o *Order) Member(key string) *Order {
	if o == nil {
		return nil
	}
	for i, k := range o.keys {
		if k == key {
			return o.kids[i]
		}
	}
	return nil
}

// Item returns the order of the i-th item of an array.
func (o *Order) Item(i int) *Order {
	if o == nil || i < 0 || i >= len(o.items) {
		return nil
	}
	return o.items[i]
}

// maxOrderDepth bounds the nesting KeyOrder follows (Parse's limits are lower).
const maxOrderDepth = 1000

// KeyOrder reads the key order of a JSON document, typically a body Parse has
// accepted. It returns nil for malformed JSON.
func KeyOrder(body []byte) *Order {
	s := orderScanner{b: body}
	o, ok := s.value(0)
	if !ok {
		return nil
	}
	return o
}

// orderScanner walks JSON text, keeping only the order of keys.
type orderScanner struct {
	b []byte
	i int
}

func (s *orderScanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// value scans one value and returns its order (nil for a scalar).
func (s *orderScanner) value(depth int) (*Order, bool) {
	s.space()
	if s.i >= len(s.b) || depth > maxOrderDepth {
		return nil, false
	}
	switch s.b[s.i] {
	case '{':
		s.i++
		o := &Order{}
		for first := true; ; first = false {
			s.space()
			if s.i < len(s.b) && s.b[s.i] == '}' && first {
				s.i++
				return o, true
			}
			key, ok := s.str()
			if !ok {
				return nil, false
			}
			s.space()
			if s.i >= len(s.b) || s.b[s.i] != ':' {
				return nil, false
			}
			s.i++
			child, ok := s.value(depth + 1)
			if !ok {
				return nil, false
			}
			o.keys = append(o.keys, key)
			o.kids = append(o.kids, child)
			if !s.next('}') {
				return nil, false
			}
			if s.b[s.i-1] == '}' {
				return o, true
			}
		}
	case '[':
		s.i++
		o := &Order{}
		for first := true; ; first = false {
			s.space()
			if s.i < len(s.b) && s.b[s.i] == ']' && first {
				s.i++
				return o, true
			}
			child, ok := s.value(depth + 1)
			if !ok {
				return nil, false
			}
			o.items = append(o.items, child)
			if !s.next(']') {
				return nil, false
			}
			if s.b[s.i-1] == ']' {
				return o, true
			}
		}
	case '"':
		return nil, s.skipString()
	default:
		for s.i < len(s.b) && !strings.ContainsRune(",]} \t\r\n", rune(s.b[s.i])) {
			s.i++
		}
		return nil, true
	}
}

// next consumes the comma or the closing delimiter after a member or item.
func (s *orderScanner) next(end byte) bool {
	s.space()
	if s.i < len(s.b) && (s.b[s.i] == ',' || s.b[s.i] == end) {
		s.i++
		return true
	}
	return false
}

// skipString scans a string without decoding it.
func (s *orderScanner) skipString() bool {
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return true
		}
	}
	return false
}

// str scans a string and returns its value.
func (s *orderScanner) str() (string, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	start, escaped := s.i, false
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			escaped = true
			s.i++
		case '"':
			s.i++
			raw := s.b[start:s.i]
			if !escaped {
				return elementName(raw[1 : len(raw)-1]), true
			}
			var v string
			if json.Unmarshal(raw, &v) != nil {
				return "", false
			}
			return v, true
		}
	}
	return "", false
}

// MarshalOrdered is Marshal that keeps the order in which the client sent the
// keys (o, from KeyOrder of the body the resource was parsed from):
// resourceType first, then the keys the client sent in its order; keys it did
// not send (id, meta, meta.versionId …, set by the server) go in by the
// definition order, before the first sent key the definition puts after them.
// Objects o does not cover are written as Marshal writes them.
func MarshalOrdered(v any, o *Order) ([]byte, error) {
	e := encoder{buf: make([]byte, 0, 1024), keys: make([]key, 0, 32)}
	if err := e.value(v, "", o); err != nil {
		return nil, err
	}
	return e.buf, nil
}
