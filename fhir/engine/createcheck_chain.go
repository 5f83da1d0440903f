package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// inBoundsByTargets answers the policy's "as written" question for
// prestamped creates whose every create condition is a chain along one of
// their references (the care provider's Encounters and care plans:
// subject:Patient._has:ServiceRequest:…; the council's episodes:
// patient:Patient.responsible-la=…): the store matches such a chain when one
// of the create's references of that parameter and type points to a resource
// the chain's own query finds, so the query is run once over the distinct
// resources the creates point to (an import's hundreds of visits point to a
// few people), instead of once over the creates with the chain. Each create
// whose references are found for every condition is marked inCreateBounds;
// the others are returned, for the search as before, which decides (and
// refuses with the entry's location). Like inBoundsByIndex, this path only
// ever answers "allowed".
func (e *Engine) inBoundsByTargets(ctx context.Context, tx store.Tx, conds []fhir.Param, list []*bundleEntry) ([]*bundleEntry, error) {
	if len(conds) == 0 || len(list) == 0 {
		return list, nil
	}
	for _, p := range conds {
		if !targetChain(p) {
			return list, nil
		}
	}
	// found[i] holds the ids of conds[i]'s target type its chain matches.
	found := make([]map[string]bool, len(conds))
	for i, p := range conds {
		chain := p.Chain[0]
		seen := map[string]bool{}
		var ids []string
		for _, be := range list {
			if be.pre == nil {
				continue
			}
			for _, iv := range be.pre.index {
				if refOf(p, iv) && !seen[iv.RefID] {
					seen[iv.RefID] = true
					ids = append(ids, iv.RefID)
				}
			}
		}
		idDef, ok := e.params.Param(chain.Type, "_id")
		if !ok {
			return list, nil
		}
		found[i] = map[string]bool{}
		for len(ids) > 0 {
			chunk := ids[:min(createCheckChunk, len(ids))]
			ids = ids[len(chunk):]
			values := make([]fhir.Value, len(chunk))
			for k, id := range chunk {
				values[k] = fhir.Value{Raw: id, Code: id}
			}
			q := &fhir.Query{Type: chain.Type, Count: len(chunk), Total: fhir.TotalNone,
				Params: append([]fhir.Param{{Def: idDef, Values: values}}, chain.Params...)}
			res, err := tx.Search(ctx, q)
			if err != nil {
				return nil, err
			}
			for _, m := range res.Matches {
				found[i][m.ID] = true
			}
		}
	}
	rest := list[:0:0]
	for _, be := range list {
		if be.pre != nil && pointsToFound(conds, found, be.pre.index) {
			be.inCreateBounds = true
			continue
		}
		rest = append(rest, be)
	}
	return rest, nil
}

// targetChain reports whether p is a plain one-level chain along a
// reference parameter to one resource type (subject:Patient.…), with
// nothing else that the store would also have to match.
func targetChain(p fhir.Param) bool {
	return p.Def != nil && p.Def.Type == fhir.TypeReference && len(p.Chain) == 1 && p.Chain[0] != nil &&
		p.Chain[0].Type != "" && (p.Modifier == "" || p.Modifier == p.Chain[0].Type) &&
		p.Missing == nil && p.Has == nil && len(p.Values) == 0 &&
		p.Chain[0].Compartment == nil && len(p.Chain[0].Include) == 0
}

// refOf reports whether iv is a reference of p's parameter to p's chained type.
func refOf(p fhir.Param, iv fhir.IndexValue) bool {
	return iv.Param == p.Def.Code && iv.Type == fhir.TypeReference && iv.RefType == p.Chain[0].Type && iv.RefID != ""
}

// pointsToFound reports whether, for every condition, one of the create's
// references of that condition is among the ids its chain matched.
func pointsToFound(conds []fhir.Param, found []map[string]bool, index []fhir.IndexValue) bool {
	for i, p := range conds {
		ok := false
		for _, iv := range index {
			if refOf(p, iv) && found[i][iv.RefID] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
