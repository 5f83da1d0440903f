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
	if q.TotalLimit <= 0 || q.Compartment != nil {
		return 0, false, nil
	}
	d, n, err := pl.driverCount(q.Type, q.Params, false)
	if err != nil || d < 0 || !plain(q.Params[d]) || n < q.TotalLimit {
		return 0, false, err
	}
	others := make([]fhir.Param, 0, len(q.Params)-1)
	others = append(append(others, q.Params[:d]...), q.Params[d+1:]...)
	var b builder
	b.add("SELECT COUNT(*) FROM (SELECT DISTINCT d.rid FROM (")
	if err := lookup(&b, q.Type, q.Params[d], ""); err != nil {
		return 0, false, err
	}
	b.add(") d CROSS JOIN current c ON c.rid = d.rid WHERE c.deleted = 0")
	if _, err := conditions(&b, nil, "c", q.Type, others, 0); err != nil {
		return 0, false, err
	}
	b.add(" LIMIT ?)", q.TotalLimit)
	total := 0
	if err := db.QueryRowContext(ctx, b.sql.String(), b.args...).Scan(&total); err != nil {
		return 0, false, fhir.InternalError("search", err)
	}
	return total, true, nil
}
