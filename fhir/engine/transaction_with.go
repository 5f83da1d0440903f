package engine

import (
	"context"
	"strconv"
	"strings"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// Lookup answers the searches of a TransactionWith build inside its write
// transaction: what it finds is what the transaction's writes will meet, so
// no other writer can slip in between a lookup and the write it decides.
type Lookup interface {
	// Search runs a type-level search (a query string) as the principal of
	// ctx, bounded by that principal's access policy as Search is, and
	// returns at most max matches; more is an error of kind TooManyMatches.
	Search(ctx context.Context, rt, query string, max int) ([]store.Version, error)
}

// BuildFunc makes the transaction Bundle of TransactionWith from what its
// lookups find. A nil Bundle writes nothing (e.g. the message was applied
// before): the lookups are still audited. It may be called more than once
// (the store may run a write again), so it must start afresh each time.
type BuildFunc func(ctx context.Context, l Lookup) (fhir.Object, error)

// TransactionWith is BundleTree for an importer that decides what to write
// from what is on the record (find the person, then create or update them):
// build runs inside the store's write transaction with lookups that see the
// transaction's own state, and the transaction Bundle it returns is then
// processed in the same transaction exactly as BundleTree would (checks,
// policy, audit). The lookups are one interaction with the writes: they are
// not audited one by one, the transaction's AuditEvent names every record
// they disclosed. Because nothing else writes in between, a lookup that finds
// nothing need not be asked again by a conditional create (ifNoneExist) of
// the Bundle, and a duplicate found by a lookup cannot be written twice by
// concurrent callers.
func (e *Engine) TransactionWith(ctx context.Context, build BuildFunc, opt SearchOptions) (b *Bundle, err error) {
	ctx, ia := e.begin(ctx, "transaction", "E", "", "")
	defer func() { b, err = endBundle(b, e.end(ctx, ia, err)) }()
	var entries []*bundleEntry
	err = e.store.Write(ctx, func(tx store.Tx) error {
		entries = nil
		l := &txLookup{e: e, tx: tx}
		tree, err := build(ctx, l)
		if err != nil {
			return err
		}
		if tree == nil {
			return e.auditInTx(ctx, tx, withRead(audit.Record{Interaction: "transaction", Action: "E"}, l.read))
		}
		cp, err := copyCheckedTree(tree, e.limits.MaxDepth)
		if err != nil {
			return fhir.WithOp("bundle", err)
		}
		obj, _ := cp.(map[string]any)
		if fhir.ResourceType(obj) != "Bundle" || obj["type"] != "transaction" {
			return fhir.Errorf(fhir.Invalid, "", "TransactionWith takes a transaction Bundle")
		}
		if err := checkBundleShape(obj); err != nil {
			return err
		}
		es, err := e.bundleEntries(obj, "transaction", nil)
		if err != nil {
			return err
		}
		sorted, ids, now, err := e.prepareTransaction(ctx, es)
		if err != nil {
			return err
		}
		if err := e.transactionInTx(ctx, tx, es, sorted, ids, now, opt, l.read); err != nil {
			return err
		}
		entries = es
		return nil
	})
	if err != nil {
		return nil, fhir.WithOp("transaction", err)
	}
	if entries == nil {
		return e.newBundle("transaction-response"), nil
	}
	return e.transactionResponse(entries), nil
}

// txLookup is the Lookup of one run of a TransactionWith build; read lists
// the records its searches disclosed, for the transaction's AuditEvent.
type txLookup struct {
	e    *Engine
	tx   store.Tx
	read []store.Version
}

// Search implements Lookup.
func (l *txLookup) Search(ctx context.Context, rt, query string, max int) ([]store.Version, error) {
	if !fhir.Served(rt) {
		return nil, fhir.Errorf(fhir.NotSupportedType, "", "resource type %q is not supported", rt)
	}
	raw, err := ParseQueryString(query)
	if err != nil {
		return nil, err
	}
	q, err := l.e.params.ParseQuery(rt, raw, search.ParseOptions{Limits: l.e.queryLimits})
	if err != nil {
		return nil, err
	}
	if err := q.RequireCriteria("a lookup"); err != nil {
		return nil, err
	}
	q.Count, q.Total, q.Cursor = max+1, fhir.TotalNone, ""
	if err := l.e.restrict(ctx, q, fhir.PermSearch); err != nil {
		return nil, err
	}
	qctx, cancel := l.e.queryContext(ctx)
	defer cancel()
	res, err := l.tx.Search(qctx, q)
	if err != nil {
		return nil, l.e.tooCostly(ctx, qctx, err)
	}
	if len(res.Matches) > max {
		return nil, fhir.Errorf(fhir.TooManyMatches, "", "the search %s?%s matches more than %d", rt, query, max)
	}
	l.read = append(l.read, res.Matches...)
	return res.Matches, nil
}

// withRead is rec naming also the records in read that it does not name
// already (a record a lookup found and the transaction then wrote is named
// once, as written).
func withRead(rec audit.Record, read []store.Version) audit.Record {
	for _, v := range read {
		ref := v.Type + "/" + v.ID
		named := false
		for _, have := range rec.Entities {
			if have == ref || strings.HasPrefix(have, ref+"/_history/") {
				named = true
				break
			}
		}
		if !named {
			rec.Entities = append(rec.Entities, ref+"/_history/"+strconv.Itoa(v.VersionID))
		}
		if rec.Patient == "" {
			rec.Patient = PatientOf(v)
		}
	}
	return rec
}
