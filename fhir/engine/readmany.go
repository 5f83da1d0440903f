package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// readChunk is the most ids readMany asks for in one search.
const readChunk = 500

// readMany reads the current versions of refs through r, as r.Read would one
// by one, in one _id search per target type (and per readChunk ids): a page's
// _include is then a lookup per page rather than a read per reference. What
// r.Read would not return is absent from the map: a missing or deleted
// resource, and through a guarded resolver one the caller may not read (its
// read conditions are part of the search, as Read checks them). Keys in skip
// (already in the answer) are not read.
func (e *Engine) readMany(ctx context.Context, r resolver, refs []key, skip map[key]bool) (map[key]store.Version, error) {
	var types []string
	ids := map[string][]string{}
	asked := map[key]bool{}
	for _, k := range refs {
		if skip[k] || asked[k] {
			continue
		}
		asked[k] = true
		if _, ok := ids[k.typ]; !ok {
			types = append(types, k.typ)
		}
		ids[k.typ] = append(ids[k.typ], k.id)
	}
	found := make(map[key]store.Version, len(asked))
	for _, typ := range types {
		idDef, ok := e.params.Param(typ, "_id")
		if !ok {
			return nil, fhir.InternalError("include", errNoIDParam)
		}
		search, conds := r.Search, []fhir.Param(nil)
		if g, ok := r.(guarded); ok {
			// guarded.Read's rule: a type the caller may not read has nothing
			// to include; otherwise its read conditions bound the search.
			c, err := g.e.conditions(g.ctx, typ, fhir.PermRead)
			if err != nil {
				continue
			}
			search, conds = g.r.Search, c
		}
		list := ids[typ]
		for len(list) > 0 {
			n := min(len(list), readChunk)
			values := make([]fhir.Value, n)
			for i, id := range list[:n] {
				values[i] = fhir.Value{Raw: id, Code: id}
			}
			list = list[n:]
			q := &fhir.Query{Type: typ, Count: n, Total: fhir.TotalNone,
				Params: append([]fhir.Param{{Def: idDef, Values: values}}, conds...)}
			res, err := search(ctx, q)
			if err != nil {
				return nil, err
			}
			for _, v := range res.Matches {
				found[key{v.Type, v.ID}] = v
			}
		}
	}
	return found, nil
}
