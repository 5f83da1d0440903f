package adt

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // Europe/London for times sent without an offset

	"crs/fhir"
	"crs/mapping"
	"crs/mapping/hl7v2"
)

// apply is one message being applied.
type apply struct {
	im              *Importer
	m               *hl7v2.Message
	ods, facility   string
	event           string
	org             mapping.Current
	door            mapping.Door // as the feed (acute-adt, acute-trust)
	referrals       mapping.Door // as the trust's referrer role only (acute-trust)
	msgID           identifier
	patient, encntr *mapping.State
}

type identifier struct{ System, Value string }

// writes looks up what the message is about (inside its transaction,
// applyInTx) and returns its writes, the Provenance first, with an AA result
// carrying the note for MSA-3, or the AE result of a message that cannot be
// applied (no writes). The lookups ran in the same transaction, so a create
// needs no condition: nothing can have come in between.
func (a *apply) writes(ctx context.Context) ([]mapping.Entry, Result) {
	pid := a.m.Segment("PID")
	if pid == nil {
		return nil, Result{Code: hl7v2.AE, Err: fail("PID", 0, hl7v2.CodeSegmentSequence, "no PID segment")}
	}
	nhs, status, hosp, herr := a.identifiers(pid)
	if herr != nil {
		return nil, Result{Code: hl7v2.AE, Err: herr}
	}
	withEncounter := a.event != "A28" && a.event != "A31" && (a.event != "A08" || a.m.Segment("PV1").Value(19, 1) != "")
	if err := a.findPatient(ctx, nhs, hosp); err != nil {
		return nil, Result{Code: hl7v2.AE, Err: err}
	}
	demographics := a.event == "A08" || a.event == "A28" || a.event == "A31" || a.patient.Old == nil
	if herr := a.setPatient(pid, nhs, status, hosp, demographics); herr != nil {
		return nil, Result{Code: hl7v2.AE, Err: herr}
	}
	states := []*mapping.State{a.patient}
	var note string
	if withEncounter {
		if herr := a.encounter(ctx); herr != nil {
			return nil, Result{Code: hl7v2.AE, Err: herr}
		}
		states = append(states, a.encntr)
		if a.event == "A03" {
			sr, n, herr := a.dischargeReady(ctx)
			if herr != nil {
				return nil, Result{Code: hl7v2.AE, Err: herr}
			}
			note = n
			if sr != nil {
				states = append(states, sr)
			}
		}
	}
	entries, targets := a.entries(states)
	if !a.patient.Changed() {
		// The message is about this person even when it changes nothing of
		// theirs: its Provenance names them (and so lets the feed find them).
		targets = append([]string{a.patient.Ref()}, targets...)
	}
	// The Provenance goes first: it is what lets the feed see and update a
	// person it has not written about before (the acute-adt Patient rule).
	prov := mapping.Entry{FullURL: "urn:uuid:" + fhir.NewUUID(), Method: "POST", URL: "Provenance", Resource: a.provenance(targets)}
	return append([]mapping.Entry{prov}, entries...), Result{Code: hl7v2.AA, Note: note}
}

var verificationCode = regexp.MustCompile(`^0[1-8]$`)

var nhsType = map[string]bool{"NH": true, "NHS": true}

// identifiers reads PID-3: the NHS number (assigning authority NHS or type
// NH) with its verification status (PID-3.9 … or PID-32 as ITK sends it), and
// the hospital number (type PI or MR, or the first other identifier).
func (a *apply) identifiers(pid *hl7v2.Segment) (nhs, status, hosp string, _ *hl7v2.Error) {
	nhs, hosp, err := identifiersAt(pid, 3)
	if err != nil {
		return "", "", "", err
	}
	status = pid.Value(32, 1)
	if status != "" && !verificationCode.MatchString(status) {
		return "", "", "", fail("PID", 32, hl7v2.CodeTableValue, "NHS number verification status %q is not one of 01–08", status)
	}
	return nhs, status, hosp, nil
}

// identifiersAt reads a patient identifier list (PID-3, MRG-1): the NHS
// number and the hospital number.
func identifiersAt(seg *hl7v2.Segment, field int) (nhs, hosp string, _ *hl7v2.Error) {
	for r := 0; r < seg.Reps(field); r++ {
		v, auth, typ := seg.Get(field, r, 1, 1), strings.ToUpper(seg.Get(field, r, 4, 1)), strings.ToUpper(seg.Get(field, r, 5, 1))
		switch {
		case v == "":
		case nhsType[typ] || auth == "NHS":
			v = strings.ReplaceAll(v, " ", "")
			if ok, why := mapping.ValidNHSNumber(v); !ok {
				return "", "", fail(seg.Name, field, hl7v2.CodeDataType, "NHS number %q: %s", v, why)
			}
			nhs = v
		case hosp == "" || typ == "PI" || typ == "MR":
			hosp = v
		}
	}
	if nhs == "" && hosp == "" {
		return "", "", fail(seg.Name, field, hl7v2.CodeRequiredMissing, "no patient identifier (neither an NHS number nor a hospital number)")
	}
	return nhs, hosp, nil
}

// findPatient finds the Patient by NHS number, then by hospital number; two
// different people is an error (held: the trust must merge them first).
func (a *apply) findPatient(ctx context.Context, nhs, hosp string) *hl7v2.Error {
	found, err := a.candidates(ctx, nhs, hosp)
	if err != nil {
		return err
	}
	switch len(found) {
	case 0:
		a.patient = &mapping.State{Type: "Patient", FullURL: "urn:uuid:" + fhir.NewUUID(), Obj: fhir.Object{"resourceType": "Patient"}}
	case 1:
		for _, c := range found {
			a.patient = mapping.NewState(c, "Patient")
		}
	default:
		return fail("PID", 3, hl7v2.CodeUnknownKey, "the NHS number and the hospital number name %d different Patients: merge them first", len(found))
	}
	return nil
}

// candidates are the Patients the NHS number or the hospital number name,
// among those the trust may see: one search (both identifiers, OR) per role.
// A Patient merged into another (link replaced-by) stands for the survivor.
func (a *apply) candidates(ctx context.Context, nhs, hosp string) (map[string]mapping.Current, *hl7v2.Error) {
	hospSystem := a.im.system(hospitalNumberPath + a.ods)
	var ids []string
	for _, q := range []identifier{{mapping.NHSNumberSystem, nhs}, {hospSystem, hosp}} {
		if q.Value != "" {
			ids = append(ids, mapping.EscapeValue(q.System)+"|"+mapping.EscapeValue(q.Value))
		}
	}
	found := map[string]mapping.Current{}
	survivors := map[string]bool{}
	// The people the feed has written about (acute-adt), and those the trust
	// referred (acute-trust): each search policed as that role. When the
	// feed's search finds one person holding every identifier sent, the
	// second cannot name another (one active Patient per NHS number; the
	// hospital number is the trust's own), and is not run.
	for i, d := range []mapping.Door{a.door, a.referrals} {
		if i == 1 && len(found) == 1 && len(survivors) == 0 {
			var c mapping.Current
			for _, c = range found {
			}
			if (nhs == "" || mapping.HasIdentifier(c.Obj, mapping.NHSNumberSystem, nhs)) && (hosp == "" || mapping.HasIdentifier(c.Obj, hospSystem, hosp)) {
				break
			}
		}
		cs, err := d.Search(ctx, "Patient", "identifier="+url.QueryEscape(strings.Join(ids, ",")))
		if err != nil {
			return nil, describe(err)
		}
		for _, c := range cs {
			if to := replacedBy(c.Obj); to != "" {
				survivors[to] = true
				continue
			}
			found[c.ID] = c
		}
	}
	for id := range survivors {
		if _, ok := found[id]; ok {
			continue
		}
		for _, d := range []mapping.Door{a.door, a.referrals} {
			cs, err := d.Search(ctx, "Patient", "_id="+url.QueryEscape(id))
			if err != nil {
				return nil, describe(err)
			}
			if len(cs) == 1 && replacedBy(cs[0].Obj) == "" {
				found[id] = cs[0]
				break
			}
		}
	}
	return found, nil
}

// replacedBy is the id of the Patient a merged Patient was merged into ("" for
// one not merged).
func replacedBy(p fhir.Object) string {
	for _, l := range asList(p["link"]) {
		lm, _ := l.(map[string]any)
		o, _ := lm["other"].(map[string]any)
		if ref, _ := o["reference"].(string); lm["type"] == "replaced-by" && strings.HasPrefix(ref, "Patient/") {
			return strings.TrimPrefix(ref, "Patient/")
		}
	}
	return ""
}

var genders = map[string]string{"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}

// setPatient writes the identifiers, and with demographics the name, birth
// date, gender, address and telephone PID sends (what it leaves empty is kept).
func (a *apply) setPatient(pid *hl7v2.Segment, nhs, status, hosp string, demographics bool) *hl7v2.Error {
	p := a.patient.Obj
	if nhs != "" && !mapping.HasIdentifier(p, mapping.NHSNumberSystem, nhs) {
		id := map[string]any{"system": mapping.NHSNumberSystem, "value": nhs}
		if status != "" {
			id["extension"] = []any{map[string]any{"url": verificationURL, "valueCodeableConcept": map[string]any{
				"coding": []any{map[string]any{"system": verificationSystem, "code": status}}}}}
		}
		p["identifier"] = append(asList(p["identifier"]), id)
	}
	if hosp != "" {
		mapping.AddIdentifier(p, a.im.system(hospitalNumberPath+a.ods), hosp)
	}
	if !demographics {
		return nil
	}
	if family := pid.Value(5, 1); family != "" {
		name := map[string]any{"use": "official", "family": family}
		var given []any
		for _, g := range []string{pid.Value(5, 2), pid.Value(5, 3)} {
			if g != "" {
				given = append(given, g)
			}
		}
		if len(given) > 0 {
			name["given"] = given
		}
		if pfx := pid.Value(5, 5); pfx != "" {
			name["prefix"] = []any{pfx}
		}
		p["name"] = []any{name}
	}
	if dob := pid.Value(7, 1); dob != "" {
		d, err := date(dob)
		if err != nil {
			return fail("PID", 7, hl7v2.CodeDataType, "date of birth %q: %v", dob, err)
		}
		p["birthDate"] = d
	}
	if sex := pid.Value(8, 1); sex != "" {
		g, ok := genders[strings.ToUpper(sex)]
		if !ok {
			return fail("PID", 8, hl7v2.CodeTableValue, "administrative sex %q is not one of M, F, O, U, A, N", sex)
		}
		p["gender"] = g
	}
	if pid.Value(11, 1) != "" || pid.Value(11, 5) != "" {
		addr := map[string]any{"use": "home"}
		var lines []any
		for _, c := range []int{1, 2} {
			if v := pid.Value(11, c); v != "" {
				lines = append(lines, v)
			}
		}
		if len(lines) > 0 {
			addr["line"] = lines
		}
		for c, k := range map[int]string{3: "city", 4: "district", 5: "postalCode"} {
			if v := pid.Value(11, c); v != "" {
				addr[k] = v
			}
		}
		p["address"] = []any{addr}
	}
	if tel := pid.Value(13, 1); tel != "" {
		p["telecom"] = []any{map[string]any{"system": "phone", "value": tel, "use": "home"}}
	}
	return nil
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

var classes = map[string][2]string{
	"I": {"IMP", "inpatient encounter"}, "E": {"EMER", "emergency"}, "O": {"AMB", "ambulatory"},
	"P": {"PRENC", "pre-admission"}, "R": {"AMB", "ambulatory"}, "B": {"IMP", "inpatient encounter"},
}

// encounter makes or changes the acute Encounter named by the visit number
// PV1-19.
func (a *apply) encounter(ctx context.Context) *hl7v2.Error {
	pv1 := a.m.Segment("PV1")
	if pv1 == nil {
		return fail("PV1", 0, hl7v2.CodeSegmentSequence, "no PV1 segment")
	}
	visit := pv1.Value(19, 1)
	if visit == "" {
		return fail("PV1", 19, hl7v2.CodeRequiredMissing, "no visit number: the acute Encounter is identified by it")
	}
	sys := a.im.system(visitNumberPath + a.ods)
	found, err := a.door.Search(ctx, "Encounter", "identifier="+sys+"|"+visit)
	if err != nil {
		return describe(err)
	}
	switch {
	case len(found) > 1:
		return fail("PV1", 19, hl7v2.CodeUnknownKey, "%d Encounters have visit number %s", len(found), visit)
	case len(found) == 1:
		a.encntr = mapping.NewState(found[0], "Encounter")
		// A person not on the record yet cannot hold a visit that is: the
		// Encounter's subject is someone else.
		if ref, _ := mapAt(a.encntr.Obj, "subject")["reference"].(string); ref != "" && ref != a.patient.Ref() {
			return fail("PV1", 19, hl7v2.CodeUnknownKey, "visit number %s belongs to another Patient", visit)
		}
	case a.event == "A11" || a.event == "A12" || a.event == "A13":
		return fail("PV1", 19, hl7v2.CodeUnknownKey, "no Encounter has visit number %s: nothing to cancel", visit)
	default:
		a.encntr = &mapping.State{Type: "Encounter", FullURL: "urn:uuid:" + fhir.NewUUID(),
			Obj: fhir.Object{"resourceType": "Encounter", "identifier": []any{map[string]any{"system": sys, "value": visit}}, "status": "in-progress"}}
	}
	e := a.encntr.Obj
	e["subject"] = map[string]any{"reference": a.patient.Ref()}
	e["serviceProvider"] = map[string]any{"reference": "Organization/" + a.org.ID}
	if c, ok := classes[strings.ToUpper(pv1.Value(2, 1))]; ok {
		e["class"] = map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c[0], "display": c[1]}
	} else if pv1.Value(2, 1) != "" {
		return fail("PV1", 2, hl7v2.CodeTableValue, "patient class %q is not one of I, E, O, P, R, B", pv1.Value(2, 1))
	} else if e["class"] == nil {
		return fail("PV1", 2, hl7v2.CodeRequiredMissing, "no patient class")
	}
	if ward := wardText(pv1); ward != "" {
		e["location"] = []any{map[string]any{"location": map[string]any{"display": ward}, "status": "active"}}
	}
	period := mapAt(e, "period")
	eventTime := a.m.Segment("EVN").Value(2, 1)
	if eventTime == "" {
		eventTime = a.m.Segment("MSH").Value(7, 1)
	}
	// The event time is the admission only for an admission or registration.
	admitted := pv1.Value(44, 1)
	if admitted == "" && (a.event == "A01" || a.event == "A04") {
		admitted = eventTime
	}
	if start := admitted; start != "" && period["start"] == nil {
		t, err := a.dateTime(start)
		if err != nil {
			return fail("PV1", 44, hl7v2.CodeDataType, "admit date/time %q: %v", start, err)
		}
		period["start"] = t
	}
	switch a.event {
	case "A01", "A02", "A04", "A12":
		// A12 (cancel transfer) sends in PV1-3 the location the patient is
		// back in: a new version, like the transfer it undoes.
		e["status"] = "in-progress"
	case "A05":
		if a.encntr.ID == "" || e["status"] == "planned" {
			e["status"] = "planned"
		}
	case "A03":
		e["status"] = "finished"
		end := first(pv1.Value(45, 1), eventTime)
		t, err := a.dateTime(end)
		if err != nil {
			return fail("PV1", 45, hl7v2.CodeDataType, "discharge date/time %q: %v", end, err)
		}
		period["end"] = t
		field, dest := 37, pv1.Value(37, 1)
		if dest == "" {
			field, dest = 36, pv1.Value(36, 1)
		}
		if dest != "" {
			cm, ok := a.im.Config.Profiles.ConceptMap(a.im.system(dischargeMapPath))
			if !ok {
				return fail("PV1", field, hl7v2.CodeInternal, "no ConceptMap %s", a.im.system(dischargeMapPath))
			}
			ts := cm.Translate("", dest)
			if len(ts) == 0 || ts[0].Unmatched() {
				return fail("PV1", field, hl7v2.CodeTableValue, "discharge destination %q is not in ConceptMap %s", dest, a.im.system(dischargeMapPath))
			}
			coding := map[string]any{"system": ts[0].System, "code": ts[0].Code}
			if ts[0].Display != "" {
				coding["display"] = ts[0].Display
			}
			mapAt(e, "hospitalization")["dischargeDisposition"] = map[string]any{"coding": []any{coding}}
		}
	case "A11":
		e["status"] = "cancelled"
	case "A13":
		e["status"] = "in-progress"
		delete(period, "end")
		if h, ok := e["hospitalization"].(map[string]any); ok {
			delete(h, "dischargeDisposition")
			if len(h) == 0 {
				delete(e, "hospitalization")
			}
		}
	}
	if len(period) == 0 {
		delete(e, "period")
	}
	return nil
}

func wardText(pv1 *hl7v2.Segment) string {
	var parts []string
	for c := 1; c <= 3; c++ {
		if v := pv1.Value(3, c); v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, ", ")
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// mapAt is the object at key of obj, made when absent.
func mapAt(obj map[string]any, key string) map[string]any {
	if m, ok := obj[key].(map[string]any); ok {
		return m
	}
	m := map[string]any{}
	obj[key] = m
	return m
}

// dischargeReady puts the Discharge Ready Date (the configured field) on the
// trust's open referral for this person: the one naming this Encounter, or
// else the only active one. With none, the date is reported in MSA-3.
func (a *apply) dischargeReady(ctx context.Context) (*mapping.State, string, *hl7v2.Error) {
	path := a.im.Config.DischargeReadyDate
	if path.Segment == "" {
		path = DefaultDischargeReadyDate
	}
	raw := a.m.Get(path)
	if raw == "" {
		return nil, "", nil
	}
	drd, err := a.dateTime(raw)
	if err != nil {
		return nil, "", fail(path.Segment, path.Field, hl7v2.CodeDataType, "Discharge Ready Date %q: %v", raw, err)
	}
	if a.patient.ID == "" {
		return nil, "Discharge Ready Date " + drd + " not recorded: no referral for this person yet", nil
	}
	q := "subject=" + a.patient.Ref() + "&status=active,draft,on-hold&requester:Organization.identifier=" + mapping.ODSSystem + "|" + a.ods
	found, serr := a.door.Search(ctx, "ServiceRequest", q)
	if serr != nil {
		return nil, "", describe(serr)
	}
	var pick []mapping.Current
	for _, c := range found {
		if ref, _ := mapAt(c.Obj, "encounter")["reference"].(string); a.encntr.ID != "" && ref == "Encounter/"+a.encntr.ID {
			pick = append(pick, c)
		}
	}
	if len(pick) == 0 {
		pick = found
	}
	if len(pick) != 1 {
		return nil, fmt.Sprintf("Discharge Ready Date %s not recorded: %d open referrals from %s for this person", drd, len(pick), a.ods), nil
	}
	sr := mapping.NewState(pick[0], "ServiceRequest")
	url := a.im.system(drdExtensionPath)
	var exts []any
	for _, x := range asList(sr.Obj["extension"]) {
		if xm, ok := x.(map[string]any); ok && xm["url"] == url {
			continue
		}
		exts = append(exts, x)
	}
	sr.Obj["extension"] = append(exts, map[string]any{"url": url, "valueDateTime": drd})
	return sr, "", nil
}

// entries are the writes of the changed states, and their references.
func (a *apply) entries(states []*mapping.State) ([]mapping.Entry, []string) {
	var out []mapping.Entry
	var targets []string
	for _, s := range states {
		if !s.Changed() {
			continue
		}
		if s.ID == "" {
			out = append(out, mapping.Entry{FullURL: s.FullURL, Method: "POST", URL: s.Type, Resource: s.Obj})
		} else {
			obj := mapping.StripMeta(s.Obj)
			obj["id"] = s.ID
			out = append(out, mapping.Entry{Method: "PUT", URL: s.Type + "/" + s.ID, IfMatch: s.Version, Resource: obj})
		}
		targets = append(targets, s.Ref())
	}
	return out, targets
}

// provenance records the message: the trust as author, the message (sending
// facility, type and control id) as the source entity.
func (a *apply) provenance(targets []string) fhir.Object {
	var tl []any
	for _, t := range targets {
		tl = append(tl, map[string]any{"reference": t})
	}
	typ, event := a.m.Type()
	return fhir.Object{
		"resourceType": "Provenance",
		"target":       tl,
		"recorded":     time.Now().UTC().Format(time.RFC3339),
		"activity": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}},
			"text": "HL7 v2 " + typ + "^" + event},
		"agent": []any{map[string]any{
			"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}}},
			"who":  map[string]any{"reference": "Organization/" + a.org.ID, "display": "ODS " + a.ods},
		}},
		"entity": []any{map[string]any{
			"role": "source",
			"what": map[string]any{
				"identifier": map[string]any{"system": a.msgID.System, "value": a.msgID.Value},
				"display":    fmt.Sprintf("HL7 v2 %s^%s control id %s from sending facility %s (%s)", typ, event, a.msgID.Value, a.facility, a.m.Segment("MSH").Value(3, 1)),
			},
		}},
	}
}

// date converts an HL7 DT/TS to a FHIR date (YYYY, YYYYMM or YYYYMMDD).
func date(s string) (string, error) {
	if len(s) > 8 {
		s = s[:8]
	}
	for _, layout := range []struct{ in, out string }{{"20060102", "2006-01-02"}, {"200601", "2006-01"}, {"2006", "2006"}} {
		if len(s) == len(layout.in) {
			t, err := time.Parse(layout.in, s)
			if err != nil {
				return "", fmt.Errorf("not a date (YYYYMMDD)")
			}
			return t.Format(layout.out), nil
		}
	}
	return "", fmt.Errorf("not a date (YYYYMMDD)")
}

// dateTime converts an HL7 TS (YYYYMMDD[HHMM[SS[.S…]]][+/-ZZZZ]) to a FHIR
// dateTime; a time without an offset is in the configured zone.
func (a *apply) dateTime(s string) (string, error) {
	if len(s) <= 8 {
		return date(s)
	}
	zone := a.im.Config.Location
	if zone == nil {
		zone = london
	}
	main, off := s, ""
	if i := strings.IndexAny(s, "+-"); i > 0 {
		main, off = s[:i], s[i:]
	}
	if i := strings.IndexByte(main, '.'); i > 0 {
		main = main[:i]
	}
	layouts := map[int]string{12: "200601021504", 14: "20060102150405", 10: "2006010215"}
	layout, ok := layouts[len(main)]
	if !ok {
		return "", fmt.Errorf("not a date/time (YYYYMMDDHHMM[SS][+ZZZZ])")
	}
	var t time.Time
	var err error
	if off != "" {
		t, err = time.Parse(layout+"-0700", main+off)
	} else {
		t, err = time.ParseInLocation(layout, main, zone)
	}
	if err != nil {
		return "", fmt.Errorf("not a date/time (YYYYMMDDHHMM[SS][+ZZZZ])")
	}
	return t.Format(time.RFC3339), nil
}

var london = func() *time.Location {
	l, err := time.LoadLocation("Europe/London")
	if err != nil {
		return time.UTC
	}
	return l
}()
