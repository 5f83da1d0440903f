package engine

import (
	"context"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/store"
)

// pendingTable is a store with a plain table for writes' pending audit
// records (the SQLite store's): a write puts one row there instead of a
// record with its version, current row and their keys, and the
// materialiser deletes it by its key. Stores without one (MongoDB) keep the
// records as bookkeeping records of type auditPendingType.
type pendingTable interface {
	// PendingAudits returns up to limit records, oldest first: their keys
	// and bodies.
	PendingAudits(ctx context.Context, limit int) ([]int64, [][]byte, error)
}

// pendingTableTx is the transaction of a store with a pendingTable.
type pendingTableTx interface {
	// PutPendingAudit stores a record in the transaction.
	PutPendingAudit(ctx context.Context, body []byte) error
	// DeletePendingAudits removes the records seqs in the transaction, and
	// fails if any of them is already gone.
	DeletePendingAudits(ctx context.Context, seqs []int64) error
}

// pendingTxOf finds, under the engine's own wrappers, the store
// transaction with a pending audit table.
func pendingTxOf(tx store.Tx) (pendingTableTx, bool) {
	for {
		if p, ok := tx.(pendingTableTx); ok {
			return p, true
		}
		switch t := tx.(type) {
		case *integrityTx:
			tx = t.Tx
		case *outboxTx:
			tx = t.Tx
		case *resolvedTx:
			tx = t.Tx
		default:
			return nil, false
		}
	}
}

// pendingBatch is the pending audit records one materialiser transaction
// stores: first any bookkeeping records (a store without a table, or those
// an earlier crs left), then the table's rows.
type pendingBatch struct {
	entries []audit.Entry
	ids     []string // bookkeeping records, removed by id
	seqs    []int64  // table rows, removed by key
}

// readPending reads up to materialiseBatch pending audit records in commit
// order.
func (e *Engine) readPending(ctx context.Context) (*pendingBatch, error) {
	b := &pendingBatch{}
	legacy := e.pending.legacy.Load()
	if e.pendingTable == nil || legacy != e.pending.legacySeen {
		res, err := e.store.Search(ctx, &fhir.Query{Type: auditPendingType, Count: materialiseBatch, Total: fhir.TotalNone})
		if err != nil {
			return nil, err
		}
		for _, v := range res.Matches {
			entry, err := audit.DecodeEntry(v.Body)
			if err != nil {
				return nil, fhir.InternalError("audit pending "+v.ID, err)
			}
			b.entries, b.ids = append(b.entries, entry), append(b.ids, v.ID)
		}
		if len(res.Matches) < materialiseBatch {
			e.pending.legacySeen = legacy // none left after this batch
		}
	}
	if e.pendingTable == nil || len(b.entries) >= materialiseBatch {
		return b, nil
	}
	seqs, bodies, err := e.pendingTable.PendingAudits(ctx, materialiseBatch-len(b.entries))
	if err != nil {
		return nil, err
	}
	for i, body := range bodies {
		entry, err := audit.DecodeEntry(body)
		if err != nil {
			return nil, fhir.InternalError("audit pending row", err)
		}
		b.entries = append(b.entries, entry)
		b.seqs = append(b.seqs, seqs[i])
	}
	return b, nil
}

// remove removes the batch's records in tx, the transaction that stores
// their AuditEvents.
func (b *pendingBatch) remove(ctx context.Context, tx store.Tx) error {
	if len(b.ids) > 0 {
		if err := purgePending(ctx, tx, b.ids); err != nil {
			return err
		}
	}
	if len(b.seqs) > 0 {
		p, ok := pendingTxOf(tx)
		if !ok {
			return fhir.Errorf(fhir.NotSupported, "", "this store cannot remove pending audit rows")
		}
		return p.DeletePendingAudits(ctx, b.seqs)
	}
	return nil
}
