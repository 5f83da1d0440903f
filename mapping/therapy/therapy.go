// Package therapy imports a therapy service's records (a CSV export): the
// screening outcome of each referral (accepted, or declined with a reason)
// becomes the Therapy Screening extension on the referral, and the goals set
// with the person (words, target, due date, status) become Goal resources.
package therapy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
	"crs/mapping"
)

// Columns of a therapy export. Record_Type is Screening or Goal.
var Columns = mapping.Columns{
	Required: []string{"Record_Type", "Record_ID", "Client_Reference", "Event_Date"},
	Optional: []string{"NHS_Number", "Screening_Outcome", "Decline_Reason", "Goal_Text", "Goal_Target", "Goal_Due_Date", "Goal_Status"},
}

// Options configures an import.
type Options struct {
	BatchRows int // rows per transaction (default 200)
	DryRun    bool
	Encoding  mapping.Encoding
	Progress  func(rows int)
}

type row struct {
	rec     mapping.Record
	kind    string // screening or goal
	id      string
	person  mapping.Person
	date    string
	outcome string // accepted or declined
	reason  string
	goal    string
	target  string
	due     string
	status  string
}

type importer struct {
	door   mapping.Door
	run    *mapping.Run
	opt    Options
	rep    *mapping.Report
	header []string
	seen   mapping.Seen
}

func (im *importer) clientSystem() string  { return im.run.System("/Id/therapy-client/" + im.run.ODS) }
func (im *importer) goalSystem() string    { return im.run.System("/Id/therapy-goal/" + im.run.ODS) }
func (im *importer) cm(name string) string { return im.run.System("/ConceptMap/" + name) }

func date(s string) (string, bool) {
	for _, layout := range []string{"2006-01-02", "02/01/2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Format("2006-01-02"), true
		}
	}
	return "", false
}

// Import reads a therapy export from r and brings it into the record through
// door, as the therapy service run.Org.
func Import(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, opt Options, rep *mapping.Report) error {
	if opt.BatchRows <= 0 {
		opt.BatchRows = 200
	}
	cr, err := mapping.NewCSVReader(r, opt.Encoding, Columns)
	if err != nil {
		return err
	}
	im := &importer{door: door, run: run, opt: opt, rep: rep, header: cr.Header}
	return mapping.Batches(cr, rep, opt.BatchRows, im.parse, func(rows []*row) error { return im.batch(ctx, rows) }, opt.Progress)
}

func (im *importer) parse(rec mapping.Record) (*row, *mapping.RowError) {
	line := rec.Line
	bad := func(field, format string, args ...any) *mapping.RowError {
		return &mapping.RowError{Line: line, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	rw := &row{rec: rec, kind: strings.ToLower(rec.Get("Record_Type")), id: rec.Get("Record_ID"), person: mapping.Person{Local: rec.Get("Client_Reference")}}
	if rw.id == "" {
		return nil, bad("Record_ID", "the record has no id")
	}
	key := rw.kind + "|" + rw.id
	if first, dup := im.seen.Add(key, line); dup {
		return nil, bad("Record_ID", "record id %q repeats the one on line %d", rw.id, first)
	}
	if n := strings.ReplaceAll(rec.Get("NHS_Number"), " ", ""); n != "" {
		if ok, why := mapping.ValidNHSNumber(n); !ok {
			return nil, bad("NHS_Number", "%s", why)
		}
		rw.person.NHS = n
	}
	if rw.person.NHS == "" && rw.person.Local == "" {
		return nil, bad("Client_Reference", "the record names nobody: no client reference and no NHS number")
	}
	var ok bool
	if rw.date, ok = date(rec.Get("Event_Date")); !ok {
		return nil, bad("Event_Date", "%q is not a date (YYYY-MM-DD or DD/MM/YYYY)", rec.Get("Event_Date"))
	}
	switch rw.kind {
	case "screening":
		c, found, rerr := im.run.Translate(line, "Screening_Outcome", im.cm("therapy-screening-outcome"), rec.Get("Screening_Outcome"))
		if rerr != nil {
			return nil, rerr
		}
		if !found {
			return nil, bad("Screening_Outcome", "outcome %q has no target in ConceptMap %s", rec.Get("Screening_Outcome"), im.cm("therapy-screening-outcome"))
		}
		rw.outcome = *c.Code
		rw.reason = rec.Get("Decline_Reason")
		if rw.outcome == "declined" && rw.reason == "" {
			return nil, bad("Decline_Reason", "a declined screening needs its reason")
		}
	case "goal":
		if rw.goal = rec.Get("Goal_Text"); rw.goal == "" {
			return nil, bad("Goal_Text", "a goal needs its words (the person's own)")
		}
		rw.target = rec.Get("Goal_Target")
		if rw.due, ok = date(rec.Get("Goal_Due_Date")); !ok {
			return nil, bad("Goal_Due_Date", "%q is not a date: a goal needs its due date", rec.Get("Goal_Due_Date"))
		}
		st := rec.Get("Goal_Status")
		if st == "" {
			st = "active"
		}
		c, found, rerr := im.run.Translate(line, "Goal_Status", im.cm("therapy-goal-status"), st)
		if rerr != nil {
			return nil, rerr
		}
		if !found {
			return nil, bad("Goal_Status", "status %q has no target in ConceptMap %s", st, im.cm("therapy-goal-status"))
		}
		rw.status = *c.Code
	default:
		return nil, bad("Record_Type", "%q is not a record type: Screening or Goal", rec.Get("Record_Type"))
	}
	return rw, nil
}

func (im *importer) batch(ctx context.Context, rows []*row) error {
	m := &mapping.Matcher{Door: im.door, LocalSystem: im.clientSystem(), LocalName: "client reference"}
	var persons []mapping.Person
	var goalIDs []string
	for _, rw := range rows {
		persons = append(persons, rw.person)
		if rw.kind == "goal" {
			goalIDs = append(goalIDs, rw.id)
		}
	}
	if err := m.Find(ctx, persons); err != nil {
		return err
	}
	goals := map[string]*mapping.State{}
	found, err := mapping.Lookup(ctx, im.door, "Goal", "identifier", im.goalSystem(), goalIDs)
	if err != nil {
		return fmt.Errorf("find goals: %w", err)
	}
	for _, c := range found {
		for _, v := range mapping.Identifiers(c.Obj, im.goalSystem()) {
			goals[v] = mapping.NewState(c, "Goal")
		}
	}
	referrals := map[string][]*mapping.State{} // Patient id → its referrals to this service
	var groups []mapping.Group
	for _, rw := range rows {
		match := m.Match(rw.person)
		if match.Problem != "" {
			h := mapping.Held{Line: rw.rec.Line, Problem: match.Problem, Row: rw.rec.Raw, Header: im.header, Candidates: match.Candidates}
			groups = append(groups, im.run.HeldGroup(h))
			continue
		}
		pid := match.PatientID
		src := mapping.SourceRow{Line: rw.rec.Line, Ref: rw.id}
		sources := map[*mapping.State][]mapping.SourceRow{}
		var states []*mapping.State
		link := m.Link(pid, rw.person)
		if link != nil {
			sources[link] = []mapping.SourceRow{src}
			states = append(states, link)
		}
		var target *mapping.State
		switch rw.kind {
		case "screening":
			refs, ok := referrals[pid]
			if !ok {
				found, err := im.door.Search(ctx, "ServiceRequest", "subject=Patient/"+pid+"&_count=500")
				if err != nil {
					return fmt.Errorf("find referrals: %w", err)
				}
				for _, c := range found {
					refs = append(refs, mapping.NewState(c, "ServiceRequest"))
				}
				sort.Slice(refs, func(i, j int) bool {
					return fmt.Sprint(refs[i].Obj["authoredOn"]) > fmt.Sprint(refs[j].Obj["authoredOn"])
				})
				referrals[pid] = refs
			}
			for _, r := range refs {
				if a := fmt.Sprint(r.Obj["authoredOn"]); a[:min(10, len(a))] <= rw.date {
					target = r
					break
				}
			}
			if target == nil {
				im.rep.Add(rw.rec.Line, "Event_Date", "rejected", fmt.Sprintf("no referral of Patient/%s to this therapy service made on or before %s to record the screening on", pid, rw.date))
				if link != nil {
					groups = append(groups, im.run.Writes([]*mapping.State{link}, sources))
					mapping.Written(link)
				}
				continue
			}
			im.screen(target.Obj, rw)
		case "goal":
			obj := im.goal(rw, pid)
			if target = goals[rw.id]; target == nil {
				target = &mapping.State{Type: "Goal", Obj: obj, FullURL: "urn:uuid:" + fhir.NewUUID(),
					Cond: "identifier=" + mapping.OrList(im.goalSystem(), []string{rw.id})}
				goals[rw.id] = target
			} else {
				target.Obj = obj
			}
		}
		sources[target] = []mapping.SourceRow{src}
		states = append(states, target)
		groups = append(groups, im.run.Writes(states, sources))
		for _, s := range states {
			if s.Changed() && s.ID != "" {
				mapping.Written(s) // later rows of the batch build on this version
			}
		}
	}
	return mapping.Commit(ctx, im.door, groups, im.opt.DryRun, im.rep)
}

// screen sets the Therapy Screening extension of a referral.
func (im *importer) screen(sr fhir.Object, rw *row) {
	ext := fm.Extension{Url: im.run.System("/StructureDefinition/Extension-CRS-TherapyScreening"), Extension: []fm.Extension{
		{Url: "outcome", ValueCode: mapping.Ptr(rw.outcome)},
	}}
	if rw.reason != "" {
		ext.Extension = append(ext.Extension, fm.Extension{Url: "reason", ValueCodeableConcept: &fm.CodeableConcept{Text: mapping.Ptr(rw.reason)}})
	}
	ext.Extension = append(ext.Extension,
		fm.Extension{Url: "date", ValueDateTime: mapping.Ptr(rw.date)},
		fm.Extension{Url: "by", ValueReference: &fm.Reference{Reference: mapping.Ptr("Organization/" + im.run.Org.ID)}})
	obj := mapping.Object(ext)
	list, _ := sr["extension"].([]any)
	out := make([]any, 0, len(list)+1)
	for _, x := range list {
		if m, _ := x.(map[string]any); m["url"] != obj["url"] {
			out = append(out, x)
		}
	}
	sr["extension"] = append(out, map[string]any(obj))
}

// goal is the Goal of a goal record.
func (im *importer) goal(rw *row, pid string) fhir.Object {
	var status fm.GoalLifecycleStatus
	_ = json.Unmarshal([]byte(strconv.Quote(rw.status)), &status)
	g := fm.Goal{
		Identifier:      []fm.Identifier{{System: mapping.Ptr(im.goalSystem()), Value: mapping.Ptr(rw.id)}},
		LifecycleStatus: status,
		Description:     fm.CodeableConcept{Text: mapping.Ptr(rw.goal)},
		Subject:         fm.Reference{Reference: mapping.Ptr("Patient/" + pid)},
		ExpressedBy:     &fm.Reference{Reference: mapping.Ptr("Patient/" + pid)},
		StartDate:       mapping.Ptr(rw.date),
		Target:          []fm.GoalTarget{{DueDate: mapping.Ptr(rw.due)}},
	}
	if rw.target != "" {
		// R4's gol-1: a target's detail needs the measure it is a value of; the
		// export names neither apart, so the measure is the target as written.
		g.Target[0].Measure = &fm.CodeableConcept{Text: mapping.Ptr(rw.target)}
		g.Target[0].DetailString = mapping.Ptr(rw.target)
	}
	return mapping.Object(g)
}
