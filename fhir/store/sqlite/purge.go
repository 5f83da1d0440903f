package sqlite

import (
	"context"
	"encoding/json"
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
	t.touch(typ, len(ids))
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

// PurgeUnindexed is Purge for records that never have search values (the
// engine's pending audit records, which it stores with none): it removes
// their versions and current rows, without Purge's DELETE from each of the
// six index tables (lookups that find nothing, about 15 us per record).
// Records stored with search values must go through Purge, or their index
// rows would outlive them.
func (t *txn) PurgeUnindexed(ctx context.Context, typ string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return fhir.InternalError("purge", err)
	}
	// One statement shape per table whatever the number of ids (an IN list
	// would be prepared again for every length), kept in the writer's cache.
	for _, s := range []string{
		`DELETE FROM versions WHERE type = ? AND id IN (SELECT value FROM json_each(?))`,
		`DELETE FROM current WHERE type = ? AND id IN (SELECT value FROM json_each(?))`,
	} {
		if _, err := t.q.ExecContext(ctx, s, typ, string(list)); err != nil {
			return fhir.InternalError("purge", err)
		}
	}
	return nil
}
