package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// condCreateChunk bounds the values of one batched conditional-create search.
const condCreateChunk = 100

// preResolveCreates answers the conditions of a transaction's conditional
// creates together where it can: creates of one type whose ifNoneExist is one
// parameter with one value (identifier=system|value, as importers key their
// records), with the same parameter and modifier, are searched with one
// OR-list of all their values (and the caller's conditions, as conditional
// does). A search that finds nothing answers every entry of its chunk: none
// of their conditions matches (each is a part of the OR-list), so each
// creates, which resolveTarget is told by noMatch. A chunk with any match is
// left to resolveTarget, which asks each entry's condition on its own as
// before. The searches run before any entry is written, as resolveTarget's do.
func (e *Engine) preResolveCreates(ctx context.Context, tx store.Tx, entries []*bundleEntry) error {
	type group struct {
		rt      string
		param   fhir.Param
		entries []*bundleEntry
		values  []fhir.Value // per entry, its condition's one value
	}
	groups := map[string]*group{}
	var keys []string
	for _, be := range entries {
		if be.method != "POST" || be.ifNone == "" || be.resource == nil {
			continue
		}
		q, err := e.conditionQuery(be.rt, be.ifNone, "ifNoneExist")
		if err != nil {
			return be.entryError(err) // resolveTarget would refuse it the same way
		}
		if len(q.Params) != 1 {
			continue
		}
		p := q.Params[0]
		if len(p.Values) != 1 || len(p.Chain) > 0 || p.Has != nil || p.Missing != nil || p.Modifier == "not" {
			continue
		}
		key := be.rt + "\x00" + p.Def.Code + "\x00" + p.Modifier
		g := groups[key]
		if g == nil {
			g = &group{rt: be.rt, param: p}
			groups[key] = g
			keys = append(keys, key)
		}
		g.entries = append(g.entries, be)
		g.values = append(g.values, p.Values[0])
	}
	for _, key := range keys {
		g := groups[key]
		if len(g.entries) < 2 {
			continue // resolveTarget's own search costs the same
		}
		for start := 0; start < len(g.entries); start += condCreateChunk {
			end := min(start+condCreateChunk, len(g.entries))
			chunk := g.entries[start:end]
			p := g.param
			p.Values = g.values[start:end]
			q := &fhir.Query{Type: g.rt, Count: 1, Total: fhir.TotalNone, Params: []fhir.Param{p}}
			if err := e.restrict(ctx, q, fhir.PermSearch); err != nil {
				break // resolveTarget refuses the first entry it asks, as before
			}
			qctx, cancel := e.queryContext(ctx)
			res, err := tx.Search(qctx, q)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue // resolveTarget asks each, and reports what fails
			}
			if len(res.Matches) > 0 {
				continue // some condition matches: resolveTarget asks each
			}
			for _, be := range chunk {
				be.noMatch = true
			}
		}
	}
	return nil
}
