package engine

import (
	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// ShapeRead applies the parameters of a read or vread to the version read:
// _summary (true, text, data, false) and _elements, as on search. Any other
// parameter is refused (400), or ignored when lenient (Prefer:
// handling=lenient), the same as an unknown search parameter; _format and
// _pretty are the HTTP binding's and must be removed by the caller.
func (e *Engine) ShapeRead(v store.Version, params []fhir.RawParam, lenient bool) ([]byte, error) {
	var keep []fhir.RawParam
	for _, p := range params {
		switch p.Name {
		case "_summary", "_elements":
			keep = append(keep, p)
		default:
			if !lenient {
				return nil, fhir.Errorf(fhir.Invalid, p.Name, "read does not take the parameter %q (it takes _summary, _elements, _format and _pretty)", p.Name)
			}
		}
	}
	if len(keep) == 0 {
		return v.Body, nil
	}
	q, err := e.params.ParseQuery(v.Type, keep, search.ParseOptions{DefaultCount: 1, MaxCount: 1})
	if err != nil {
		return nil, fhir.WithOp("read", err)
	}
	switch q.Summary {
	case "count":
		return nil, fhir.Errorf(fhir.Invalid, "_summary", "_summary=count is for searches: a read returns one resource")
	case "true", "text":
		if e.elements == nil {
			return nil, fhir.Errorf(fhir.NotSupported, "_summary", "_summary=%s is not supported by this server", q.Summary)
		}
	}
	return e.shape(v, q)
}
