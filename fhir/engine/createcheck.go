package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// createCheckChunk bounds the ids of one batched "as written" check.
const createCheckChunk = 100

// checkCreates asks the access policy's "as written" question for the creates
// of a transaction in one search per type and chunk of ids (_id=a,b,…
// with the caller's create conditions) instead of one search per entry, after
// every entry is written, exactly when finishEntry would ask it. An entry the
// search finds is marked inCreateBounds, and finishEntry does not ask again;
// one it does not find is left to finishEntry's own check, which refuses it
// with the entry's location, as before. An import's transaction creates
// hundreds of resources of one type, and each search costs SQL statements
// that the embedded driver parses every time.
func (e *Engine) checkCreates(ctx context.Context, tx store.Tx, entries []*bundleEntry) error {
	if e.access == nil {
		return nil
	}
	byType := map[string][]*bundleEntry{}
	var types []string
	for _, be := range entries {
		if be.method != "POST" || be.written() == nil || be.response.Response == nil {
			continue
		}
		if byType[be.rt] == nil {
			types = append(types, be.rt)
		}
		byType[be.rt] = append(byType[be.rt], be)
	}
	for _, rt := range types {
		list := byType[rt]
		if len(list) < 2 {
			continue // finishEntry's own check costs the same
		}
		conds, err := e.conditions(ctx, rt, fhir.PermCreate)
		if err != nil {
			return list[0].entryError(err)
		}
		if conds == nil {
			for _, be := range list {
				be.inCreateBounds = true
			}
			continue
		}
		// Creates stamped before the write carry the values they were stored
		// with: those the conditions plainly hold for need no search
		// (createcheck_index.go).
		searched := list[:0:0]
		for _, be := range list {
			if be.pre != nil && inBoundsByIndex(conds, be.pre.index) {
				be.inCreateBounds = true
				continue
			}
			searched = append(searched, be)
		}
		list, err = e.inBoundsByTargets(ctx, tx, conds, searched)
		if err != nil {
			return err
		}
		idDef, ok := e.params.Param(rt, "_id")
		if !ok {
			return fhir.InternalError("access", errNoIDParam)
		}
		for len(list) > 0 {
			chunk := list[:min(createCheckChunk, len(list))]
			list = list[len(chunk):]
			values := make([]fhir.Value, len(chunk))
			for i, be := range chunk {
				values[i] = fhir.Value{Raw: be.id, Code: be.id}
			}
			q := &fhir.Query{Type: rt, Count: len(chunk), Total: fhir.TotalNone,
				Params: append([]fhir.Param{{Def: idDef, Values: values}}, conds...)}
			res, err := tx.Search(ctx, q)
			if err != nil {
				return err
			}
			found := make(map[string]bool, len(res.Matches))
			for _, m := range res.Matches {
				found[m.ID] = true
			}
			for _, be := range chunk {
				be.inCreateBounds = found[be.id]
			}
		}
	}
	return nil
}

// resolvedTx remembers, while a transaction checks its entries' references
// after every entry is written, the reads that found a record: a batch of
// visits refers to the same Patient, episode and provider hundreds of times,
// and nothing is written between those checks.
type resolvedTx struct {
	store.Tx
	found map[string]store.Version
}

// Read implements store.Reader, remembering what it found.
func (t *resolvedTx) Read(ctx context.Context, typ, id string) (store.Version, error) {
	k := typ + "/" + id
	if v, ok := t.found[k]; ok {
		return v, nil
	}
	v, err := t.Tx.Read(ctx, typ, id)
	if err == nil {
		if t.found == nil {
			t.found = map[string]store.Version{}
		}
		t.found[k] = v
	}
	return v, err
}
