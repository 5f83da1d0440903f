package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"crs/fhir"
)

// pendingAuditSchema is the table of writes' pending audit records (the
// engine's, fhir/engine/auditpending.go): a plain rowid table, one row per
// write, put in the write's own transaction and deleted by its key in the
// transaction that stores the record's AuditEvent. It has none of a
// record's machinery (no version row, current row or their keys), so a
// write pays one b-tree insert for its audit instead of four.
const pendingAuditSchema = `CREATE TABLE IF NOT EXISTS audit_pending (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)`

// PutPendingAudit stores a write's pending audit record body in this
// transaction: durable with the write, or rolled back with it.
func (t *txn) PutPendingAudit(ctx context.Context, body []byte) error {
	if _, err := t.q.ExecContext(ctx, `INSERT INTO audit_pending (body) VALUES (?)`, body); err != nil {
		return fhir.InternalError("pending audit", err)
	}
	return nil
}

// DeletePendingAudits removes the pending audit records seqs in this
// transaction. Every one must exist: a record already removed means another
// transaction stored its AuditEvent, and storing it again would duplicate it,
// so the transaction fails instead.
func (t *txn) DeletePendingAudits(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	list, err := json.Marshal(seqs)
	if err != nil {
		return fhir.InternalError("pending audit", err)
	}
	// One statement shape whatever the number (kept in the writer's cache).
	res, err := t.q.ExecContext(ctx, `DELETE FROM audit_pending WHERE seq IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return fhir.InternalError("pending audit", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fhir.InternalError("pending audit", err)
	}
	if n != int64(len(seqs)) {
		return fhir.InternalError("pending audit", fmt.Errorf("%d of %d pending audit records were already removed", int64(len(seqs))-n, len(seqs)))
	}
	return nil
}

// PendingAudits returns up to limit pending audit records, the oldest
// first (the single writer makes key order the commit order: a key is
// reused only once every record above it is gone), as their keys and
// bodies.
func (s *Store) PendingAudits(ctx context.Context, limit int) ([]int64, [][]byte, error) {
	rows, err := s.rq.QueryContext(ctx, `SELECT seq, body FROM audit_pending ORDER BY seq LIMIT ?`, limit)
	if err != nil {
		return nil, nil, fhir.InternalError("pending audit", err)
	}
	defer rows.Close()
	var seqs []int64
	var bodies [][]byte
	for rows.Next() {
		var seq int64
		var body []byte
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, nil, fhir.InternalError("pending audit", err)
		}
		seqs, bodies = append(seqs, seq), append(bodies, body)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fhir.InternalError("pending audit", err)
	}
	return seqs, bodies, nil
}
