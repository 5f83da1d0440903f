package mongo

import (
	"context"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"crs/fhir"
	"crs/fhir/store"
)

// Projections: a page's documents leave the derived fields on the server;
// the documents a chain, a reverse chain or a count reads leave the body too.
var (
	noDerived = bson.D{{Key: "keys", Value: 0}, {Key: "so", Value: 0}, {Key: "dl", Value: 0}, {Key: "dh", Value: 0}, {Key: "nv", Value: 0}, {Key: "st", Value: 0}}
	noBody    = append(append(bson.D{}, noDerived...), bson.E{Key: "body", Value: 0})
)

// DocsReturned is the number of resource documents the server has returned
// to this store's searches since it opened (a figure for benchmarks and
// operators: a search that is exact on the server returns its page and little
// more).
func (s *Store) DocsReturned() int64 { return s.returned.Load() }

// each runs a find on resources and calls fn for every document until fn
// returns false.
func (r reader) each(ctx context.Context, filter bson.D, opts *options.FindOptionsBuilder, fn func(resourceDoc) bool) error {
	cur, err := r.s.res.Find(r.c(ctx), filter, opts)
	if err != nil {
		return internal("search", err)
	}
	defer cur.Close(context.WithoutCancel(r.c(ctx)))
	for cur.Next(r.c(ctx)) {
		var d resourceDoc
		if err := cur.Decode(&d); err != nil {
			return internal("search", err)
		}
		r.s.returned.Add(1)
		if !fn(d) {
			return nil
		}
	}
	return internal("search", cur.Err())
}

// comment names a search's finds and counts on the server ("crs search
// Patient"), so that an operator finds them in MongoDB's profiler
// (system.profile: docsExamined, keysExamined, nreturned, planSummary) and in
// currentOp.
func (pl *plan) comment() string { return "crs search " + pl.q.Type }

// with is the plan's filter with more clauses.
func (pl *plan) with(extra ...bson.D) bson.D {
	if len(extra) == 0 {
		return pl.filter
	}
	out := append(bson.D{}, pl.filter[:len(pl.filter)-1]...)
	and := append(bson.A{}, pl.filter[len(pl.filter)-1].Value.(bson.A)...)
	for _, e := range extra {
		and = append(and, e)
	}
	return append(out, bson.E{Key: "$and", Value: and})
}

// matches returns every match of q (without bodies when lean).
func (r reader) matches(ctx context.Context, q *fhir.Query, lean bool) ([]resourceDoc, error) {
	pl, err := r.plan(ctx, q)
	if err != nil {
		return nil, err
	}
	proj := noDerived
	if lean {
		proj = noBody
	}
	var out []resourceDoc
	err = r.each(ctx, pl.filter, options.Find().SetProjection(proj).SetComment(pl.comment()), func(d resourceDoc) bool {
		if pl.exact || pl.keep(d) {
			out = append(out, d)
		}
		return true
	})
	return out, err
}

// matchIDs returns the ids of q's matches.
func (r reader) matchIDs(ctx context.Context, q *fhir.Query) (map[string]bool, error) {
	docs, err := r.matches(ctx, q, true)
	if err != nil {
		return nil, err
	}
	ids := make(map[string]bool, len(docs))
	for _, d := range docs {
		ids[d.LID] = true
	}
	return ids, nil
}

// boundedTotal applies a query's total limit to a count.
func boundedTotal(q *fhir.Query, n int) int {
	if q.TotalLimit > 0 && n >= q.TotalLimit {
		return -1
	}
	return n
}

func (r reader) search(ctx context.Context, q *fhir.Query) (*store.SearchResult, error) {
	pl, err := r.plan(ctx, q)
	if err != nil {
		return nil, err
	}
	if q.Count > 0 && (len(q.Sort) > 1 || len(q.Sort) == 1 && !fieldSafe(q.Sort[0].Def.Code)) {
		return r.sortInGo(ctx, pl)
	}
	res := &store.SearchResult{Total: -1}
	if q.Count > 0 {
		page, err := r.page(ctx, pl)
		if err != nil {
			return nil, err
		}
		for i, d := range page {
			if i == q.Count {
				res.Next = encodeCursor(sortKeys(page[i-1], q.Sort), page[i-1].Row)
				break
			}
			res.Matches = append(res.Matches, toVersion(d))
		}
		if q.Total != fhir.TotalNone && q.Cursor == "" && res.Next == "" {
			// The first page holds every match: it is the count.
			res.Total = boundedTotal(q, len(res.Matches))
			return res, nil
		}
	}
	if q.Total != fhir.TotalNone {
		if res.Total, err = r.count(ctx, pl); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func sortKeys(d resourceDoc, keys []fhir.SortKey) []sortValue {
	out := make([]sortValue, len(keys))
	for j, k := range keys {
		out[j] = sortKeyOf(d.Index, k)
	}
	return out
}

// count counts the matches up to the query's total limit: on the server when
// the plan is exact, in Go over the server's candidates otherwise.
func (r reader) count(ctx context.Context, pl *plan) (int, error) {
	q := pl.q
	if pl.exact {
		opts := options.Count().SetComment(pl.comment())
		if q.TotalLimit > 0 {
			opts.SetLimit(int64(q.TotalLimit))
		}
		n, err := r.s.res.CountDocuments(r.c(ctx), pl.filter, opts)
		if err != nil {
			return 0, internal("search", err)
		}
		return boundedTotal(q, int(n)), nil
	}
	n := 0
	err := r.each(ctx, pl.filter, options.Find().SetProjection(noBody).SetComment(pl.comment()), func(d resourceDoc) bool {
		if pl.keep(d) {
			n++
		}
		return q.TotalLimit <= 0 || n < q.TotalLimit
	})
	return boundedTotal(q, n), err
}

// phase is one server-side find of a page: its extra clauses and its order.
type phase struct {
	extra []bson.D
	sort  bson.D
}

// phases are the finds that give a page in order, from the cursor on. With
// no _sort the order is the row (stable per resource). With one sort key the
// order is its stored sort key ("so.<param>.a" ascending, ".d" descending)
// then the row, in two finds: first the resources with a value, then those
// without one (which sort last either way, by row, as in SQLite), so that
// the order never depends on where a server puts missing fields.
func (pl *plan) phases(c *decoded) []phase {
	q := pl.q
	row := func(after int64) []bson.D {
		if after == 0 {
			return nil
		}
		return []bson.D{cmp("row", "$gt", after)}
	}
	after := int64(0)
	if c != nil {
		after = c.row
	}
	byRow := bson.D{{Key: "row", Value: 1}}
	if len(q.Sort) == 0 {
		return []phase{{extra: row(after), sort: byRow}}
	}
	k := q.Sort[0]
	f, dir, op := "so."+k.Def.Code+".a", 1, "$gt"
	if k.Descending {
		f, dir, op = "so."+k.Def.Code+".d", -1, "$lt"
	}
	none := sortKeyOf(nil, k)
	without := phase{extra: []bson.D{{{Key: "$or", Value: bson.A{cmp(f, "$exists", false), bson.D{{Key: f, Value: none.native()}}}}}}, sort: byRow}
	with := phase{extra: []bson.D{{{Key: f, Value: bson.D{{Key: "$exists", Value: true}, {Key: "$ne", Value: none.native()}}}}},
		sort: bson.D{{Key: f, Value: dir}, {Key: "row", Value: 1}}}
	switch {
	case c == nil:
	case compareSort(c.keys[0], none) == 0:
		without.extra = append(without.extra, row(after)...)
		return []phase{without}
	default:
		v := c.keys[0].native()
		with.extra = append(with.extra, bson.D{{Key: "$or", Value: bson.A{
			cmp(f, op, v),
			bson.D{{Key: f, Value: v}, {Key: "row", Value: bson.D{{Key: "$gt", Value: after}}}},
		}}})
	}
	return []phase{with, without}
}

// page returns up to _count+1 matches from the cursor on, in order: the
// server sorts, and limits when the plan is exact; otherwise its candidates
// stream in order through the Go check until enough are found.
func (r reader) page(ctx context.Context, pl *plan) ([]resourceDoc, error) {
	q := pl.q
	var c *decoded
	if q.Cursor != "" {
		d, err := decodeCursor(q.Cursor, q.Sort)
		if err != nil {
			return nil, err
		}
		c = &d
	}
	need := q.Count + 1
	var out []resourceDoc
	for _, ph := range pl.phases(c) {
		opts := options.Find().SetSort(ph.sort).SetProjection(noDerived).SetComment(pl.comment())
		if pl.exact {
			opts.SetLimit(int64(need - len(out)))
		} else {
			opts.SetBatchSize(int32(max(2*need, 101)))
		}
		err := r.each(ctx, pl.with(ph.extra...), opts, func(d resourceDoc) bool {
			if pl.exact || pl.keep(d) {
				out = append(out, d)
			}
			return len(out) < need
		})
		if err != nil {
			return nil, err
		}
		if len(out) >= need {
			break
		}
	}
	return out, nil
}

// sortInGo answers a search sorted on several keys: every match is read and
// sorted in Go.
func (r reader) sortInGo(ctx context.Context, pl *plan) (*store.SearchResult, error) {
	q := pl.q
	var docs []resourceDoc
	err := r.each(ctx, pl.filter, options.Find().SetProjection(noDerived).SetComment(pl.comment()), func(d resourceDoc) bool {
		if pl.exact || pl.keep(d) {
			docs = append(docs, d)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	res := &store.SearchResult{Total: -1}
	if q.Total != fhir.TotalNone {
		res.Total = boundedTotal(q, len(docs))
	}
	type row struct {
		d    resourceDoc
		keys []sortValue
	}
	rows := make([]row, len(docs))
	for i, d := range docs {
		rows[i] = row{d: d, keys: sortKeys(d, q.Sort)}
	}
	less := func(a, b []sortValue, ra, rb int64) bool {
		for j, k := range q.Sort {
			c := compareSort(a[j], b[j])
			if k.Descending {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return ra < rb
	}
	sort.Slice(rows, func(i, j int) bool { return less(rows[i].keys, rows[j].keys, rows[i].d.Row, rows[j].d.Row) })
	start := 0
	if q.Cursor != "" {
		c, err := decodeCursor(q.Cursor, q.Sort)
		if err != nil {
			return nil, err
		}
		start = sort.Search(len(rows), func(i int) bool { return less(c.keys, rows[i].keys, c.row, rows[i].d.Row) })
	}
	for i := start; i < len(rows); i++ {
		if len(res.Matches) == q.Count {
			last := rows[i-1]
			res.Next = encodeCursor(last.keys, last.d.Row)
			break
		}
		res.Matches = append(res.Matches, toVersion(rows[i].d))
	}
	return res, nil
}
