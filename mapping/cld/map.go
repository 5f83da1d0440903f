package cld

import (
	"context"
	"fmt"
	"sort"
	"strings"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
	"crs/mapping"
)

// Extension URLs the CLD import writes.
const (
	ethnicCategoryURL = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory"
	localityPath      = "/StructureDefinition/Extension-CRS-Locality"
	exitRoutePath     = "/StructureDefinition/Extension-CRS-ExitRoute"
)

func hasExtension(obj fhir.Object, u string) bool {
	list, _ := obj["extension"].([]any)
	for _, x := range list {
		if m, _ := x.(map[string]any); m["url"] == u {
			return true
		}
	}
	return false
}

// setExtension replaces (or adds) the extension with url u.
func setExtension(obj fhir.Object, ext fhir.Object) {
	list, _ := obj["extension"].([]any)
	out := make([]any, 0, len(list)+1)
	for _, x := range list {
		if m, _ := x.(map[string]any); m["url"] != ext["url"] {
			out = append(out, x)
		}
	}
	obj["extension"] = append(out, map[string]any(ext))
}

// mapRow maps one row onto its person: the demographics (filling gaps, never
// overwriting what the record holds: see the trust order in the README) and
// the event. It returns the episodes it touched, or why the event is not the
// pathway's (skipped; the demographics still count).
func (im *importer) mapRow(ctx context.Context, p *person, rw *row) ([]*mapping.State, string, *mapping.RowError) {
	line := rw.rec.Line
	pat := p.patient.Obj
	if rw.nhs != "" {
		mapping.AddIdentifier(pat, mapping.NHSNumberSystem, rw.nhs)
	}
	if rw.laID != "" {
		mapping.AddIdentifier(pat, im.laSystem(), rw.laID)
	}
	im.fill(pat, "gender", *rw.gender.Code, line, "Gender")
	im.fill(pat, "birthDate", rw.dob, line, "Date_of_Birth")
	if rw.dod != "" {
		_, b := pat["deceasedBoolean"]
		if _, d := pat["deceasedDateTime"]; !d && !b {
			pat["deceasedDateTime"] = rw.dod
		} else if d {
			im.fill(pat, "deceasedDateTime", rw.dod, line, "Date_of_Death")
		}
	}
	if !hasExtension(pat, ethnicCategoryURL) {
		setExtension(pat, toObject(fm.Extension{Url: ethnicCategoryURL, ValueCodeableConcept: &fm.CodeableConcept{Coding: []fm.Coding{rw.ethnicity}}}))
	}
	if la := im.run.System(mapping.ResponsibleLAURLPath); !hasExtension(pat, la) {
		setExtension(pat, toObject(fm.Extension{Url: la, ValueCoding: &fm.Coding{System: ptr(mapping.StatisticalGeography), Code: ptr(strings.ToUpper(im.opt.LACode))}}))
	}
	switch rw.event {
	case "service":
		if rw.service == nil {
			return nil, "not a short-term (pathway) service: ConceptMap " + im.cm("cld-service-component") + " says unmatched", nil
		}
		ep, rerr := im.serviceEpisode(ctx, p, rw)
		if rerr != nil {
			return nil, "", rerr
		}
		im.setCallsPerDay(ep, rw)
		return []*mapping.State{ep}, "", nil
	case "review":
		if rw.exit == nil {
			return nil, "the review's outcome does not end the service (no exit route)", nil
		}
		ep := episodeOn(p, rw.start, true)
		if ep == nil {
			return nil, "", &mapping.RowError{Line: line, Field: "Event_Start_Date", Reason: fmt.Sprintf("no EpisodeOfCare of this person started on or before %s for the review to end", rw.start)}
		}
		mapping.AddIdentifier(ep.Obj, im.eventSystem(), rw.ref)
		setExtension(ep.Obj, toObject(fm.Extension{Url: im.run.System(exitRoutePath), ValueCoding: rw.exit}))
		ep.Obj["status"] = "finished"
		period, _ := ep.Obj["period"].(map[string]any)
		if period == nil {
			period = map[string]any{"start": rw.start}
			ep.Obj["period"] = period
		}
		if _, ok := period["end"]; !ok {
			end := rw.end
			if end == "" {
				end = rw.start
			}
			period["end"] = end
		}
		return []*mapping.State{ep}, "", nil
	case "request":
		if !strings.EqualFold(rw.route, "Discharge from Hospital") {
			return nil, fmt.Sprintf("route of access %q is not a hospital discharge", rw.route), nil
		}
		ep := episodeOn(p, rw.start, false)
		if ep == nil {
			return nil, "no episode of care yet for the council's request: it is linked when its service is imported", nil
		}
		mapping.AddIdentifier(ep.Obj, im.eventSystem(), rw.ref)
		return []*mapping.State{ep}, "", nil
	}
	return nil, "assessments are not part of the shared record", nil
}

// fill sets a demographic the record lacks; a different value already there
// is kept and reported (the council's return is the least trusted source).
func (im *importer) fill(obj fhir.Object, key, value string, line int, field string) {
	cur, ok := obj[key].(string)
	switch {
	case !ok:
		obj[key] = value
	case cur != value:
		im.rep.Add(line, field, "warning", fmt.Sprintf("kept the record's %s %q: the council's %q does not overwrite it", key, cur, value))
	}
}

func period(obj fhir.Object) (start, end string) {
	p, _ := obj["period"].(map[string]any)
	start, _ = p["start"].(string)
	end, _ = p["end"].(string)
	return start[:min(10, len(start))], end[:min(10, len(end))]
}

// episodeOn returns the person's episode that covers day (or, with after, the
// latest that started on or before it), nil if none.
func episodeOn(p *person, day string, after bool) *mapping.State {
	var best *mapping.State
	bestStart := ""
	for _, e := range p.episodes {
		if e.Obj["status"] == "entered-in-error" || e.Obj["status"] == "cancelled" {
			continue
		}
		start, end := period(e.Obj)
		if start == "" || start > day {
			continue
		}
		if !after && end != "" && end < day {
			continue
		}
		if start > bestStart {
			best, bestStart = e, start
		}
	}
	return best
}

// serviceEpisode finds or makes the episode of a short-term service event:
// the one already keyed on the event reference, the one covering its start,
// or a new one (which needs the person's referral, the provider's
// Organization by CQC location, and a locality from the postcode).
func (im *importer) serviceEpisode(ctx context.Context, p *person, rw *row) (*mapping.State, *mapping.RowError) {
	line := rw.rec.Line
	for _, e := range p.episodes {
		if mapping.HasIdentifier(e.Obj, im.eventSystem(), rw.ref) {
			return im.updateEpisode(e, rw), nil
		}
	}
	if e := episodeOn(p, rw.start, false); e != nil {
		return im.updateEpisode(e, rw), nil
	}
	if p.patient.ID == "" {
		return nil, &mapping.RowError{Line: line, Field: "Event_Type", Reason: "no referral to the pathway for this person: an episode starts from the hospital's referral, and the record has none"}
	}
	refs, err := im.door.Search(ctx, "ServiceRequest", "subject=Patient/"+p.patient.ID+"&_count=500")
	if err != nil {
		return nil, &mapping.RowError{Line: line, Reason: "find the referral: " + err.Error()}
	}
	sort.Slice(refs, func(i, j int) bool {
		return fmt.Sprint(refs[i].Obj["authoredOn"]) > fmt.Sprint(refs[j].Obj["authoredOn"])
	})
	var referral string
	for _, r := range refs {
		if a := fmt.Sprint(r.Obj["authoredOn"]); a[:min(10, len(a))] <= rw.start {
			referral = "ServiceRequest/" + r.ID
			break
		}
	}
	if referral == "" {
		return nil, &mapping.RowError{Line: line, Field: "Event_Start_Date", Reason: fmt.Sprintf("no referral of this person made on or before %s to start an episode from", rw.start)}
	}
	org, rerr := im.provider(ctx, line, rw.cqc)
	if rerr != nil {
		return nil, rerr
	}
	if rw.district == "" {
		return nil, &mapping.RowError{Line: line, Field: "Postcode", Reason: "a new episode needs the person's postcode district to place it in a locality"}
	}
	loc, found, rerr := im.run.Translate(line, "Postcode", im.cm("cld-postcode-locality"), rw.district)
	if rerr != nil {
		return nil, rerr
	}
	if !found {
		return nil, &mapping.RowError{Line: line, Field: "Postcode", Reason: fmt.Sprintf("postcode district %s is in no locality of ConceptMap %s", rw.district, im.cm("cld-postcode-locality"))}
	}
	ep := fm.EpisodeOfCare{
		Extension:            []fm.Extension{{Url: im.run.System(localityPath), ValueCodeableConcept: &fm.CodeableConcept{Coding: []fm.Coding{loc}}}},
		Identifier:           []fm.Identifier{{System: ptr(im.eventSystem()), Value: ptr(rw.ref)}},
		Status:               fm.EpisodeOfCareStatusActive,
		Type:                 []fm.CodeableConcept{{Coding: []fm.Coding{*rw.service}}},
		Patient:              fm.Reference{Reference: ptr("Patient/" + p.patient.ID)},
		ManagingOrganization: &fm.Reference{Reference: ptr(org)},
		ReferralRequest:      []fm.Reference{{Reference: ptr(referral)}},
		Period:               &fm.Period{Start: ptr(rw.start)},
	}
	if rw.end != "" {
		ep.Period.End = ptr(rw.end)
	}
	s := &mapping.State{Type: "EpisodeOfCare", Obj: toObject(ep), FullURL: "urn:uuid:" + fhir.NewUUID(),
		Cond: "identifier=" + mapping.OrList(im.eventSystem(), []string{rw.ref})}
	p.episodes = append(p.episodes, s)
	return s, nil
}

// updateEpisode keys an existing episode on the service event and records
// its end.
func (im *importer) updateEpisode(e *mapping.State, rw *row) *mapping.State {
	mapping.AddIdentifier(e.Obj, im.eventSystem(), rw.ref)
	if rw.end != "" {
		p, _ := e.Obj["period"].(map[string]any)
		if p != nil {
			if _, ok := p["end"]; !ok {
				p["end"] = rw.end
			}
		}
	}
	return e
}

// provider finds the care provider's Organization by its CQC location id.
func (im *importer) provider(ctx context.Context, line int, cqc string) (string, *mapping.RowError) {
	if ref, ok := im.orgs[cqc]; ok {
		return ref, nil
	}
	found, err := im.door.Search(ctx, "Organization", "identifier="+mapping.OrList(CQCLocationSystem, []string{cqc}))
	if err != nil {
		return "", &mapping.RowError{Line: line, Field: "Provider_CQC_Location_ID", Reason: "find the provider: " + err.Error()}
	}
	if len(found) != 1 {
		return "", &mapping.RowError{Line: line, Field: "Provider_CQC_Location_ID", Reason: fmt.Sprintf("%d Organizations have CQC location %s: the provider must be recorded once", len(found), cqc)}
	}
	im.orgs[cqc] = "Organization/" + found[0].ID
	return im.orgs[cqc], nil
}
