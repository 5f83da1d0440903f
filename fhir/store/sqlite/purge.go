package sqlite

import (
	"context"
	"strings"

	"crs/fhir"
)

// maxPurge bounds the ids of one purge statement.
const maxPurge = 200

// Purge removes every version of the records typ/ids, their current rows
// and their search values, inside the transaction. It is for bookkeeping
// records that are not resources (the subscriptions' outbox events past
// their retention, fhir/engine OutboxTx.Remove): resources keep every
// version, and nothing else calls it.
func (t *txn) Purge(ctx context.Context, typ string, ids []string) error {
	if err := t.flush(ctx); err != nil {
		return err
	}
	for len(ids) > 0 {
		n := min(len(ids), maxPurge)
		in := "(" + strings.TrimPrefix(strings.Repeat(",?", n), ",") + ")"
		args := make([]any, 0, n+1)
		args = append(args, typ)
		for _, id := range ids[:n] {
			args = append(args, id)
		}
		stmts := make([]string, 0, len(indexTables)+2)
		for _, table := range indexTables {
			stmts = append(stmts, `DELETE FROM `+table+` WHERE rid IN (SELECT rid FROM current WHERE type = ? AND id IN `+in+`)`)
		}
		stmts = append(stmts, `DELETE FROM versions WHERE type = ? AND id IN `+in, `DELETE FROM current WHERE type = ? AND id IN `+in)
		for _, s := range stmts {
			if _, err := t.conn.ExecContext(ctx, s, args...); err != nil {
				return fhir.InternalError("purge", err)
			}
		}
		ids = ids[n:]
	}
	return nil
}
