// Package careplans imports care plans from a digital social care record (a
// CSV export of the PRSB Personalised Care and Support Plan: one row per
// action, under a goal, in a plan): each plan becomes the CRS CarePlan of the
// person's episode (calls per day, carers per call, period, author, the
// actions as activities with who, when, status and review date) and each goal
// a Goal in the person's own words.
package careplans

import (
	"context"
	"encoding/json"
	"errors"
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

// Columns of a care plan export. A plan's rows must be together.
var Columns = mapping.Columns{
	Required: []string{"Plan_ID", "Client_Reference", "Plan_Start", "Calls_Per_Day", "Carers_Per_Call"},
	Optional: []string{"NHS_Number", "Plan_End", "Plan_Status", "Goal_ID", "Goal_Text", "Goal_Due_Date",
		"Action_ID", "Action", "Action_Who", "Action_When", "Action_Status", "Action_Review_Date"},
}

// Options configures an import.
type Options struct {
	DryRun   bool
	Encoding mapping.Encoding
	Progress func(rows int)
}

func date(s string) (string, bool) {
	for _, layout := range []string{"2006-01-02", "02/01/2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Format("2006-01-02"), true
		}
	}
	return "", false
}

type action struct {
	line                     int
	id, text, who, when, due string
	status                   string
	goal                     string
}

type goal struct {
	line     int
	id, text string
	due      string
}

// plan is a plan's rows, gathered.
type plan struct {
	id        string
	lines     []mapping.SourceRow
	raw       [][]string // the plan's rows, as read
	person    mapping.Person
	start     string
	end       string
	status    string
	calls     int
	pattern   fm.Coding
	goals     []*goal
	actions   []*action
	goalIndex map[string]*goal
}

type importer struct {
	door   mapping.Door
	run    *mapping.Run
	opt    Options
	rep    *mapping.Report
	header []string
	seen   mapping.Seen
	// fields names the columns as the file does (a JSON file: its members);
	// nil: the CSV columns.
	fields map[string]string
}

// f is how the file names column c, for the report.
func (im *importer) f(c string) string {
	if name, ok := im.fields[c]; ok {
		return name
	}
	return c
}

func (im *importer) clientSystem() string  { return im.run.System("/Id/provider-client/" + im.run.ODS) }
func (im *importer) planSystem() string    { return im.run.System("/Id/care-plan/" + im.run.ODS) }
func (im *importer) goalSystem() string    { return im.run.System("/Id/care-plan-goal/" + im.run.ODS) }
func (im *importer) cm(name string) string { return im.run.System("/ConceptMap/" + name) }

// Import reads a care plan export from r and brings its plans into the record
// through door, as the care provider run.Org. A plan is stored whole or not at
// all: one bad row rejects its plan.
func Import(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, opt Options, rep *mapping.Report) error {
	cr, err := mapping.NewCSVReader(r, opt.Encoding, Columns)
	if err != nil {
		return err
	}
	im := &importer{door: door, run: run, opt: opt, rep: rep, header: cr.Header}
	return im.plans(ctx, cr.Next)
}

// plans gathers the records next reads (io.EOF ends them) into plans and
// stores each: a CSV file's rows, or a JSON file's plans as rows.
func (im *importer) plans(ctx context.Context, next func() (mapping.Record, error)) error {
	rep, opt := im.rep, im.opt
	var cur *plan
	var bad error
	finish := func() error {
		if cur == nil {
			return nil
		}
		p, perr := cur, bad
		cur, bad = nil, nil
		if perr != nil {
			for _, l := range p.lines {
				if re, ok := perr.(*mapping.RowError); !ok || re.Line != l.Line {
					rep.Add(l.Line, im.f("Plan_ID"), "rejected", fmt.Sprintf("plan %q is not stored: %v", p.id, perr))
				}
			}
			if re, ok := perr.(*mapping.RowError); ok {
				rep.Reject(re)
			}
			return nil
		}
		err := im.store(ctx, p)
		if opt.Progress != nil {
			opt.Progress(rep.Rows)
		}
		return err
	}
	for {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		var re *mapping.RowError
		if errors.As(err, &re) {
			rep.Rows++
			rep.Reject(re)
			continue
		}
		if err != nil {
			if ferr := finish(); ferr != nil {
				return ferr
			}
			return err
		}
		rep.Rows++
		id := rec.Get("Plan_ID")
		if id == "" {
			rep.Reject(&mapping.RowError{Line: rec.Line, Field: im.f("Plan_ID"), Reason: "the row names no plan"})
			continue
		}
		if cur == nil || cur.id != id {
			if err := finish(); err != nil {
				return err
			}
			if first, dup := im.seen.Add(id, rec.Line); dup {
				rep.Reject(&mapping.RowError{Line: rec.Line, Field: im.f("Plan_ID"), Reason: fmt.Sprintf("plan %q already ended on an earlier line (it began on line %d): a plan's rows must be together", id, first)})
				continue
			}
			cur = &plan{id: id, goalIndex: map[string]*goal{}}
		}
		cur.lines = append(cur.lines, mapping.SourceRow{Line: rec.Line, Ref: id})
		cur.raw = append(cur.raw, rec.Raw)
		if bad == nil {
			if rerr := im.add(cur, rec); rerr != nil {
				bad = rerr
			}
		}
	}
	return finish()
}

// add reads one row into its plan.
func (im *importer) add(p *plan, rec mapping.Record) *mapping.RowError {
	line := rec.Line
	bad := func(field, format string, args ...any) *mapping.RowError {
		return &mapping.RowError{Line: line, Field: im.f(field), Reason: fmt.Sprintf(format, args...)}
	}
	if len(p.lines) == 1 {
		p.person.Local = rec.Get("Client_Reference")
		if n := strings.ReplaceAll(rec.Get("NHS_Number"), " ", ""); n != "" {
			if ok, why := mapping.ValidNHSNumber(n); !ok {
				return bad("NHS_Number", "%s", why)
			}
			p.person.NHS = n
		}
		var ok bool
		if p.start, ok = date(rec.Get("Plan_Start")); !ok {
			return bad("Plan_Start", "%q is not a date (YYYY-MM-DD or DD/MM/YYYY)", rec.Get("Plan_Start"))
		}
		if s := rec.Get("Plan_End"); s != "" {
			if p.end, ok = date(s); !ok {
				return bad("Plan_End", "%q is not a date (YYYY-MM-DD or DD/MM/YYYY)", s)
			}
		}
		st := rec.Get("Plan_Status")
		if st == "" {
			st = "active"
		}
		c, found, rerr := im.run.Translate(line, im.f("Plan_Status"), im.cm("careplan-status"), st)
		if rerr != nil {
			return rerr
		}
		if !found {
			return bad("Plan_Status", "status %q has no target in ConceptMap %s", st, im.cm("careplan-status"))
		}
		p.status = *c.Code
		n, err := strconv.Atoi(rec.Get("Calls_Per_Day"))
		if err != nil || n < 0 || n > 12 {
			return bad("Calls_Per_Day", "%q is not a number of calls a day (0 to 12)", rec.Get("Calls_Per_Day"))
		}
		p.calls = n
		c, found, rerr = im.run.Translate(line, im.f("Carers_Per_Call"), im.cm("careplan-carers-per-call"), rec.Get("Carers_Per_Call"))
		if rerr != nil {
			return rerr
		}
		if !found {
			return bad("Carers_Per_Call", "%q has no target in ConceptMap %s", rec.Get("Carers_Per_Call"), im.cm("careplan-carers-per-call"))
		}
		p.pattern = c
	} else if rec.Get("Client_Reference") != p.person.Local {
		return bad("Client_Reference", "the rows of plan %q name different people", p.id)
	}
	if gid := rec.Get("Goal_ID"); gid != "" && p.goalIndex[gid] == nil {
		g := &goal{line: line, id: gid, text: rec.Get("Goal_Text")}
		if g.text == "" {
			return bad("Goal_Text", "goal %q needs its words (the person's own)", gid)
		}
		var ok bool
		if g.due, ok = date(rec.Get("Goal_Due_Date")); !ok {
			return bad("Goal_Due_Date", "%q is not a date: a goal needs its due date", rec.Get("Goal_Due_Date"))
		}
		p.goalIndex[gid] = g
		p.goals = append(p.goals, g)
	}
	if text := rec.Get("Action"); text != "" {
		a := &action{line: line, id: rec.Get("Action_ID"), text: text, who: rec.Get("Action_Who"), when: rec.Get("Action_When"), goal: rec.Get("Goal_ID")}
		st := rec.Get("Action_Status")
		if st == "" {
			st = "not started"
		}
		c, found, rerr := im.run.Translate(line, im.f("Action_Status"), im.cm("careplan-action-status"), st)
		if rerr != nil {
			return rerr
		}
		if !found {
			return bad("Action_Status", "status %q has no target in ConceptMap %s", st, im.cm("careplan-action-status"))
		}
		a.status = *c.Code
		if s := rec.Get("Action_Review_Date"); s != "" {
			var ok bool
			if a.due, ok = date(s); !ok {
				return bad("Action_Review_Date", "%q is not a date (YYYY-MM-DD or DD/MM/YYYY)", s)
			}
		}
		p.actions = append(p.actions, a)
	}
	return nil
}

// store matches the plan's person, finds the referral, and writes the plan
// and its goals (each with its Provenance) in one transaction.
func (im *importer) store(ctx context.Context, p *plan) error {
	m := &mapping.Matcher{Door: im.door, LocalSystem: im.clientSystem(), LocalName: "client reference"}
	if err := m.Find(ctx, []mapping.Person{p.person}); err != nil {
		return err
	}
	match := m.Match(p.person)
	if match.Problem != "" {
		h := mapping.Held{Line: p.lines[0].Line, Problem: match.Problem, Row: p.raw[0], More: p.raw[1:], Header: im.header, Candidates: match.Candidates}
		return mapping.Commit(ctx, im.door, []mapping.Group{im.run.HeldGroup(h)}, im.opt.DryRun, im.rep)
	}
	pid := match.PatientID
	reject := func(reason string) error {
		for _, l := range p.lines {
			im.rep.Add(l.Line, im.f("Plan_Start"), "rejected", reason)
		}
		return nil
	}
	refs, err := im.door.Search(ctx, "ServiceRequest", "subject=Patient/"+pid+"&_count=500")
	if err != nil {
		return err
	}
	sort.Slice(refs, func(i, j int) bool {
		return fmt.Sprint(refs[i].Obj["authoredOn"]) > fmt.Sprint(refs[j].Obj["authoredOn"])
	})
	referral := ""
	for _, r := range refs {
		if a := fmt.Sprint(r.Obj["authoredOn"]); a[:min(10, len(a))] <= p.start {
			referral = "ServiceRequest/" + r.ID
			if p.pattern.Code == nil {
				p.pattern = callPattern(im.run, r.Obj)
			}
			break
		}
	}
	if referral == "" {
		return reject(fmt.Sprintf("no referral of Patient/%s to this provider made on or before %s for the plan to be based on", pid, p.start))
	}
	if p.pattern.Code == nil {
		return reject(fmt.Sprintf("carers per call: neither the plan nor its referral %s says singles or doubles", referral))
	}
	sources := map[*mapping.State][]mapping.SourceRow{}
	var states []*mapping.State
	if link := m.Link(pid, p.person); link != nil {
		sources[link] = p.lines[:1]
		states = append(states, link)
	}
	var goalIDs []string
	for _, g := range p.goals {
		goalIDs = append(goalIDs, g.id)
	}
	stored := map[string]*mapping.State{}
	found, err := mapping.Lookup(ctx, im.door, "Goal", "identifier", im.goalSystem(), goalIDs)
	if err != nil {
		return err
	}
	for _, c := range found {
		for _, v := range mapping.Identifiers(c.Obj, im.goalSystem()) {
			stored[v] = mapping.NewState(c, "Goal")
		}
	}
	goalRefs := map[string]string{}
	for _, g := range p.goals {
		obj := mapping.Object(fm.Goal{
			Identifier:  []fm.Identifier{{System: mapping.Ptr(im.goalSystem()), Value: mapping.Ptr(g.id)}},
			Description: fm.CodeableConcept{Text: mapping.Ptr(g.text)},
			Subject:     fm.Reference{Reference: mapping.Ptr("Patient/" + pid)},
			ExpressedBy: &fm.Reference{Reference: mapping.Ptr("Patient/" + pid)},
			Target:      []fm.GoalTarget{{DueDate: mapping.Ptr(g.due)}},
		})
		obj["lifecycleStatus"] = "active"
		s := stored[g.id]
		if s == nil {
			s = &mapping.State{Type: "Goal", Obj: obj, FullURL: "urn:uuid:" + fhir.NewUUID(), Cond: "identifier=" + mapping.OrList(im.goalSystem(), []string{g.id})}
		} else {
			s.Obj = obj
		}
		goalRefs[g.id] = s.Ref()
		sources[s] = []mapping.SourceRow{{Line: g.line, Ref: p.id + "/" + g.id}}
		states = append(states, s)
	}
	cp := im.carePlan(p, pid, referral, goalRefs)
	var planState *mapping.State
	existing, err := mapping.Lookup(ctx, im.door, "CarePlan", "identifier", im.planSystem(), []string{p.id})
	if err != nil {
		return err
	}
	if len(existing) == 1 {
		planState = mapping.NewState(existing[0], "CarePlan")
		planState.Obj = cp
	} else {
		planState = &mapping.State{Type: "CarePlan", Obj: cp, FullURL: "urn:uuid:" + fhir.NewUUID(), Cond: "identifier=" + mapping.OrList(im.planSystem(), []string{p.id})}
	}
	sources[planState] = p.lines
	states = append(states, planState)
	g := im.run.Writes(states, sources)
	g.Lines = nil
	for _, l := range p.lines {
		g.Lines = append(g.Lines, l.Line)
	}
	return mapping.Commit(ctx, im.door, []mapping.Group{g}, im.opt.DryRun, im.rep)
}

// carePlan is the CRS CarePlan of a plan.
func (im *importer) carePlan(p *plan, pid, referral string, goals map[string]string) fhir.Object {
	var status fm.RequestStatus
	_ = json.Unmarshal([]byte(strconv.Quote(p.status)), &status)
	cp := fm.CarePlan{
		Extension: []fm.Extension{
			{Url: im.run.System("/StructureDefinition/Extension-CRS-CallsPerDay"), ValueInteger: mapping.Ptr(p.calls)},
			{Url: im.run.System("/StructureDefinition/Extension-CRS-CareCallPattern"), ValueCoding: &p.pattern},
		},
		Identifier: []fm.Identifier{{System: mapping.Ptr(im.planSystem()), Value: mapping.Ptr(p.id)}},
		BasedOn:    []fm.Reference{{Reference: mapping.Ptr(referral)}},
		Status:     status,
		Intent:     fm.CarePlanIntentPlan,
		Subject:    fm.Reference{Reference: mapping.Ptr("Patient/" + pid)},
		Period:     &fm.Period{Start: mapping.Ptr(p.start)},
		Author:     &fm.Reference{Reference: mapping.Ptr("Organization/" + im.run.Org.ID)},
	}
	if p.end != "" {
		cp.Period.End = mapping.Ptr(p.end)
	}
	for _, g := range p.goals {
		cp.Goal = append(cp.Goal, fm.Reference{Reference: mapping.Ptr(goals[g.id])})
	}
	obj := mapping.Object(cp)
	var activities []any
	for _, a := range p.actions {
		detail := map[string]any{"status": a.status, "description": a.text}
		if a.when != "" {
			detail["scheduledString"] = a.when
		}
		if a.who != "" {
			detail["performer"] = []any{map[string]any{"display": a.who}}
		}
		if ref, ok := goals[a.goal]; ok {
			detail["goal"] = []any{map[string]any{"reference": ref}}
		}
		act := map[string]any{"detail": detail}
		if a.due != "" {
			act["progress"] = []any{map[string]any{"time": a.due, "text": "review by " + a.due}}
		}
		activities = append(activities, act)
	}
	if len(activities) > 0 {
		obj["activity"] = activities
	}
	return obj
}
