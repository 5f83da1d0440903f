package careplans

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/fhir"
	"crs/mapping"
)

// MaxFHIRBytes bounds a FHIR care plan file (a CarePlan or a Bundle of them).
const MaxFHIRBytes = 64 << 20

// callPattern is the care call pattern extension of a resource (a referral or
// a plan), empty when it has none.
func callPattern(run *mapping.Run, obj fhir.Object) fm.Coding {
	want := run.System("/StructureDefinition/Extension-CRS-CareCallPattern")
	list, _ := obj["extension"].([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		if m["url"] != want {
			continue
		}
		c, _ := m["valueCoding"].(map[string]any)
		sys, _ := c["system"].(string)
		code, _ := c["code"].(string)
		if code != "" {
			return fm.Coding{System: mapping.Ptr(sys), Code: mapping.Ptr(code)}
		}
	}
	return fm.Coding{}
}

// ImportFHIR maps care plans that a record system sends as FHIR in its own
// profile (a CarePlan, or a Bundle of them) onto the CRS Care Plan, rather than
// rejecting them: the person from the subject's NHS number; calls per day from
// the CRS extension or, failing that, from the activities' daily timings;
// singles or doubles from the CRS extension or the referral; the referral,
// author and period as for CSV plans; each activity's description, status,
// timing and performer (by name). Its own references (goals, performers) are
// not followed: they name resources on the sender's system.
func ImportFHIR(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, opt Options, rep *mapping.Report) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxFHIRBytes+1))
	if err != nil {
		return err
	}
	if len(data) > MaxFHIRBytes {
		return fmt.Errorf("the file is larger than %d bytes", MaxFHIRBytes)
	}
	obj, err := fhir.Parse(data, fhir.DefaultLimits)
	if err != nil {
		return fmt.Errorf("the file is not a FHIR resource: %v", err)
	}
	var plans []fhir.Object
	switch fhir.ResourceType(obj) {
	case "CarePlan":
		plans = append(plans, obj)
	case "Bundle":
		entries, _ := obj["entry"].([]any)
		for _, e := range entries {
			m, _ := e.(map[string]any)
			if res, ok := m["resource"].(map[string]any); ok && fhir.ResourceType(res) == "CarePlan" {
				plans = append(plans, res)
			}
		}
	default:
		return fmt.Errorf("a FHIR care plan file holds a CarePlan or a Bundle of CarePlans, not a %s", fhir.ResourceType(obj))
	}
	im := &importer{door: door, run: run, opt: opt, rep: rep, header: []string{"CarePlan"}}
	for i, cp := range plans {
		rep.Rows++
		p, rerr := im.fromFHIR(i+1, cp)
		if rerr != nil {
			rep.Reject(rerr)
			continue
		}
		if err := im.store(ctx, p); err != nil {
			return err
		}
		if opt.Progress != nil {
			opt.Progress(rep.Rows)
		}
	}
	return nil
}

// fromFHIR reads a foreign CarePlan (the n-th of the file) as a plan.
func (im *importer) fromFHIR(n int, obj fhir.Object) (*plan, *mapping.RowError) {
	bad := func(field, format string, args ...any) *mapping.RowError {
		return &mapping.RowError{Line: n, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	raw, _ := fhir.Marshal(obj)
	var cp fm.CarePlan
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&cp); err != nil {
		return nil, bad("CarePlan", "cannot be read as an R4 CarePlan: %v", err)
	}
	p := &plan{goalIndex: map[string]*goal{}, raw: [][]string{{string(raw)}}}
	for _, id := range cp.Identifier {
		if id.Value != nil {
			p.id = *id.Value
			if id.System != nil {
				p.id = *id.System + "|" + *id.Value
			}
			break
		}
	}
	if p.id == "" && cp.Id != nil {
		p.id = *cp.Id
	}
	if p.id == "" {
		return nil, bad("CarePlan.identifier", "the plan has neither an identifier nor an id to key it on")
	}
	p.lines = []mapping.SourceRow{{Line: n, Ref: "CarePlan " + p.id}}
	if cp.Subject.Identifier != nil && cp.Subject.Identifier.Value != nil && cp.Subject.Identifier.System != nil && *cp.Subject.Identifier.System == mapping.NHSNumberSystem {
		p.person.NHS = *cp.Subject.Identifier.Value
	}
	if p.person.NHS == "" {
		return nil, bad("CarePlan.subject", "the subject carries no NHS number (subject.identifier with system %s): the person cannot be matched", mapping.NHSNumberSystem)
	}
	if ok, why := mapping.ValidNHSNumber(p.person.NHS); !ok {
		return nil, bad("CarePlan.subject.identifier", "%s", why)
	}
	if cp.Period == nil || cp.Period.Start == nil {
		return nil, bad("CarePlan.period.start", "the plan has no start")
	}
	p.start = (*cp.Period.Start)[:min(10, len(*cp.Period.Start))]
	if cp.Period.End != nil {
		p.end = (*cp.Period.End)[:min(10, len(*cp.Period.End))]
	}
	p.status = cp.Status.Code()
	p.pattern = callPattern(im.run, obj)
	calls := -1
	callsURL := im.run.System("/StructureDefinition/Extension-CRS-CallsPerDay")
	for _, e := range cp.Extension {
		if e.Url == callsURL && e.ValueInteger != nil {
			calls = *e.ValueInteger
		}
	}
	daily := 0
	for _, a := range cp.Activity {
		d := a.Detail
		if d == nil || d.Description == nil {
			continue
		}
		act := &action{line: n, text: *d.Description, status: d.Status.Code()}
		if d.ScheduledString != nil {
			act.when = *d.ScheduledString
		}
		if t := d.ScheduledTiming; t != nil && t.Repeat != nil && t.Repeat.Frequency != nil && t.Repeat.PeriodUnit != nil && *t.Repeat.PeriodUnit == "d" &&
			(t.Repeat.Period == nil || t.Repeat.Period.String() == "1") {
			daily += *t.Repeat.Frequency
			if act.when == "" {
				act.when = strconv.Itoa(*t.Repeat.Frequency) + " a day"
			}
		}
		var who []string
		for _, perf := range d.Performer {
			if perf.Display != nil {
				who = append(who, *perf.Display)
			}
		}
		act.who = strings.Join(who, ", ")
		p.actions = append(p.actions, act)
	}
	switch {
	case calls >= 0:
		p.calls = calls
	case daily > 0:
		p.calls = daily
	default:
		return nil, bad("CarePlan.activity", "calls per day: the plan has neither the CRS calls-per-day extension nor activities timed so many times a day")
	}
	return p, nil
}
