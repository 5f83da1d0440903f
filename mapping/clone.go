package mapping

import "crs/fhir"

// Clone deep-copies a resource tree (objects and arrays; strings, numbers and
// booleans are values), so that a row that fails can be undone: the same
// tree as encoding and parsing it back, without the JSON.
func Clone(obj fhir.Object) fhir.Object {
	if obj == nil {
		return nil
	}
	return cloneValue(obj).(map[string]any)
}

func cloneValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = cloneValue(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = cloneValue(x)
		}
		return out
	}
	return v
}
