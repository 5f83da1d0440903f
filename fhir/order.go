package fhir

import (
	"bytes"
	"cmp"
	"compress/gzip"
	_ "embed" // the element order table
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Marshal encodes a resource tree as compact JSON without HTML escaping, in the
// order people read FHIR: resourceType first, then every element in the order
// of its definition (the R4 StructureDefinitions, elementorder.json.gz), a
// primitive's extension (_name) right after it, and elements the definitions do
// not name last, in name order. Numbers decoded by Parse are written back with
// their original text. Values other than the ones Parse produces (structs,
// typed slices) are encoded by encoding/json.
func Marshal(v any) ([]byte, error) {
	e := encoder{buf: make([]byte, 0, 1024), keys: make([]key, 0, 32)}
	if err := e.value(v, "", nil); err != nil {
		return nil, err
	}
	return e.buf, nil
}

//go:generate go run gen.go
//go:embed elementorder.json.gz
var elementOrderGz []byte

// child is an element of a context: its place in the definition and the
// context of its own children ("" for a primitive; for a choice element, the
// context is the type named in the JSON key).
type child struct {
	pos int
	ctx string
}

// choice is a choice element (value[x]) of a context.
type choice struct {
	prefix string
	pos    int
}

// contextOrder is the order of the children of a type or backbone element.
type contextOrder struct {
	named   map[string]child
	choices []choice
}

// elementOrders maps a type name or backbone element path to the order of its
// children, loaded from the embedded table on first use.
var elementOrders = sync.OnceValue(func() map[string]*contextOrder {
	table, err := loadElementOrder(elementOrderGz)
	if err != nil {
		panic("fhir: the embedded element order table is corrupt: " + err.Error())
	}
	return table
})

// elementNames holds every element name of the definitions, so that reading
// a key order allocates no string for the names FHIR defines.
var elementNames = sync.OnceValue(func() map[string]string {
	names := map[string]string{"resourceType": "resourceType"}
	for _, co := range elementOrders() {
		for name := range co.named {
			names[name] = name
			names["_"+name] = "_" + name
		}
	}
	return names
})

// elementName returns b as a string, without allocating for defined names.
func elementName(b []byte) string {
	if name, ok := elementNames()[string(b)]; ok {
		return name
	}
	return string(b)
}

func loadElementOrder(gz []byte) (map[string]*contextOrder, error) {
	z, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(z)
	if err != nil {
		return nil, err
	}
	var raw map[string][][2]string
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	out := make(map[string]*contextOrder, len(raw))
	for ctx, children := range raw {
		co := &contextOrder{named: make(map[string]child, len(children))}
		for i, c := range children {
			if prefix, ok := strings.CutSuffix(c[0], "[x]"); ok {
				co.choices = append(co.choices, choice{prefix, i})
				continue
			}
			co.named[c[0]] = child{i, c[1]}
		}
		out[ctx] = co
	}
	return out, nil
}

// unknownRank places elements the definition does not name after those it does.
const unknownRank = 1 << 30

// key is an object key with its place in the output and the context of its value.
type key struct {
	name string // as in the JSON
	base string // without the leading _ of a primitive's extension
	rank int
	ctx  string
	ord  *Order // the key order the client sent the value in, if known
}

// rank places JSON key k of an object of context co.
func rank(co *contextOrder, k string) key {
	if k == "resourceType" {
		return key{name: k, base: k, rank: -1}
	}
	base, ext := strings.CutPrefix(k, "_")
	kk := key{name: k, base: base, rank: unknownRank}
	if co != nil {
		if c, ok := co.named[base]; ok {
			kk.rank, kk.ctx = 2*c.pos, c.ctx
		} else {
			for _, ch := range co.choices {
				if len(base) > len(ch.prefix) && strings.HasPrefix(base, ch.prefix) && base[len(ch.prefix)] >= 'A' && base[len(ch.prefix)] <= 'Z' {
					kk.rank, kk.ctx = 2*ch.pos, base[len(ch.prefix):]
					break
				}
			}
		}
	}
	if ext {
		kk.ctx = "Element"
		if kk.rank != unknownRank {
			kk.rank++
		}
	}
	return kk
}

type encoder struct {
	buf  []byte
	keys []key // reused across objects
}

// value writes v, whose objects have the context ctx; o, when not nil, is the
// key order the client sent v in.
func (e *encoder) value(v any, ctx string, o *Order) error {
	switch t := v.(type) {
	case map[string]any:
		return e.object(t, ctx, o)
	case []any:
		e.buf = append(e.buf, '[')
		for i, item := range t {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			if err := e.value(item, ctx, o.Item(i)); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
	case []map[string]any:
		e.buf = append(e.buf, '[')
		for i, item := range t {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			if err := e.object(item, ctx, o.Item(i)); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
	case string:
		e.buf = appendString(e.buf, t)
	case json.Number:
		s := string(t)
		if s == "" {
			s = "0"
		}
		if !validNumber(s) {
			return fmt.Errorf("json: invalid number literal %q", s)
		}
		e.buf = append(e.buf, s...)
	case bool:
		if t {
			e.buf = append(e.buf, "true"...)
		} else {
			e.buf = append(e.buf, "false"...)
		}
	case nil:
		e.buf = append(e.buf, "null"...)
	default:
		b, err := MarshalSorted(t)
		if err != nil {
			return err
		}
		e.buf = append(e.buf, b...)
	}
	return nil
}

func (e *encoder) object(m map[string]any, ctx string, o *Order) error {
	if m == nil {
		e.buf = append(e.buf, "null"...)
		return nil
	}
	if rt, ok := m["resourceType"].(string); ok && rt != "" {
		ctx = rt
	}
	co := elementOrders()[ctx]
	start := len(e.keys)
	for k := range m {
		e.keys = append(e.keys, rank(co, k))
	}
	keys := e.keys[start:]
	slices.SortFunc(keys, func(a, b key) int {
		// Unknown elements by name, each before its _extension.
		return cmp.Or(cmp.Compare(a.rank, b.rank), strings.Compare(a.base, b.base), cmp.Compare(len(a.name), len(b.name)))
	})
	if o != nil && len(o.keys) > 0 {
		keys = e.clientOrder(len(keys), o)
	}
	e.buf = append(e.buf, '{')
	for i, k := range keys {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, k.name)
		e.buf = append(e.buf, ':')
		if err := e.value(m[k.name], k.ctx, k.ord); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	e.keys = e.keys[:start]
	return nil
}

// clientOrder puts the n keys at the end of e.keys (in definition order) in
// the order the client sent them (o): resourceType first, the sent keys in their
// order, and each key the client did not send before the first sent key that
// the definition places after it. Each sent key gets the order of its value.
// It returns the keys in that order, appended to e.keys (the caller truncates).
func (e *encoder) clientOrder(n int, o *Order) []key {
	base := len(e.keys) - n
	find := func(name string) int {
		for i := base; i < base+n; i++ {
			if e.keys[i].name == name {
				return i
			}
		}
		return -1
	}
	if n > 16 { // a big object: a map, not a scan per key
		at := make(map[string]int, n)
		for i := base; i < base+n; i++ {
			at[e.keys[i].name] = i
		}
		find = func(name string) int {
			if i, ok := at[name]; ok {
				return i
			}
			return -1
		}
	}
	const taken = -2
	sent := len(e.keys)
	for j, name := range o.keys {
		if i := find(name); i >= 0 && name != "resourceType" && e.keys[i].rank != taken {
			k := e.keys[i]
			k.ord = o.kids[j]
			e.keys = append(e.keys, k)
			e.keys[i].rank = taken
		}
	}
	rest := len(e.keys)
	for i := base; i < base+n; i++ {
		if e.keys[i].rank != taken {
			e.keys = append(e.keys, e.keys[i])
		}
	}
	merged := len(e.keys)
	j := rest
	for i := sent; i < rest; i++ {
		for j < merged && e.keys[j].rank < e.keys[i].rank {
			e.keys = append(e.keys, e.keys[j])
			j++
		}
		e.keys = append(e.keys, e.keys[i])
	}
	e.keys = append(e.keys, e.keys[j:merged]...)
	return e.keys[merged:]
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json writes it
// without HTML escaping: control characters, quote and backslash escaped,
// invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// validNumber reports whether s is a JSON number literal.
func validNumber(s string) bool {
	digits := func(s string) string {
		for len(s) > 0 && s[0] >= '0' && s[0] <= '9' {
			s = s[1:]
		}
		return s
	}
	s = strings.TrimPrefix(s, "-")
	switch {
	case s == "":
		return false
	case s[0] == '0':
		s = s[1:]
	case s[0] >= '1' && s[0] <= '9':
		s = digits(s[1:])
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && s[1] >= '0' && s[1] <= '9' {
		s = digits(s[2:])
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		s = digits(s)
	}
	return s == ""
}
