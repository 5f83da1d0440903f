package engine

import (
	"context"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// mergeKey carries a patient merge into the transaction that writes it.
type mergeKey struct{}

// patientMerge is a merge in progress: references to Patient/from move to
// Patient/to.
type patientMerge struct{ from, to string }

// MergePatients runs the transaction Bundle body — a patient merge's own
// writes, as the caller: the merged Patient (from) inactive with a link
// replaced-by the survivor (to), the survivor with a link replaces, and the
// merge's Provenance — and, in the same store transaction, moves onto
// Patient/to every reference to Patient/from held by any other record
// (Provenance excepted: it records what happened to whom). Moving is a
// system-level step of the merge: it is not bounded by the caller's access
// policy (the records of other organisations move too, or the merge would
// strand them), and each record moved is audited as an update by the caller.
// The transaction must leave Patient/from merged into Patient/to, or nothing
// is written.
func (e *Engine) MergePatients(ctx context.Context, body []byte, from, to string, opt SearchOptions) (*Bundle, error) {
	if !fhir.ValidID(from) || !fhir.ValidID(to) || from == to {
		return nil, fhir.Errorf(fhir.Invalid, "", "a merge names two different Patients by id: %q into %q", from, to)
	}
	if b, err := fhir.Parse(body, e.limits); err != nil {
		return nil, err
	} else if b["type"] != "transaction" {
		return nil, fhir.Errorf(fhir.Invalid, "Bundle.type", "a merge is one transaction Bundle, not %v", b["type"])
	}
	return e.Bundle(context.WithValue(ctx, mergeKey{}, &patientMerge{from: from, to: to}), body, opt)
}

// moveReferences is the merge step of a transaction run by MergePatients
// (nothing otherwise), inside its store transaction after its entries.
func (e *Engine) moveReferences(ctx context.Context, tx store.Tx, now time.Time) error {
	m, _ := ctx.Value(mergeKey{}).(*patientMerge)
	if m == nil {
		return nil
	}
	cur, err := tx.Read(ctx, "Patient", m.from)
	if err != nil {
		return err
	}
	merged, err := fhir.Parse(cur.Body, fhir.Limits{})
	if err != nil {
		return fhir.InternalError("merge", err)
	}
	if holdsIdentity(merged) || !linked(merged, "replaced-by", "Patient/"+m.to) {
		return fhir.Errorf(fhir.Invalid, "Patient.link", "a merge leaves Patient/%s inactive and replaced-by Patient/%s", m.from, m.to)
	}
	refs, err := e.referencing(ctx, tx, "Patient", m.from, 0)
	if err != nil {
		return err
	}
	for _, v := range refs {
		if v.Type == "Patient" || v.Type == "Provenance" {
			continue
		}
		obj, err := fhir.Parse(v.Body, fhir.Limits{})
		if err != nil {
			return fhir.InternalError("merge", err)
		}
		if !moveRefs(obj, "Patient/"+m.from, "Patient/"+m.to, strings.TrimRight(e.base, "/")+"/") {
			continue
		}
		next, index, err := e.stamp(obj, fhir.KeyOrder(v.Body), v.Type, v.ID, v.VersionID+1, now, "PUT")
		if err != nil {
			return err
		}
		if err := tx.Put(ctx, next, index); err != nil {
			return err
		}
		if err := e.auditInTx(ctx, tx, writeRecord("update", "U", next)); err != nil {
			return err
		}
	}
	return nil
}

// linked reports whether a Patient has a link of type to other.
func linked(p fhir.Object, typ, other string) bool {
	links, _ := p["link"].([]any)
	for _, l := range links {
		lm, _ := l.(map[string]any)
		o, _ := lm["other"].(map[string]any)
		if lm["type"] == typ && o["reference"] == other {
			return true
		}
	}
	return false
}

// moveRefs replaces every reference to from (relative, or absolute under
// base) by to, and reports whether it replaced any.
func moveRefs(v any, from, to, base string) bool {
	moved := false
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "reference" && (s == from || s == base+from) {
				x[k] = to
				moved = true
				continue
			}
			if moveRefs(c, from, to, base) {
				moved = true
			}
		}
	case []any:
		for _, c := range x {
			if moveRefs(c, from, to, base) {
				moved = true
			}
		}
	}
	return moved
}
