package sqlite

import "crs/fhir"

// emptyDriver reports whether the page of q has nothing to read: its driving
// parameter (the one the planner picked, from the ranks it already sampled;
// nothing is sampled here) is a plain index lookup that sampled no rows.
// The page query reads its rows through that same lookup (c.rid IN (…)), so
// it would find none. A lookup by identifier that matches nothing — a
// conditional create's, an importer's, a duplicate check's — then costs one
// small COUNT instead of also the page query with every access condition,
// which SQLite must parse and plan each time. Inside a write transaction both
// would read one snapshot; on the read pool the search is answered as of the
// sample, as a search racing a commit may be.
func (pl *planner) emptyDriver(q *fhir.Query) (bool, error) {
	if q.Compartment != nil || len(q.Params) < 2 {
		return false, nil // a lone parameter drives unsampled
	}
	d, err := pl.driver(q.Type, q.Params)
	if err != nil || d < 0 || !plain(q.Params[d]) || negated(q.Params[d]) {
		return false, err
	}
	n, sampled := pl.memo[rankKey{&q.Params[d], sampleLimit}]
	return sampled && n == 0, nil
}

// idRank is the rank of an _id parameter without sampling it: an id names at
// most one resource of the type (one index row), so the count is at most the
// number of ids. The access policy's "as written" and read checks ask
// _id=… with the caller's conditions on every bounded create and read; the
// sample cost them a query each that could only say what is known.
func idRank(p fhir.Param, limit int) (int, bool) {
	if p.Def == nil || p.Def.Code != "_id" || p.Modifier != "" || p.Missing != nil || len(p.Chain) > 0 || p.Has != nil {
		return 0, false
	}
	return min(len(p.Values), limit), true
}
