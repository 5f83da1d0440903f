package engine

import (
	"context"
	"sync"

	"crs/fhir"
	"crs/fhir/store"
)

// mayWriteIndexed is mayWrite for version vid of rt/id, written with the
// search values index: while that version is still the current one, the
// policy's "as written" question is first answered from those
// values and, through a chain, from the current version of the resource each
// one refers to (inBoundsAsWritten), and only when that cannot say "allowed"
// asked as the search mayWrite makes. An ADT message's Encounter is bounded
// by "service-provider:Organization.identifier=…|{org}": the search of that
// chain cost about 8% of a message's CPU.
func (e *Engine) mayWriteIndexed(ctx context.Context, tx store.Tx, rt, id string, vid int, perm fhir.Permission, index []fhir.IndexValue) error {
	if index != nil && e.access != nil {
		conds, err := e.conditions(ctx, rt, perm)
		if err == nil && conds != nil && e.inBoundsAsWritten(ctx, tx, conds, index) && current(ctx, tx, rt, id, vid) {
			return nil
		}
	}
	return e.mayWrite(ctx, tx, rt, id, perm)
}

// current reports whether vid is the current version of rt/id in tx (a later
// entry of a transaction may have changed or deleted what an earlier one
// created, and the search asks about the current version).
func current(ctx context.Context, tx store.Reader, rt, id string, vid int) bool {
	v, err := tx.Read(ctx, rt, id)
	return err == nil && !v.Deleted && v.VersionID == vid
}

// inBoundsAsWritten reports true only when every one of conds holds for a
// resource stored with the search values index, exactly as the store's search
// matches it: a plain token condition matched by one of its own values
// (inBoundsByIndex), or a chain through one reference parameter to one type
// whose own conditions are all plain tokens, matched when a value of the
// reference names a current (not deleted) resource of that type, read in tx,
// whose search values match them. Anything else, or any doubt (a read that
// fails), is false: the caller then searches.
func (e *Engine) inBoundsAsWritten(ctx context.Context, tx store.Reader, conds []fhir.Param, index []fhir.IndexValue) bool {
	if len(conds) == 0 {
		return false
	}
	for _, p := range conds {
		switch {
		case plainToken(p):
			if !tokenMatches(p.Def.Code, p.Values, index) {
				return false
			}
		case plainChain(p):
			if !e.chainMatches(ctx, tx, p, index) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// plainToken reports whether p is a token condition with no modifier.
func plainToken(p fhir.Param) bool {
	return p.Def != nil && p.Def.Type == fhir.TypeToken && p.Modifier == "" && p.Missing == nil && len(p.Chain) == 0 && p.Has == nil
}

// plainChain reports whether p is a chain through a reference parameter to
// one type, whose conditions are all plain tokens.
func plainChain(p fhir.Param) bool {
	if p.Def == nil || p.Def.Type != fhir.TypeReference || p.Missing != nil || p.Has != nil || len(p.Values) > 0 || len(p.Chain) != 1 {
		return false
	}
	inner := p.Chain[0]
	if inner == nil || len(inner.Params) == 0 || (p.Modifier != "" && p.Modifier != inner.Type) {
		return false
	}
	for _, ip := range inner.Params {
		if !plainToken(ip) {
			return false
		}
	}
	return true
}

// chainMatches reports whether a reference value of p's parameter among index
// names a current resource of the chained type that its conditions hold for.
func (e *Engine) chainMatches(ctx context.Context, tx store.Reader, p fhir.Param, index []fhir.IndexValue) bool {
	inner := p.Chain[0]
	for _, iv := range index {
		if iv.Param != p.Def.Code || iv.Type != fhir.TypeReference || iv.RefType != inner.Type || iv.RefID == "" {
			continue
		}
		v, err := tx.Read(ctx, inner.Type, iv.RefID)
		if err != nil || v.Deleted || v.Type != inner.Type {
			continue
		}
		target, ok := e.targetIndex.of(e, v)
		if !ok {
			continue
		}
		held := true
		for _, ip := range inner.Params {
			if !tokenMatches(ip.Def.Code, ip.Values, target) {
				held = false
				break
			}
		}
		if held {
			return true
		}
	}
	return false
}

// targetIndexCap bounds the chained targets whose search values are kept.
const targetIndexCap = 256

// targetIndexes keeps the search values of the chained targets
// chainMatches reads (an ADT feed's Encounters all point at its trust's one
// Organization), keyed by type and body: the values are a function of
// those alone, so a kept entry can never be stale.
type targetIndexes struct {
	mu sync.Mutex
	m  map[string][]fhir.IndexValue
}

// of returns the search values of v's body, extracted as a write stores them.
func (t *targetIndexes) of(e *Engine, v store.Version) ([]fhir.IndexValue, bool) {
	key := v.Type + "\x00" + string(v.Body)
	t.mu.Lock()
	index, ok := t.m[key]
	t.mu.Unlock()
	if ok {
		return index, true
	}
	obj, err := fhir.Parse(v.Body, fhir.Limits{})
	if err != nil {
		return nil, false
	}
	index, err = e.params.Extract(v.Type, obj)
	if err != nil {
		return nil, false
	}
	t.mu.Lock()
	if t.m == nil || len(t.m) >= targetIndexCap {
		t.m = map[string][]fhir.IndexValue{}
	}
	t.m[key] = index
	t.mu.Unlock()
	return index, true
}
