package sqlite

import (
	"context"

	"crs/fhir"
)

// A total bounded by --total-limit (q.TotalLimit) need not build the driving
// set: the count of "SELECT 1 … WHERE c.rid IN (driving lookup) … LIMIT n"
// makes SQLite materialise the whole IN list (a provider's caseload) before
// its first row. When a plain parameter drives and samples at the limit or
// more, boundedTotal instead reads the driving lookup's index rows in index
// order, probes every other condition per row, and stops at the limit's
// number of distinct matches.

// boundedTotal counts q's matches up to q.TotalLimit by streaming the driving
// parameter's index rows. It reports false when the plain count serves as
// well (no limit, a compartment, no plain driver, or a driving set smaller
// than the limit, which the IN list holds cheaply).
func boundedTotal(ctx context.Context, db querier, pl *planner, q *fhir.Query) (int, bool, error) {
	return boundedTotalAfter(ctx, db, pl, q, 0, q.TotalLimit)
}

// boundedTotalAfter is boundedTotal counting only the matches whose row id
// is above after (all of them when after is 0), up to limit.
func boundedTotalAfter(ctx context.Context, db querier, pl *planner, q *fhir.Query, after int64, limit int) (int, bool, error) {
	if limit <= 0 || q.Compartment != nil {
		return 0, false, nil
	}
	d, n, err := pl.driverCount(q.Type, q.Params, false)
	if err != nil || d < 0 || n < limit {
		return 0, false, err
	}
	if total, ok, err := mergeTotal(ctx, db, q, after, limit); ok || err != nil {
		return total, ok, err // mergetotal.go
	}
	if !plain(q.Params[d]) {
		return chainTotal(ctx, db, pl, q, d, after, limit)
	}
	if total, ok, err := indexTotal(ctx, db, q, d, after, limit); ok || err != nil {
		return total, ok, err // indextotal.go
	}
	others := without(q.Params, d)
	var b builder
	b.add("SELECT COUNT(*) FROM (SELECT DISTINCT d.rid FROM (")
	if err := lookup(&b, q.Type, q.Params[d], ""); err != nil {
		return 0, false, err
	}
	b.add(") d CROSS JOIN current c ON c.rid = d.rid WHERE c.deleted = 0")
	if after > 0 {
		b.add(" AND d.rid > ?", after)
	}
	if _, err := conditions(&b, nil, "c", q.Type, others, 0); err != nil {
		return 0, false, err
	}
	b.add(" LIMIT ?)", limit)
	total, err := b.count(ctx, db)
	return total, err == nil, err
}

// chainTotal is boundedTotal when a chain to one type drives (CarePlan?
// subject:Patient.organization=…): it streams the index rows of the chain
// target's own best plain parameter (the provider's people), joins each
// target to the rows that point at it through the chain's reference, probes
// the rest, and stops at the limit's number of distinct matches. The
// driving-set count would first build every row the chain reaches (each
// target, then what points at it) whatever the limit. It reports false when
// the chain has several target types or no plain parameter of its own drives.
// Only the matches whose row id is above after count (all when it is 0), up
// to limit.
func chainTotal(ctx context.Context, db querier, pl *planner, q *fhir.Query, d int, after int64, limit int) (int, bool, error) {
	p := q.Params[d]
	if len(p.Chain) != 1 || p.Has != nil {
		return 0, false, nil
	}
	target := p.Chain[0]
	td, err := pl.driver(target.Type, target.Params)
	if err != nil || td < 0 || !plain(target.Params[td]) {
		return 0, false, err
	}
	tothers := without(target.Params, td)
	others := without(q.Params, d)
	var b builder
	b.add("SELECT COUNT(*) FROM (SELECT DISTINCT c.rid FROM (")
	if err := lookup(&b, target.Type, target.Params[td], ""); err != nil {
		return 0, false, err
	}
	b.add(") t CROSS JOIN current tc ON tc.rid = t.rid CROSS JOIN idx_reference tr ON tr.type = ? AND tr.param = ? AND tr.ref_id = tc.id AND tr.ref_type = ?", q.Type, p.Def.Code, target.Type)
	b.add(" CROSS JOIN current c ON c.rid = tr.rid WHERE tc.deleted = 0 AND tc.type = ?", target.Type)
	if _, err := conditions(&b, nil, "tc", target.Type, tothers, 1); err != nil {
		return 0, false, err
	}
	b.add(" AND c.deleted = 0 AND c.type = ?", q.Type)
	if after > 0 {
		b.add(" AND c.rid > ?", after)
	}
	if _, err := conditions(&b, nil, "c", q.Type, others, 0); err != nil {
		return 0, false, err
	}
	b.add(" LIMIT ?)", limit)
	total, err := b.count(ctx, db)
	return total, err == nil, err
}
