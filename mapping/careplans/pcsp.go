package careplans

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"crs/mapping"
)

// PCSPFile is a care plan export as JSON that is not FHIR: plans laid out as
// the PRSB Personalised Care and Support Plan lays them out, the person's
// goals and hopes, each with the actions agreed for it (who, when, status,
// review date).
type PCSPFile struct {
	Plans []PCSPPlan `json:"plans"`
}

// PCSPPlan is one person's plan.
type PCSPPlan struct {
	PlanID        string      `json:"planId"`
	Person        PCSPPerson  `json:"person"`
	Start         string      `json:"start"`
	End           string      `json:"end,omitempty"`
	Status        string      `json:"status,omitempty"`
	CallsPerDay   json.Number `json:"callsPerDay"`
	CarersPerCall json.Number `json:"carersPerCall"`
	GoalsAndHopes []PCSPGoal  `json:"goalsAndHopes,omitempty"`
	// Actions agreed for no one goal.
	Actions []PCSPAction `json:"actions,omitempty"`
}

// PCSPPerson is who the plan is for.
type PCSPPerson struct {
	NHSNumber       string `json:"nhsNumber,omitempty"`
	ClientReference string `json:"clientReference"`
}

// PCSPGoal is a goal or hope, in the person's words, with its actions.
type PCSPGoal struct {
	ID      string       `json:"id"`
	Text    string       `json:"text"`
	DueDate string       `json:"dueDate"`
	Actions []PCSPAction `json:"actions,omitempty"`
}

// PCSPAction is an action or activity: who does what, when, its status and
// when it is reviewed.
type PCSPAction struct {
	ID         string `json:"id,omitempty"`
	Action     string `json:"action"`
	Who        string `json:"who,omitempty"`
	When       string `json:"when,omitempty"`
	Status     string `json:"status,omitempty"`
	ReviewDate string `json:"reviewDate,omitempty"`
}

// pcspFields names the CSV columns as a JSON plan does, for the report.
var pcspFields = map[string]string{
	"Plan_ID": "planId", "Client_Reference": "person.clientReference", "NHS_Number": "person.nhsNumber",
	"Plan_Start": "start", "Plan_End": "end", "Plan_Status": "status", "Calls_Per_Day": "callsPerDay", "Carers_Per_Call": "carersPerCall",
	"Goal_ID": "goalsAndHopes.id", "Goal_Text": "goalsAndHopes.text", "Goal_Due_Date": "goalsAndHopes.dueDate",
	"Action_ID": "actions.id", "Action": "actions.action", "Action_Who": "actions.who", "Action_When": "actions.when",
	"Action_Status": "actions.status", "Action_Review_Date": "actions.reviewDate",
}

// ImportJSON imports a JSON care plan file: a record system's own FHIR (a
// CarePlan or a Bundle: ImportFHIR) or, without a resourceType, a PCSPFile.
// A PCSP plan is mapped exactly as the CSV rows that say the same (one per
// action, or per goal without actions): its "line" in the report and its
// Provenance is its place in plans (1 for the first), its fields are named by
// their JSON members, and a plan held for review keeps its rows as CSV in its
// Task, so that it is re-processed like a CSV plan once resolved. A file that
// is not such JSON, has members it does not know or holds no plan is a file
// error, with nothing imported.
func ImportJSON(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, opt Options, rep *mapping.Report) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxFHIRBytes+1))
	if err != nil {
		return err
	}
	if len(data) > MaxFHIRBytes {
		return fmt.Errorf("the file is larger than %d bytes", MaxFHIRBytes)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return fmt.Errorf("the file is not a JSON object: %v", err)
	}
	if _, ok := probe["resourceType"]; ok {
		return ImportFHIR(ctx, door, run, bytes.NewReader(data), opt, rep)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var file PCSPFile
	if err := dec.Decode(&file); err != nil {
		return fmt.Errorf("the file is neither FHIR nor a care plan file ({\"plans\": [...]}, see the README): %v", err)
	}
	if len(file.Plans) == 0 {
		return errors.New("the file holds no plans (\"plans\" is missing or empty)")
	}
	header := append(append([]string(nil), Columns.Required...), Columns.Optional...)
	im := &importer{door: door, run: run, opt: opt, rep: rep, header: header, fields: pcspFields}
	var recs []mapping.Record
	for i, p := range file.Plans {
		if rerr := pcspProblem(i+1, p); rerr != nil {
			rep.Rows++
			rep.Reject(rerr)
			continue
		}
		recs = append(recs, pcspRecords(i+1, p, header)...)
	}
	return im.plans(ctx, func() (mapping.Record, error) {
		if len(recs) == 0 {
			return mapping.Record{}, io.EOF
		}
		rec := recs[0]
		recs = recs[1:]
		return rec, nil
	})
}

// pcspRecords are the CSV rows that say what plan p says, at line n.
func pcspRecords(n int, p PCSPPlan, header []string) []mapping.Record {
	plan := map[string]string{
		"Plan_ID": p.PlanID, "Client_Reference": p.Person.ClientReference, "NHS_Number": p.Person.NHSNumber,
		"Plan_Start": p.Start, "Plan_End": p.End, "Plan_Status": p.Status,
		"Calls_Per_Day": p.CallsPerDay.String(), "Carers_Per_Call": p.CarersPerCall.String(),
	}
	var rows []map[string]string
	row := func(g *PCSPGoal, a *PCSPAction) {
		m := make(map[string]string, len(header))
		for k, v := range plan {
			m[k] = v
		}
		if g != nil {
			m["Goal_ID"], m["Goal_Text"], m["Goal_Due_Date"] = g.ID, g.Text, g.DueDate
		}
		if a != nil {
			m["Action_ID"], m["Action"], m["Action_Who"], m["Action_When"], m["Action_Status"], m["Action_Review_Date"] =
				a.ID, a.Action, a.Who, a.When, a.Status, a.ReviewDate
		}
		rows = append(rows, m)
	}
	for gi := range p.GoalsAndHopes {
		g := &p.GoalsAndHopes[gi]
		if len(g.Actions) == 0 {
			row(g, nil)
		}
		for ai := range g.Actions {
			row(g, &g.Actions[ai])
		}
	}
	for ai := range p.Actions {
		row(nil, &p.Actions[ai])
	}
	if len(rows) == 0 {
		row(nil, nil)
	}
	out := make([]mapping.Record, len(rows))
	for i, m := range rows {
		raw := make([]string, len(header))
		for j, h := range header {
			raw[j] = m[h]
		}
		out[i] = mapping.Record{Line: n, Values: m, Raw: raw}
	}
	return out
}

// pcspProblem is what makes a JSON plan unreadable as rows (a goal without
// its id, an action without its words), with where it is; nil: none.
func pcspProblem(n int, p PCSPPlan) *mapping.RowError {
	at := func(field, reason string) *mapping.RowError {
		return &mapping.RowError{Line: n, Field: fmt.Sprintf("plans[%d].%s", n-1, field), Reason: reason}
	}
	if strings.TrimSpace(p.PlanID) == "" {
		return at("planId", "the plan has no id")
	}
	for gi, g := range p.GoalsAndHopes {
		if strings.TrimSpace(g.ID) == "" {
			return at(fmt.Sprintf("goalsAndHopes[%d].id", gi), "a goal needs its id (the key that finds it again)")
		}
		for ai, a := range g.Actions {
			if strings.TrimSpace(a.Action) == "" {
				return at(fmt.Sprintf("goalsAndHopes[%d].actions[%d].action", gi, ai), "an action needs its words")
			}
		}
	}
	for ai, a := range p.Actions {
		if strings.TrimSpace(a.Action) == "" {
			return at(fmt.Sprintf("actions[%d].action", ai), "an action needs its words")
		}
	}
	return nil
}
