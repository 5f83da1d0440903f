// Package visits imports care-visit logs from a care provider's electronic
// call monitoring or rostering system (CSV): each visit becomes an Encounter
// (class HH) on the person's EpisodeOfCare, with its visit type, its period
// from the actual times, its carers and what happened (delivered, missed,
// cancelled, frustrated). There is no public schema for these exports: the
// column names are data (a column map per system; columns.json is the
// default).
package visits

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	_ "time/tzdata" // UK local times in exports without a zone

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
	"crs/mapping"
)

//go:embed columns.json
var defaultColumns []byte

// The fields of a visit log, by their canonical names (the keys of a column map).
var (
	requiredFields = []string{"Visit_ID", "Client_Reference", "Planned_Start", "Status"}
	optionalFields = []string{"NHS_Number", "Carer_IDs", "Planned_End", "Actual_Start", "Actual_End", "Carers_Required", "Verification", "Visit_Type"}
)

// ColumnMap names, for each field, the column a system's export calls it.
type ColumnMap map[string]string

// ParseColumnMap reads a column map (JSON: field → column). Fields it leaves
// out keep their canonical names; unknown fields are an error.
func ParseColumnMap(data []byte) (ColumnMap, error) {
	m := ColumnMap{}
	if err := json.Unmarshal(defaultColumns, &m); err != nil {
		return nil, err
	}
	if len(data) == 0 {
		return m, nil
	}
	var over map[string]string
	if err := json.Unmarshal(data, &over); err != nil {
		return nil, fmt.Errorf("the column map is not a JSON object of field → column: %v", err)
	}
	for k, v := range over {
		if _, ok := m[k]; !ok {
			return nil, fmt.Errorf("the column map names an unknown field %q (fields: %s, %s)", k, strings.Join(requiredFields, ", "), strings.Join(optionalFields, ", "))
		}
		m[k] = v
	}
	return m, nil
}

// Options configures an import.
type Options struct {
	Columns   ColumnMap // nil: the default
	BatchRows int       // rows per transaction (default 500)
	DryRun    bool
	Encoding  mapping.Encoding
	Progress  func(rows int)
}

type row struct {
	rec       mapping.Record
	id        string
	client    string
	nhs       string
	carers    []string
	start     string // the period: actual times when delivered, planned otherwise
	end       string
	outcome   fm.Coding
	visitType fm.Coding
	day       string // the visit's date (UK), to find the episode
}

var london, _ = time.LoadLocation("Europe/London")

// instant reads a time: RFC 3339, or UK local "YYYY-MM-DD HH:MM[:SS]",
// "YYYY-MM-DDTHH:MM[:SS]", "DD/MM/YYYY HH:MM[:SS]".
func instant(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "02/01/2006 15:04:05", "02/01/2006 15:04"} {
		if t, err := time.ParseInLocation(layout, s, london); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

type importer struct {
	door   mapping.Door
	run    *mapping.Run
	opt    Options
	rep    *mapping.Report
	cols   ColumnMap
	header []string
	seen   mapping.Seen
	pipe   *mapping.Pipeline // writes a batch while the next is mapped
}

func (im *importer) clientSystem() string  { return im.run.System("/Id/provider-client/" + im.run.ODS) }
func (im *importer) visitSystem() string   { return im.run.System("/Id/visit/" + im.run.ODS) }
func (im *importer) carerSystem() string   { return im.run.System("/Id/carer/" + im.run.ODS) }
func (im *importer) cm(name string) string { return im.run.System("/ConceptMap/" + name) }

// Import reads a visit log from r and brings its visits into the record
// through door, as the care provider run.Org.
func Import(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, opt Options, rep *mapping.Report) error {
	if opt.BatchRows <= 0 {
		opt.BatchRows = 500
	}
	cols := opt.Columns
	if cols == nil {
		var err error
		if cols, err = ParseColumnMap(nil); err != nil {
			return err
		}
	}
	cr, err := mapping.NewCSVReader(r, opt.Encoding, columnNames(cols))
	if err != nil {
		return err
	}
	im := &importer{door: door, run: run, opt: opt, rep: rep, cols: cols, header: cr.Header,
		pipe: &mapping.Pipeline{Door: door, DryRun: opt.DryRun, Report: rep}}
	err = mapping.Batches(cr, rep, opt.BatchRows, im.parse, func(rows []*row) error { return im.batch(ctx, rows) }, opt.Progress)
	if werr := im.pipe.Wait(); err == nil {
		err = werr
	}
	return err
}

// columnNames are the columns a column map names, required and optional.
func columnNames(cols ColumnMap) mapping.Columns {
	names := mapping.Columns{}
	for _, f := range requiredFields {
		names.Required = append(names.Required, cols[f])
	}
	for _, f := range optionalFields {
		names.Optional = append(names.Optional, cols[f])
	}
	return names
}

func (im *importer) get(rec mapping.Record, field string) string { return rec.Get(im.cols[field]) }

func (im *importer) parse(rec mapping.Record) (*row, *mapping.RowError) {
	line := rec.Line
	bad := func(field, format string, args ...any) *mapping.RowError {
		return &mapping.RowError{Line: line, Field: im.cols[field], Reason: fmt.Sprintf(format, args...)}
	}
	rw := &row{rec: rec, id: im.get(rec, "Visit_ID"), client: im.get(rec, "Client_Reference")}
	if rw.id == "" {
		return nil, bad("Visit_ID", "the visit has no id")
	}
	if first, dup := im.seen.Add(rw.id, line); dup {
		return nil, bad("Visit_ID", "visit id %q repeats the one on line %d", rw.id, first)
	}
	if n := strings.ReplaceAll(im.get(rec, "NHS_Number"), " ", ""); n != "" {
		if ok, why := mapping.ValidNHSNumber(n); !ok {
			return nil, bad("NHS_Number", "%s", why)
		}
		rw.nhs = n
	}
	if rw.client == "" && rw.nhs == "" {
		return nil, bad("Client_Reference", "the visit names nobody: no client reference and no NHS number")
	}
	c, found, rerr := im.run.Translate(line, im.cols["Status"], im.cm("visit-status"), im.get(rec, "Status"))
	if rerr != nil {
		return nil, rerr
	}
	if !found {
		return nil, bad("Status", "status %q has no target in ConceptMap %s", im.get(rec, "Status"), im.cm("visit-status"))
	}
	rw.outcome = c
	rw.visitType = fm.Coding{System: mapping.Ptr(im.run.System("/CodeSystem/crs-visit-type")), Code: mapping.Ptr("care-visit"), Display: mapping.Ptr("Care visit")}
	if vt := im.get(rec, "Visit_Type"); vt != "" {
		c, found, rerr := im.run.Translate(line, im.cols["Visit_Type"], im.cm("visit-type"), vt)
		if rerr != nil {
			return nil, rerr
		}
		if !found {
			return nil, bad("Visit_Type", "visit type %q has no target in ConceptMap %s", vt, im.cm("visit-type"))
		}
		rw.visitType = c
	}
	times := map[string]time.Time{}
	for _, f := range []string{"Planned_Start", "Planned_End", "Actual_Start", "Actual_End"} {
		s := im.get(rec, f)
		if s == "" {
			continue
		}
		t, ok := instant(s)
		if !ok {
			return nil, bad(f, "%q is not a time (RFC 3339, or UK local YYYY-MM-DD HH:MM or DD/MM/YYYY HH:MM)", s)
		}
		times[f] = t
	}
	if _, ok := times["Planned_Start"]; !ok {
		return nil, bad("Planned_Start", "the visit has no planned start")
	}
	startF, endF := "Planned_Start", "Planned_End"
	if *rw.outcome.Code == "delivered" {
		startF, endF = "Actual_Start", "Actual_End"
		for _, f := range []string{startF, endF} {
			if _, ok := times[f]; !ok {
				return nil, bad(f, "a delivered visit needs its actual start and end")
			}
		}
	}
	start, end := times[startF], times[endF]
	if !end.IsZero() && end.Before(start) {
		return nil, bad(endF, "the visit ends (%s) before it starts (%s)", im.get(rec, endF), im.get(rec, startF))
	}
	rw.start = start.UTC().Format(time.RFC3339)
	if !end.IsZero() {
		rw.end = end.UTC().Format(time.RFC3339)
	}
	rw.day = start.In(london).Format("2006-01-02")
	rw.carers = strings.FieldsFunc(im.get(rec, "Carer_IDs"), func(r rune) bool { return r == ';' || r == '|' || r == ' ' || r == '/' })
	return rw, nil
}

// batch matches the visits' persons, finds their episodes and visits, and
// writes what changed.
func (im *importer) batch(ctx context.Context, rows []*row) error {
	m := &mapping.Matcher{Door: im.door, LocalSystem: im.clientSystem(), LocalName: "client reference"}
	var persons []mapping.Person
	var visitIDs []string
	for _, rw := range rows {
		persons = append(persons, mapping.Person{NHS: rw.nhs, Local: rw.client})
		visitIDs = append(visitIDs, rw.id)
	}
	// The batch names these persons; while the batch before, which names
	// some of them, is being written, its lookups would not see that write.
	systems := []string{mapping.NHSNumberSystem, im.clientSystem()}
	keys := map[string]bool{}
	for _, p := range persons {
		if p.NHS != "" {
			keys[systems[0]+"|"+p.NHS] = true
		}
		if p.Local != "" {
			keys[systems[1]+"|"+p.Local] = true
		}
	}
	if im.pipe.Busy(keys) {
		if err := im.pipe.Wait(); err != nil {
			return err
		}
	}
	if err := m.Find(ctx, persons); err != nil {
		return err
	}
	// It also names every person of the Patients it matched, by any of
	// their identifiers.
	var matched []fhir.Object
	for _, s := range m.Patients {
		matched = append(matched, s.Obj)
	}
	for k := range mapping.PersonKeys(matched, systems) {
		keys[k] = true
	}
	patients := m.Patients
	visits := map[string]*mapping.State{}
	found, err := mapping.Lookup(ctx, im.door, "Encounter", "identifier", im.visitSystem(), visitIDs)
	if err != nil {
		return fmt.Errorf("find visits: %w", err)
	}
	for _, c := range found {
		for _, v := range mapping.Identifiers(c.Obj, im.visitSystem()) {
			visits[v] = mapping.NewState(c, "Encounter")
		}
	}
	var pids []string
	for id := range patients {
		pids = append(pids, "Patient/"+id)
	}
	episodes := map[string][]mapping.Current{}
	for len(pids) > 0 {
		n := min(mapping.SearchChunk, len(pids))
		found, err := im.door.Search(ctx, "EpisodeOfCare", "patient="+url.QueryEscape(strings.Join(pids[:n], ","))+"&_count=500")
		if err != nil {
			return fmt.Errorf("find episodes: %w", err)
		}
		for _, c := range found {
			ref, _ := c.Obj["patient"].(map[string]any)
			pid := strings.TrimPrefix(fmt.Sprint(ref["reference"]), "Patient/")
			episodes[pid] = append(episodes[pid], c)
		}
		pids = pids[n:]
	}

	var groups []mapping.Group
	for _, rw := range rows {
		person := mapping.Person{NHS: rw.nhs, Local: rw.client}
		match := m.Match(person)
		if match.Problem != "" {
			h := mapping.Held{Line: rw.rec.Line, Problem: match.Problem, Row: rw.rec.Raw, Header: im.header, Candidates: match.Candidates}
			groups = append(groups, im.run.HeldGroup(h))
			continue
		}
		pid := match.PatientID
		ep := episodeOn(episodes[pid], rw.day)
		if ep == nil {
			im.rep.Add(rw.rec.Line, im.cols["Planned_Start"], "rejected", fmt.Sprintf("a visit for a person with no episode: Patient/%s has no EpisodeOfCare of this provider covering %s", pid, rw.day))
			continue
		}
		sources := map[*mapping.State][]mapping.SourceRow{}
		src := mapping.SourceRow{Line: rw.rec.Line, Ref: rw.id}
		states := []*mapping.State{}
		link := m.Link(pid, person)
		if link != nil {
			sources[link] = []mapping.SourceRow{src}
			states = append(states, link)
		}
		enc := im.encounter(rw, pid, ep)
		v := visits[rw.id]
		if v == nil {
			v = &mapping.State{Type: "Encounter", Obj: enc, FullURL: "urn:uuid:" + fhir.NewUUID(),
				Cond: "identifier=" + mapping.OrList(im.visitSystem(), []string{rw.id})}
		} else {
			v.Obj = enc
		}
		sources[v] = []mapping.SourceRow{src}
		states = append(states, v)
		groups = append(groups, im.run.Writes(states, sources))
		if link != nil {
			mapping.Written(link) // the link goes with this visit only
		}
	}
	return im.pipe.Commit(ctx, groups, keys)
}

// episodeOn is the episode covering day (the latest starting on or before it).
func episodeOn(eps []mapping.Current, day string) *mapping.Current {
	var best *mapping.Current
	bestStart := ""
	for i, e := range eps {
		if e.Obj["status"] == "entered-in-error" || e.Obj["status"] == "cancelled" {
			continue
		}
		p, _ := e.Obj["period"].(map[string]any)
		start, _ := p["start"].(string)
		end, _ := p["end"].(string)
		start, end = start[:min(10, len(start))], end[:min(10, len(end))]
		if start == "" || start > day || end != "" && end < day {
			continue
		}
		if start > bestStart {
			best, bestStart = &eps[i], start
		}
	}
	return best
}

// encounter is the Encounter of a visit, built as the engine's tree: the
// typed model (fm.Encounter) encoded and read back cost about 5% of a visit
// row's CPU. TestEncounterAsTyped holds the tree equal to the typed model's
// for every shape of row.
func (im *importer) encounter(rw *row, pid string, ep *mapping.Current) fhir.Object {
	status := fm.EncounterStatusCancelled
	if *rw.outcome.Code == "delivered" {
		status = fm.EncounterStatusFinished
	}
	ref := func(s string) map[string]any { return map[string]any{"reference": s} }
	period := map[string]any{"start": rw.start}
	if rw.end != "" {
		period["end"] = rw.end
	}
	enc := fhir.Object{
		"resourceType": "Encounter",
		"extension":    []any{map[string]any{"url": im.run.System("/StructureDefinition/Extension-CRS-VisitOutcome"), "valueCoding": codingTree(rw.outcome)}},
		"identifier":   []any{map[string]any{"system": im.visitSystem(), "value": rw.id}},
		"status":       status.Code(),
		"class":        map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH", "display": "home health"},
		"type": []any{
			map[string]any{"coding": []any{codingTree(rw.visitType)}},
			map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "270420001", "display": "Seen in own home"}}},
		},
		"subject":         ref("Patient/" + pid),
		"episodeOfCare":   []any{ref("EpisodeOfCare/" + ep.ID)},
		"period":          period,
		"serviceProvider": ref("Organization/" + im.run.Org.ID),
	}
	if refs, _ := ep.Obj["referralRequest"].([]any); len(refs) > 0 {
		if m, _ := refs[0].(map[string]any); m != nil {
			if s, _ := m["reference"].(string); s != "" {
				enc["basedOn"] = []any{ref(s)}
			}
		}
	}
	if len(rw.carers) > 0 {
		parts := make([]any, 0, len(rw.carers))
		for _, c := range rw.carers {
			parts = append(parts, map[string]any{"individual": map[string]any{
				"identifier": map[string]any{"system": im.carerSystem(), "value": c}, "display": "carer " + c}})
		}
		enc["participant"] = parts
	}
	return enc
}

// codingTree is a Coding as the typed model writes it: its set elements.
func codingTree(c fm.Coding) map[string]any {
	if c.Id != nil || len(c.Extension) > 0 {
		return mapping.Object(c) // not made by a ConceptMap: the model's own way
	}
	m := make(map[string]any, 3)
	if c.System != nil {
		m["system"] = *c.System
	}
	if c.Version != nil {
		m["version"] = *c.Version
	}
	if c.Code != nil {
		m["code"] = *c.Code
	}
	if c.Display != nil {
		m["display"] = *c.Display
	}
	if c.UserSelected != nil {
		m["userSelected"] = *c.UserSelected
	}
	return m
}
