package mapping

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeTree reads JSON that encoding/json wrote (a typed model, marshalled)
// into the generic tree, numbers as json.Number, as json.Decoder with
// UseNumber does, without the decoder's reflection and token machinery: it
// cost about 6% of an imported visit row's CPU. It accepts only what it
// needs to (objects, arrays, strings, numbers, booleans, null) and reports
// anything else as an error, so that toObject can fall back to
// encoding/json; TestDecodeTreeAsEncodingJSON holds the two equal.
func decodeTree(b []byte) (any, error) {
	d := treeDecoder{b: b}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.space()
	if d.i != len(d.b) {
		return nil, errTree
	}
	return v, nil
}

var errTree = errors.New("not JSON as encoding/json writes it")

type treeDecoder struct {
	b []byte
	i int
}

func (d *treeDecoder) space() {
	for d.i < len(d.b) && (d.b[d.i] == ' ' || d.b[d.i] == '\n' || d.b[d.i] == '\t' || d.b[d.i] == '\r') {
		d.i++
	}
}

func (d *treeDecoder) value() (any, error) {
	d.space()
	if d.i >= len(d.b) {
		return nil, errTree
	}
	switch c := d.b[d.i]; {
	case c == '{':
		d.i++
		m := map[string]any{}
		d.space()
		if d.i < len(d.b) && d.b[d.i] == '}' {
			d.i++
			return m, nil
		}
		for {
			d.space()
			k, err := d.str()
			if err != nil {
				return nil, err
			}
			d.space()
			if d.i >= len(d.b) || d.b[d.i] != ':' {
				return nil, errTree
			}
			d.i++
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			m[k] = v
			d.space()
			if d.i >= len(d.b) {
				return nil, errTree
			}
			if d.b[d.i] == '}' {
				d.i++
				return m, nil
			}
			if d.b[d.i] != ',' {
				return nil, errTree
			}
			d.i++
		}
	case c == '[':
		d.i++
		list := []any{}
		d.space()
		if d.i < len(d.b) && d.b[d.i] == ']' {
			d.i++
			return list, nil
		}
		for {
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			list = append(list, v)
			d.space()
			if d.i >= len(d.b) {
				return nil, errTree
			}
			if d.b[d.i] == ']' {
				d.i++
				return list, nil
			}
			if d.b[d.i] != ',' {
				return nil, errTree
			}
			d.i++
		}
	case c == '"':
		return d.str()
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []struct {
			text string
			v    any
		}{{"true", true}, {"false", false}, {"null", nil}} {
			if len(d.b)-d.i >= len(lit.text) && string(d.b[d.i:d.i+len(lit.text)]) == lit.text {
				d.i += len(lit.text)
				return lit.v, nil
			}
		}
		return nil, errTree
	case c == '-' || c >= '0' && c <= '9':
		start := d.i
		for d.i < len(d.b) && (d.b[d.i] == '-' || d.b[d.i] == '+' || d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E' || d.b[d.i] >= '0' && d.b[d.i] <= '9') {
			d.i++
		}
		n := string(d.b[start:d.i])
		if !json.Valid([]byte(n)) {
			return nil, errTree
		}
		return json.Number(n), nil
	}
	return nil, errTree
}

// str reads a string; escapes are decoded as encoding/json decodes them
// (a lone surrogate becomes U+FFFD). A string that is not valid UTF-8 is
// left to encoding/json, which replaces the bad bytes.
func (d *treeDecoder) str() (string, error) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", errTree
	}
	d.i++
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			s := d.b[start:d.i]
			d.i++
			if !utf8.Valid(s) {
				return "", errTree
			}
			return string(s), nil
		}
		if c == '\\' {
			return d.escaped(start)
		}
		if c < 0x20 {
			return "", errTree
		}
		d.i++
	}
	return "", errTree
}

// escaped reads the rest of a string with escapes, from start.
func (d *treeDecoder) escaped(start int) (string, error) {
	out := append([]byte(nil), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(out) {
				return "", errTree
			}
			return string(out), nil
		case c < 0x20:
			return "", errTree
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return "", errTree
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", errTree
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				save := d.i
				if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					d.i += 2
					if x, ok := d.hex4(); ok {
						if dec := utf16.DecodeRune(r, x); dec != utf8.RuneError {
							r2 = dec
						} else {
							d.i = save
						}
					} else {
						d.i = save
					}
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", errTree
		}
	}
	return "", errTree
}

func (d *treeDecoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(n), true
}
