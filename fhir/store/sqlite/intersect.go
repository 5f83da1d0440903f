package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"crs/fhir"
	"crs/fhir/store"
)

// Two large sets whose intersection is small. "A provider's referrals
// awaiting a start" (ServiceRequest?status=active&performer=…) is two exact
// lookups of thousands of rows each at a million resources, and for most
// providers none of them is in both. The walk then passes its whole budget
// for nothing, and the driving set probes every one of the provider's
// referrals for its status, one seek each, to prove that there is none. The
// two lookups' own index rows, read in order and intersected (SQLite's
// INTERSECT, a sequential read of each), cost a tenth of that, and say
// exactly which rows can match: when they are fewer than a driving set worth
// walking, intersectPage builds the page from them — every condition probed
// on each, sorted, cut — and counts Bundle.total from the same rows.

// intersectRows bounds the index rows an intersection reads: the two sets'
// sampled counts together (the second sample counts up to this, so both are
// known exactly below it).
const intersectRows = sampleLimit * bigSample

// intersectPage answers q's page, and its total, from the intersection of the
// driving parameter's index rows with those of the next most selective plain
// parameter, when the driving set is large enough to be walked (walkFrom rows
// or more) and the intersection is smaller than that. It reports false, having
// changed nothing in res, when it does not apply; the plan choice then goes on
// as before (the samples it took are the planner's, remembered).
func intersectPage(ctx context.Context, db querier, pl *planner, q *fhir.Query, kinds []byte, res *store.SearchResult) (bool, error) {
	if q.Compartment != nil || len(q.Params) < 2 {
		return false, nil
	}
	d, n, err := pl.driverCount(q.Type, q.Params, true)
	if err != nil || d < 0 || n < pl.walkFrom || n >= intersectRows || !plain(q.Params[d]) || negated(q.Params[d]) {
		return false, err
	}
	// The partner: the smallest other plain lookup whose count is known
	// exactly from the plan's samples. A sorted page may count one further,
	// up to four times the driver (a sequential read that costs less than
	// the first eighth of a walk that probes each row); an unsorted page
	// does not, since its walk of the driver's rows stops early when the two
	// meet often.
	e, m := -1, min(intersectRows-n, 4*n)
	for i, p := range q.Params {
		if i == d || !plain(p) || negated(p) {
			continue
		}
		c, ok := pl.known(q.Params, i)
		if !ok && len(q.Sort) > 0 {
			if c, err = pl.rankAt(q.Type, q.Params, i, m+1); err != nil {
				return false, err
			}
			ok = c <= m
		}
		if ok && c <= m {
			e, m = i, c
		}
	}
	if e < 0 {
		return false, nil
	}
	rids, err := intersection(ctx, db, q, d, e)
	if err != nil {
		return false, err
	}
	plan := fmt.Sprintf("drive: intersection of %s (%d rows) and %s (%d rows), %d rows", name(q.Params[d]), n, name(q.Params[e]), m, len(rids))
	if len(rids) >= pl.walkFrom {
		// Too many to probe each: a sorted page walks its sort index
		// passing over every row not in the intersection; an unsorted one
		// keeps its plan. When d and e are the only conditions, the
		// intersection is the matches, so it gives Bundle.total too.
		// Every index row belongs to the live current version of a resource
		// of its type (mergetotal.go), so the intersection's rows are the
		// matches with no lookup of each (500 seeks for a total limit of
		// 500 cost a fifth of the page).
		if len(q.Params) == 2 {
			pl.total, pl.counted = len(rids), true
		}
		if len(q.Sort) == 0 || !walkable(q.Sort[0]) {
			return false, nil
		}
		list, err := json.Marshal(rids)
		if err != nil {
			return false, fhir.InternalError("search", err)
		}
		w := walkPlan{walk: true, budget: -1, driver: -1, within: string(list)}
		done, _, _, walked, err := walkPage(ctx, db, q, kinds, w, res)
		if err != nil {
			return false, err
		}
		if done {
			res.Plan = plan + ", " + strings.TrimPrefix(w.describe(q, walked, true), "walk: ") + " passing over the rest"
			return true, nil
		}
		// The sort index ran out before the page filled (the resources
		// without a sort value sort last): every candidate then.
		res.Matches, res.Next = res.Matches[:0], ""
	}
	total, err := candidatePage(ctx, db, q, kinds, rids, res)
	if err != nil {
		return false, err
	}
	pl.total, pl.counted = total, true
	res.Plan = plan
	return true, nil
}

// known is params[i]'s row count when a sample counted it exactly (below its
// limit).
func (pl *planner) known(params []fhir.Param, i int) (int, bool) {
	for k, n := range pl.memo {
		if k.p == &params[i] && n < k.limit {
			return n, true
		}
	}
	return 0, false
}

// intersection reads the row ids in both q.Params[d]'s and q.Params[e]'s
// index rows, in row id order. When both are one run of their index in row
// id order (runOf: a typed reference, a code whose rows all have one
// system), SQLite merges the two runs as it reads them; otherwise it builds
// a temporary b-tree of one set, probes it with the other, and sorts the
// result.
func intersection(ctx context.Context, db querier, q *fhir.Query, d, e int) ([]int64, error) {
	var b builder
	merged, err := mergedRuns(ctx, db, &b, q, d, e)
	if err != nil {
		return nil, err
	}
	if !merged {
		b = builder{}
		b.add("SELECT rid FROM (")
		if err := lookup(&b, q.Type, q.Params[d], ""); err != nil {
			return nil, err
		}
		b.add(" INTERSECT ")
		if err := lookup(&b, q.Type, q.Params[e], ""); err != nil {
			return nil, err
		}
		b.add(") ORDER BY rid")
	}
	rows, err := db.QueryContext(ctx, b.sql.String(), b.args...)
	if err != nil {
		return nil, fhir.InternalError("search", err)
	}
	defer rows.Close()
	var rids []int64
	for rows.Next() {
		var rid int64
		if err := rows.Scan(&rid); err != nil {
			return nil, fhir.InternalError("search", err)
		}
		rids = append(rids, rid)
	}
	if err := rows.Err(); err != nil {
		return nil, fhir.InternalError("search", err)
	}
	return rids, nil
}

// mergedRuns adds to b the merge of q.Params[d]'s and q.Params[e]'s index
// runs in row id order, and reports false when either is not one run.
func mergedRuns(ctx context.Context, db querier, b *builder, q *fhir.Query, d, e int) (bool, error) {
	for i, p := range []int{d, e} {
		if i > 0 {
			b.add(" INTERSECT ")
		}
		ok, err := runOf(ctx, db, b, q.Type, q.Params[p], 0)
		if err != nil || !ok {
			return false, err
		}
	}
	b.add(" ORDER BY 1")
	return true, nil
}

// candidatePage fills res with q's page from the rows rids (every match among
// them): each probed for every condition, with its sort keys, in the page's
// order; the rows up to q.Cursor are passed over. It returns how many of the
// rows match (the total: the rows hold every match).
func candidatePage(ctx context.Context, db querier, q *fhir.Query, kinds []byte, rids []int64, res *store.SearchResult) (int, error) {
	if len(rids) == 0 {
		return 0, nil
	}
	list, err := json.Marshal(rids)
	if err != nil {
		return 0, fhir.InternalError("search", err)
	}
	var inner builder
	inner.add("SELECT c.rid, c.seq")
	for i, k := range q.Sort {
		expr, _ := sortKey(&inner, q.Type, k)
		inner.sql.WriteString(", " + expr + " AS k" + strconv.Itoa(i))
	}
	inner.add(" FROM current c WHERE c.rid IN (SELECT value FROM json_each(?)) AND +c.type = ? AND c.deleted = 0", string(list), q.Type)
	if _, err := conditions(&inner, nil, "c", q.Type, q.Params, 0); err != nil {
		return 0, err
	}
	var b builder
	b.add("SELECT m.rid, m.seq")
	for i := range q.Sort {
		b.add(", m.k" + strconv.Itoa(i))
	}
	// Whether the row comes after the cursor: the rows before it are
	// matches too (the total), not the page's.
	if q.Cursor != "" {
		from, vals, err := decodeCursor(q.Cursor, kinds)
		if err != nil {
			return 0, err
		}
		b.add(", CASE WHEN ")
		keysetAfter(&b, q.Sort, vals, "m.k", "m.rid", from.RID)
		b.add(" THEN 1 ELSE 0 END")
	} else {
		b.add(", 1")
	}
	b.add(" FROM ("+inner.sql.String()+") m ORDER BY ", inner.args...)
	for i, k := range q.Sort {
		dir := " ASC, "
		if k.Descending {
			dir = " DESC, "
		}
		b.add("m.k" + strconv.Itoa(i) + dir)
	}
	b.add("m.rid ASC")
	rows, err := db.QueryContext(ctx, b.sql.String(), b.args...)
	if err != nil {
		return 0, fhir.InternalError("search", err)
	}
	type hit struct {
		seq int64
		cur cursor
	}
	var hits []hit
	total := 0
	for rows.Next() {
		var rid, seq int64
		var after int
		keys := make([]any, len(kinds))
		dest := []any{&rid, &seq}
		for i := range keys {
			dest = append(dest, &keys[i])
		}
		if err := rows.Scan(append(dest, &after)...); err != nil {
			rows.Close()
			return 0, fhir.InternalError("search", err)
		}
		total++
		if after == 0 || len(hits) > q.Count {
			continue
		}
		c := cursor{RID: rid, Keys: make([]string, len(keys))}
		for i, k := range keys {
			c.Keys[i] = keyString(kinds[i], k)
		}
		hits = append(hits, hit{seq, c})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fhir.InternalError("search", err)
	}
	if len(hits) > q.Count {
		hits = hits[:q.Count]
		res.Next = encodeCursor(hits[len(hits)-1].cur)
	}
	if err := fetchBodies(ctx, db, q.Type, hits2seqs(hits, func(h hit) int64 { return h.seq }), res); err != nil {
		return 0, err
	}
	return total, nil
}
