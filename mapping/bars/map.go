package bars

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"crs/fhir"
	"crs/mapping"
)

// Reference rewriting: what an entry's fullUrl or Type/id becomes in the
// transaction. Organizations become conditional references by ODS code (they
// are registered, never created by a message); Practitioners and
// PractitionerRoles are not stored (the caller may not create them), so a
// reference to one keeps its name as the display.
type target struct {
	ref     string // the reference to write; "" keeps only the display
	display string
	roleOrg string // a PractitionerRole's organization reference, as sent
}

// entries maps the message to the transaction: the Provenance first, then the
// Patient (found or created by NHS number), Encounters (found or created by
// identifier) and the referral (created for new, replaced for update).
// focus is how the transaction names the referral.
// src[k] is the message entry the transaction's entry k comes from (-1: the
// Provenance).
func (r *Receiver) entries(ctx context.Context, door mapping.Door, msg *message, now time.Time) (out []mapping.Entry, src []int, focus string, _ error) {
	targets := map[string]target{}
	keys := func(i int) []string {
		var ks []string
		for k, j := range msg.byKey {
			if j == i {
				ks = append(ks, k)
			}
		}
		return ks
	}
	var patient, referral = -1, -1
	var encounters []int
	urn := map[int]string{}
	for i, e := range msg.entries[1:] {
		i++
		rt := fhir.ResourceType(e.res)
		var t target
		switch rt {
		case "Organization":
			ods := first(mapping.Identifiers(e.res, mapping.ODSSystem))
			if ods == "" {
				return nil, nil, "", fhir.Errorf(fhir.Invalid, e.where+".identifier", "an Organization of a referral is named by its ODS code (%s)", mapping.ODSSystem)
			}
			t.ref = "Organization?identifier=" + mapping.ODSSystem + "|" + ods
		case "Practitioner":
			t.display = personName(e.res)
		case "PractitionerRole":
			t.roleOrg, _ = asMap(e.res["organization"])["reference"].(string)
			t.display, _ = asMap(e.res["practitioner"])["display"].(string)
			if p, ok := msg.byKey[fmt.Sprint(asMap(e.res["practitioner"])["reference"])]; ok && t.display == "" {
				t.display = personName(msg.entries[p].res)
			}
		case "Patient", "Encounter", "ServiceRequest":
			urn[i] = "urn:uuid:" + fhir.NewUUID()
			t.ref = urn[i]
			switch {
			case rt == "Patient" && patient >= 0:
				return nil, nil, "", fhir.Errorf(fhir.Invalid, e.where, "a referral message is about one Patient: this one has two")
			case rt == "Patient":
				patient = i
			case rt == "Encounter":
				encounters = append(encounters, i)
			case msg.byKey[msg.focus] != i:
				return nil, nil, "", fhir.Errorf(fhir.NotSupported, e.where, "a referral message carries one ServiceRequest, its focus: this is another")
			default:
				referral = i
			}
		case "MessageHeader":
			return nil, nil, "", fhir.Errorf(fhir.Invalid, e.where, "a message has one MessageHeader, its first entry")
		default:
			return nil, nil, "", fhir.Errorf(fhir.NotSupported, e.where, "%s is not accepted in a referral message (Patient, Encounter, Organization, Practitioner, PractitionerRole, ServiceRequest)", rt)
		}
		for _, k := range keys(i) {
			targets[k] = t
		}
	}
	if patient < 0 {
		return nil, nil, "", fhir.Errorf(fhir.Invalid, "Bundle.entry", "a referral message carries the Patient it is about")
	}
	sender := r.organizationRef(msg.senderRef, targets)

	// The referral this message is about: by its identifier.
	se := msg.entries[referral]
	sys, val := firstIdentifier(se.res)
	if sys == "" || val == "" {
		return nil, nil, "", fhir.Errorf(fhir.Invalid, se.where+".identifier", "the ServiceRequest has no identifier with a system and value: later updates and the cancellation find the referral by it")
	}
	found, err := door.Search(ctx, "ServiceRequest", "identifier="+url.QueryEscape(sys+"|"+val))
	if err != nil {
		return nil, nil, "", err
	}
	// An update's Encounter without an identifier is the one the referral
	// already names (not a new one at each update).
	reuse := map[int]string{} // message entry → the stored Encounter's reference
	if msg.reason == "update" && len(found) == 1 {
		if ref, _ := asMap(found[0].Obj["encounter"])["reference"].(string); ref != "" {
			for _, i := range encounters {
				if _, v := firstIdentifier(msg.entries[i].res); v == "" {
					reuse[i] = ref
					for _, k := range keys(i) {
						targets[k] = target{ref: ref}
					}
				}
			}
		}
	}

	// The Patient: found by NHS number (so a person already on the record,
	// e.g. from the trust's ADT feed, is not duplicated), else created.
	pe := msg.entries[patient]
	nhs := first(mapping.Identifiers(pe.res, mapping.NHSNumberSystem))
	if nhs == "" {
		return nil, nil, "", fhir.Errorf(fhir.Invalid, pe.where+".identifier", "the Patient has no NHS number (%s): a referral is matched to the record by it", mapping.NHSNumberSystem)
	}
	if ok, why := mapping.ValidNHSNumber(nhs); !ok {
		return nil, nil, "", fhir.Errorf(fhir.Invalid, pe.where+".identifier", "NHS number %q: %s", nhs, why)
	}
	pat := r.content(pe.res, patientProfile, targets)
	src = []int{-1, patient}
	writes := []mapping.Entry{{FullURL: urn[patient], Method: "POST", URL: "Patient", IfNoneExist: "identifier=" + mapping.NHSNumberSystem + "|" + nhs, Resource: pat}}
	provTargets := []string{urn[patient]}
	for _, i := range encounters {
		if ref, ok := reuse[i]; ok {
			provTargets = append(provTargets, ref)
			continue
		}
		enc := r.content(msg.entries[i].res, encounterProfile, targets)
		w := mapping.Entry{FullURL: urn[i], Method: "POST", URL: "Encounter", Resource: enc}
		if sys, val := firstIdentifier(enc); val != "" {
			w.IfNoneExist = "identifier=" + url.QueryEscape(sys+"|"+val)
		}
		writes = append(writes, w)
		src = append(src, i)
		provTargets = append(provTargets, urn[i])
	}

	// The referral: the CRS Referral, derived where the sender's differs.
	sr := r.content(se.res, referralProfile, targets)
	sr["intent"] = "plan"
	addCareSetting(sr)
	if err := r.requester(sr, se, targets, sender); err != nil {
		return nil, nil, "", err
	}
	if sr["encounter"] == nil && len(encounters) == 1 {
		ref, ok := reuse[encounters[0]]
		if !ok {
			ref = urn[encounters[0]]
		}
		sr["encounter"] = map[string]any{"reference": ref}
	}
	switch {
	case msg.reason == "new" && len(found) > 0:
		return nil, nil, "", fhir.Errorf(fhir.Conflict, se.where+".identifier", "a referral with identifier %s|%s was received before: send changes and cancellations with reason update", sys, val)
	case msg.reason == "new":
		writes = append(writes, mapping.Entry{FullURL: urn[referral], Method: "POST", URL: "ServiceRequest", IfNoneExist: "identifier=" + url.QueryEscape(sys+"|"+val), Resource: sr})
		focus = urn[referral]
	case len(found) == 0:
		return nil, nil, "", fhir.Errorf(fhir.NotFound, se.where+".identifier", "no referral with identifier %s|%s: send it first with reason new", sys, val)
	case len(found) > 1:
		return nil, nil, "", fhir.Errorf(fhir.TooManyMatches, se.where+".identifier", "%d referrals have identifier %s|%s", len(found), sys, val)
	default:
		old := found[0]
		keepExtensions(sr, old.Obj)
		sr["id"] = old.ID
		focus = "ServiceRequest/" + old.ID
		writes = append(writes, mapping.Entry{Method: "PUT", URL: focus, IfMatch: old.Version, Resource: sr})
	}
	src = append(src, referral)
	provTargets = append(provTargets, focus)
	prov := r.provenance(msg, provTargets, sender, now)
	out = append([]mapping.Entry{{FullURL: "urn:uuid:" + fhir.NewUUID(), Method: "POST", URL: "Provenance",
		IfNoneExist: "entity:identifier=" + r.system(messagePath) + "|" + msg.id, Resource: prov}}, writes...)
	return out, src, focus, nil
}

// content is a copy of a sent resource to be written: no id, the pathway's
// profile claimed in place of the sender's meta, references rewritten.
func (r *Receiver) content(res fhir.Object, profile string, targets map[string]target) fhir.Object {
	out := rewrite(copyJSON(res), targets).(map[string]any)
	delete(out, "id")
	out["meta"] = map[string]any{"profile": []any{r.system(profile)}}
	return out
}

// rewrite replaces the references of v to entries of the message.
func rewrite(v any, targets map[string]target) any {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			x[k] = rewrite(c, targets)
		}
		if ref, ok := x["reference"].(string); ok {
			if t, ok := targets[ref]; ok {
				if t.ref != "" {
					x["reference"] = t.ref
				} else {
					delete(x, "reference")
					delete(x, "type")
					if x["display"] == nil && t.display != "" {
						x["display"] = t.display
					}
					if x["display"] == nil {
						x["display"] = "(practitioner of the referring organisation)"
					}
				}
			}
		}
		return x
	case []any:
		for i, c := range x {
			x[i] = rewrite(c, targets)
		}
	}
	return v
}

// organizationRef is the rewritten reference of an Organization ("" when ref
// names none).
func (r *Receiver) organizationRef(ref string, targets map[string]target) string {
	if t, ok := targets[ref]; ok && strings.HasPrefix(t.ref, "Organization") {
		return t.ref
	}
	if strings.HasPrefix(ref, "Organization/") || strings.HasPrefix(ref, "Organization?") {
		return ref
	}
	return ""
}

// requester makes the referral's requester the referring Organization: as
// sent, or the organisation of the PractitionerRole sent, or the message's
// sender; a practitioner's name is kept as its display.
func (r *Receiver) requester(sr fhir.Object, se entry, targets map[string]target, sender string) error {
	sentRef, _ := asMap(se.res["requester"])["reference"].(string)
	req := asMap(sr["requester"])
	if ref, _ := req["reference"].(string); strings.HasPrefix(ref, "Organization") {
		return nil
	}
	org := sender
	if t, ok := targets[sentRef]; ok && t.roleOrg != "" {
		if o := r.organizationRef(t.roleOrg, targets); o != "" {
			org = o
		}
	}
	if org == "" {
		return fhir.Errorf(fhir.Invalid, se.where+".requester", "the referring organisation is not known: the requester is an Organization, a PractitionerRole with one, or the MessageHeader.sender is")
	}
	out := map[string]any{"reference": org}
	if d, ok := req["display"].(string); ok && d != "" {
		out["display"] = d
	}
	sr["requester"] = out
	return nil
}

// addCareSetting adds the CRS Referral's care-setting category when the
// sender did not send it.
func addCareSetting(sr fhir.Object) {
	cats := asList(sr["category"])
	for _, c := range cats {
		for _, cd := range asList(asMap(c)["coding"]) {
			if m := asMap(cd); m["system"] == snomed && m["code"] == careSettingCode {
				return
			}
		}
	}
	sr["category"] = append(cats, map[string]any{"coding": []any{map[string]any{"system": snomed, "code": careSettingCode}}})
}

// keepExtensions carries over the stored referral's extensions the update
// does not send (e.g. the Discharge Ready Date the trust's ADT feed set), so
// that an update replaces what the sender owns and loses nothing else.
func keepExtensions(sr, old fhir.Object) {
	sent := map[string]bool{}
	exts := asList(sr["extension"])
	for _, x := range exts {
		if u, ok := asMap(x)["url"].(string); ok {
			sent[u] = true
		}
	}
	for _, x := range asList(old["extension"]) {
		if u, ok := asMap(x)["url"].(string); ok && !sent[u] {
			exts = append(exts, x)
		}
	}
	if len(exts) > 0 {
		sr["extension"] = exts
	}
}

// provenance records the message: the sender as author, the message as the
// source entity (its identifier is what a resend is recognised by).
func (r *Receiver) provenance(msg *message, targets []string, sender string, now time.Time) fhir.Object {
	var tl []any
	for _, t := range targets {
		tl = append(tl, map[string]any{"reference": t})
	}
	who := map[string]any{"display": "the sender of BaRS message " + msg.id}
	if sender != "" {
		who["reference"] = sender
	}
	return fhir.Object{
		"resourceType": "Provenance",
		"target":       tl,
		"recorded":     now.UTC().Format(time.RFC3339),
		"activity": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}},
			"text": "BaRS " + EventRequest + " (" + msg.reason + ")"},
		"agent": []any{map[string]any{
			"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}}},
			"who":  who,
		}},
		"entity": []any{map[string]any{
			"role": "source",
			"what": map[string]any{
				"identifier": map[string]any{"system": r.system(messagePath), "value": msg.id},
				"display":    "BaRS message " + msg.id + " from " + first([]string{msg.source, "an unnamed endpoint"}),
			},
		}},
	}
}

func firstIdentifier(obj fhir.Object) (system, value string) {
	for _, x := range asList(obj["identifier"]) {
		m := asMap(x)
		s, _ := m["system"].(string)
		v, _ := m["value"].(string)
		if s != "" && v != "" {
			return s, v
		}
	}
	return "", ""
}

// personName is a Practitioner's name as text.
func personName(res fhir.Object) string {
	for _, n := range asList(res["name"]) {
		nm := asMap(n)
		if t, _ := nm["text"].(string); t != "" {
			return t
		}
		var parts []string
		for _, p := range asList(nm["prefix"]) {
			parts = append(parts, fmt.Sprint(p))
		}
		for _, g := range asList(nm["given"]) {
			parts = append(parts, fmt.Sprint(g))
		}
		if f, _ := nm["family"].(string); f != "" {
			parts = append(parts, f)
		}
		if len(parts) > 0 {
			return strings.Join(parts, " ")
		}
	}
	return ""
}

func first(vs []string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// copyJSON is a deep copy of a parsed JSON value.
func copyJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			out[k] = copyJSON(c)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = copyJSON(c)
		}
		return out
	}
	return v
}
