package sqlite

import (
	"context"

	"crs/fhir"
)

// flushFor inserts the buffered search values a search of q inside the
// transaction can read, and leaves the rest buffered for the batch's one
// flush before COMMIT (rq is q as the store runs it, keys.rewrite: a chain a
// denormalised key holds reads the key's rows). A search of one type's own
// parameters (a conditional create's search: an acute referral's Patient by
// NHS number) inserts the rows of that type in the tables it reads, rather
// than every value the batch's earlier requests wrote. A search with chains
// or reverse chains (a policy check inside a write: a bounded caller's "as
// written" check, the outbox's judgement of a CarePlan against a care
// provider's conditions, _id and a chain on subject to a _has through the
// referrals) inserts every buffered row of the tables it reads (there,
// idx_token and idx_reference) in one statement each, and leaves the others
// (dates, strings, numbers, URIs) to the batch's flush, instead of all six
// tables in statements of their own at every such check of a batch. A query
// that reaches other rows (a compartment, includes), or chains while the
// keys are stale (flush recomputes them from every row), flushes everything.
func (t *txn) flushFor(ctx context.Context, q, rq *fhir.Query) error {
	if len(t.pending) == 0 && t.dirt.empty() {
		return nil
	}
	tables := map[string]bool{}
	chain := chained(q)
	if !tablesRead(rq, tables) || (chain && !t.dirt.empty()) {
		return t.flush(ctx)
	}
	for table := range tables {
		var mine, rest [][]any
		for _, r := range t.pending[table] {
			if chain || r[1] == q.Type { // the rows' type column
				mine = append(mine, r)
			} else {
				rest = append(rest, r)
			}
		}
		if len(mine) == 0 {
			continue
		}
		if err := t.insertRows(ctx, table, mine); err != nil {
			return err
		}
		if len(rest) == 0 {
			delete(t.pending, table)
		} else {
			t.pending[table] = rest
		}
	}
	return nil
}

// tablesRead adds to tables the index tables a search of q reads, with
// those its chains and reverse chains read; false when it may read other
// rows too.
func tablesRead(q *fhir.Query, tables map[string]bool) bool {
	if q == nil || q.Type == "" || q.Compartment != nil || len(q.Include) > 0 {
		return false
	}
	for _, p := range q.Params {
		switch {
		case p.Has != nil:
			if p.Has.Ref == nil || p.Has.Query == nil || !tablesRead(p.Has.Query, tables) {
				return false
			}
			tables["idx_reference"] = true
		case len(p.Chain) > 0:
			if p.Def == nil {
				return false
			}
			tables["idx_reference"] = true
			for _, c := range p.Chain {
				if !tablesRead(c, tables) {
					return false
				}
			}
		default:
			if p.Def == nil || tableOf(p.Def.Type) == "" {
				return false
			}
			tables[tableOf(p.Def.Type)] = true
		}
	}
	for _, s := range q.Sort {
		if s.Def == nil || tableOf(s.Def.Type) == "" {
			return false
		}
		tables[tableOf(s.Def.Type)] = true
	}
	return true
}

// chained reports whether q has a chain or a reverse chain.
func chained(q *fhir.Query) bool {
	for _, p := range q.Params {
		if len(p.Chain) > 0 || p.Has != nil {
			return true
		}
	}
	return false
}

// insertRows inserts rows into table with multi-row INSERTs of at most
// maxRowsPerInsert rows.
func (t *txn) insertRows(ctx context.Context, table string, all [][]any) error {
	for len(all) > 0 {
		n := min(len(all), maxRowsPerInsert)
		st, err := t.stmts.insertRows(ctx, table, n)
		if err != nil {
			return fhir.InternalError("index", err)
		}
		args := make([]any, 0, n*indexColumns[table])
		for _, r := range all[:n] {
			args = append(args, r...)
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fhir.InternalError("index", err)
		}
		all = all[n:]
	}
	return nil
}

// beforeReplace readies the index tables for the replacement of resource
// rid's search values (Put of a later version deletes them by rid). The
// values buffered for rid would be deleted as soon as inserted, so they are
// dropped; the rest of the batch stays buffered for its one flush, rather than
// going in as the small statements a flush at every update makes. Only when
// a denormalised key reads rid's values before they go (keysBefore: a key
// target, or a resource a reverse key's carriers point to) does it flush
// everything first, as before.
func (t *txn) beforeReplace(ctx context.Context, typ string, rid int64) error {
	for _, k := range t.keys {
		if k.has == typ || (k.has == "" && k.target == typ) {
			return t.flush(ctx)
		}
	}
	for table, rows := range t.pending {
		kept := rows[:0]
		for _, r := range rows {
			if r[0] != rid { // the rows' rid column
				kept = append(kept, r)
			}
		}
		clear(rows[len(kept):]) // let the dropped rows' values go
		t.pending[table] = kept
	}
	return nil
}
