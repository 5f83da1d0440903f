package sqlite

import (
	"context"

	"crs/fhir"
)

// flushFor inserts the buffered search values a search of q inside the
// transaction can read, and leaves the rest buffered for the batch's one
// flush before COMMIT. A conditional create's search (an acute referral's
// Patient by NHS number) then inserts a few token rows of one type, rather
// than every value the batch's earlier requests wrote, each table in
// statements of its own; a query that reaches other types or tables
// (chains, _has, includes, a compartment, parameters without a table of
// their own) flushes everything.
func (t *txn) flushFor(ctx context.Context, q *fhir.Query) error {
	tables, ok := tablesRead(q)
	if !ok {
		return t.flush(ctx)
	}
	for table := range tables {
		var mine, rest [][]any
		for _, r := range t.pending[table] {
			if r[1] == q.Type { // the rows' type column
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

// tablesRead names the index tables a search of q reads, all of them rows of
// q.Type; ok is false when the search may read more than that.
func tablesRead(q *fhir.Query) (map[string]bool, bool) {
	if q.Type == "" || q.Compartment != nil || len(q.Include) > 0 {
		return nil, false
	}
	tables := map[string]bool{}
	for _, p := range q.Params {
		if p.Def == nil || len(p.Chain) > 0 || p.Has != nil || tableOf(p.Def.Type) == "" {
			return nil, false
		}
		tables[tableOf(p.Def.Type)] = true
	}
	for _, s := range q.Sort {
		if s.Def == nil || tableOf(s.Def.Type) == "" {
			return nil, false
		}
		tables[tableOf(s.Def.Type)] = true
	}
	return tables, true
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
