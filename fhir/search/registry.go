// Package search holds the search parameters crs understands, as data: the
// official R4 definitions for the served types (generated into r4params.json from
// search-parameters.json and embedded) plus any SearchParameter resources added at
// start. It extracts index values from resources with a compiled FHIRPath subset
// (see fhirpath.go), parses query strings once into a backend-neutral fhir.Query,
// and formats a query back into the query string of self and next links. It has
// no storage code.
package search

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"crs/fhir"
)

//go:generate go run gen.go

//go:embed r4params.json
var r4params []byte

// definition is a search parameter of one resource type with its compiled
// expression. A parameter whose type or expression the server cannot evaluate
// is kept with unsupported set, so that a query naming it gets a clear answer.
type definition struct {
	param       fhir.SearchParam
	expr        *compiled
	unsupported string // why it cannot be used; "" when it can
}

// Registry is a set of search parameters by resource type.
type Registry struct {
	byType map[string]map[string]*definition
}

var (
	defaultOnce sync.Once
	defaultReg  *Registry
	defaultErr  error
)

// Default returns the registry of the embedded R4 search parameters of the served
// types. It panics if the embedded data is corrupt, which a test catches.
func Default() *Registry {
	defaultOnce.Do(func() { defaultReg, defaultErr = New() })
	if defaultErr != nil {
		panic("embedded search parameters: " + defaultErr.Error())
	}
	return defaultReg
}

// New builds a fresh registry from the embedded R4 search parameters. Use it when
// pathway parameters will be added, so that Default stays the plain R4 set.
func New() (*Registry, error) {
	var defs []struct {
		Base       string   `json:"base"`
		Code       string   `json:"code"`
		Type       string   `json:"type"`
		URL        string   `json:"url"`
		Expression string   `json:"expression"`
		Targets    []string `json:"target"`
	}
	if err := json.Unmarshal(r4params, &defs); err != nil {
		return nil, err
	}
	r := &Registry{byType: map[string]map[string]*definition{}}
	var common []fhir.SearchParam
	for _, d := range defs {
		sp := fhir.SearchParam{Code: d.Code, Type: fhir.ParamType(d.Type), URL: d.URL, Expression: d.Expression, Targets: d.Targets}
		if d.Base == "Resource" || d.Base == "DomainResource" {
			common = append(common, sp)
			continue
		}
		r.add(d.Base, sp)
	}
	for _, rt := range fhir.ServedTypes() {
		for _, sp := range common {
			r.add(rt, sp)
		}
	}
	return r, nil
}

func (r *Registry) add(rt string, sp fhir.SearchParam) *definition {
	d := &definition{param: sp}
	switch sp.Type {
	case fhir.TypeToken, fhir.TypeString, fhir.TypeDate, fhir.TypeReference, fhir.TypeQuantity, fhir.TypeNumber, fhir.TypeURI:
		if sp.Expression == "" {
			d.unsupported = "it has no expression (a full-text or named-query parameter)"
			break
		}
		expr, err := compile(rt, sp.Expression)
		if err != nil {
			d.unsupported = "its expression cannot be evaluated: " + err.Error()
		}
		d.expr = expr
	default:
		d.unsupported = string(sp.Type) + " parameters are not supported"
	}
	if r.byType[rt] == nil {
		r.byType[rt] = map[string]*definition{}
	}
	r.byType[rt][sp.Code] = d
	return d
}

// Add registers a SearchParameter resource (such as a pathway extension
// parameter) for each of its base types. Its type must be supported and its
// expression inside the FHIRPath subset.
func (r *Registry) Add(sp map[string]any) error {
	code, _ := sp["code"].(string)
	typ, _ := sp["type"].(string)
	url, _ := sp["url"].(string)
	expr, _ := sp["expression"].(string)
	bases, _ := sp["base"].([]any)
	if code == "" || typ == "" || len(bases) == 0 {
		return fmt.Errorf("SearchParameter %q needs code, type and base", url)
	}
	var targets []string
	if ts, ok := sp["target"].([]any); ok {
		for _, t := range ts {
			if s, ok := t.(string); ok {
				targets = append(targets, s)
			}
		}
	}
	for _, b := range bases {
		rt, _ := b.(string)
		d := r.add(rt, fhir.SearchParam{Code: code, Type: fhir.ParamType(typ), URL: url, Expression: expr, Targets: targets})
		if d.unsupported != "" {
			delete(r.byType[rt], code)
			return fmt.Errorf("SearchParameter %q on %s: %s", url, rt, d.unsupported)
		}
	}
	return nil
}

// Param returns the supported parameter code of resourceType.
func (r *Registry) Param(resourceType, code string) (*fhir.SearchParam, bool) {
	d, ok := r.byType[resourceType][code]
	if !ok || d.unsupported != "" {
		return nil, false
	}
	return &d.param, true
}

// Params returns the supported parameters of resourceType, sorted by code: what
// the CapabilityStatement may claim.
func (r *Registry) Params(resourceType string) []*fhir.SearchParam {
	var out []*fhir.SearchParam
	for _, d := range r.byType[resourceType] {
		if d.unsupported == "" {
			out = append(out, &d.param)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Unsupported returns, for resourceType, the parameters that are defined but
// cannot be evaluated, with the reason.
func (r *Registry) Unsupported(resourceType string) map[string]string {
	out := map[string]string{}
	for code, d := range r.byType[resourceType] {
		if d.unsupported != "" {
			out[code] = d.unsupported
		}
	}
	return out
}

// Values evaluates one parameter of resourceType on res (nil when the parameter
// is unknown or unsupported).
func (r *Registry) Values(resourceType, code string, res map[string]any) []fhir.IndexValue {
	d, ok := r.byType[resourceType][code]
	if !ok || d.unsupported != "" {
		return nil
	}
	return d.values(code, res)
}

func (d *definition) values(code string, res map[string]any) []fhir.IndexValue {
	var out []fhir.IndexValue
	for _, n := range d.expr.eval(res) {
		switch d.param.Type {
		case fhir.TypeToken:
			out = append(out, tokenValues(code, n)...)
		case fhir.TypeString:
			out = append(out, stringValues(code, n)...)
		case fhir.TypeDate:
			out = append(out, dateValues(code, n)...)
		case fhir.TypeNumber, fhir.TypeQuantity:
			out = append(out, quantityValues(code, d.param.Type, n)...)
		case fhir.TypeReference:
			out = append(out, referenceValues(code, n)...)
		case fhir.TypeURI:
			out = append(out, uriValues(code, n)...)
		}
	}
	return out
}

// Extract evaluates every supported parameter of resourceType on res and
// returns the index values to store with it.
func (r *Registry) Extract(resourceType string, res map[string]any) ([]fhir.IndexValue, error) {
	var out []fhir.IndexValue
	for code, d := range r.byType[resourceType] {
		if d.unsupported == "" {
			out = append(out, d.values(code, res)...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Param < out[j].Param })
	return out, nil
}
