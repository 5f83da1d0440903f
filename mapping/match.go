package mapping

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Person is who a source row says it is about: a valid NHS number and/or the
// source's own reference for the person (under LocalSystem).
type Person struct {
	NHS   string
	Local string
}

// Match is the outcome of matching one row's Person: the Patient id, or the
// problem that holds the row for review (with the candidates).
type Match struct {
	PatientID  string
	Problem    string
	Candidates []string // Patient/id
}

// Matcher finds the Patients of a batch of rows by NHS number and by a local
// identifier already linked to a Patient. It never creates a Patient and never
// merges: no match, or identifiers pointing at different people, is a
// problem (the row is held for review).
type Matcher struct {
	Door        Door
	LocalSystem string // the identifier system of the source's person reference
	LocalName   string // what the source calls it, for messages ("client reference")

	Patients       map[string]*State // Patient id → state (found by Match)
	byNHS, byLocal map[string]map[string]bool
}

// Find looks up the Patients of persons (one search per identifier system and
// chunk of values).
func (m *Matcher) Find(ctx context.Context, persons []Person) error {
	m.Patients, m.byNHS, m.byLocal = map[string]*State{}, map[string]map[string]bool{}, map[string]map[string]bool{}
	nhs, local := map[string]bool{}, map[string]bool{}
	for _, p := range persons {
		if p.NHS != "" {
			nhs[p.NHS] = true
		}
		if p.Local != "" {
			local[p.Local] = true
		}
	}
	for _, q := range []struct {
		system string
		set    map[string]bool
		index  map[string]map[string]bool
	}{{NHSNumberSystem, nhs, m.byNHS}, {m.LocalSystem, local, m.byLocal}} {
		values := make([]string, 0, len(q.set))
		for v := range q.set {
			values = append(values, v)
		}
		sort.Strings(values)
		found, err := Lookup(ctx, m.Door, "Patient", "identifier", q.system, values)
		if err != nil {
			return fmt.Errorf("match persons: %w", err)
		}
		for _, c := range found {
			if m.Patients[c.ID] == nil {
				m.Patients[c.ID] = NewState(c, "Patient")
			}
			for _, v := range Identifiers(c.Obj, q.system) {
				if q.index[v] == nil {
					q.index[v] = map[string]bool{}
				}
				q.index[v][c.ID] = true
			}
		}
	}
	return nil
}

// Match matches one row's person against what Find found. A match links the
// local reference for the later rows of the batch (the caller writes the link
// onto the Patient with Link).
func (m *Matcher) Match(p Person) Match {
	cands := map[string]bool{}
	for id := range m.byNHS[p.NHS] {
		cands[id] = true
	}
	for id := range m.byLocal[p.Local] {
		cands[id] = true
	}
	var out Match
	for id := range cands {
		out.Candidates = append(out.Candidates, "Patient/"+id)
	}
	sort.Strings(out.Candidates)
	switch len(cands) {
	case 0:
		if p.NHS == "" {
			out.Problem = fmt.Sprintf("no valid NHS number, and %s %q is linked to no Patient this organisation may see", m.LocalName, p.Local)
		} else {
			out.Problem = fmt.Sprintf("no Patient this organisation may see has NHS number %s or %s %q", p.NHS, m.LocalName, p.Local)
		}
		return out
	case 1:
	default:
		out.Problem = fmt.Sprintf("NHS number %q and %s %q name different Patients", p.NHS, m.LocalName, p.Local)
		return out
	}
	var id string
	for id = range cands {
	}
	pat := m.Patients[id]
	if others := Identifiers(pat.Obj, NHSNumberSystem); p.NHS != "" && len(others) > 0 && !HasIdentifier(pat.Obj, NHSNumberSystem, p.NHS) {
		out.Problem = fmt.Sprintf("%s %q is Patient/%s, whose NHS number is %s, not %s", m.LocalName, p.Local, id, strings.Join(others, ", "), p.NHS)
		return out
	}
	if others := Identifiers(pat.Obj, m.LocalSystem); p.Local != "" && len(others) > 0 && !HasIdentifier(pat.Obj, m.LocalSystem, p.Local) {
		out.Problem = fmt.Sprintf("NHS number %s is Patient/%s, whose %s is %s, not %q", p.NHS, id, m.LocalName, strings.Join(others, ", "), p.Local)
		return out
	}
	if p.Local != "" && m.byLocal[p.Local] == nil {
		m.byLocal[p.Local] = map[string]bool{id: true}
	}
	out.PatientID = id
	return out
}

// Link adds the local reference to the matched Patient, once: it returns the
// Patient's state when this row is the one that links it (to be written with
// the row, with its Provenance), nil when there is nothing to link.
func (m *Matcher) Link(id string, p Person) *State {
	pat := m.Patients[id]
	if p.Local == "" || HasIdentifier(pat.Obj, m.LocalSystem, p.Local) {
		return nil
	}
	AddIdentifier(pat.Obj, m.LocalSystem, p.Local)
	return pat
}

// Written records that the state's change is being written (by the group
// that carries it), so that later rows do not write it again.
func Written(s *State) {
	s.Old, _ = marshalContent(s.Obj)
	s.Version++
}
