package engine

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"

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

type auditState struct {
	req      RequestInfo
	recorded atomic.Bool // the interaction's write recorded its AuditEvent
}

type auditKey struct{}

// WithRequest returns ctx carrying the request's identity for the audit trail.
func WithRequest(ctx context.Context, req RequestInfo) context.Context {
	return context.WithValue(ctx, auditKey{}, &auditState{req: req})
}

// Audited reports whether the interaction in ctx recorded its AuditEvent in the
// transaction of its write (when that write committed, nothing else is due;
// when it failed, the failure still is).
func Audited(ctx context.Context) bool {
	st, _ := ctx.Value(auditKey{}).(*auditState)
	return st != nil && st.recorded.Load()
}

// preparedAudit is an AuditEvent made ready outside the store's writer: all
// that is left inside is to link it to the last one and store it.
type preparedAudit struct {
	ev        fhir.Object
	canonical []byte
	index     []fhir.IndexValue
	version   store.Version
}

func (e *Engine) prepareAudit(ctx context.Context, rec auth.AuditRecord) (*preparedAudit, error) {
	st, _ := ctx.Value(auditKey{}).(*auditState)
	if st != nil {
		rec.RequestID, rec.Remote = st.req.ID, st.req.Remote
		rec.Peer, rec.Forwarded = st.req.Peer, st.req.Forwarded
	}
	rec.Server, rec.Who = e.base, auth.PrincipalFrom(ctx)
	now := e.now()
	rec.Recorded = now
	ev := auth.AuditEvent(rec)
	id := newID()
	ev["id"] = id
	ev["meta"] = map[string]any{"versionId": "1", "lastUpdated": formatInstant(now)}
	canonical, err := auth.Canonical(ev)
	if err != nil {
		return nil, fhir.InternalError("audit", err)
	}
	index, err := e.params.Extract("AuditEvent", ev)
	if err != nil {
		return nil, fhir.WithOp("audit", err)
	}
	return &preparedAudit{ev: ev, canonical: canonical, index: index,
		version: store.Version{Type: "AuditEvent", ID: id, VersionID: 1, LastUpdated: now, Method: "POST"}}, nil
}

// appendAudit links a prepared AuditEvent to the last one written (the store's
// single writer makes the chain a line) and stores it in tx.
func (e *Engine) appendAudit(ctx context.Context, tx store.Tx, p *preparedAudit) error {
	prev := ""
	switch last, err := tx.Last(ctx, "AuditEvent"); {
	case err == nil:
		prev = auth.LastHash(last.Body)
	case fhir.KindOf(err) != fhir.NotFound:
		return err
	}
	auth.SetChain(p.ev, prev, auth.HashAfter(prev, p.canonical))
	body, err := fhir.Marshal(p.ev)
	if err != nil {
		return fhir.InternalError("audit", err)
	}
	v := p.version
	v.Body = body
	if err := tx.Put(ctx, v, p.index); err != nil {
		return err
	}
	if st, _ := ctx.Value(auditKey{}).(*auditState); st != nil {
		st.recorded.Store(true)
	}
	return nil
}

// auditInTx records a write's AuditEvent in the transaction that writes.
func (e *Engine) auditInTx(ctx context.Context, tx store.Tx, rec auth.AuditRecord) error {
	if !e.audit {
		return nil
	}
	p, err := e.prepareAudit(ctx, rec)
	if err != nil {
		return err
	}
	return e.appendAudit(ctx, tx, p)
}

// Audit records an interaction that did not record itself with a write: a
// read, a search, an operation, or any refusal or failure. It returns once the
// AuditEvent is durable; an error means the interaction must not be answered.
func (e *Engine) Audit(ctx context.Context, rec auth.AuditRecord) error {
	if !e.audit {
		return nil
	}
	p, err := e.prepareAudit(ctx, rec)
	if err != nil {
		return err
	}
	return e.store.Write(ctx, func(tx store.Tx) error { return e.appendAudit(ctx, tx, p) })
}

// writeRecord describes a committed write for the audit trail.
func writeRecord(interaction, action string, versions ...store.Version) auth.AuditRecord {
	rec := auth.AuditRecord{Interaction: interaction, Action: action}
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

// PatientOf names the patient a stored version is about (Patient/id), if any.
func PatientOf(v store.Version) string {
	if v.Type == "Patient" {
		return "Patient/" + v.ID
	}
	if len(v.Body) == 0 {
		return ""
	}
	obj, err := fhir.Parse(v.Body, fhir.Limits{})
	if err != nil {
		return ""
	}
	for _, k := range []string{"subject", "patient"} {
		if m, ok := obj[k].(map[string]any); ok {
			if ref, _ := m["reference"].(string); strings.HasPrefix(ref, "Patient/") {
				return ref
			}
		}
	}
	return ""
}
