package measures

import (
	"context"
	"encoding/json"
	"math"
	"sort"
	"strings"
	"time"

	"crs/audit"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
)

// Engine is what the measures need of fhir/engine: reads and searches as the
// caller in ctx, and the audit trail for the page door.
type Engine interface {
	Searcher
	Read(ctx context.Context, rt, id string) (store.Version, error)
	History(ctx context.Context, rt, id string, params []fhir.RawParam) (*engine.Bundle, error)
	Audit(ctx context.Context, rec audit.Record) error
}

// Request is one $evaluate-measure: the Measure, the period and the report type.
type Request struct {
	Measure     string
	Start, End  time.Time // the period, End exclusive
	PeriodText  [2]string // periodStart and periodEnd as given
	SubjectList bool      // reportType=subject-list
}

// ParseRequest reads the parameters of Measure/{id}/$evaluate-measure:
// periodStart and periodEnd (FHIR dates or dateTimes, both required; a date
// end includes its whole day) and reportType (summary, the default, or
// subject-list). Anything else is an Invalid error naming the parameter.
func ParseRequest(id string, params []fhir.RawParam) (Request, error) {
	req := Request{Measure: id}
	if !fhir.ValidID(id) {
		return req, fhir.Errorf(fhir.Invalid, "", "%q is not a valid Measure id", id)
	}
	seen := map[string]bool{}
	for _, p := range params {
		if seen[p.Name] && p.Name != "_format" && p.Name != "_pretty" {
			return req, fhir.Errorf(fhir.Invalid, p.Name, "parameter %s is given more than once", p.Name)
		}
		seen[p.Name] = true
		switch p.Name {
		case "periodStart", "periodEnd":
			t, end, err := periodBound(p.Value)
			if err != nil {
				return req, fhir.Errorf(fhir.Invalid, p.Name, "%s must be a FHIR date or dateTime (e.g. 2026-06-01), not %q", p.Name, p.Value)
			}
			if p.Name == "periodStart" {
				req.Start, req.PeriodText[0] = t, p.Value
			} else {
				req.End, req.PeriodText[1] = end, p.Value
			}
		case "reportType":
			switch p.Value {
			case "summary":
			case "subject-list":
				req.SubjectList = true
			case "individual", "subject":
				return req, fhir.Errorf(fhir.NotSupported, "reportType", "reportType %q is not supported: use summary or subject-list", p.Value)
			default:
				return req, fhir.Errorf(fhir.Invalid, "reportType", "reportType must be summary or subject-list, not %q", p.Value)
			}
		case "_format", "_pretty":
		default:
			return req, fhir.Errorf(fhir.Invalid, p.Name, "$evaluate-measure has no parameter %q (it takes periodStart, periodEnd and reportType)", p.Name)
		}
	}
	switch {
	case req.PeriodText[0] == "":
		return req, fhir.Errorf(fhir.Invalid, "periodStart", "periodStart is required")
	case req.PeriodText[1] == "":
		return req, fhir.Errorf(fhir.Invalid, "periodEnd", "periodEnd is required")
	case !req.Start.Before(req.End):
		return req, fhir.Errorf(fhir.Invalid, "periodEnd", "periodEnd %s is before periodStart %s", req.PeriodText[1], req.PeriodText[0])
	case req.End.Sub(req.Start) > 5*366*day:
		return req, fhir.Errorf(fhir.Invalid, "periodEnd", "the period is longer than five years")
	}
	return req, nil
}

// periodBound parses a FHIR date or dateTime and returns its start and the
// (exclusive) end of the precision it has: 2026-06 is all of June.
func periodBound(s string) (start, end time.Time, err error) {
	for _, f := range []struct {
		layout string
		next   func(time.Time) time.Time
	}{
		{time.RFC3339Nano, func(t time.Time) time.Time { return t.Add(time.Nanosecond) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
	} {
		if t, e := time.Parse(f.layout, s); e == nil && len(s) >= 4 {
			return t.UTC(), f.next(t).UTC(), nil
		}
	}
	return time.Time{}, time.Time{}, fhir.Errorf(fhir.Invalid, "", "bad date")
}

// Evaluator evaluates the pathway's Measures through the engine.
type Evaluator struct {
	eng  Engine
	base string
	now  func() time.Time
}

// NewEvaluator returns an Evaluator on eng; base is the pathway's canonical
// base ("" for the default), now the clock (time.Now when nil).
func NewEvaluator(eng Engine, base string, now func() time.Time) *Evaluator {
	if base == "" {
		base = defaultBase
	}
	if now == nil {
		now = time.Now
	}
	return &Evaluator{eng: eng, base: strings.TrimSuffix(base, "/"), now: now}
}

// Figures are one group's (or stratum's) populations and score.
type Figures struct {
	Counts   map[string]int      // population code → count
	Subjects map[string][]string // population code → Patient ids (subject-list)
	Score    *float64            // nil when there is nothing to score
	sum      float64
	obs      int
}

// GroupResult is one evaluated Measure group with its strata.
type GroupResult struct {
	ID, Text   string
	Figures    *Figures
	Strata     map[string]map[string]*Figures // stratifier → value → figures
	Stratifier []string                       // stratifier names in Measure order
}

// Result is an evaluated Measure, before it becomes a MeasureReport.
type Result struct {
	Measure map[string]any
	Request Request
	Scoring string
	Groups  []*GroupResult
	OrgName map[string]string
}

// Evaluate reads the Measure through the engine (the caller must be allowed to
// read it: an unknown or hidden Measure is NotFound) and evaluates it over what
// the caller may see.
func (ev *Evaluator) Evaluate(ctx context.Context, req Request) (*Result, error) {
	m, err := ev.measure(ctx, req.Measure)
	if err != nil {
		return nil, err
	}
	reg, err := load(ctx, ev.eng, ev.base, Filter{}, needsOf(m), ev.now())
	if err != nil {
		return nil, err
	}
	return ev.evaluate(m, req, reg), nil
}

// measure reads a Measure through the engine and checks that every group has
// a rule.
func (ev *Evaluator) measure(ctx context.Context, id string) (map[string]any, error) {
	v, err := ev.eng.Read(ctx, "Measure", id)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(v.Body, &m); err != nil {
		return nil, fhir.InternalError("decode Measure", err)
	}
	if err := checkRules(m); err != nil {
		return nil, fhir.Errorf(fhir.NotSupported, "", "Measure/%s cannot be evaluated by this server: %v", id, err)
	}
	return m, nil
}

func (ev *Evaluator) evaluate(m map[string]any, req Request, reg *Region) *Result {
	res := &Result{Measure: m, Request: req, Scoring: str(firstCoding(m["scoring"])["code"]), OrgName: reg.OrgNames}
	now := ev.now()
	for _, g := range arr(m["group"]) {
		gm := mapOf(g)
		ru := rules[str(m["id"])+"#"+str(gm["id"])]
		gr := &GroupResult{ID: str(gm["id"]), Text: str(mapOf(gm["code"])["text"]), Figures: newFigures(), Strata: map[string]map[string]*Figures{}}
		for _, s := range arr(gm["stratifier"]) {
			name := str(mapOf(mapOf(s)["criteria"])["expression"])
			gr.Stratifier = append(gr.Stratifier, name)
			gr.Strata[name] = map[string]*Figures{}
		}
		for _, r := range reg.Referrals {
			at := ru.anchor(r)
			if at.IsZero() || at.Before(req.Start) || !at.Before(req.End) {
				continue
			}
			figs := []*Figures{gr.Figures}
			for _, name := range gr.Stratifier {
				val := stratifiers[name](r, at)
				f := gr.Strata[name][val]
				if f == nil {
					f = newFigures()
					gr.Strata[name][val] = f
				}
				figs = append(figs, f)
			}
			for _, f := range figs {
				f.add(res.Scoring, ru, r, now, req.SubjectList)
			}
		}
		gr.Figures.score(res.Scoring, ru)
		for _, vals := range gr.Strata {
			for _, f := range vals {
				f.score(res.Scoring, ru)
			}
		}
		res.Groups = append(res.Groups, gr)
	}
	return res
}

// stratifiers compute a referral's stratum value; at is the anchor date.
var stratifiers = map[string]func(r *Referral, at time.Time) string{
	"locality":     func(r *Referral, _ time.Time) string { return orUnknown(r.Locality) },
	"provider":     func(r *Referral, _ time.Time) string { return orUnknown(r.Provider) },
	"care-pattern": func(r *Referral, _ time.Time) string { return orUnknown(r.Pattern) },
	"month":        func(_ *Referral, at time.Time) string { return at.UTC().Format("2006-01") },
	"week":         func(_ *Referral, at time.Time) string { return weekOf(at).Format("2006-01-02") },
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// weekOf returns the Monday (UTC midnight) of t's week.
func weekOf(t time.Time) time.Time {
	t = t.UTC().Truncate(day)
	return t.AddDate(0, 0, -((int(t.Weekday()) + 6) % 7))
}

func newFigures() *Figures {
	return &Figures{Counts: map[string]int{}, Subjects: map[string][]string{}}
}

func (f *Figures) count(code string, r *Referral, list bool) {
	f.Counts[code]++
	if list {
		f.Subjects[code] = append(f.Subjects[code], r.Patient)
	}
}

func (f *Figures) add(scoring string, ru rule, r *Referral, now time.Time, list bool) {
	f.count("initial-population", r, list)
	switch scoring {
	case "proportion":
		if !ru.eligible(r, now) {
			return
		}
		f.count("denominator", r, list)
		if ru.numerator(r) {
			f.count("numerator", r, list)
		}
	case "continuous-variable":
		if !ru.eligible(r, now) {
			return
		}
		f.count("measure-population", r, list)
		f.count("measure-observation", r, false)
		f.sum += ru.observe(r)
		f.obs++
	}
}

func (f *Figures) score(scoring string, ru rule) {
	var s float64
	switch scoring {
	case "proportion":
		if f.Counts["denominator"] == 0 {
			return
		}
		s = float64(f.Counts["numerator"]) / float64(f.Counts["denominator"])
	case "continuous-variable":
		if f.obs == 0 {
			return
		}
		s = f.sum
		if !ru.sum {
			s = f.sum / float64(f.obs)
		}
	default:
		return
	}
	s = math.Round(s*10000) / 10000
	f.Score = &s
}

// populationOrder is the order populations appear in a report.
var populationOrder = []string{"initial-population", "denominator", "numerator", "measure-population", "measure-observation"}

// Report renders a Result as a FHIR MeasureReport. Reports are not stored: each
// is computed from the live record under the caller's access policy.
func (res *Result) Report(base string, now time.Time) map[string]any {
	m := res.Measure
	typ := "summary"
	if res.Request.SubjectList {
		typ = "subject-list"
	}
	rep := map[string]any{
		"resourceType": "MeasureReport",
		"id":           fhir.NewUUID(),
		"status":       "complete",
		"type":         typ,
		"measure":      str(m["url"]),
		"date":         now.UTC().Format(time.RFC3339),
		"period":       map[string]any{"start": res.Request.PeriodText[0], "end": res.Request.PeriodText[1]},
	}
	if im, ok := m["improvementNotation"]; ok {
		rep["improvementNotation"] = im
	}
	var contained []any
	listFor := func(subjects []string) map[string]any {
		id := "list-" + itoa(len(contained)+1)
		var entries []any
		for _, p := range subjects {
			entries = append(entries, map[string]any{"item": map[string]any{"reference": "Patient/" + p}})
		}
		l := map[string]any{"resourceType": "List", "id": id, "status": "current", "mode": "snapshot"}
		if len(entries) > 0 {
			l["entry"] = entries
		}
		contained = append(contained, l)
		return map[string]any{"reference": "#" + id}
	}
	pops := func(f *Figures, unit string) ([]any, map[string]any) {
		var out []any
		for _, code := range populationOrder {
			n, ok := f.Counts[code]
			if !ok && !(res.Scoring == "proportion" && (code == "denominator" || code == "numerator")) &&
				!(res.Scoring == "continuous-variable" && (code == "measure-population" || code == "measure-observation")) && code != "initial-population" {
				continue
			}
			p := map[string]any{"code": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/measure-population", "code": code}}}, "count": n}
			if res.Request.SubjectList && code != "measure-observation" {
				p["subjectResults"] = listFor(f.Subjects[code])
			}
			out = append(out, p)
		}
		var score map[string]any
		if f.Score != nil {
			score = map[string]any{"value": json.Number(formatFloat(*f.Score))}
			if unit != "" {
				score["unit"], score["system"], score["code"] = unit, "http://unitsofmeasure.org", unit
			}
		}
		return out, score
	}
	var groups []any
	for _, g := range res.Groups {
		ru := rules[str(m["id"])+"#"+g.ID]
		gp, score := pops(g.Figures, ru.unit)
		gm := map[string]any{"id": g.ID, "code": map[string]any{"text": g.Text}, "population": gp}
		if score != nil {
			gm["measureScore"] = score
		}
		var strats []any
		for _, name := range g.Stratifier {
			vals := make([]string, 0, len(g.Strata[name]))
			for v := range g.Strata[name] {
				vals = append(vals, v)
			}
			sort.Strings(vals)
			var strata []any
			for _, v := range vals {
				f := g.Strata[name][v]
				sp, sscore := pops(f, ru.unit)
				st := map[string]any{"value": map[string]any{"text": res.StratumLabel(name, v)}, "population": sp}
				if name == "locality" || name == "care-pattern" {
					st["value"].(map[string]any)["coding"] = []any{map[string]any{"system": stratumSystem(base, name), "code": v}}
				}
				if sscore != nil {
					st["measureScore"] = sscore
				}
				strata = append(strata, st)
			}
			s := map[string]any{"code": []any{map[string]any{"text": name}}}
			if len(strata) > 0 {
				s["stratum"] = strata
			}
			strats = append(strats, s)
		}
		if len(strats) > 0 {
			gm["stratifier"] = strats
		}
		groups = append(groups, gm)
	}
	if len(contained) > 0 {
		rep["contained"] = contained
	}
	rep["group"] = groups
	return rep
}

func stratumSystem(base, name string) string {
	if name == "locality" {
		return base + csLocality
	}
	return base + csCallPattern
}

// StratumLabel is a stratum's human-readable value.
func (res *Result) StratumLabel(name, v string) string {
	switch name {
	case "locality":
		if n := LocalityName(v); n != "" {
			return n
		}
	case "provider":
		if n := res.OrgName[v]; n != "" {
			return n
		}
	}
	return v
}

func itoa(n int) string { return formatFloat(float64(n)) }

func formatFloat(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}
