package engine

import (
	"context"
	"strings"

	"crs/fhir"
	"crs/fhir/store"
)

// maxIncluded bounds the resources _include and _revinclude add to one page.
const maxIncluded = 1000

// maxIterate bounds the rounds of :iterate; a circular iterate stops earlier,
// when a round adds nothing new.
const maxIterate = 5

// key names a resource.
type key struct{ typ, id string }

// resolver reads and searches for includes: the store, or a transaction.
type resolver interface {
	Read(ctx context.Context, typ, id string) (store.Version, error)
	Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error)
}

// includes resolves the _include and _revinclude of q for the matches and
// returns the included versions (none of them a match), in a stable order.
func (e *Engine) includes(ctx context.Context, r resolver, q *fhir.Query, matches []store.Version) ([]store.Version, error) {
	if len(q.Include) == 0 {
		return nil, nil
	}
	seen := map[key]bool{}
	for _, m := range matches {
		seen[key{m.Type, m.ID}] = true
	}
	var out []store.Version
	frontier := matches
	for round := 0; round < maxIterate && len(frontier) > 0; round++ {
		var next []store.Version
		add := func(v store.Version) {
			k := key{v.Type, v.ID}
			if !seen[k] && !v.Deleted && len(out) < maxIncluded {
				seen[k] = true
				out = append(out, v)
				next = append(next, v)
			}
		}
		for _, inc := range q.Include {
			if round > 0 && !inc.Iterate {
				continue
			}
			var err error
			if inc.Reverse {
				err = e.revInclude(ctx, r, inc, frontier, add)
			} else {
				err = e.forwardInclude(ctx, r, inc, frontier, add, seen)
			}
			if err != nil {
				return nil, err
			}
		}
		frontier = next
	}
	return out, nil
}

// forwardInclude adds the resources the frontier's resources of inc.Type point
// to along inc.Param (every reference parameter for *). The references are
// gathered first and their targets read in one search per target type
// (readMany), then added in the order the references come in.
func (e *Engine) forwardInclude(ctx context.Context, r resolver, inc fhir.Include, frontier []store.Version, add func(store.Version), seen map[key]bool) error {
	var refs []key
	for _, v := range frontier {
		if v.Type != inc.Type {
			continue
		}
		obj, err := fhir.Parse(v.Body, fhir.Limits{})
		if err != nil {
			return fhir.InternalError("include", err)
		}
		params := []*fhir.SearchParam{inc.Param}
		if inc.Param == nil {
			params = nil
			for _, p := range e.params.Params(v.Type) {
				if p.Type == fhir.TypeReference {
					params = append(params, p)
				}
			}
		}
		for _, p := range params {
			for _, iv := range e.params.Values(v.Type, p.Code, obj) {
				if iv.RefID == "" || !fhir.Served(iv.RefType) || (inc.Target != "" && iv.RefType != inc.Target) {
					continue
				}
				refs = append(refs, key{iv.RefType, iv.RefID})
			}
		}
	}
	found, err := e.readMany(ctx, r, refs, seen)
	if err != nil {
		return err
	}
	for _, k := range refs {
		if v, ok := found[k]; ok {
			add(v)
		}
	}
	return nil
}

// revInclude adds resources of inc.Type whose inc.Param points to a frontier
// resource.
func (e *Engine) revInclude(ctx context.Context, r resolver, inc fhir.Include, frontier []store.Version, add func(store.Version)) error {
	var values []fhir.Value
	for _, v := range frontier {
		if len(inc.Param.Targets) == 0 || contains(inc.Param.Targets, v.Type) {
			values = append(values, fhir.Value{RefType: v.Type, RefID: v.ID, Raw: v.Type + "/" + v.ID})
		}
	}
	for len(values) > 0 {
		n := min(len(values), 100)
		q := &fhir.Query{Type: inc.Type, Count: maxIncluded, Total: fhir.TotalNone,
			Params: []fhir.Param{{Def: inc.Param, Values: values[:n]}}}
		values = values[n:]
		res, err := r.Search(ctx, q)
		if err != nil {
			return err
		}
		for _, m := range res.Matches {
			add(m)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// subsetTag marks a resource returned with elements left out.
var subsetTag = map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED", "display": "subsetted"}

// shape applies _summary and _elements to a stored resource body.
func (e *Engine) shape(v store.Version, q *fhir.Query) ([]byte, error) {
	if (q.Summary == "" || q.Summary == "false") && len(q.Elements) == 0 {
		return v.Body, nil
	}
	obj, err := fhir.Parse(v.Body, fhir.Limits{})
	if err != nil {
		return nil, fhir.InternalError("summary", err)
	}
	keep := map[string]bool{"resourceType": true, "id": true, "meta": true}
	switch {
	case len(q.Elements) > 0:
		for _, el := range q.Elements {
			name, _, _ := strings.Cut(el, ".")
			keep[name], keep["_"+name] = true, true
			for k := range obj { // a choice element named by its base: value → valueQuantity
				if strings.HasPrefix(k, name) && len(k) > len(name) && k[len(name)] >= 'A' && k[len(name)] <= 'Z' {
					keep[k] = true
				}
			}
		}
	case q.Summary == "text":
		keep["text"] = true
		for k := range e.summary(v.Type) {
			if e.mandatory(v.Type, k) {
				keep[k] = true
			}
		}
	case q.Summary == "data":
		for k := range obj {
			keep[k] = k != "text"
		}
	case q.Summary == "true":
		for k := range obj {
			base := strings.TrimPrefix(k, "_")
			if e.summary(v.Type)[base] || e.summary(v.Type)[choiceBase(base)] {
				keep[k] = true
			}
		}
	}
	for k := range obj {
		if !keep[k] {
			delete(obj, k)
		}
	}
	meta, _ := obj["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, subsetTag)
	return fhir.MarshalOrdered(obj, fhir.KeyOrder(v.Body)) // in the stored order
}

// choiceBase returns the base name of a choice element (valueQuantity → value[x]).
func choiceBase(k string) string {
	for i := 1; i < len(k); i++ {
		if k[i] >= 'A' && k[i] <= 'Z' {
			return k[:i] + "[x]"
		}
	}
	return k
}

func (e *Engine) summary(rt string) map[string]bool {
	if e.elements == nil {
		return nil
	}
	return e.elements.SummaryElements(rt)
}

func (e *Engine) mandatory(rt, name string) bool {
	return e.elements != nil && e.elements.MandatoryElements(rt)[name]
}
