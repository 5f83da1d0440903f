// Package export is the Bulk Data $export door out of crs (Bulk Data Access
// IG 2.0): kick-off, jobs that run in the background through the engine with
// the caller's principal, NDJSON files per resource type, the status manifest,
// cancellation, expiry, and jobs that survive a restart. It never touches the
// store: every resource comes from fhir/engine, which polices and audits.
package export

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
)

// The levels of a kick-off.
const (
	LevelSystem  = "system"  // [base]/$export
	LevelPatient = "patient" // [base]/Patient/$export
	LevelGroup   = "group"   // [base]/Group/{id}/$export
)

// Request is a parsed kick-off.
type Request struct {
	Level       string              `json:"level"`
	GroupID     string              `json:"groupId,omitempty"`
	URL         string              `json:"url"` // the kick-off request URL, for the manifest
	Types       []string            `json:"types"`
	Since       time.Time           `json:"since,omitempty"`
	TypeFilters map[string][]string `json:"typeFilters,omitempty"` // type → queries
	Elements    string              `json:"elements,omitempty"`
	Patients    []string            `json:"patients,omitempty"` // patient ids (POST patient parameter)
}

// ndjsonFormats are the accepted spellings of _outputFormat.
var ndjsonFormats = map[string]bool{"application/fhir+ndjson": true, "application/ndjson": true, "ndjson": true}

// ParseRequest checks a kick-off's parameters (from the query of a GET or a
// Parameters body of a POST, as values) and returns the request. now bounds
// _since. Errors are Invalid (or NotSupported) *fhir.Error values naming the
// parameter.
func ParseRequest(level, groupID, requestURL string, q url.Values, now time.Time) (Request, error) {
	r := Request{Level: level, GroupID: groupID, URL: requestURL, TypeFilters: map[string][]string{}}
	allowed := fhir.ServedTypes()
	if level != LevelSystem {
		allowed = engine.PatientCompartmentTypes()
	}
	isAllowed := func(t string) bool {
		for _, a := range allowed {
			if a == t {
				return true
			}
		}
		return false
	}
	for name, vs := range q {
		switch name {
		case "_outputFormat":
			for _, v := range vs {
				if !ndjsonFormats[strings.ToLower(strings.TrimSpace(v))] {
					return r, fhir.Errorf(fhir.Invalid, "_outputFormat", "_outputFormat %q is not supported: use application/fhir+ndjson (or application/ndjson, ndjson)", v)
				}
			}
		case "_since":
			if len(vs) != 1 {
				return r, fhir.Errorf(fhir.Invalid, "_since", "_since may be given once")
			}
			t, err := time.Parse(time.RFC3339Nano, vs[0])
			if err != nil {
				return r, fhir.Errorf(fhir.Invalid, "_since", "_since must be an instant with a time zone, e.g. 2026-11-22T10:00:00Z: %q", vs[0])
			}
			if t.After(now) {
				return r, fhir.Errorf(fhir.Invalid, "_since", "_since %q is in the future", vs[0])
			}
			r.Since = t
		case "_type":
			for _, v := range vs {
				for _, t := range strings.Split(v, ",") {
					t = strings.TrimSpace(t)
					if !isAllowed(t) {
						return r, fhir.Errorf(fhir.Invalid, "_type", "_type %q cannot be exported at this level (exportable: %s)", t, strings.Join(allowed, ", "))
					}
					r.Types = append(r.Types, t)
				}
			}
		case "_typeFilter":
			for _, v := range vs {
				for _, f := range splitFilters(v) {
					t, query, ok := strings.Cut(f, "?")
					if !ok || !isAllowed(t) || query == "" {
						return r, fhir.Errorf(fhir.Invalid, "_typeFilter", "_typeFilter %q must be an exportable type, ?, and search parameters, e.g. CarePlan?status=active", f)
					}
					if _, err := engine.ParseQueryString(query); err != nil {
						return r, fhir.Errorf(fhir.Invalid, "_typeFilter", "_typeFilter %q is not a well-formed query", f)
					}
					r.TypeFilters[t] = append(r.TypeFilters[t], query)
				}
			}
		case "_elements":
			r.Elements = strings.Join(vs, ",")
		case "patient":
			if level == LevelSystem {
				return r, fhir.Errorf(fhir.Invalid, "patient", "the patient parameter is for Patient and Group exports")
			}
			for _, v := range vs {
				id := strings.TrimPrefix(v, "Patient/")
				if !fhir.ValidID(id) {
					return r, fhir.Errorf(fhir.Invalid, "patient", "patient %q must be a reference Patient/{id}", v)
				}
				r.Patients = append(r.Patients, id)
			}
		case "_format":
		default:
			return r, fhir.Errorf(fhir.Invalid, name, "$export does not support the parameter %q (supported: _outputFormat, _since, _type, _typeFilter, _elements, patient)", name)
		}
	}
	if len(r.Types) == 0 {
		for _, t := range allowed {
			if level == LevelSystem && !exportedBySystem(t) {
				continue
			}
			r.Types = append(r.Types, t)
		}
	}
	for t := range r.TypeFilters {
		found := false
		for _, x := range r.Types {
			found = found || x == t
		}
		if !found {
			return r, fhir.Errorf(fhir.Invalid, "_typeFilter", "_typeFilter names %s, which _type does not ask for", t)
		}
	}
	return r, nil
}

// exportedBySystem says whether a system-level export without _type holds
// type t: the records, not the audit trail or the server's conformance
// resources (ask for those by _type).
func exportedBySystem(t string) bool {
	switch t {
	case "AuditEvent", "StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap", "SearchParameter":
		return false
	}
	return true
}

// splitFilters splits a _typeFilter value at the commas between queries (a
// comma inside a query's parameter value belongs to it: a new query starts
// only where the next part looks like Type?).
func splitFilters(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if len(out) > 0 && !strings.Contains(part, "?") {
			out[len(out)-1] += "," + part
			continue
		}
		out = append(out, part)
	}
	return out
}

// ParametersValues reads a kick-off's Parameters body as values: primitive
// values as they are, valueReference by its reference (patient).
func ParametersValues(body []byte) (url.Values, error) {
	obj, err := fhir.Parse(body, fhir.DefaultLimits)
	if err != nil {
		return nil, err
	}
	if fhir.ResourceType(obj) != "Parameters" {
		return nil, fhir.Errorf(fhir.Invalid, "resourceType", "the body of $export is a Parameters resource, not %q", fhir.ResourceType(obj))
	}
	out := url.Values{}
	params, _ := obj["parameter"].([]any)
	for i, p := range params {
		pm, _ := p.(map[string]any)
		name, _ := pm["name"].(string)
		found := false
		for k, v := range pm {
			if !strings.HasPrefix(k, "value") {
				continue
			}
			found = true
			switch x := v.(type) {
			case string:
				out.Add(name, x)
			case map[string]any:
				ref, _ := x["reference"].(string)
				if ref == "" {
					return nil, fhir.Errorf(fhir.Invalid, "Parameters.parameter["+strconv.Itoa(i)+"]", "parameter %q: only a valueReference with a reference is understood here", name)
				}
				out.Add(name, ref)
			default:
				return nil, fhir.Errorf(fhir.Invalid, "Parameters.parameter["+strconv.Itoa(i)+"]", "parameter %q has a value of a kind $export does not take", name)
			}
		}
		if !found || name == "" {
			return nil, fhir.Errorf(fhir.Invalid, "Parameters.parameter["+strconv.Itoa(i)+"]", "each parameter needs a name and a value")
		}
	}
	return out, nil
}
