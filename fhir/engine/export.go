package engine

import (
	"context"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// ExportRequest is one resource type's share of a Bulk Data $export: what the
// export door asks the engine to stream.
type ExportRequest struct {
	Type string // the resource type exported
	// Filters are the _typeFilter queries for Type (search parameters, each
	// list one query; the results of several are united). None: every resource.
	Filters [][]fhir.RawParam
	// Patients, when set, bounds the export to these patients' compartments
	// (a Group or a patient-level export naming patients).
	Patients []string
	Since    time.Time // only resources last updated at or after it (zero: all)
	Elements string    // _elements, as sent (empty: whole resources)
}

// exportPage is how many resources the export reads from the store at a time.
const exportPage = 500

// ExportType streams every current resource of req.Type that the caller may
// search and that req selects, each to emit, in one interaction (one
// AuditEvent). Errors: NotSupportedType for a type not served, Invalid for a
// malformed filter, Forbidden when the caller may not search the type.
func (e *Engine) ExportType(ctx context.Context, req ExportRequest, emit func(body []byte) error) (n int, err error) {
	ctx, ia := e.begin(ctx, "operation", "E", "", "")
	if ia != nil {
		ia.rec.Query = "$export _type=" + req.Type
	}
	defer func() { err = e.end(ctx, ia, err) }()
	if err := checkType(req.Type, fhir.SearchType); err != nil {
		return 0, err
	}
	if req.Type == "AuditEvent" {
		e.materialiseNow(ctx) // the journal's AuditEvents first, as a search does
	}
	filters := req.Filters
	if len(filters) == 0 {
		filters = [][]fhir.RawParam{nil}
	}
	var comps []*fhir.Compartment
	if req.Patients != nil {
		ps, ok := compartments["Patient"][req.Type]
		if !ok && req.Type != "Patient" {
			return 0, fhir.Errorf(fhir.NotSupported, "_type", "%s resources are not in the Patient compartment, so a patient-level export cannot hold them", req.Type)
		}
		for _, id := range req.Patients {
			if req.Type == "Patient" {
				comps = append(comps, &fhir.Compartment{Type: "Patient", ID: id}) // the patient itself: _id below
				continue
			}
			comps = append(comps, &fhir.Compartment{Type: "Patient", ID: id, Params: ps})
		}
	} else {
		comps = []*fhir.Compartment{nil}
	}
	// Ids already emitted, when several filters or compartments may overlap;
	// a plain export keeps none, so its memory stays flat however large.
	var seen map[string]bool
	if len(filters)*len(comps) > 1 {
		seen = map[string]bool{}
	}
	for _, filter := range filters {
		for _, comp := range comps {
			params := append([]fhir.RawParam(nil), filter...)
			if !req.Since.IsZero() {
				params = append(params, fhir.RawParam{Name: "_lastUpdated", Value: "ge" + formatInstant(req.Since)})
			}
			if req.Elements != "" {
				params = append(params, fhir.RawParam{Name: "_elements", Value: req.Elements})
			}
			if comp != nil && req.Type == "Patient" {
				params = append(params, fhir.RawParam{Name: "_id", Value: comp.ID})
				comp = nil
			}
			q, err := e.params.ParseQuery(req.Type, params, search.ParseOptions{DefaultCount: exportPage, MaxCount: exportPage, Limits: e.queryLimits})
			if err != nil {
				return n, fhir.WithOp("export", err)
			}
			if len(q.Include) > 0 || q.Summary != "" {
				return n, fhir.Errorf(fhir.Invalid, "_typeFilter", "a _typeFilter holds search parameters only, not _include, _revinclude or _summary")
			}
			q.Compartment = comp
			q.Total = fhir.TotalNone
			q.Count = exportPage
			if err := e.restrict(ctx, q, fhir.PermSearch); err != nil {
				return n, fhir.WithOp("export", err)
			}
			for {
				if err := ctx.Err(); err != nil {
					return n, fhir.Errorf(fhir.Unavailable, "", "the export was stopped: %v", err)
				}
				res, err := e.store.Search(ctx, q)
				if err != nil {
					return n, fhir.WithOp("export", err)
				}
				for _, v := range res.Matches {
					if seen != nil {
						if seen[v.ID] {
							continue
						}
						seen[v.ID] = true
					}
					body, err := e.shape(v, q)
					if err != nil {
						return n, err
					}
					if err := emit(body); err != nil {
						return n, err
					}
					n++
				}
				if res.Next == "" {
					break
				}
				q.Cursor = res.Next
			}
		}
	}
	return n, nil
}

// ExportDeleted streams the ids of the resources of type rt deleted at or
// after since (and not created again), for the manifest's deleted list, in
// one interaction. Only a caller who may see every resource of the type may
// know of deletions (a tombstone does not say whose record it was): others
// get a Forbidden error.
func (e *Engine) ExportDeleted(ctx context.Context, rt string, since time.Time, emit func(id string, when time.Time) error) (n int, err error) {
	ctx, ia := e.begin(ctx, "operation", "E", "", "")
	if ia != nil {
		ia.rec.Query = "$export deleted _type=" + rt + "&_since=" + formatInstant(since)
	}
	defer func() { err = e.end(ctx, ia, err) }()
	if err := checkType(rt, fhir.HistoryType); err != nil {
		return 0, err
	}
	if err := e.unbounded(ctx, rt); err != nil {
		return 0, fhir.Errorf(fhir.Forbidden, "", "deletions of %s are reported only to callers who may see every %s", rt, rt)
	}
	hq := store.HistoryQuery{Type: rt, Since: since, Count: exportPage}
	latest := map[string]bool{} // newest first: the first version seen of an id is its latest
	for {
		res, err := e.store.History(ctx, hq)
		if err != nil {
			return n, fhir.WithOp("export", err)
		}
		for _, v := range res.Versions {
			if latest[v.ID] {
				continue
			}
			latest[v.ID] = true
			if v.Deleted {
				if err := emit(v.ID, v.LastUpdated); err != nil {
					return n, err
				}
				n++
			}
		}
		if res.Next == "" {
			break
		}
		hq.Cursor = res.Next
	}
	return n, nil
}

// PatientCompartmentTypes returns the served types that can be in a Patient's
// compartment (Patient included): what a patient-level export may hold.
func PatientCompartmentTypes() []string {
	var out []string
	for _, t := range fhir.ServedTypes() {
		if _, ok := compartments["Patient"][t]; (ok || t == "Patient") && !strings.EqualFold(t, "AuditEvent") {
			out = append(out, t)
		}
	}
	return out
}
