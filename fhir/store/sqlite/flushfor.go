package sqlite

import (
	"context"

	"crs/fhir"
)

// flushFor inserts the buffered search values a search of q inside the
// transaction can read, and leaves the rest buffered for the batch's one
// flush before COMMIT. Every index row a search reads is named by its table,
// type and param (the SQL asks "type = ? AND param = ?" at every level), so
// only the buffered rows of those are inserted: a conditional create's
// search (an acute referral's Patient by NHS number) inserts a few token
// rows, and a policy check inside a write (the outbox's judgement of a
// CarePlan against a care provider's conditions, a bounded caller's "as
// written" check: _id, a chain on subject, a _has through the referrals)
// inserts the written resource's _id and subject rows rather than all its
// values in a statement per table. rq is q as the store runs it (keys.rewrite:
// a chain a denormalised key holds reads the key's rows). A query that
// reaches rows not named so (a compartment, includes), or one with chains
// while keys are stale (their rows are recomputed by flush), flushes
// everything.
func (t *txn) flushFor(ctx context.Context, q, rq *fhir.Query) error {
	if len(t.pending) == 0 && t.dirt.empty() {
		return nil
	}
	read := rowsRead{}
	if !read.add(rq) || (!t.dirt.empty() && chained(q)) {
		return t.flush(ctx)
	}
	for table, rows := range t.pending {
		var mine, rest [][]any
		for _, r := range rows {
			typ, _ := r[1].(string)   // the rows' type column
			param, _ := r[2].(string) // and param column
			if read[rowsOf{table, typ, param}] {
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

// rowsOf names the index rows of one table, type and param.
type rowsOf struct{ table, typ, param string }

// rowsRead is the index rows a search reads.
type rowsRead map[rowsOf]bool

// add notes the rows a search of q reads, with those of its chains and
// reverse chains; false when it may read others too.
func (r rowsRead) add(q *fhir.Query) bool {
	if q == nil || q.Type == "" || q.Compartment != nil || len(q.Include) > 0 {
		return false
	}
	for _, p := range q.Params {
		switch {
		case p.Has != nil:
			if p.Has.Ref == nil || p.Has.Query == nil || p.Has.Query.Type != p.Has.Type {
				return false
			}
			r[rowsOf{"idx_reference", p.Has.Type, p.Has.Ref.Code}] = true
			if !r.add(p.Has.Query) {
				return false
			}
		case len(p.Chain) > 0:
			if p.Def == nil {
				return false
			}
			r[rowsOf{"idx_reference", q.Type, p.Def.Code}] = true
			for _, c := range p.Chain {
				if !r.add(c) {
					return false
				}
			}
		default:
			if p.Def == nil || tableOf(p.Def.Type) == "" {
				return false
			}
			param := p.Def.Code
			if p.Modifier == "of-type" {
				param += ":of-type" // the rows extraction keeps for :of-type
			}
			r[rowsOf{tableOf(p.Def.Type), q.Type, param}] = true
		}
	}
	for _, s := range q.Sort {
		if s.Def == nil || tableOf(s.Def.Type) == "" {
			return false
		}
		r[rowsOf{tableOf(s.Def.Type), q.Type, s.Def.Code}] = true
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
