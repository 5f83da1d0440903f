package engine

import (
	"crs/audit"
	"crs/fhir"
)

// auditIndex is the search values of the AuditEvent x under id and
// lastUpdated, computed from its record (audit.Rendered.Index) instead of by
// FHIRPath extraction over its tree. ok is false when the engine's registry
// has AuditEvent parameters other than those Index computes (one was added or
// changed) or x came from an old journal line: then the caller extracts them.
func (e *Engine) auditIndex(x *audit.Rendered, id, lastUpdated string) ([]fhir.IndexValue, bool) {
	if !audit.IndexFits(e.params.Params("AuditEvent")) {
		return nil, false
	}
	return x.Index(id, lastUpdated)
}
