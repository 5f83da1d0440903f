package sqlite

import (
	"context"

	"crs/fhir"
)

// A total counted from index rows alone. The streamed count (total.go) joins
// each driving index row to its row in current, for the live flag and, in a
// _has probe, the id that the other type's references name; the _has probe
// joins current again for each resource pointing back. But every index row
// belongs to the current, live version of a resource of its type (Put
// deletes a resource's rows before a new version's and writes none for a
// deletion; mergetotal.go relies on the same), so neither join decides
// anything but the id. indexTotal counts without them: the driving
// parameter's index rows, each probed through the rid indexes for the other
// conditions, a _has probe looking up only the id of the row it starts from;
// and when the driving rows are one run in row id order (runOf), they are
// grouped as they come, without the temporary b-tree that DISTINCT builds.
// At a million resources this is the total of "people with active goals"
// (a provider's people, each probed for an active Goal pointing at them) and
// of "name and birth date" (a family name's people, each probed for the
// date), counted up to --total-limit.

// indexTotal counts q's matches whose row id is above after, up to limit,
// driven by its plain parameter d. It reports false when a condition is of a
// shape it does not count (a _has whose inner query is not plain parameters
// of its own type, or nested).
func indexTotal(ctx context.Context, db querier, q *fhir.Query, d int, after int64, limit int) (int, bool, error) {
	var probes builder
	for _, p := range without(q.Params, d) {
		if ok, err := indexProbe(&probes, q.Type, p, "d"); err != nil || !ok {
			return 0, false, err
		}
	}
	var b builder
	var run builder
	isRun, err := runOf(ctx, db, &run, q.Type, q.Params[d], after)
	if err != nil {
		return 0, false, err
	}
	if isRun {
		// The run is one range of its table's key, whose next column is the
		// row id: GROUP BY keeps that order, and stops at the limit.
		b.add("SELECT COUNT(*) FROM (SELECT d.rid FROM ("+run.sql.String()+") d WHERE 1", run.args...)
		b.add(probes.sql.String(), probes.args...)
		b.add(" GROUP BY d.rid LIMIT ?)", limit)
	} else {
		b.add("SELECT COUNT(*) FROM (SELECT DISTINCT d.rid FROM (")
		if err := lookup(&b, q.Type, q.Params[d], ""); err != nil {
			return 0, false, err
		}
		b.add(") d WHERE d.rid > ?", after)
		b.add(probes.sql.String(), probes.args...)
		b.add(" LIMIT ?)", limit)
	}
	total, err := b.count(ctx, db)
	return total, err == nil, err
}

// indexProbe adds the condition of p on the index row named alias (its rid)
// of a resource of type typ, reading no row of current for the resources
// it reaches, and reports false when p is a _has it does not probe so.
func indexProbe(b *builder, typ string, p fhir.Param, alias string) (bool, error) {
	if p.Has == nil {
		// A plain parameter or a chain probes on the row id alone.
		return true, where(b, nil, alias, typ, p, 0, false)
	}
	hq := p.Has.Query
	if hq.Compartment != nil || len(hq.Params) == 0 || p.Has.Ref == nil {
		return false, nil
	}
	for _, ip := range hq.Params {
		if !plain(ip) {
			return false, nil
		}
	}
	// The id of the row: one seek in current by row id; the rows pointing at
	// it: one range of idx_reference's key.
	b.add(" AND EXISTS (SELECT 1 FROM current hc CROSS JOIN idx_reference hr ON hr.type = ? AND hr.param = ? AND hr.ref_id = hc.id AND hr.ref_type = ? WHERE hc.rid = "+alias+".rid",
		p.Has.Type, p.Has.Ref.Code, typ)
	for _, ip := range hq.Params {
		if err := where(b, nil, "hr", p.Has.Type, ip, 1, false); err != nil {
			return false, err
		}
	}
	b.add(")")
	return true, nil
}
