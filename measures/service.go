package measures

import (
	"context"
	"time"

	"crs/fhir"
)

// Service is the measures door: $evaluate-measure for the API, the MDT
// caseload page and the CSV download. Every call reads through the engine as
// the caller in ctx.
type Service struct {
	eng      Engine
	base     string
	now      func() time.Time
	eval     *Evaluator
	caseload *Caseloads
	page     *pages
}

// NewService returns the measures door on eng; base is the pathway's canonical
// base ("" for the default) and now the clock (nil for time.Now).
func NewService(eng Engine, base string, now func() time.Time) (*Service, error) {
	if now == nil {
		now = time.Now
	}
	s := &Service{eng: eng, base: base, now: now, eval: NewEvaluator(eng, base, now), caseload: NewCaseloads(eng, base, now)}
	p, err := newPages(s)
	if err != nil {
		return nil, err
	}
	s.page = p
	return s, nil
}

// EvaluateMeasure answers Measure/{id}/$evaluate-measure with a MeasureReport
// (not stored). Bad parameters are Invalid; an unknown Measure is NotFound.
func (s *Service) EvaluateMeasure(ctx context.Context, id string, params []fhir.RawParam) (map[string]any, error) {
	req, err := ParseRequest(id, params)
	if err != nil {
		return nil, err
	}
	res, err := s.eval.Evaluate(ctx, req)
	if err != nil {
		return nil, err
	}
	return res.Report(s.eval.base, s.now()), nil
}

// evaluateAll evaluates the Measures with ids over one read of the region,
// keeping only the referrals keep accepts (nil: all).
func (s *Service) evaluateAll(ctx context.Context, ids []string, req Request, keep func(*Referral) bool) (map[string]*Result, error) {
	views, err := s.evaluateViews(ctx, ids, req, map[string]func(*Referral) bool{"": keep})
	if err != nil {
		return nil, err
	}
	return views[""], nil
}

// evaluateViews evaluates the Measures with ids over one read of the region,
// once per view: the referrals its function keeps (nil: all).
func (s *Service) evaluateViews(ctx context.Context, ids []string, req Request, views map[string]func(*Referral) bool) (map[string]map[string]*Result, error) {
	defs := map[string]map[string]any{}
	var needs Needs
	for _, id := range ids {
		m, err := s.eval.measure(ctx, id)
		if err != nil {
			return nil, err
		}
		defs[id] = m
		needs = needs.union(needsOf(m))
	}
	reg, err := load(ctx, s.eng, s.eval.base, Filter{}, needs, s.now())
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]*Result{}
	for name, keep := range views {
		view := reg
		if keep != nil {
			var rs []*Referral
			for _, r := range reg.Referrals {
				if keep(r) {
					rs = append(rs, r)
				}
			}
			view = &Region{Referrals: rs, OrgNames: reg.OrgNames}
		}
		out[name] = map[string]*Result{}
		for _, id := range ids {
			r := req
			r.Measure = id
			out[name][id] = s.eval.evaluate(defs[id], r, view)
		}
	}
	return out, nil
}

// MeasureIDs returns the ids of the embedded Measures.
func MeasureIDs() []string {
	ms, err := Definitions()
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range ms {
		out = append(out, str(m["id"]))
	}
	return out
}
