package fhir

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// PatchOp is one operation of a JSON Patch document (RFC 6902).
type PatchOp struct {
	Op    string
	Path  string
	From  string
	Value any
	Index int // position in the patch document, for error locations
	has   bool
}

// ParsePatch decodes a JSON Patch document: an array of operations, each with a
// known op and the members that op needs.
func ParsePatch(body []byte, lim Limits) ([]PatchOp, error) {
	d := &decoder{dec: json.NewDecoder(strings.NewReader(string(body))), maxDepth: lim.MaxDepth}
	d.dec.UseNumber()
	if lim.MaxBytes > 0 && len(body) > lim.MaxBytes {
		return nil, Errorf(TooLarge, "", "body of %d bytes exceeds the limit of %d bytes", len(body), lim.MaxBytes)
	}
	v, err := d.value(0, "")
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, Errorf(Invalid, "", "a JSON Patch document must be an array of operations")
	}
	ops := make([]PatchOp, 0, len(arr))
	for i, x := range arr {
		m, ok := x.(map[string]any)
		where := "patch[" + strconv.Itoa(i) + "]"
		if !ok {
			return nil, Errorf(Invalid, where, "a JSON Patch operation must be an object")
		}
		op := PatchOp{Index: i}
		op.Op, _ = m["op"].(string)
		path, ok := m["path"].(string)
		if !ok {
			return nil, Errorf(Invalid, where+".path", "the operation has no path")
		}
		op.Path = path
		op.Value, op.has = m["value"]
		switch op.Op {
		case "add", "replace", "test":
			if !op.has {
				return nil, Errorf(Invalid, where+".value", "the %s operation needs a value", op.Op)
			}
		case "remove":
		case "move", "copy":
			if op.From, ok = m["from"].(string); !ok {
				return nil, Errorf(Invalid, where+".from", "the %s operation needs from", op.Op)
			}
		default:
			return nil, Errorf(Invalid, where+".op", "unknown JSON Patch op %q", op.Op)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// ApplyPatch applies ops to doc (which it modifies) and returns the result. As the
// FHIR spec asks, a patch that cannot be applied (a failing "test", a path that does
// not exist) is Unprocessable (422); a malformed pointer is Invalid (400).
func ApplyPatch(doc Object, ops []PatchOp) (Object, error) {
	var root any = doc
	for _, op := range ops {
		where := "patch[" + strconv.Itoa(op.Index) + "]"
		tokens, err := pointer(op.Path)
		if err != nil {
			return nil, Errorf(Invalid, where+".path", "%v", err)
		}
		switch op.Op {
		case "add":
			root, err = addAt(root, tokens, deepCopy(op.Value))
		case "remove":
			root, _, err = removeAt(root, tokens)
		case "replace":
			if _, err = getAt(root, tokens); err == nil {
				if root, _, err = removeAt(root, tokens); err == nil {
					root, err = addAt(root, tokens, deepCopy(op.Value))
				}
			}
		case "move", "copy":
			var from []string
			if from, err = pointer(op.From); err != nil {
				return nil, Errorf(Invalid, where+".from", "%v", err)
			}
			var v any
			if op.Op == "move" {
				if strings.HasPrefix(op.Path+"/", op.From+"/") && op.Path != op.From {
					return nil, Errorf(Unprocessable, where, "cannot move %q into its own child %q", op.From, op.Path)
				}
				root, v, err = removeAt(root, from)
			} else {
				v, err = getAt(root, from)
				v = deepCopy(v)
			}
			if err == nil {
				root, err = addAt(root, tokens, v)
			}
		case "test":
			var v any
			if v, err = getAt(root, tokens); err == nil && !EqualJSON(v, op.Value) {
				return nil, Errorf(Unprocessable, where, "test failed: the value at %q is not the expected value", op.Path)
			}
		}
		if err != nil {
			return nil, Errorf(Unprocessable, where, "%s %q: %v", op.Op, op.Path, err)
		}
	}
	obj, ok := root.(Object)
	if !ok {
		return nil, Errorf(Unprocessable, "", "the patch replaces the resource with something that is not an object")
	}
	return obj, nil
}

type patchError string

// Error returns the message.
func (e patchError) Error() string { return string(e) }

// pointer splits a JSON Pointer (RFC 6901) into unescaped tokens.
func pointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, patchError("a JSON Pointer must start with '/': " + strconv.Quote(p))
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(s, "~0", ""), "~1", ""), "~") {
			return nil, patchError("bad escape in JSON Pointer " + strconv.Quote(p))
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

func arrayIndex(tok string, n int, forAdd bool) (int, error) {
	if forAdd && tok == "-" {
		return n, nil
	}
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, patchError("bad array index " + strconv.Quote(tok))
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 {
		return 0, patchError("bad array index " + strconv.Quote(tok))
	}
	limit := n - 1
	if forAdd {
		limit = n
	}
	if i > limit {
		return 0, patchError("array index " + tok + " out of range")
	}
	return i, nil
}

func getAt(root any, tokens []string) (any, error) {
	cur := root
	for _, t := range tokens {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[t]
			if !ok {
				return nil, patchError("no element " + strconv.Quote(t))
			}
			cur = v
		case []any:
			i, err := arrayIndex(t, len(c), false)
			if err != nil {
				return nil, err
			}
			cur = c[i]
		default:
			return nil, patchError("cannot step into a primitive at " + strconv.Quote(t))
		}
	}
	return cur, nil
}

// addAt adds v at tokens and returns the (possibly new) root.
func addAt(root any, tokens []string, v any) (any, error) {
	if len(tokens) == 0 {
		return v, nil
	}
	parent, err := getAt(root, tokens[:len(tokens)-1])
	if err != nil {
		return nil, err
	}
	last := tokens[len(tokens)-1]
	switch p := parent.(type) {
	case map[string]any:
		p[last] = v
		return root, nil
	case []any:
		i, err := arrayIndex(last, len(p), true)
		if err != nil {
			return nil, err
		}
		p = append(p, nil)
		copy(p[i+1:], p[i:])
		p[i] = v
		return setAt(root, tokens[:len(tokens)-1], p)
	}
	return nil, patchError("cannot add into a primitive")
}

// removeAt removes the value at tokens and returns the root and the value.
func removeAt(root any, tokens []string) (any, any, error) {
	if len(tokens) == 0 {
		return nil, nil, patchError("cannot remove the whole resource")
	}
	parent, err := getAt(root, tokens[:len(tokens)-1])
	if err != nil {
		return nil, nil, err
	}
	last := tokens[len(tokens)-1]
	switch p := parent.(type) {
	case map[string]any:
		v, ok := p[last]
		if !ok {
			return nil, nil, patchError("no element " + strconv.Quote(last))
		}
		delete(p, last)
		return root, v, nil
	case []any:
		i, err := arrayIndex(last, len(p), false)
		if err != nil {
			return nil, nil, err
		}
		v := p[i]
		np := append(p[:i:i], p[i+1:]...)
		root, err = setAt(root, tokens[:len(tokens)-1], np)
		return root, v, err
	}
	return nil, nil, patchError("cannot remove from a primitive")
}

// setAt replaces the value at tokens (which exists) with v.
func setAt(root any, tokens []string, v any) (any, error) {
	if len(tokens) == 0 {
		return v, nil
	}
	parent, err := getAt(root, tokens[:len(tokens)-1])
	if err != nil {
		return nil, err
	}
	last := tokens[len(tokens)-1]
	switch p := parent.(type) {
	case map[string]any:
		p[last] = v
	case []any:
		i, err := arrayIndex(last, len(p), false)
		if err != nil {
			return nil, err
		}
		p[i] = v
	}
	return root, nil
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

// EqualJSON compares two decoded JSON trees; numbers are compared by value
// (as RFC 6902 test and FHIR fixed/pattern values ask). It is the one JSON
// equality of crs.
func EqualJSON(a, b any) bool {
	na, aok := a.(json.Number)
	nb, bok := b.(json.Number)
	if aok && bok {
		fa, e1 := na.Float64()
		fb, e2 := nb.Float64()
		return e1 == nil && e2 == nil && fa == fb
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !EqualJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !EqualJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
