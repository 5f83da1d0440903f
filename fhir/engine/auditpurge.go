package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// unindexedPurger is a store transaction that can remove records stored
// without search values more cheaply than Purge (the SQLite store's: no
// DELETE from each index table).
type unindexedPurger interface {
	PurgeUnindexed(ctx context.Context, typ string, ids []string) error
}

// purgePending removes the pending audit records ids (stored without search
// values, putPending) in the transaction tx that stores their AuditEvents:
// with the store's unindexed purge where it has one, else with its Purge.
func purgePending(ctx context.Context, tx store.Tx, ids []string) error {
	purger, ok := purgerOf(tx)
	if !ok {
		return fhir.Errorf(fhir.NotSupported, "", "this store cannot remove pending audit records")
	}
	if u, ok := purger.(unindexedPurger); ok {
		return u.PurgeUnindexed(ctx, auditPendingType, ids)
	}
	return purger.Purge(ctx, auditPendingType, ids)
}
