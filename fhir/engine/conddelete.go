package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// DefaultMaxConditionalDelete is how many resources one conditional delete
// may delete when the configuration does not say: one, as in HAPI FHIR's
// default (multiple deletes off). A condition matching more is refused with
// 412, as the R4 spec says for a server without multiple deletes.
const DefaultMaxConditionalDelete = 1

// deleteTargets runs the condition of a conditional delete inside tx and
// returns the ids of its matches: none, or up to e.maxCondDelete. More is
// TooManyMatches (412), and nothing is deleted.
func (e *Engine) deleteTargets(ctx context.Context, tx store.Tx, rt, query, what string) ([]string, error) {
	q, err := e.conditionQuery(rt, query, what)
	if err != nil {
		return nil, err
	}
	if err := e.restrict(ctx, q, fhir.PermSearch); err != nil {
		return nil, err
	}
	q.Count = e.maxCondDelete + 1
	qctx, cancel := e.queryContext(ctx)
	defer cancel()
	found, err := tx.Search(qctx, q)
	if err != nil {
		return nil, e.tooCostly(ctx, qctx, err)
	}
	switch n := len(found.Matches); {
	case n > 1 && e.maxCondDelete == 1:
		return nil, fhir.Errorf(fhir.TooManyMatches, "", "the condition %q matches more than one %s, and this server deletes one resource per conditional delete", query, rt)
	case n > e.maxCondDelete:
		return nil, fhir.Errorf(fhir.TooManyMatches, "", "the condition %q matches more than %d %s, the most one conditional delete may delete", query, e.maxCondDelete, rt)
	}
	ids := make([]string, len(found.Matches))
	for i, m := range found.Matches {
		ids[i] = m.ID
	}
	return ids, nil
}

// deleteMatches deletes, in one store transaction, every resource of type rt
// that query matches (see deleteTargets), with one audit record for them
// all. No match is a NoOp. ifMatch, when non-zero, applies to a single match
// only: with several it is PreconditionFailed.
func (e *Engine) deleteMatches(ctx context.Context, rt, query string, ifMatch int) (Result, error) {
	if _, err := e.conditions(ctx, rt, fhir.PermDelete); err != nil {
		return Result{}, err
	}
	now := e.now()
	res := Result{NoOp: true}
	err := e.store.Write(ctx, func(tx store.Tx) error {
		ids, err := e.deleteTargets(ctx, tx, rt, query, "a conditional delete")
		if err != nil {
			return err
		}
		if ifMatch != 0 && len(ids) > 1 {
			return fhir.Errorf(fhir.PreconditionFailed, "", "If-Match names one version, but the condition %q matches %d %s", query, len(ids), rt)
		}
		var deleted []store.Version
		for _, id := range ids {
			r, err := e.deleteInTx(ctx, tx, rt, id, ifMatch, now)
			if err != nil {
				return err
			}
			if !r.NoOp {
				deleted = append(deleted, r.Version)
				res = r
			}
		}
		if len(ids) == 0 {
			return nil
		}
		return e.auditInTx(ctx, tx, writeRecord("delete", "D", deleted...))
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}
