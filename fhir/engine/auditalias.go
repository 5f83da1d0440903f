package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// An AuditEvent is written once, by the server, with meta.lastUpdated equal
// to its recorded instant (both from the record's Recorded, to the
// millisecond): its _lastUpdated and date search values are the same date.
// So the materialiser stores only the date values (audit.Rendered.Index),
// one index row fewer per event, and every query the engine sends its store
// reads _lastUpdated of AuditEvent from them: auditAliases rewrites
// _lastUpdated into date wherever an AuditEvent (sub)query names it (as a
// parameter, a sort key, in a chain or a reverse chain). AuditEvents stored
// before keep both rows, which hold the same values, so the rewrite finds
// them too. Clients cannot create, update or delete AuditEvents.

// auditAliases is q as the store is asked it: with AuditEvent's
// _lastUpdated read from its date values (see above). q itself is not
// changed (its parameters still name _lastUpdated in the bundle's links);
// without any such parameter, q is returned as it is.
func (e *Engine) auditAliases(q *fhir.Query) *fhir.Query {
	if q == nil || e.auditDate == nil || !namesAuditLastUpdated(q) {
		return q
	}
	return aliasQuery(q, e.auditDate)
}

// auditDateParam is the registry's AuditEvent date parameter when the
// registry's AuditEvent _lastUpdated and date are the standard ones (both
// read what the materialiser writes as one), else nil: no rewrite.
func (e *Engine) auditDateParam() *fhir.SearchParam {
	if e.params == nil {
		return nil
	}
	lu, ok1 := e.params.Param("AuditEvent", "_lastUpdated")
	date, ok2 := e.params.Param("AuditEvent", "date")
	if !ok1 || !ok2 || lu.Type != fhir.TypeDate || date.Type != fhir.TypeDate ||
		lu.Expression != "AuditEvent.meta.lastUpdated" || date.Expression != "AuditEvent.recorded" {
		return nil
	}
	return date
}

// isAuditLastUpdated reports whether d, in a query of type typ, is
// AuditEvent's _lastUpdated.
func isAuditLastUpdated(typ string, d *fhir.SearchParam) bool {
	return typ == "AuditEvent" && d != nil && d.Code == "_lastUpdated"
}

// namesAuditLastUpdated reports whether q or a query inside it (chain,
// reverse chain) asks AuditEvent's _lastUpdated.
func namesAuditLastUpdated(q *fhir.Query) bool {
	for _, s := range q.Sort {
		if isAuditLastUpdated(q.Type, s.Def) {
			return true
		}
	}
	for _, p := range q.Params {
		if isAuditLastUpdated(q.Type, p.Def) {
			return true
		}
		for _, c := range p.Chain {
			if c != nil && namesAuditLastUpdated(c) {
				return true
			}
		}
		if p.Has != nil && p.Has.Query != nil && namesAuditLastUpdated(p.Has.Query) {
			return true
		}
	}
	return false
}

// aliasQuery is a copy of q (parameters, sort keys and the queries inside
// them copied; values shared) with AuditEvent's _lastUpdated read as date.
func aliasQuery(q *fhir.Query, date *fhir.SearchParam) *fhir.Query {
	out := *q
	out.Params = make([]fhir.Param, len(q.Params))
	for i, p := range q.Params {
		if isAuditLastUpdated(q.Type, p.Def) {
			p.Def = date
		}
		if len(p.Chain) > 0 {
			chain := make([]*fhir.Query, len(p.Chain))
			for k, c := range p.Chain {
				chain[k] = c
				if c != nil && namesAuditLastUpdated(c) {
					chain[k] = aliasQuery(c, date)
				}
			}
			p.Chain = chain
		}
		if p.Has != nil && p.Has.Query != nil && namesAuditLastUpdated(p.Has.Query) {
			has := *p.Has
			has.Query = aliasQuery(p.Has.Query, date)
			p.Has = &has
		}
		out.Params[i] = p
	}
	if len(q.Sort) > 0 {
		out.Sort = make([]fhir.SortKey, len(q.Sort))
		for i, s := range q.Sort {
			if isAuditLastUpdated(q.Type, s.Def) {
				s.Def = date
			}
			out.Sort[i] = s
		}
	}
	return &out
}

// Search runs q on the store with AuditEvent's _lastUpdated aliased (see
// auditAliases): every search the engine makes, on the read pool, goes
// through here.
func (s *integrityStore) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	return s.Store.Search(ctx, s.e.auditAliases(q))
}

// Search searches inside the write's transaction with AuditEvent's
// _lastUpdated aliased (see auditAliases).
func (t *integrityTx) Search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	return t.Tx.Search(ctx, t.e.auditAliases(q))
}
