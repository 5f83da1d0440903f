package engine

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/store"
)

// RequestInfo describes the request behind an interaction, for its AuditEvent.
type RequestInfo struct {
	ID     string // X-Request-Id
	Remote string // the client's network address (the peer, or from a trusted proxy's X-Forwarded-For)
	// Peer is the TCP peer's address and Forwarded the forwarded chain as received,
	// when the request came through a proxy.
	Peer, Forwarded string
}

// requestState is what one request (one door's call, possibly several
// interactions) carries for the audit trail.
type requestState struct {
	req     RequestInfo
	audited atomic.Bool // the engine recorded an AuditEvent for an interaction of this request
}

type requestKey struct{}

// WithRequest returns ctx carrying the request's identity for the audit trail.
func WithRequest(ctx context.Context, req RequestInfo) context.Context {
	return context.WithValue(ctx, requestKey{}, &requestState{req: req})
}

// Audited reports whether the engine recorded the AuditEvent of an
// interaction of the request in ctx (made by WithRequest). A door that failed
// a request before it reached the engine (no valid token, an unknown path)
// records that failure itself with Audit.
func Audited(ctx context.Context) bool {
	st, _ := ctx.Value(requestKey{}).(*requestState)
	return st != nil && st.audited.Load()
}

// interaction is one engine interaction under way, with what its AuditEvent
// will say.
type interaction struct {
	rec      audit.Record
	recorded atomic.Bool // its write recorded the complete AuditEvent in the write's transaction
}

type interactionKey struct{}

// begin starts an interaction for the audit trail. Inside another one (a
// $everything reading its focus, a batch entry reading a version) it returns
// nil: the outer interaction is the one recorded.
func (e *Engine) begin(ctx context.Context, name, action, rt, id string) (context.Context, *interaction) {
	if _, nested := ctx.Value(interactionKey{}).(*interaction); nested {
		return ctx, nil
	}
	ia := &interaction{rec: audit.Record{Interaction: name, Action: action}}
	if rt != "" && id != "" {
		ia.rec.Entities = []string{rt + "/" + id}
		if rt == "Patient" {
			ia.rec.Patient = "Patient/" + id
		}
	}
	return context.WithValue(ctx, interactionKey{}, ia), ia
}

// end records the AuditEvent of an interaction that did not record it with
// its write: a read, a search, an operation, or any refusal or failure. The
// versions are what a successful interaction disclosed. It returns err, or an
// Unavailable error when the AuditEvent could not be made durable: then the
// interaction must not be answered with data.
func (e *Engine) end(ctx context.Context, ia *interaction, err error, versions ...store.Version) error {
	if ia == nil || !e.audit {
		return err
	}
	if st, _ := ctx.Value(requestKey{}).(*requestState); st != nil {
		st.audited.Store(true)
	}
	if err == nil && ia.recorded.Load() {
		return nil
	}
	rec := ia.rec
	if err != nil {
		rec.Outcome = fhir.AsError(err)
	} else if len(versions) > 0 {
		rec.Entities = nil
		for _, v := range versions {
			rec.Entities = append(rec.Entities, v.Type+"/"+v.ID+"/_history/"+strconv.Itoa(v.VersionID))
			if rec.Patient == "" {
				rec.Patient = PatientOf(v)
			}
		}
	}
	if aerr := e.Audit(ctx, rec); aerr != nil {
		return errAuditUnavailable(aerr)
	}
	return err
}

// errAuditUnavailable is the answer to an interaction whose AuditEvent could
// not be made durable.
func errAuditUnavailable(cause error) error {
	fe := fhir.Errorf(fhir.Unavailable, "", "the interaction could not be recorded in the audit trail, so it is not answered; try again later")
	fe.Err = cause
	return fe
}

// preparedAudit is an AuditEvent made ready outside the store's writer: all
// that is left inside is to link it to the last one and store it (its body
// is written straight from its record, with the chain link, by appendAudit).
type preparedAudit struct {
	rendered *audit.Rendered
	index    []fhir.IndexValue
	version  store.Version
	pending  bool // version is a write's pending audit record (auditpending.go), not an AuditEvent
}

func (e *Engine) prepareAudit(ctx context.Context, rec audit.Record) (*preparedAudit, error) {
	rec = e.completeRecord(ctx, rec)
	return e.prepared(audit.Render(rec), newID(), rec.Recorded)
}

// auditEntry is rec, with who asked from where, as a journal entry under a
// new id: a compact record, rendered as an AuditEvent only when it is
// materialised.
func (e *Engine) auditEntry(ctx context.Context, rec audit.Record) audit.Entry {
	return audit.NewEntry(newID(), e.completeRecord(ctx, rec))
}

// completeRecord adds to rec who asked, from where, of which server and when.
func (e *Engine) completeRecord(ctx context.Context, rec audit.Record) audit.Record {
	st, _ := ctx.Value(requestKey{}).(*requestState)
	if st != nil {
		rec.RequestID, rec.Remote = st.req.ID, st.req.Remote
		rec.Peer, rec.Forwarded = st.req.Peer, st.req.Forwarded
	}
	rec.Server, rec.Who = e.base, auth.PrincipalFrom(ctx)
	rec.Recorded = e.now()
	return rec
}

// prepareEntry makes an AuditEvent resource of a journal entry, ready to be
// linked and stored.
func (e *Engine) prepareEntry(entry audit.Entry) (*preparedAudit, error) {
	x, err := entry.Render()
	if err != nil {
		return nil, fhir.InternalError("audit", err)
	}
	return e.prepared(x, entry.ID, entry.Recorded)
}

// prepared gives the event x its id and meta and its search values: straight
// from its record when the registry's AuditEvent parameters are the ones
// audit.Rendered.Index knows (auditIndex), else extracted from its tree.
func (e *Engine) prepared(x *audit.Rendered, id string, now time.Time) (*preparedAudit, error) {
	lastUpdated := formatInstant(now)
	index, ok := e.auditIndex(x, id, lastUpdated)
	if !ok {
		ev := x.Tree()
		ev["id"] = id
		ev["meta"] = map[string]any{"versionId": "1", "lastUpdated": lastUpdated}
		var err error
		if index, err = e.params.Extract("AuditEvent", ev); err != nil {
			return nil, fhir.WithOp("audit", err)
		}
	}
	return &preparedAudit{rendered: x, index: index,
		version: store.Version{Type: "AuditEvent", ID: id, VersionID: 1, LastUpdated: now, Method: "POST"}}, nil
}

// appendAudit links a prepared AuditEvent to the last one written (the store's
// single writer makes the chain a line) and stores it in tx.
func (e *Engine) appendAudit(ctx context.Context, tx store.Tx, p *preparedAudit) error {
	prev, err := lastAuditHash(ctx, tx)
	if err != nil {
		return err
	}
	_, err = appendAuditAfter(ctx, tx, p, prev)
	return err
}

// lastAuditHash is the chain hash of the last AuditEvent stored ("" before the first).
func lastAuditHash(ctx context.Context, tx store.Tx) (string, error) {
	switch last, err := tx.Last(ctx, "AuditEvent"); {
	case err == nil:
		return audit.LastHash(last.Body), nil
	case fhir.KindOf(err) != fhir.NotFound:
		return "", err
	}
	return "", nil
}

// appendAuditAfter stores p in tx linked after the event whose hash is prev,
// and returns p's hash: the next event's prev when the caller stores several
// in a row (the materialiser), without reading back the one just stored.
func appendAuditAfter(ctx context.Context, tx store.Tx, p *preparedAudit, prev string) (string, error) {
	var b auditBatch
	hash, err := b.link(p, prev)
	if err != nil {
		return "", err
	}
	return hash, tx.Put(ctx, b.vs[0], b.index[0])
}

// auditInTx records a write's AuditEvent in the transaction that writes.
func (e *Engine) auditInTx(ctx context.Context, tx store.Tx, rec audit.Record) error {
	p, err := e.prepareWriteAudit(ctx, rec)
	if err != nil {
		return err
	}
	return e.preparedInTx(ctx, tx, p)
}

// prepareWriteAudit renders and indexes a write's AuditEvent ahead of its
// transaction, so that the store's writer only links and stores it
// (preparedInTx); with an audit journal, it makes the write's pending audit
// record instead (auditpending.go), which the materialiser stores as an
// AuditEvent after the write. It is nil when the engine does not audit.
func (e *Engine) prepareWriteAudit(ctx context.Context, rec audit.Record) (*preparedAudit, error) {
	if !e.audit {
		return nil, nil
	}
	if e.journal != nil {
		return e.preparePending(ctx, rec)
	}
	return e.prepareAudit(ctx, rec)
}

// preparedInTx stores a write's AuditEvent made by prepareWriteAudit in the
// transaction that writes. A transaction run again (the store's batch was
// retried without a failed neighbour) stores the same event again: its
// chain link is set anew each time.
func (e *Engine) preparedInTx(ctx context.Context, tx store.Tx, p *preparedAudit) error {
	if p == nil {
		return nil
	}
	if p.pending {
		if err := e.putPending(ctx, tx, p); err != nil {
			return err
		}
	} else if err := e.appendAudit(ctx, tx, p); err != nil {
		return err
	}
	if ia, _ := ctx.Value(interactionKey{}).(*interaction); ia != nil {
		ia.recorded.Store(true)
	}
	return nil
}

// Audit records an interaction that did not record itself with a write: a
// read, a search, an operation, or any refusal or failure. It returns once the
// AuditEvent is durable; an error means the interaction must not be answered.
// The engine records its own interactions; a door calls Audit only for a
// request it refused before reaching the engine (no valid token, no such path).
// Concurrent calls share one durable commit (see auditQueue).
func (e *Engine) Audit(ctx context.Context, rec audit.Record) error {
	if !e.audit {
		return nil
	}
	if e.journal != nil {
		if err := e.journal.Append(e.auditEntry(ctx, rec)); err != nil {
			return fhir.Errorf(fhir.Unavailable, "", "the AuditEvent could not be made durable: %v", err)
		}
		return nil
	}
	p, err := e.prepareAudit(ctx, rec)
	if err != nil {
		return err
	}
	return e.auditQ.add(p)
}

// writeRecord describes a committed write for the audit trail.
func writeRecord(interaction, action string, versions ...store.Version) audit.Record {
	rec := audit.Record{Interaction: interaction, Action: action}
	for _, v := range versions {
		if v.ID == "" {
			continue
		}
		rec.Entities = append(rec.Entities, v.Type+"/"+v.ID+"/_history/"+strconv.Itoa(v.VersionID))
		if rec.Patient == "" {
			rec.Patient = PatientOf(v)
		}
	}
	return rec
}

// endRead ends a read or vread: the version read is what it disclosed.
func (e *Engine) endRead(ctx context.Context, ia *interaction, v store.Version, err error) (store.Version, error) {
	if err != nil {
		if aerr := e.end(ctx, ia, err); fhir.KindOf(aerr) != fhir.KindOf(err) {
			return store.Version{}, aerr
		}
		return v, err
	}
	if err := e.end(ctx, ia, nil, v); err != nil {
		return store.Version{}, err
	}
	return v, nil
}

// endObject drops the answer of an interaction that ends in an error.
func endObject(o fhir.Object, err error) (fhir.Object, error) {
	if err != nil {
		return nil, err
	}
	return o, nil
}

// rawQuery renders query parameters as the query string of the AuditEvent.
func rawQuery(params []fhir.RawParam) string {
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p.Name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.Value))
	}
	return b.String()
}
