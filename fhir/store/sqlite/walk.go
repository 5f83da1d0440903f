package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// Plans that stop early. The driving-set plan (query.go) builds every row its
// driving parameter selects before the first page: cheap when that set is small,
// costly for a provider's caseload at a million resources, and a sort on top of
// it sorts every match. A walk instead reads rows in the order the page wants —
// the sort key's index rows, or the type's rows in row id order — probes every
// condition per row, and stops at _count + 1 matches, so its cost depends on how
// many rows it passes over per match, not on how many match in all.
//
// The plan is chosen by cost from the driving parameter's sampled count n: when
// n is small (under sampleLimit) the driving set is built. Otherwise the walk
// runs with a budget of n rows (as many as the driving set would cost); a walk
// that has not filled the page within it hands over to the driving-set plan
// from the position it reached (both plans order by the same keyset, so the
// page is the same), which bounds the worst case to about twice the
// driving-set plan.

// longList is the most values a lone parameter may OR for the plan choice to
// sample it.
const longList = 10

// walkPlan is the shape of the page's plan.
type walkPlan struct {
	walk   bool // walk rather than build the driving set
	budget int  // rows the walk may pass over before it hands over; < 0 unbounded
	// driver, when >= 0, is the parameter whose index rows the walk reads in
	// row id order (rowOrdered) instead of the type's rows; -1 otherwise.
	driver int
	// within, when set, is a JSON array of the only row ids that can match
	// (an intersection, intersect.go): the walk passes over the others
	// without probing them.
	within string
	why    string
}

// choosePlan picks the page's plan for q.
func choosePlan(pl *planner, q *fhir.Query) (walkPlan, error) {
	if q.Compartment != nil {
		return walkPlan{why: "compartment drives"}, nil
	}
	if len(q.Sort) > 0 && !walkable(q.Sort[0]) {
		return walkPlan{why: "sort on a reference: every match sorted"}, nil
	}
	if len(q.Sort) == 0 && len(q.Params) == 0 {
		return walkPlan{why: "type in row id order"}, nil
	}
	if len(q.Params) == 1 && len(q.Sort) == 0 && !negated(q.Params[0]) {
		// One condition and no sort (an NHS number lookup): its index lookup
		// is the plan whatever its size, so sampling it would only add a query.
		return walkPlan{why: "driving set " + name(q.Params[0]) + ", the only condition, not sampled"}, nil
	}
	if len(q.Params) == 1 && len(q.Params[0].Values) > longList {
		// Sampling a long OR list costs as much as building its set (SQLite
		// plans every OR term again): it drives unsampled, as it always did.
		return walkPlan{why: "driving set " + name(q.Params[0]) + ", a list of values, not sampled"}, nil
	}
	d, n, err := pl.driverCount(q.Type, q.Params, true)
	if err != nil {
		return walkPlan{}, err
	}
	if d >= 0 && n < pl.walkFrom {
		return walkPlan{why: fmt.Sprintf("driving set %s, %d rows", name(q.Params[d]), n)}, nil
	}
	if d >= 0 && len(q.Sort) == 0 && rowOrdered(q.Params[d]) {
		// Without _sort the page is in row id order, and this driver's index
		// rows are in row id order already: walking them, probing the other
		// conditions, stops at _count + 1 having read only the rows before
		// the page's end, where the driving set (an IN list) reads them all.
		return walkPlan{walk: true, budget: -1, driver: d}, nil
	}
	budget := max(n, 1)
	if d < 0 {
		budget = -1
	}
	return walkPlan{walk: true, budget: budget, driver: -1}, nil
}

// anyHas reports whether a parameter of ps is a reverse chain (its probe
// joins on the resource's id, not its row id).
func anyHas(ps []fhir.Param) bool {
	for _, p := range ps {
		if p.Has != nil {
			return true
		}
	}
	return false
}

// rowOrdered reports whether p's index rows come in row id order: one exact
// value whose whole index key precedes rid (a typed reference, a system|code
// token), so that a walk can read them as the page's order.
func rowOrdered(p fhir.Param) bool {
	if !plain(p) || p.Modifier != "" || p.Missing != nil || len(p.Values) != 1 {
		return false
	}
	v := p.Values[0]
	switch p.Def.Type {
	case fhir.TypeReference:
		return v.RefType != "" && v.RefID != "" && v.URL == ""
	case fhir.TypeToken:
		return v.HasSystem && v.System != "" && v.Code != ""
	}
	return false
}

// keysetAfter adds the condition that a row comes after the keyset position
// (vals, rid) in the order of keys, with the key columns named col+"0",
// col+"1" … and the row id ridCol: one disjunct per key prefix, so that the
// driving-set plan and the walk continue a page from the same place.
func keysetAfter(b *builder, keys []fhir.SortKey, vals []any, col, ridCol string, rid int64) {
	b.add("(")
	for i := 0; i <= len(vals); i++ {
		if i > 0 {
			b.add(" OR ")
		}
		b.add("(")
		for j := 0; j < i; j++ {
			b.add(col+strconv.Itoa(j)+" = ? AND ", vals[j])
		}
		if i == len(vals) {
			b.add(ridCol+" > ?", rid)
		} else {
			op := " > ?"
			if keys[i].Descending {
				op = " < ?"
			}
			b.add(col+strconv.Itoa(i)+op, vals[i])
		}
		b.add(")")
	}
	b.add(")")
}

// walkable reports whether a sort key's values can be walked in index order
// (references sort by an expression that no index holds).
func walkable(k fhir.SortKey) bool {
	return k.Def.Type != fhir.TypeReference && tableOf(k.Def.Type) != ""
}

// name is a parameter as the plan description shows it.
func name(p fhir.Param) string {
	switch {
	case p.Has != nil:
		return "_has:" + p.Has.Type + ":" + p.Has.Ref.Code
	case len(p.Chain) > 0:
		return p.Def.Code + " (chain)"
	case keyChainOf[p.Def.Code] != "":
		return keyChainOf[p.Def.Code] + " (key)"
	}
	return p.Def.Code
}

// walkColumn is the index column a single sort key walks and its aggregate
// over a resource's values (the one sortKey computes).
func walkColumn(k fhir.SortKey) (col, agg string) {
	agg = "MIN"
	if k.Descending {
		agg = "MAX"
	}
	switch k.Def.Type {
	case fhir.TypeToken:
		col = "code"
	case fhir.TypeString:
		col = "str"
	case fhir.TypeURI:
		col = "uri"
	case fhir.TypeDate:
		col = "lo"
		if k.Descending {
			col = "hi"
		}
	case fhir.TypeNumber, fhir.TypeQuantity:
		col = "num"
	}
	return col, agg
}

// walkPage walks q's page as plan says, appending the matches to res. It
// reports whether the page is complete (res.Next set when there is more); when
// it is not, after is the keyset position the walk reached, from which the
// driving-set plan takes over, and last the cursor of the last match found.
func walkPage(ctx context.Context, db querier, q *fhir.Query, kinds []byte, plan walkPlan, res *store.SearchResult) (done bool, after string, last cursor, walked int, err error) {
	var b builder
	var cond builder
	var others []fhir.Param // the driver's rows are walked: it needs no probe
	for i, p := range q.Params {
		if i != plan.driver {
			others = append(others, p)
		}
	}
	if _, err := conditions(&cond, nil, "c", q.Type, others, 0); err != nil {
		return false, "", last, 0, err
	}
	var vals []any
	var from cursor
	if q.Cursor != "" {
		if from, vals, err = decodeCursor(q.Cursor, kinds); err != nil {
			return false, "", last, 0, err
		}
	}
	if len(q.Sort) > 0 {
		// The first key's index rows in order; later keys are computed per row
		// and order each run of equal first keys (SQLite sorts one run at a
		// time), so the rows come in the page's full order.
		k := q.Sort[0]
		col, agg := walkColumn(k)
		table := tableOf(k.Def.Type)
		// With one sort key and no _has condition (which joins on the
		// resource's id), the index rows are read and ordered alone, with
		// no other column, and only the rows the page reads are probed:
		// their conditions on the index row's rid, and the resource's row
		// for a match. SQLite sorts a whole run of equal sort values (a
		// day's referrals) before it gives the first row of it, and probed
		// every row of the run first when the probes were columns of the
		// sorted rows; it also joined current for every row walked before
		// the within list's check.
		byRid := len(q.Sort) == 1 && !anyHas(others)
		var order builder // the index rows walked, in the page's order
		if byRid {
			var probe builder
			if _, err := conditions(&probe, nil, "w", q.Type, others, 0); err != nil {
				return false, "", last, 0, err
			}
			b.add("SELECT w.rid, CASE WHEN 1"+probe.sql.String(), probe.args...)
			b.add(" AND w.k0 = (SELECT "+agg+"("+col+") FROM "+table+" WHERE rid = w.rid AND type = ? AND param = ?)", q.Type, k.Def.Code)
			// The match's version (NULL: the resource is deleted).
			b.add(" THEN (SELECT c.seq FROM current c WHERE c.rid = w.rid AND c.deleted = 0) END, w.k0, 1")
			order.add("SELECT w.rid AS rid, w." + col + " AS k0")
		} else {
			b.add("SELECT w.rid, c.seq, w." + col + " AS k0")
			for i, k := range q.Sort[1:] {
				expr, _ := sortKey(&b, q.Type, k)
				b.sql.WriteString(", " + expr + " AS k" + strconv.Itoa(i+1))
			}
			// The conditions first: most order fail one, and the check that this
			// index row holds the resource's sort value costs a seek per row.
			b.add(", CASE WHEN 1"+cond.sql.String(), cond.args...)
			b.add(" AND w."+col+" = (SELECT "+agg+"("+col+") FROM "+table+" WHERE rid = w.rid AND type = ? AND param = ?) THEN 1 ELSE 0 END", q.Type, k.Def.Code)
		}
		using := ""
		if k.Def.Type == fhir.TypeDate && k.Descending {
			using = " INDEXED BY idx_date_hi"
		}
		if byRid {
			order.add(" FROM "+table+" w"+using+" WHERE w.type = ? AND w.param = ? AND w.rid > 0", q.Type, k.Def.Code)
		} else {
			order.add(" FROM "+table+" w"+using+" CROSS JOIN current c ON c.rid = w.rid WHERE w.type = ? AND w.param = ? AND w.rid > 0 AND c.deleted = 0", q.Type, k.Def.Code)
		}
		if plan.within != "" {
			order.add(" AND +w.rid IN (SELECT value FROM json_each(?))", plan.within)
		}
		if q.Cursor != "" {
			op := " >= ?"
			if k.Descending {
				op = " <= ?"
			}
			order.add(" AND w."+col+op, vals[0])
			order.add(" AND ")
			keysetAfter(&order, q.Sort, vals, "k", "w.rid", from.RID)
		}
		order.add(" ORDER BY ")
		for i, k := range q.Sort {
			name := "k" + strconv.Itoa(i)
			if i == 0 {
				name = "w." + col
			}
			if k.Descending {
				order.add(name + " DESC, ")
			} else {
				order.add(name + " ASC, ")
			}
		}
		order.add("w.rid ASC")
		if byRid {
			// OFFSET keeps SQLite from flattening the subquery into the
			// probing query (which would probe before sorting again): it
			// runs as a co-routine whose order the probes read in its order.
			b.add(" FROM ("+order.sql.String()+" LIMIT -1 OFFSET 0) w", order.args...)
		} else {
			b.add(order.sql.String(), order.args...)
		}
	} else if plan.driver >= 0 {
		// The driver's index rows (rowOrdered) in row id order. Without a
		// _has condition each row is probed for the others on its row id
		// before its resource's row is looked up: only a match needs its
		// version (most rows walked fail a condition: a provider's people
		// outside the locality). A _has probe joins on the resource's id.
		byRid := !anyHas(others)
		if byRid {
			var wcond builder
			if _, err := conditions(&wcond, nil, "w", q.Type, others, 0); err != nil {
				return false, "", last, 0, err
			}
			b.add("SELECT w.rid, CASE WHEN 1"+wcond.sql.String()+" THEN (SELECT c.seq FROM current c WHERE c.rid = w.rid AND c.deleted = 0) END, NULL, 1", wcond.args...)
		} else {
			b.add("SELECT c.rid, c.seq, NULL, CASE WHEN 1"+cond.sql.String()+" THEN 1 ELSE 0 END", cond.args...)
		}
		b.add(" FROM (")
		if err := lookup(&b, q.Type, q.Params[plan.driver], ""); err != nil {
			return false, "", last, 0, err
		}
		if q.Cursor != "" {
			b.add(" AND rid > ?", from.RID)
		}
		if byRid {
			b.add(" ORDER BY rid) w ORDER BY w.rid ASC")
		} else {
			b.add(" ORDER BY rid) w CROSS JOIN current c ON c.rid = w.rid WHERE c.deleted = 0 ORDER BY w.rid ASC")
		}
	} else {
		b.add("SELECT c.rid, c.seq, NULL, CASE WHEN 1"+cond.sql.String()+" THEN 1 ELSE 0 END", cond.args...)
		b.add(" FROM current c INDEXED BY current_type WHERE c.type = ? AND c.deleted = 0 AND c.rid > 0", q.Type)
		if q.Cursor != "" {
			b.add(" AND c.rid > ?", from.RID)
		}
		b.add(" ORDER BY c.rid ASC")
	}
	rows, err := db.QueryContext(ctx, b.sql.String(), b.args...)
	if err != nil {
		return false, "", last, 0, fhir.InternalError("search", err)
	}
	type hit struct {
		seq int64
		cur cursor
	}
	var hits []hit
	var at cursor // the last row walked
	prev := int64(-1)
	exhausted := true
	for rows.Next() {
		var rid int64
		var seq sql.NullInt64 // NULL: no match (a driver walk looks up only its matches' versions)
		keys := make([]any, len(kinds))
		var ok int
		dest := []any{&rid, &seq}
		for i := range keys {
			dest = append(dest, &keys[i])
		}
		if len(kinds) == 0 {
			var null any
			dest = append(dest, &null)
		}
		if err := rows.Scan(append(dest, &ok)...); err != nil {
			rows.Close()
			return false, "", last, walked, fhir.InternalError("search", err)
		}
		at = cursor{RID: rid, Keys: make([]string, len(keys))}
		for i, k := range keys {
			at.Keys[i] = keyString(kinds[i], k)
		}
		walked++
		if ok == 1 && seq.Valid && rid != prev {
			hits = append(hits, hit{seq.Int64, at})
			if len(hits) > q.Count {
				exhausted = false
				break
			}
		}
		prev = rid
		if plan.budget >= 0 && (walked >= plan.budget || lowYield(walked, len(hits), q.Count, plan.budget)) {
			exhausted = false
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, "", last, walked, fhir.InternalError("search", err)
	}
	done = len(hits) > q.Count || (exhausted && len(q.Sort) == 0)
	if len(hits) > q.Count {
		hits = hits[:q.Count]
		res.Next = encodeCursor(hits[len(hits)-1].cur)
	}
	if err := fetchBodies(ctx, db, q.Type, hits2seqs(hits, func(h hit) int64 { return h.seq }), res); err != nil {
		return false, "", last, walked, err
	}
	if len(hits) > 0 {
		last = hits[len(hits)-1].cur
	}
	if done {
		return true, "", last, walked, nil
	}
	if walked == 0 {
		return false, q.Cursor, last, 0, nil
	}
	return false, encodeCursor(at), last, walked, nil
}

func hits2seqs[T any](hits []T, seq func(T) int64) []int64 {
	out := make([]int64, len(hits))
	for i, h := range hits {
		out[i] = seq(h)
	}
	return out
}

// fetchBodies appends the versions of seqs, in that order, to res.Matches.
func fetchBodies(ctx context.Context, db querier, typ string, seqs []int64, res *store.SearchResult) error {
	if len(seqs) == 0 {
		return nil
	}
	args := make([]any, len(seqs))
	for i, s := range seqs {
		args[i] = s
	}
	rows, err := db.QueryContext(ctx, "SELECT seq, id, vid, ts, method, body FROM versions WHERE seq IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(seqs)), ", ")+")", args...)
	if err != nil {
		return fhir.InternalError("search", err)
	}
	defer rows.Close()
	found := make(map[int64]store.Version, len(seqs))
	for rows.Next() {
		var seq, ts int64
		v := store.Version{Type: typ}
		if err := rows.Scan(&seq, &v.ID, &v.VersionID, &ts, &v.Method, &v.Body); err != nil {
			return fhir.InternalError("search", err)
		}
		v.LastUpdated = time.Unix(0, ts).UTC()
		found[seq] = v
	}
	if err := rows.Err(); err != nil {
		return fhir.InternalError("search", err)
	}
	for _, s := range seqs {
		v, ok := found[s]
		if !ok {
			return fhir.InternalError("search", fmt.Errorf("version %d vanished during the search", s))
		}
		res.Matches = append(res.Matches, v)
	}
	return nil
}

// yieldCheckFrom is the fewest rows a walk passes before lowYield judges it.
const yieldCheckFrom = 16

// lowYield reports whether a walk that has passed walked rows and found hits
// matches should hand over now: past an eighth of its budget, at the rate it
// has found matches so far (counting one more, so that a walk that has found
// none is judged too), it would spend the whole budget before the page's
// count + 1 matches. Handing over early leaves the driving set to do what it
// would have done anyway, without first walking the whole budget for nothing.
func lowYield(walked, hits, count, budget int) bool {
	if walked < yieldCheckFrom || walked < budget/8 {
		return false
	}
	return walked*(count+1) > budget*(hits+1)
}

// describe is the plan's one-line description (the X-Query-Plan header).
func (p walkPlan) describe(q *fhir.Query, walked int, done bool) string {
	if !p.walk {
		return "drive: " + p.why
	}
	what := "type " + q.Type + " in row id order"
	if p.driver >= 0 {
		what = "index rows of " + name(q.Params[p.driver]) + " in row id order"
	}
	if len(q.Sort) > 0 {
		what = "index of _sort " + q.Sort[0].Def.Code
		if q.Sort[0].Descending {
			what += " descending"
		}
		if len(q.Sort) > 1 {
			what += fmt.Sprintf(" (then %d more keys per run of equal values)", len(q.Sort)-1)
		}
	}
	budget := "unbounded"
	if p.budget >= 0 {
		budget = strconv.Itoa(p.budget)
	}
	s := fmt.Sprintf("walk: %s, %d rows walked of a budget of %s", what, walked, budget)
	if !done {
		s += ", then drive from there"
	}
	return s
}
