package engine

import (
	"context"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/store"
)

// firstsPutter is a store transaction that can store many first versions
// of new resources at once (the SQLite store's, with multi-row INSERTs).
type firstsPutter interface {
	PutFirsts(ctx context.Context, vs []store.Version, index [][]fhir.IndexValue) error
}

// auditBatch is a materialiser batch's AuditEvents, linked in the chain one
// after the other and stored together by flush.
type auditBatch struct {
	vs    []store.Version
	index [][]fhir.IndexValue
}

// link gives p its chain link after prev and queues it; it returns p's
// hash (the next event's prev).
func (b *auditBatch) link(p *preparedAudit, prev string) (string, error) {
	v := p.version
	hash := audit.HashAfter(prev, p.rendered.Canonical)
	body, err := p.rendered.Body(v.ID, formatInstant(v.LastUpdated), prev, hash)
	if err != nil {
		return "", fhir.InternalError("audit", err)
	}
	v.Body = body
	b.vs = append(b.vs, v)
	b.index = append(b.index, p.index)
	return hash, nil
}

// flush stores the queued events in tx, all at once when its store can
// (firstsPutterOf), else one Put each, and empties the batch. It must run
// before anything reads AuditEvents in tx (the chain's end).
func (b *auditBatch) flush(ctx context.Context, tx store.Tx) error {
	if len(b.vs) == 0 {
		return nil
	}
	vs, index := b.vs, b.index
	b.vs, b.index = nil, nil
	if fp, ok := firstsPutterOf(tx); ok {
		return fp.PutFirsts(ctx, vs, index)
	}
	for i, v := range vs {
		if err := tx.Put(ctx, v, index[i]); err != nil {
			return err
		}
	}
	return nil
}

// firstsPutterOf finds, under the engine's own wrappers, a store
// transaction that stores AuditEvents in bulk: the wrappers note nothing of
// an AuditEvent's Put (integrityTx), unless an outbox watches AuditEvents
// (then each goes through its Put).
func firstsPutterOf(tx store.Tx) (firstsPutter, bool) {
	for {
		switch t := tx.(type) {
		case *integrityTx:
			tx = t.Tx
		case *outboxTx:
			if t.s.outbox.Watches("AuditEvent") {
				return nil, false
			}
			tx = t.Tx
		default:
			p, ok := tx.(firstsPutter)
			return p, ok
		}
	}
}
