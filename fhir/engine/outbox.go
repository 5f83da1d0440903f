package engine

import (
	"context"
	"strings"

	"crs/fhir"
	"crs/fhir/search"
	"crs/fhir/store"
)

// Outbox records, inside the store transaction of a write, the events that
// write causes (implemented by subscriptions.Manager). Every write path of the
// engine (REST, Bundle entries, imports, cascades) ends in a store transaction,
// so an event is durable exactly when the change that caused it is: a crash
// loses none and a failed transaction records none.
type Outbox interface {
	// Watches reports whether writes of resource type rt may cause events;
	// the outbox sees no other writes.
	Watches(rt string) bool
	// Before is called in tx just before v (with its search values index)
	// is put, with tx as it was before (so the previous state can be
	// judged); what it returns is handed to Record with the write.
	Before(ctx context.Context, tx OutboxTx, v store.Version, index []fhir.IndexValue) (any, error)
	// Record is called at the end of the transaction with its watched
	// writes, in order; an error fails the transaction. What it returns is
	// handed to Committed once the transaction is durable.
	Record(ctx context.Context, tx OutboxTx, writes []OutboxWrite) (any, error)
	// Committed is called after the transaction became durable.
	Committed(recorded any)
}

// OutboxWrite is one watched write of a transaction.
type OutboxWrite struct {
	Version store.Version     // as stored
	Index   []fhir.IndexValue // its search values (nil for tombstones)
	Before  any               // what Outbox.Before returned for it
}

// OutboxPrefix starts the type names of the outbox's own records (its
// events and delivery state): they are stored beside resources but are not
// served, indexed or audited as resources.
const OutboxPrefix = "Crs"

// OutboxTx is a write transaction as the outbox sees it.
type OutboxTx struct {
	e  *Engine
	tx store.Tx
}

// Read reads a resource or an outbox record as the transaction holds it.
func (t OutboxTx) Read(ctx context.Context, typ, id string) (store.Version, error) {
	return t.tx.Read(ctx, typ, id)
}

// Put stores v, one of the outbox's own records (its type starts with
// OutboxPrefix), as the next version of its id.
func (t OutboxTx) Put(ctx context.Context, v store.Version) error {
	if !strings.HasPrefix(v.Type, OutboxPrefix) {
		return fhir.InternalError("outbox", errOutboxType)
	}
	return t.tx.Put(ctx, v, nil)
}

var errOutboxType = fhir.Errorf(fhir.Invalid, "", "the outbox writes only its own records")

// Matches reports whether rt/id, as the transaction holds it now, matches
// every parameter of params and may be read by the principal of ctx (its
// access policy's read conditions). An error of kind Invalid means params is
// not a valid search of rt.
func (t OutboxTx) Matches(ctx context.Context, rt, id string, params []fhir.RawParam) (bool, error) {
	q, err := t.e.params.ParseQuery(rt, params, search.ParseOptions{DefaultCount: 1, MaxCount: 1, Limits: t.e.queryLimits})
	if err != nil {
		return false, err
	}
	conds, err := t.e.conditions(ctx, rt, fhir.PermRead)
	if err != nil {
		if k := fhir.KindOf(err); k == fhir.Forbidden || k == fhir.Unauthorized {
			return false, nil
		}
		return false, err
	}
	q.Params = append(q.Params, conds...)
	return t.e.visible(ctx, t.tx, rt, id, q.Params)
}

// ParseFilter checks that query (name=value pairs joined by &) is a valid
// search of rt, as a Subscription's filter criteria must be.
func (e *Engine) ParseFilter(rt, query string) ([]fhir.RawParam, error) {
	raw, err := ParseQueryString(query)
	if err != nil {
		return nil, err
	}
	if _, err := e.params.ParseQuery(rt, raw, search.ParseOptions{DefaultCount: 1, MaxCount: 1, Limits: e.queryLimits}); err != nil {
		return nil, err
	}
	return raw, nil
}

// OutboxRead reads one version of an outbox record (versionID 0: the
// current one), outside any transaction.
func (e *Engine) OutboxRead(ctx context.Context, typ, id string, versionID int) (store.Version, error) {
	if !strings.HasPrefix(typ, OutboxPrefix) {
		return store.Version{}, fhir.InternalError("outbox", errOutboxType)
	}
	if versionID == 0 {
		return e.store.Read(ctx, typ, id)
	}
	return e.store.VRead(ctx, typ, id, versionID)
}

// OutboxWrite runs fn in a store transaction of its own, for the outbox's
// bookkeeping (what has been delivered).
func (e *Engine) OutboxWrite(ctx context.Context, fn func(tx OutboxTx) error) error {
	return e.store.Write(ctx, func(tx store.Tx) error { return fn(OutboxTx{e: e, tx: tx}) })
}

// outboxStore is the engine's store with an outbox: each transaction hands
// its watched writes to the outbox before it ends.
type outboxStore struct {
	store.Store
	e      *Engine
	outbox Outbox
}

func (s *outboxStore) Write(ctx context.Context, fn func(tx store.Tx) error) error {
	var recorded any
	err := s.Store.Write(ctx, func(tx store.Tx) error {
		otx := &outboxTx{Tx: tx, s: s}
		if err := fn(otx); err != nil {
			return err
		}
		if len(otx.writes) == 0 {
			return nil
		}
		var err error
		recorded, err = s.outbox.Record(ctx, OutboxTx{e: s.e, tx: tx}, otx.writes)
		return err
	})
	if err == nil && recorded != nil {
		s.outbox.Committed(recorded)
	}
	return err
}

// outboxTx notes the watched writes of a transaction.
type outboxTx struct {
	store.Tx
	s      *outboxStore
	writes []OutboxWrite
}

func (t *outboxTx) Put(ctx context.Context, v store.Version, index []fhir.IndexValue) error {
	if !t.s.outbox.Watches(v.Type) {
		return t.Tx.Put(ctx, v, index)
	}
	before, err := t.s.outbox.Before(ctx, OutboxTx{e: t.s.e, tx: t.Tx}, v, index)
	if err != nil {
		return err
	}
	if err := t.Tx.Put(ctx, v, index); err != nil {
		return err
	}
	t.writes = append(t.writes, OutboxWrite{Version: v, Index: index, Before: before})
	return nil
}

// topicLister is an Outbox that serves subscription topics.
type topicLister interface{ TopicURLs() []string }

// subscriptionCapability adds to the Subscription resource of the
// CapabilityStatement the topics (the Backport IG's
// capabilitystatement-subscriptiontopic-canonical extension) and the
// $status and $events operations, when an outbox serves them.
func subscriptionCapability(o Outbox, ops []any, r map[string]any) ([]any, map[string]any) {
	tl, ok := o.(topicLister)
	if !ok {
		return ops, r
	}
	var xs []any
	for _, u := range tl.TopicURLs() {
		xs = append(xs, map[string]any{"url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical", "valueCanonical": u})
	}
	r["extension"] = xs
	r["supportedProfile"] = []any{"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"}
	ops = append(ops,
		map[string]any{"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"},
		map[string]any{"name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"})
	return ops, r
}

// OutboxScan calls fn with every current resource of rt matching the search
// params, page by page, outside any interaction: the outbox's own work list
// (the subscriptions in force when the server starts), not a client's read,
// so neither policed nor audited.
func (e *Engine) OutboxScan(ctx context.Context, rt string, params []fhir.RawParam, fn func(store.Version) error) error {
	q, err := e.params.ParseQuery(rt, params, search.ParseOptions{DefaultCount: 500, MaxCount: 500, Limits: e.queryLimits})
	if err != nil {
		return err
	}
	q.Total = fhir.TotalNone
	for {
		res, err := e.store.Search(ctx, q)
		if err != nil {
			return err
		}
		for _, v := range res.Matches {
			if err := fn(v); err != nil {
				return err
			}
		}
		if res.Next == "" {
			return nil
		}
		q.Cursor = res.Next
	}
}

// isOutboxRecord reports whether typ is one of the outbox's own record
// types, which system history leaves out.
func isOutboxRecord(typ string) bool { return strings.HasPrefix(typ, OutboxPrefix) }

// outboxPurger is a store transaction that can remove records outright
// (the SQLite store's).
type outboxPurger interface {
	Purge(ctx context.Context, typ string, ids []string) error
}

// OutboxRemove removes the outbox's own records typ/ids outright, every
// version, in a store transaction of its own: events past their retention
// (subscriptions' pruning). Resources are never removed: typ must start
// with OutboxPrefix. Error kind NotSupported when the store cannot remove
// records (the outbox then keeps them).
func (e *Engine) OutboxRemove(ctx context.Context, typ string, ids []string) error {
	if !strings.HasPrefix(typ, OutboxPrefix) {
		return fhir.InternalError("outbox", errOutboxType)
	}
	st := e.store
	for { // past the engine's own wrappers: the removal is no write they check
		switch s := st.(type) {
		case *integrityStore:
			st = s.Store
			continue
		case *outboxStore:
			st = s.Store
			continue
		}
		break
	}
	return st.Write(ctx, func(tx store.Tx) error {
		p, ok := tx.(outboxPurger)
		if !ok {
			return fhir.Errorf(fhir.NotSupported, "", "this store cannot remove outbox records")
		}
		return p.Purge(ctx, typ, ids)
	})
}
