package cld

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
	"crs/mapping"
)

func (im *importer) laSystem() string {
	return im.run.System("/Id/la-person/" + strings.ToUpper(im.opt.LACode))
}

func (im *importer) eventSystem() string {
	return im.run.System("/Id/cld-event/" + strings.ToUpper(im.opt.LACode))
}

// batch brings a batch of valid rows into the record: identity, mapping,
// one transaction (or one per person when the batch fails).
func (im *importer) batch(ctx context.Context, rows []*row) error {
	nhsSys, laSys := mapping.NHSNumberSystem, im.laSystem()
	nhsSet, laSet := map[string]bool{}, map[string]bool{}
	for _, rw := range rows {
		if rw.nhs != "" {
			nhsSet[rw.nhs] = true
		}
		if rw.laID != "" {
			laSet[rw.laID] = true
		}
	}
	// The batch names these persons; while the batch before, which names
	// some of them, is being written, its lookups would not see that write.
	keys := map[string]bool{}
	for v := range nhsSet {
		keys[nhsSys+"|"+v] = true
	}
	for v := range laSet {
		keys[laSys+"|"+v] = true
	}
	if im.pipe.Busy(keys) {
		if err := im.pipe.Wait(); err != nil {
			return err
		}
	}
	byNHS, byLA := map[string]map[string]bool{}, map[string]map[string]bool{}
	patients := map[string]mapping.Current{}
	for _, q := range []struct {
		system string
		values []string
		index  map[string]map[string]bool
	}{{nhsSys, sortedKeys(nhsSet), byNHS}, {laSys, sortedKeys(laSet), byLA}} {
		found, err := mapping.Lookup(ctx, im.door, "Patient", "identifier", q.system, q.values)
		if err != nil {
			return fmt.Errorf("match persons: %w", err)
		}
		for _, c := range found {
			patients[c.ID] = c
			for _, v := range mapping.Identifiers(c.Obj, q.system) {
				if q.index[v] == nil {
					q.index[v] = map[string]bool{}
				}
				q.index[v][c.ID] = true
			}
		}
	}

	persons := map[string]*person{} // Patient id, or "new:" + NHS number
	var order []*person
	var held []mapping.Held
	newByNHS, newByLA := map[string]*person{}, map[string]*person{}
	hold := func(rw *row, problem string, cands map[string]bool) {
		h := mapping.Held{Line: rw.rec.Line, Problem: problem, Row: rw.rec.Raw, Header: im.header}
		for _, id := range sortedKeys(cands) {
			h.Candidates = append(h.Candidates, "Patient/"+id)
		}
		held = append(held, h)
	}
	for _, rw := range rows {
		cands := map[string]bool{}
		for id := range byNHS[rw.nhs] {
			cands[id] = true
		}
		for id := range byLA[rw.laID] {
			cands[id] = true
		}
		if len(cands) > 1 {
			hold(rw, fmt.Sprintf("NHS number %q and LA person identifier %q name different Patients", rw.nhs, rw.laID), cands)
			continue
		}
		var p *person
		for id := range cands {
			cur := patients[id]
			if others := mapping.Identifiers(cur.Obj, nhsSys); rw.nhs != "" && len(others) > 0 && !mapping.HasIdentifier(cur.Obj, nhsSys, rw.nhs) {
				hold(rw, fmt.Sprintf("LA person identifier %q is linked to Patient/%s, whose NHS number is %s, not %s", rw.laID, id, strings.Join(others, ", "), rw.nhs), cands)
				break
			}
			if others := mapping.Identifiers(cur.Obj, laSys); rw.laID != "" && len(others) > 0 && !mapping.HasIdentifier(cur.Obj, laSys, rw.laID) {
				hold(rw, fmt.Sprintf("NHS number %s is Patient/%s, whose LA person identifier is %s, not %q", rw.nhs, id, strings.Join(others, ", "), rw.laID), cands)
				break
			}
			// Later rows of the batch match on what this row links.
			for _, link := range []struct {
				value string
				index map[string]map[string]bool
			}{{rw.nhs, byNHS}, {rw.laID, byLA}} {
				if link.value != "" && link.index[link.value] == nil {
					link.index[link.value] = map[string]bool{id: true}
				}
			}
			if p = persons[id]; p == nil {
				p = &person{patient: mapping.NewState(cur, "Patient"), sources: map[*mapping.State][]mapping.SourceRow{}}
				persons[id] = p
				order = append(order, p)
			}
		}
		if p == nil && len(cands) > 0 {
			continue // held above
		}
		if p == nil {
			a, b := newByNHS[rw.nhs], newByLA[rw.laID]
			switch {
			case rw.nhs != "" && a != nil:
				p = a
			case rw.laID != "" && b != nil:
				p = b
			}
			if a != nil && b != nil && a != b || p != nil && rw.nhs != "" && a != p {
				hold(rw, fmt.Sprintf("NHS number %q and LA person identifier %q name different people in this file", rw.nhs, rw.laID), nil)
				continue
			}
			if p == nil && rw.nhs == "" {
				hold(rw, fmt.Sprintf("no valid NHS number, and LA person identifier %q is linked to no Patient", rw.laID), nil)
				continue
			}
			if p == nil {
				p = &person{patient: im.newPatient(rw), sources: map[*mapping.State][]mapping.SourceRow{}}
				persons["new:"+rw.nhs] = p
				order = append(order, p)
			}
			if rw.nhs != "" {
				newByNHS[rw.nhs] = p
			}
			if rw.laID != "" {
				newByLA[rw.laID] = p
			}
		}
		p.rows = append(p.rows, rw)
	}

	// The episodes of the persons already recorded.
	var ids []string
	for _, p := range order {
		if p.patient.ID != "" {
			ids = append(ids, "Patient/"+p.patient.ID)
		}
	}
	for len(ids) > 0 {
		n := min(mapping.SearchChunk, len(ids))
		found, err := im.door.Search(ctx, "EpisodeOfCare", "patient="+url.QueryEscape(strings.Join(ids[:n], ","))+"&_count=500")
		if err != nil {
			return fmt.Errorf("find episodes: %w", err)
		}
		for _, c := range found {
			ref, _ := c.Obj["patient"].(map[string]any)
			pid := strings.TrimPrefix(fmt.Sprint(ref["reference"]), "Patient/")
			if p := persons[pid]; p != nil {
				p.episodes = append(p.episodes, mapping.NewState(c, "EpisodeOfCare"))
			}
		}
		ids = ids[n:]
	}

	var groups []mapping.Group
	for _, p := range order {
		for _, rw := range p.rows {
			if rerr := im.applyRow(ctx, p, rw); rerr != nil {
				im.rep.Reject(rerr)
			}
		}
		groups = append(groups, im.personGroup(p))
	}
	for _, h := range held {
		groups = append(groups, im.run.HeldGroup(h))
	}
	// The batch also names every person of the Patients it matched, by any
	// of their identifiers.
	var found []fhir.Object
	for _, c := range patients {
		found = append(found, c.Obj)
	}
	for k := range mapping.PersonKeys(found, []string{nhsSys, laSys}) {
		keys[k] = true
	}
	return im.pipe.Commit(ctx, groups, keys)
}

// snapshot keeps a person's state before a row, so that a row that fails
// leaves nothing of itself behind.
type snapshot struct {
	patient  fhir.Object
	episodes []*mapping.State
	objs     []fhir.Object
}

func take(p *person) snapshot {
	s := snapshot{patient: clone(p.patient.Obj), episodes: append([]*mapping.State(nil), p.episodes...)}
	for _, e := range p.episodes {
		s.objs = append(s.objs, clone(e.Obj))
	}
	return s
}

func (s snapshot) restore(p *person) {
	p.patient.Obj = s.patient
	p.episodes = s.episodes
	for i, e := range p.episodes {
		e.Obj = s.objs[i]
	}
}

// applyRow maps one row onto its person. A row that fails is undone.
func (im *importer) applyRow(ctx context.Context, p *person, rw *row) *mapping.RowError {
	snap := take(p)
	touched, skip, rerr := im.mapRow(ctx, p, rw)
	if rerr != nil {
		snap.restore(p)
		return rerr
	}
	if skip != "" {
		im.rep.Add(rw.rec.Line, "Event_Type", "skipped", skip)
	}
	src := mapping.SourceRow{Line: rw.rec.Line, Ref: rw.ref}
	p.sources[p.patient] = append(p.sources[p.patient], src)
	for _, e := range touched {
		p.sources[e] = append(p.sources[e], src)
	}
	return nil
}

// newPatient is the Patient of a person the record does not have yet
// (mapRow fills in the rest).
func (im *importer) newPatient(rw *row) *mapping.State {
	obj := newPatientTree(rw.nhs, rw.district)
	u := "urn:uuid:" + fhir.NewUUID()
	return &mapping.State{Type: "Patient", Obj: obj, FullURL: u, Cond: "identifier=" + mapping.OrList(mapping.NHSNumberSystem, []string{rw.nhs})}
}

// newPatientTree is a new Patient with its NHS number and postcode district,
// as the engine's tree: as fm.Patient{Identifier, Address} encodes
// (TestNewPatientAsTyped), without encoding it (2% of a CLD row's CPU).
func newPatientTree(nhs, district string) fhir.Object {
	obj := fhir.Object{"resourceType": "Patient",
		"identifier": []any{map[string]any{"system": mapping.NHSNumberSystem, "value": nhs}}}
	if district != "" {
		obj["address"] = []any{map[string]any{"use": fm.AddressUseHome.Code(), "postalCode": district}}
	}
	return obj
}

func ptr[T any](v T) *T { return mapping.Ptr(v) }

func toObject(v any) fhir.Object { return mapping.Object(v) }
