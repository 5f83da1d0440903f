package sqlite

import (
	"context"
	"database/sql"
	"strconv"
	"strings"

	"crs/fhir"
	"crs/fhir/store"
)

// maxFirstsPerInsert bounds the rows of one multi-row INSERT of PutFirsts
// (7 values a versions row: 448 bound values).
const maxFirstsPerInsert = 64

// PutFirsts stores the first versions of new resources, as Put would one
// after the other, with one multi-row INSERT into versions and one into
// current per maxFirstsPerInsert of them instead of two statements each:
// the audit materialiser stores its batches of AuditEvents (written once,
// never changed) this way. Every version must be a version 1 that is not a
// deletion; otherwise, or when any of them exists already (the INSERT fails
// whole on the unique key and leaves nothing), they are stored by Put one
// by one, which reports the conflict as Put does. index[i] is the search
// values of vs[i].
func (t *txn) PutFirsts(ctx context.Context, vs []store.Version, index [][]fhir.IndexValue) error {
	for len(vs) > 0 {
		n := min(len(vs), maxFirstsPerInsert)
		if err := t.putFirsts(ctx, vs[:n], index[:n]); err != nil {
			return err
		}
		vs, index = vs[n:], index[n:]
	}
	return nil
}

func (t *txn) putFirsts(ctx context.Context, vs []store.Version, index [][]fhir.IndexValue) error {
	onebyone := func() error {
		for i, v := range vs {
			if err := t.Put(ctx, v, index[i]); err != nil {
				return err
			}
		}
		return nil
	}
	for _, v := range vs {
		if v.VersionID != 1 || v.Deleted {
			return onebyone()
		}
	}
	n := len(vs)
	ins, err := t.stmts.insertFirsts(ctx, "versions", n)
	if err != nil {
		return fhir.InternalError("put", err)
	}
	args := make([]any, 0, 7*n)
	for _, v := range vs {
		args = append(args, v.Type, v.ID, 1, v.LastUpdated.UnixNano(), 0, v.Method, v.Body)
	}
	res, err := ins.ExecContext(ctx, args...)
	if err != nil {
		if isUnique(err) {
			return onebyone() // nothing was inserted
		}
		return fhir.InternalError("put", err)
	}
	// One statement's rows take consecutive row ids (each the largest so
	// far plus one: the tables have no AUTOINCREMENT and one writer).
	lastSeq, err := res.LastInsertId()
	if err != nil {
		return fhir.InternalError("put", err)
	}
	firstSeq := lastSeq - int64(n) + 1
	cur, err := t.stmts.insertFirsts(ctx, "current", n)
	if err != nil {
		return fhir.InternalError("put", err)
	}
	args = args[:0]
	for i, v := range vs {
		args = append(args, v.Type, v.ID, 1, firstSeq+int64(i), 0)
	}
	res, err = cur.ExecContext(ctx, args...)
	if err != nil {
		if isUnique(err) {
			// A current row without its version 1: take the versions back
			// and let Put say which one conflicts.
			if _, derr := t.conn.ExecContext(ctx, `DELETE FROM versions WHERE seq BETWEEN ? AND ?`, firstSeq, lastSeq); derr != nil {
				return fhir.InternalError("put", derr)
			}
			return onebyone()
		}
		return fhir.InternalError("put", err)
	}
	lastRid, err := res.LastInsertId()
	if err != nil {
		return fhir.InternalError("put", err)
	}
	firstRid := lastRid - int64(n) + 1
	if t.last == nil {
		t.last = map[string]store.Version{}
	}
	for i, v := range vs {
		t.puts++
		t.last[v.Type] = v
		rid := firstRid + int64(i)
		if err := t.keysAfter(ctx, v, rid, index[i]); err != nil {
			return err
		}
		if err := t.bufferIndex(rid, v.Type, index[i]); err != nil {
			return err
		}
	}
	return nil
}

// insertFirsts returns the prepared INSERT of n first versions into table
// (versions or current).
func (w *writeStmts) insertFirsts(ctx context.Context, table string, n int) (*sql.Stmt, error) {
	key := table + "/" + strconv.Itoa(n)
	if st, ok := w.inserts[key]; ok {
		return st, nil
	}
	var q string
	switch table {
	case "versions":
		q = "INSERT INTO versions (type, id, vid, ts, deleted, method, body) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?), ", n), ", ")
	default:
		q = "INSERT INTO current (type, id, vid, seq, deleted) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?), ", n), ", ")
	}
	st, err := w.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	w.inserts[key] = st
	return st, nil
}
