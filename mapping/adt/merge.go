package adt

import (
	"context"

	"crs/fhir"
	"crs/mapping"
	"crs/mapping/hl7v2"
)

// mergeWrites looks up an A40's two Patients (inside its transaction,
// applyInTx) and returns the merge's writes, the Provenance first, and the
// ids of the Patient merged (from) and the survivor (to), or the AE result of
// a merge that cannot be applied (no writes). The Patient named by MRG-1 (the
// merged, prior identifiers) is merged into the one named by PID-3 (the
// survivor); both must be on the record. The merged Patient becomes inactive
// with a link replaced-by the survivor, the survivor gets a link replaces (and
// the merged one's NHS number when it has none), and the engine moves every
// reference to the merged Patient onto the survivor in the same transaction
// (Engine.MergePatientsWith): nothing is deleted, nothing is lost.
func (a *apply) mergeWrites(ctx context.Context) (_ []mapping.Entry, from, to string, _ Result) {
	pid := a.m.Segment("PID")
	if pid == nil {
		return nil, "", "", Result{Code: hl7v2.AE, Err: fail("PID", 0, hl7v2.CodeSegmentSequence, "no PID segment")}
	}
	mrg := a.m.Segment("MRG")
	if mrg == nil {
		return nil, "", "", Result{Code: hl7v2.AE, Err: fail("MRG", 0, hl7v2.CodeSegmentSequence, "an A40 carries an MRG segment naming the patient merged")}
	}
	if len(a.m.All("MRG")) > 1 {
		return nil, "", "", Result{Code: hl7v2.AE, Err: fail("MRG", 0, hl7v2.CodeSegmentSequence, "one merge per message: send each PID/MRG pair as its own A40")}
	}
	nhs, _, hosp, herr := a.identifiers(pid)
	if herr != nil {
		return nil, "", "", Result{Code: hl7v2.AE, Err: herr}
	}
	survivor, herr := a.onePatient(ctx, "PID", 3, nhs, hosp)
	if herr != nil {
		return nil, "", "", Result{Code: hl7v2.AE, Err: herr}
	}
	oldNHS, oldHosp, herr := identifiersAt(mrg, 1)
	if herr != nil {
		return nil, "", "", Result{Code: hl7v2.AE, Err: herr}
	}
	merged, herr := a.onePatient(ctx, "MRG", 1, oldNHS, oldHosp)
	if herr != nil {
		return nil, "", "", Result{Code: hl7v2.AE, Err: herr}
	}
	if merged.ID == survivor.ID {
		if linkedTo(survivor.Obj, "replaced-by", "") {
			return nil, "", "", Result{Code: hl7v2.AE, Err: fail("MRG", 1, hl7v2.CodeUnknownKey, "Patient/%s is already merged", merged.ID)}
		}
		return nil, "", "", Result{Code: hl7v2.AE, Err: fail("MRG", 1, hl7v2.CodeUnknownKey, "PID-3 and MRG-1 name the same Patient/%s: nothing to merge", merged.ID)}
	}
	if linkedTo(merged.Obj, "replaced-by", "") {
		return nil, "", "", Result{Code: hl7v2.AE, Err: fail("MRG", 1, hl7v2.CodeUnknownKey, "Patient/%s is already merged into another Patient", merged.ID)}
	}
	if linkedTo(survivor.Obj, "replaced-by", "") {
		return nil, "", "", Result{Code: hl7v2.AE, Err: fail("PID", 3, hl7v2.CodeUnknownKey, "Patient/%s was itself merged into another Patient: name the surviving one", survivor.ID)}
	}
	m, s := merged.Obj, survivor.Obj
	m["active"] = false
	m["link"] = append(asList(m["link"]), map[string]any{"other": map[string]any{"reference": "Patient/" + survivor.ID}, "type": "replaced-by"})
	if !linkedTo(s, "replaces", "Patient/"+merged.ID) {
		s["link"] = append(asList(s["link"]), map[string]any{"other": map[string]any{"reference": "Patient/" + merged.ID}, "type": "replaces"})
	}
	if len(mapping.Identifiers(s, mapping.NHSNumberSystem)) == 0 {
		for _, x := range asList(m["identifier"]) {
			if xm, ok := x.(map[string]any); ok && xm["system"] == mapping.NHSNumberSystem {
				s["identifier"] = append(asList(s["identifier"]), xm)
			}
		}
	}
	states := []*mapping.State{merged, survivor}
	entries, targets := a.entries(states)
	prov := mapping.Entry{FullURL: "urn:uuid:" + fhir.NewUUID(), Method: "POST", URL: "Provenance", Resource: a.provenance(targets)}
	return append([]mapping.Entry{prov}, entries...), merged.ID, survivor.ID, Result{Code: hl7v2.AA}
}

// onePatient is the one Patient the identifiers of a field name; none is an
// error (a merge names two patients on the record).
func (a *apply) onePatient(ctx context.Context, seg string, field int, nhs, hosp string) (*mapping.State, *hl7v2.Error) {
	found, herr := a.candidates(ctx, nhs, hosp)
	if herr != nil {
		return nil, herr
	}
	switch len(found) {
	case 0:
		return nil, fail(seg, field, hl7v2.CodeUnknownKey, "no Patient on the record has NHS number %q or hospital number %q: a merge names two patients the trust holds", nhs, hosp)
	case 1:
		for _, c := range found {
			return mapping.NewState(c, "Patient"), nil
		}
	}
	return nil, fail(seg, field, hl7v2.CodeUnknownKey, "the NHS number and the hospital number name %d different Patients", len(found))
}

// linkedTo reports whether a Patient has a link of type typ (to other, or to
// any Patient when other is "").
func linkedTo(p fhir.Object, typ, other string) bool {
	for _, l := range asList(p["link"]) {
		lm, _ := l.(map[string]any)
		o, _ := lm["other"].(map[string]any)
		if lm["type"] == typ && (other == "" || o["reference"] == other) {
			return true
		}
	}
	return false
}
