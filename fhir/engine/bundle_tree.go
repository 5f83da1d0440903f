package engine

import (
	"context"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"crs/fhir"
)

// BundleTree is Bundle for a caller in the same process that already holds
// the transaction or batch Bundle as a tree (an importer's mapped resources):
// the same checks, policy, audit and processing, without encoding the tree to
// JSON and parsing it back. The tree is copied first, so the caller's tree is
// never changed (it may send the same resources again, e.g. one person at a
// time after a failed transaction), and the copy is checked to hold only what
// fhir.Parse would produce (objects, arrays, strings in UTF-8, json.Number,
// booleans) no deeper than the engine's nesting limit: anything else is an
// Invalid error naming where. Resources are stored in FHIR definition order
// (there is no client key order to keep). The size limit of a posted body does
// not apply; the entry limit (MaxBundleEntries) does.
func (e *Engine) BundleTree(ctx context.Context, bundle fhir.Object, opt SearchOptions) (b *Bundle, err error) {
	ctx, ia := e.begin(ctx, "transaction", "E", "", "")
	defer func() { b, err = endBundle(b, e.end(ctx, ia, err)) }()
	cp, err := copyCheckedTree(bundle, e.limits.MaxDepth)
	if err != nil {
		return nil, fhir.WithOp("bundle", err)
	}
	obj, _ := cp.(map[string]any)
	if obj == nil {
		return nil, fhir.WithOp("bundle", fhir.Errorf(fhir.Invalid, "", "the body must be a JSON object (a FHIR resource)"))
	}
	return e.bundle(ctx, ia, obj, nil, opt)
}

// copyCheckedTree copies v as copyTree does, building no value's FHIRPath
// unless v holds something copyTree refuses: only then is the path of the
// refused value worth building, for the error that names it.
func copyCheckedTree(v any, maxDepth int) (any, error) {
	if cp, ok := copyTreeFast(v, 0, maxDepth); ok {
		return cp, nil
	}
	return copyTree(v, 0, "", maxDepth)
}

// copyTreeFast is copyTree without the FHIRPath of each value: ok is false
// where copyTree would refuse v, which then says where. Building every
// value's path cost about 4% of an imported row's CPU, for an error that a
// mapper's tree never has.
func copyTreeFast(v any, depth, maxDepth int) (any, bool) {
	switch t := v.(type) {
	case map[string]any:
		if maxDepth > 0 && depth >= maxDepth {
			return nil, false
		}
		out := make(map[string]any, len(t))
		for k, x := range t {
			if !utf8.ValidString(k) {
				return nil, false
			}
			c, ok := copyTreeFast(x, depth+1, maxDepth)
			if !ok {
				return nil, false
			}
			out[k] = c
		}
		return out, true
	case []any:
		if maxDepth > 0 && depth >= maxDepth {
			return nil, false
		}
		out := make([]any, len(t))
		for i, x := range t {
			c, ok := copyTreeFast(x, depth+1, maxDepth)
			if !ok {
				return nil, false
			}
			out[i] = c
		}
		return out, true
	case string:
		return t, utf8.ValidString(t)
	case json.Number:
		s := string(t)
		return t, s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && json.Valid([]byte(s))
	case bool, nil:
		return t, true
	}
	return nil, false
}

// copyTree deep-copies v, refusing values fhir.Parse never produces, so that
// what the engine checks and stores from a tree is what it would from the same
// tree sent as JSON; the error names where (FHIRPath).
func copyTree(v any, depth int, path string, maxDepth int) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		if maxDepth > 0 && depth >= maxDepth {
			return nil, fhir.Errorf(fhir.Invalid, path, "nesting deeper than the limit of %d", maxDepth)
		}
		out := make(map[string]any, len(t))
		for k, x := range t {
			child := k
			if path != "" {
				child = path + "." + k
			}
			if !utf8.ValidString(k) {
				return nil, fhir.Errorf(fhir.Invalid, path, "a property name is not valid UTF-8")
			}
			c, err := copyTree(x, depth+1, child, maxDepth)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		if maxDepth > 0 && depth >= maxDepth {
			return nil, fhir.Errorf(fhir.Invalid, path, "nesting deeper than the limit of %d", maxDepth)
		}
		out := make([]any, len(t))
		for i, x := range t {
			c, err := copyTree(x, depth+1, path+"["+strconv.Itoa(i)+"]", maxDepth)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case string:
		if !utf8.ValidString(t) {
			return nil, fhir.Errorf(fhir.Invalid, path, "the value is not valid UTF-8")
		}
		return t, nil
	case json.Number:
		if s := string(t); s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') || !json.Valid([]byte(s)) {
			return nil, fhir.Errorf(fhir.Invalid, path, "%q is not a JSON number", string(t))
		}
		return t, nil
	case bool, nil:
		return t, nil
	}
	return nil, fhir.Errorf(fhir.Invalid, path, "a %T is not a JSON value as parsed (object, array, string, json.Number, boolean, null)", v)
}
