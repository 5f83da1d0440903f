package mapping

import (
	"net/url"
	"strconv"
	"strings"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
)

// An import's Provenance and the line a resource came from.
//
// A transaction of an import carries one Provenance for the resources it
// creates and one for those it changes (Provenance.target is 1..*), not one
// per resource: FHIR importers record a batch's provenance so, and
// Provenance?target=Encounter/x still finds the run, the organisation, the
// time and the file behind any resource. The row a version came from is its
// meta.source (SourceURI): it belongs to the version it made, it is
// searchable (_source), and it costs one search value where a Provenance per
// resource cost a resource row and its eight search values.

// SourceURI is meta.source of a resource version the rows made: the source's
// import system, the file (path-escaped) and the rows' lines, as
// "…/Id/import-source/visits/visits.csv#line=12" (several rows:
// "#line=3,7", the lines in the order read, each once).
func (r *Run) SourceURI(rows []SourceRow) string {
	var b strings.Builder
	b.WriteString(r.System("/Id/import-source/" + r.Source))
	b.WriteByte('/')
	b.WriteString(url.PathEscape(r.File))
	b.WriteString("#line=")
	seen := map[int]bool{}
	for _, row := range rows {
		if seen[row.Line] {
			continue
		}
		if len(seen) > 0 {
			b.WriteByte(',')
		}
		seen[row.Line] = true
		b.WriteString(strconv.Itoa(row.Line))
	}
	return b.String()
}

// setSource sets meta.source of obj to the rows' SourceURI, keeping the rest
// of its meta (tags, security labels, profiles).
func (r *Run) setSource(obj fhir.Object, rows []SourceRow) {
	meta, _ := obj["meta"].(map[string]any)
	cp := make(map[string]any, len(meta)+1)
	for k, v := range meta {
		cp[k] = v
	}
	cp["source"] = r.SourceURI(rows)
	obj["meta"] = cp
}

// BatchProvenance is the Provenance of the resources one transaction of the
// run creates (created) or changes: every one of them as a target, the
// importing organisation as author, the time and the run as the activity, and
// the file (lines first to last) as the source entity. The line of each
// resource is its meta.source.
func (r *Run) BatchProvenance(targets []string, created bool, first, last int) fhir.Object {
	p := Clone(r.provenanceBase(created))
	list := make([]any, len(targets))
	for i, t := range targets {
		list[i] = map[string]any{"reference": t}
	}
	p["target"] = list
	display := r.Source + " file " + r.File + " line " + strconv.Itoa(first)
	if last != first {
		display = r.Source + " file " + r.File + " lines " + strconv.Itoa(first) + "-" + strconv.Itoa(last)
	}
	p["entity"] = []any{map[string]any{
		"role": fm.ProvenanceEntityRoleSource.Code(),
		"what": map[string]any{
			"identifier": map[string]any{"system": r.System("/Id/import-source/" + r.Source), "value": r.File},
			"display":    display,
		},
	}}
	return p
}

// provenances are the Provenance entries of a transaction of groups: one
// for the resources it creates, one for those it changes (none when it
// writes no resource: held rows only).
func provenances(groups []Group) []Entry {
	var run *Run
	var created, updated []string
	first, last := 0, 0
	for _, g := range groups {
		for i, kind := range g.Kinds {
			if kind != "resource" || g.States[i] == nil {
				continue
			}
			run = g.run
			if g.Entries[i].Method == "POST" {
				created = append(created, g.States[i].Ref())
			} else {
				updated = append(updated, g.States[i].Ref())
			}
		}
		for _, l := range g.Lines {
			if first == 0 || l < first {
				first = l
			}
			last = max(last, l)
		}
	}
	if run == nil {
		return nil
	}
	var out []Entry
	if len(created) > 0 {
		out = append(out, Entry{Method: "POST", URL: "Provenance", Resource: run.BatchProvenance(created, true, first, last)})
	}
	if len(updated) > 0 {
		out = append(out, Entry{Method: "POST", URL: "Provenance", Resource: run.BatchProvenance(updated, false, first, last)})
	}
	return out
}
