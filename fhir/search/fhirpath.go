package search

import "crs/fhir/fhirpath"

// Search parameter expressions are evaluated by the FHIRPath subset of
// fhir/fhirpath; this file adapts its values to the converters of values.go.

// item is one value of a FHIRPath collection: a JSON value of the resource tree
// with its FHIR type when the path tells it (a choice suffix or a cast).
type item struct {
	v   any            // map[string]any, string, json.Number, bool; nil for a primitive with only extensions
	typ string         // FHIR type name when known: "Quantity", "dateTime", a resource type after resolve()
	ext map[string]any // the "_name" companion of a primitive, when an extension() call needs it
}

// compiled is a compiled search parameter expression.
type compiled struct {
	expr *fhirpath.Expr
}

// compile parses a FHIRPath expression of the supported subset.
func compile(src string) (*compiled, error) {
	e, err := fhirpath.Compile(src)
	if err != nil {
		return nil, err
	}
	return &compiled{expr: e}, nil
}

// eval evaluates the expression on a resource.
func (c *compiled) eval(res map[string]any) []item {
	return items(c.expr.Eval(res))
}

func items(in []fhirpath.Item) []item {
	if len(in) == 0 {
		return nil
	}
	out := make([]item, len(in))
	for i, it := range in {
		out[i] = item{v: it.Value, typ: it.Type, ext: it.Ext}
	}
	return out
}

// isIdentPart reports whether c may continue a FHIRPath identifier.
func isIdentPart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9'
}

// refType returns the resource type of a literal reference, or "".
func refType(ref string) string { return fhirpath.ReferenceType(ref) }
