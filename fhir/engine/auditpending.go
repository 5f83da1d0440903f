package engine

import (
	"context"
	"sync/atomic"
	"time"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/store"
)

// auditPendingType is the type of a write's pending audit record: with an
// audit journal, a write stores in its own transaction not its AuditEvent
// (a second resource: two version rows and some twenty index rows) but this
// compact row (the journal entry's JSON, no search values), durable with the
// write or not at all. The materialiser turns pending rows into AuditEvents,
// in the hash chain with the journal's entries, and removes each row in the
// transaction that stores its AuditEvent.
const auditPendingType = OutboxPrefix + "AuditPending"

// pendingRecheck is how long after a write put a pending row the
// materialiser looks again even without a new signal: a write whose commit
// ended after the materialiser's last look (the row's signal comes when it
// is put, before its commit) is then stored without waiting for the next
// interaction.
const pendingRecheck = time.Second

// pendingIdle is how long writes must have put no pending row before the
// materialiser stores fewer than a batch of them (materialisePending).
const pendingIdle = 200 * time.Millisecond

// pendingAudits is what the engine knows of the pending rows in the store.
type pendingAudits struct {
	puts    atomic.Int64  // pending rows put (some may have been rolled back)
	done    atomic.Int64  // pending rows materialised, or known not to exist
	last    atomic.Int64  // when a pending row was last put (UnixNano)
	wake    chan struct{} // signalled (not blocking) when a row is put
	checked int64         // puts when the materialiser last found none left (materialiser only)
	// legacy counts the rows put as bookkeeping records though the store
	// has a pending table (a write whose transaction the engine could not
	// unwrap); legacySeen is legacy when the materialiser last found none
	// of them left, -1 before its first look (an earlier crs's rows).
	legacy     atomic.Int64
	legacySeen int64 // materialiser only
}

// backlog is about how many pending rows wait for their materialisation.
func (p *pendingAudits) backlog() int { return int(max(0, p.puts.Load()-p.done.Load())) }

// busy reports whether a pending row was put within the last d.
func (p *pendingAudits) busy(d time.Duration) bool {
	return time.Since(time.Unix(0, p.last.Load())) < d
}

// preparePending makes a write's audit record into its pending row, ready
// to be put in the write's transaction by preparedInTx.
func (e *Engine) preparePending(ctx context.Context, rec audit.Record) (*preparedAudit, error) {
	entry := e.auditEntry(ctx, rec)
	body, err := audit.EncodeEntry(entry)
	if err != nil {
		return nil, fhir.InternalError("audit", err)
	}
	return &preparedAudit{pending: true,
		version: store.Version{Type: auditPendingType, ID: entry.ID, VersionID: 1, LastUpdated: entry.Recorded, Method: "POST", Body: body}}, nil
}

// putPending stores a pending row in the write's transaction tx. When it
// cannot, the write fails as Unavailable: it is not stored unaudited.
func (e *Engine) putPending(ctx context.Context, tx store.Tx, p *preparedAudit) error {
	ptx, ok := pendingTxOf(tx)
	switch {
	case e.pendingTable != nil && ok:
		if err := ptx.PutPendingAudit(ctx, p.version.Body); err != nil {
			return errAuditUnavailable(err)
		}
	default:
		if err := tx.Put(ctx, p.version, nil); err != nil {
			return errAuditUnavailable(err)
		}
		if e.pendingTable != nil {
			e.pending.legacy.Add(1)
		}
	}
	e.pending.puts.Add(1)
	e.pending.last.Store(time.Now().UnixNano())
	e.kickPending()
	return nil
}

// kickPending wakes the materialiser to look for pending rows.
func (e *Engine) kickPending() {
	select {
	case e.pending.wake <- struct{}{}:
	default:
	}
}

// materialisePending stores up to materialiseBatch pending rows as
// AuditEvents, in the order they were first stored (the store's row order,
// which its single writer makes the commit order), linked in the hash chain,
// and removes the rows in the same transaction. It returns how many it
// stored; fewer than materialiseBatch means none was left when it looked.
// Unless force, it does not look when no row was put since it last found
// none. Unless drain, it defers (deferred true) while writes still put rows
// (within pendingIdle) and fewer than a batch wait: an import's transactions
// come a few tens of milliseconds apart, and storing each one's AuditEvent
// in a transaction of its own would cost a commit each.
func (e *Engine) materialisePending(force, drain bool) (n int, deferred bool, err error) {
	puts := e.pending.puts.Load()
	if !force && puts == e.pending.checked {
		return 0, false, nil
	}
	if !drain && e.pending.busy(pendingIdle) && e.pending.backlog() < materialiseBatch {
		return 0, true, nil
	}
	ctx := context.Background()
	b, err := e.readPending(ctx) // auditpendingtable.go
	if err != nil {
		return 0, false, err
	}
	if len(b.entries) == 0 {
		e.pending.checked = puts
		e.pending.done.Store(puts)
		return 0, false, nil
	}
	prepared := make([]*preparedAudit, 0, len(b.entries))
	for _, entry := range b.entries {
		p, err := e.prepareEntry(entry)
		if err != nil {
			return 0, false, err
		}
		prepared = append(prepared, p)
	}
	err = e.store.Write(ctx, func(tx store.Tx) error {
		if err := b.remove(ctx, tx); err != nil {
			return err
		}
		prev, err := lastAuditHash(ctx, tx)
		if err != nil {
			return err
		}
		var batch auditBatch // stored together (auditbatch.go)
		for _, p := range prepared {
			if prev, err = batch.link(p, prev); err != nil {
				return err
			}
		}
		return batch.flush(ctx, tx)
	})
	if err != nil {
		return 0, false, err
	}
	e.pending.done.Add(int64(len(prepared)))
	if len(prepared) < materialiseBatch {
		e.pending.checked = puts
		e.pending.done.Store(max(e.pending.done.Load(), puts))
	}
	return len(prepared), false, nil
}

// purgerOf finds, under the engine's own wrappers, the store transaction
// that can remove records outright (the SQLite store's).
func purgerOf(tx store.Tx) (outboxPurger, bool) {
	for {
		switch t := tx.(type) {
		case *integrityTx:
			tx = t.Tx
		case *outboxTx:
			tx = t.Tx
		default:
			p, ok := tx.(outboxPurger)
			return p, ok
		}
	}
}

// MaterialiseAudit stores every AuditEvent made durable so far (the audit
// journal's and the writes' pending records) as a resource before it
// returns: for a tool or a test that reads the trail from the store itself.
// A read, search, history or export of AuditEvents through the engine does
// this on its own. Without an audit journal there is nothing to do.
func (e *Engine) MaterialiseAudit(ctx context.Context) { e.materialiseNow(ctx) }
