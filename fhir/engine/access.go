package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// Access bounds what the caller of a request may do (implemented by
// auth.Policy): an error denies the interaction; otherwise the search
// conditions returned (nil: none) are added to every query the interaction
// makes, so that nothing the caller may not see takes part in an answer.
type Access interface {
	Conditions(ctx context.Context, rt string, perm fhir.Permission) ([]fhir.Param, error)
}

// conditions asks the access policy; with none configured, everything is open.
func (e *Engine) conditions(ctx context.Context, rt string, perm fhir.Permission) ([]fhir.Param, error) {
	if e.access == nil {
		return nil, nil
	}
	return e.access.Conditions(ctx, rt, perm)
}

// restrict adds the caller's conditions to a query and, copied, to every
// chained and reverse-chained query inside it. Searching through a type the
// caller may not search is refused, except in a chain whose reference may
// point at several types (an unqualified chain such as subject.identifier):
// there the types it may not search match nothing, and it is refused only
// when it may search none of them.
func (e *Engine) restrict(ctx context.Context, q *fhir.Query, perm fhir.Permission) error {
	if e.access == nil {
		return nil
	}
	conds, err := e.conditions(ctx, q.Type, perm)
	if err != nil {
		return err
	}
	params := make([]fhir.Param, 0, len(q.Params)+len(conds))
	for _, p := range q.Params {
		if len(p.Chain) > 0 {
			chain := make([]*fhir.Query, 0, len(p.Chain))
			var refused error
			for _, inner := range p.Chain {
				cp := *inner
				err := e.restrict(ctx, &cp, fhir.PermSearch)
				switch {
				case err == nil:
					chain = append(chain, &cp)
				case fhir.KindOf(err) == fhir.Forbidden && len(p.Chain) > 1:
					refused = err // this type matches nothing
				default:
					return err
				}
			}
			if len(chain) == 0 {
				return refused
			}
			p.Chain = chain
		}
		if p.Has != nil {
			has := *p.Has
			inner := *has.Query
			if err := e.restrict(ctx, &inner, fhir.PermSearch); err != nil {
				return err
			}
			has.Query = &inner
			p.Has = &has
		}
		params = append(params, p)
	}
	q.Params = append(params, conds...)
	return nil
}

// visible reports whether rt/id exists and the caller may use perm on it,
// reading through r (the store, or a write transaction).
func (e *Engine) visible(ctx context.Context, r resolver, rt, id string, conds []fhir.Param) (bool, error) {
	idDef, ok := e.params.Param(rt, "_id")
	if !ok {
		return false, fhir.InternalError("access", errNoIDParam)
	}
	q := &fhir.Query{Type: rt, Count: 1, Total: fhir.TotalNone,
		Params: append([]fhir.Param{{Def: idDef, Values: []fhir.Value{{Raw: id, Code: id}}}}, conds...)}
	res, err := r.Search(ctx, q)
	if err != nil {
		return false, err
	}
	return len(res.Matches) == 1, nil
}

var errNoIDParam = fhir.Errorf(fhir.Invalid, "", "no _id search parameter")

// within reports whether the caller may use perm on rt/id as r holds it now:
// yes when its perm on rt is unbounded, otherwise when the record exists and
// matches the caller's conditions. An error denies perm on rt altogether.
func (e *Engine) within(ctx context.Context, r resolver, rt, id string, perm fhir.Permission) (bool, error) {
	conds, err := e.conditions(ctx, rt, perm)
	if err != nil {
		return false, err
	}
	if conds == nil {
		return true, nil
	}
	return e.visible(ctx, r, rt, id, conds)
}

// mayRead checks a read of rt/id (read, vread, instance history, $everything's
// focus): a caller whose reads of rt are bounded gets 403 for anything outside
// its bounds, existing or not, so that a refusal reveals nothing.
func (e *Engine) mayRead(ctx context.Context, rt, id string) error {
	return e.mayReadIn(ctx, e.store, rt, id)
}

// mayReadIn is mayRead through r (a transaction sees its own writes).
func (e *Engine) mayReadIn(ctx context.Context, r resolver, rt, id string) error {
	if ok, err := e.within(ctx, r, rt, id, fhir.PermRead); err != nil || ok {
		return err
	}
	return fhir.Errorf(fhir.Forbidden, "", "%s/%s is not one this caller may read", rt, id)
}

// mayChange is the first question of an update, patch or delete of rt/id,
// asked before anything about the target is read: a caller whose perm on rt is
// bounded may change only a record it can see within those bounds, and gets
// 403 for any other id, whether or not it exists, is deleted, or would fail a
// precondition. (Such a caller cannot update-as-create with an id of its own
// choosing, since that would tell a hidden record from a missing one;
// conditional updates that match nothing create under a new id and are not
// asked.)
func (e *Engine) mayChange(ctx context.Context, r resolver, rt, id string, perm fhir.Permission) error {
	if ok, err := e.within(ctx, r, rt, id, perm); err != nil || ok {
		return err
	}
	return fhir.Errorf(fhir.Forbidden, "", "%s/%s is not one this caller may %s", rt, id, perm.Verb())
}

// mayWrite checks, inside a write transaction after the write, that the
// version written is within the records the caller may use perm on.
func (e *Engine) mayWrite(ctx context.Context, tx store.Tx, rt, id string, perm fhir.Permission) error {
	if ok, err := e.within(ctx, tx, rt, id, perm); err != nil || ok {
		return err
	}
	return fhir.Errorf(fhir.Forbidden, "", "%s/%s as written is outside the records this caller may %s", rt, id, perm.Verb())
}

// guarded reads and searches for the parts of an answer the caller did not ask
// for by name (includes, $everything): what the caller may not see is simply
// not there.
type guarded struct {
	e   *Engine
	r   resolver
	ctx context.Context
}

func (e *Engine) guard(ctx context.Context, r resolver) resolver {
	if e.access == nil {
		return r
	}
	return guarded{e: e, r: r, ctx: ctx}
}

// Read returns NotFound for what the caller may not read.
func (g guarded) Read(ctx context.Context, typ, id string) (store.Version, error) {
	conds, err := g.e.conditions(g.ctx, typ, fhir.PermRead)
	if err != nil {
		return store.Version{}, fhir.Errorf(fhir.NotFound, "", "not found")
	}
	if conds != nil {
		ok, err := g.e.visible(ctx, g.r, typ, id, conds)
		if err != nil {
			return store.Version{}, err
		}
		if !ok {
			return store.Version{}, fhir.Errorf(fhir.NotFound, "", "not found")
		}
	}
	return g.r.Read(ctx, typ, id)
}

// Search adds the caller's conditions; a type it may not search has no matches.
func (g guarded) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	cp := *q
	if err := g.e.restrict(g.ctx, &cp, fhir.PermSearch); err != nil {
		if k := fhir.KindOf(err); k == fhir.Forbidden || k == fhir.Unauthorized {
			return &store.SearchResult{Total: 0}, nil
		}
		return nil, err
	}
	return g.r.Search(ctx, &cp)
}

// unbounded checks that the caller may search every resource of rt (history of
// a type or the system lists versions the policy's conditions cannot bound).
func (e *Engine) unbounded(ctx context.Context, rt string) error {
	conds, err := e.conditions(ctx, rt, fhir.PermSearch)
	if err != nil {
		return err
	}
	if conds != nil {
		return fhir.Errorf(fhir.Forbidden, "", "the history of all %s resources is only for callers who may see every one of them", rt)
	}
	return nil
}
