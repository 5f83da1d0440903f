package measures

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
)

// Searcher runs searches for a caller (implemented by *engine.Engine). The
// caller's principal travels in ctx; the engine applies its access policy.
type Searcher interface {
	Search(ctx context.Context, rt string, params []fhir.RawParam, opt engine.SearchOptions) (*engine.Bundle, error)
}

// searchAll runs a search and follows its next links, calling fn with each
// resource of every page. pageSize is the _count asked for.
func searchAll(ctx context.Context, s Searcher, rt string, params []fhir.RawParam, fn func(obj map[string]any)) error {
	params = append(append([]fhir.RawParam{}, params...), fhir.RawParam{Name: "_count", Value: "500"}, fhir.RawParam{Name: "_total", Value: "none"})
	for {
		b, err := s.Search(ctx, rt, params, engine.SearchOptions{})
		if err != nil {
			return err
		}
		for _, e := range b.Entry {
			if e.Search != nil && e.Search.Mode != "match" {
				continue
			}
			var obj map[string]any
			if err := json.Unmarshal(e.Resource, &obj); err != nil {
				return fhir.InternalError("decode "+rt, err)
			}
			fn(obj)
		}
		next := ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		if next == "" {
			return nil
		}
		_, qs, _ := strings.Cut(next, "?")
		if params, err = engine.ParseQueryString(qs); err != nil {
			return err
		}
	}
}

// Referral is what the measures and the caseload page know of one referral to
// the pathway and the episode it started: the timestamps each measure reads.
type Referral struct {
	ID        string // ServiceRequest id
	Patient   string // Patient id
	Pattern   string // care call pattern: single | double
	DRD       time.Time
	Authored  time.Time // ServiceRequest.authoredOn
	Arrival   time.Time // end of the acute Encounter named by ServiceRequest.encounter
	Screening string    // therapy screening outcome: accepted | declined | ""
	Screened  time.Time // therapy screening date
	Status    string    // ServiceRequest.status

	Episode      string // EpisodeOfCare id ("" before care starts)
	EpisodeState string // EpisodeOfCare.status
	Locality     string
	Provider     string // Organization id of EpisodeOfCare.managingOrganization, else the first performer
	Start, End   time.Time
	Exit         string

	FirstVisit time.Time // earliest start of a finished home visit (class HH) of the episode
	Assessment time.Time // earliest start of a finished home-assessment visit
	LastVisit  time.Time // latest start of a finished home visit
	NextVisit  time.Time // earliest start of a planned home visit
	Missed     int       // home visits cancelled (missed)
	Calls      int       // calls per day on the current care plan; -1 without one
	Plan       string    // CarePlan id
}

// Region is the data read for one evaluation: referrals by id and the names of
// the organisations.
type Region struct {
	Referrals []*Referral
	OrgNames  map[string]string
}

// Filter narrows what a load reads.
type Filter struct {
	Locality string // only episodes in this locality (referrals without an episode are left out)
	Provider string // only this provider's referrals (Organization id)
	Active   bool   // only active episodes
}

// load reads referrals, episodes, acute stays, home visits and care plans
// through the engine as the caller in ctx.
func load(ctx context.Context, s Searcher, base string, f Filter) (*Region, error) {
	reg := &Region{OrgNames: map[string]string{}}
	byID := map[string]*Referral{}
	byEpisode := map[string]*Referral{}
	acute := map[string]*Referral{}
	err := searchAll(ctx, s, "Organization", nil, func(o map[string]any) {
		reg.OrgNames[str(o["id"])] = str(o["name"])
	})
	if err != nil {
		return nil, err
	}
	var eocParams []fhir.RawParam
	if f.Locality != "" {
		eocParams = append(eocParams, fhir.RawParam{Name: "locality", Value: f.Locality})
	}
	if f.Active {
		eocParams = append(eocParams, fhir.RawParam{Name: "status", Value: "active"})
	}
	if f.Provider != "" {
		eocParams = append(eocParams, fhir.RawParam{Name: "organization", Value: "Organization/" + f.Provider})
	}
	episodes := map[string]map[string]any{} // referral id → episode
	err = searchAll(ctx, s, "EpisodeOfCare", eocParams, func(o map[string]any) {
		for _, r := range arr(o["referralRequest"]) {
			if id := refID(r, "ServiceRequest"); id != "" {
				episodes[id] = o
				break
			}
		}
	})
	if err != nil {
		return nil, err
	}
	episodic := f.Locality != "" || f.Active || f.Provider != ""
	var srParams []fhir.RawParam
	if episodic {
		if len(episodes) == 0 {
			return reg, nil
		}
	}
	err = searchAll(ctx, s, "ServiceRequest", srParams, func(o map[string]any) {
		id := str(o["id"])
		ep, ok := episodes[id]
		if episodic && !ok {
			return
		}
		r := &Referral{ID: id, Patient: refID(o["subject"], "Patient"), Status: str(o["status"]), Calls: -1}
		r.Authored = instant(o["authoredOn"])
		r.DRD = instant(ext(o, base+extDischargeReady)["valueDateTime"])
		r.Pattern = str(mapOf(ext(o, base+extCallPattern)["valueCoding"])["code"])
		if scr := ext(o, base+extTherapyScreening); scr != nil {
			for _, x := range arr(scr["extension"]) {
				xm := mapOf(x)
				switch str(xm["url"]) {
				case "outcome":
					r.Screening = str(xm["valueCode"])
				case "date":
					r.Screened = instant(xm["valueDateTime"])
				}
			}
		}
		for _, p := range arr(o["performer"]) {
			if id := refID(p, "Organization"); id != "" {
				r.Provider = id
				break
			}
		}
		if enc := refID(o["encounter"], "Encounter"); enc != "" {
			acute[enc] = r
		}
		if ep != nil {
			r.Episode = str(ep["id"])
			r.EpisodeState = str(ep["status"])
			r.Locality = str(firstCoding(ext(ep, base+extLocality)["valueCodeableConcept"])["code"])
			r.Exit = str(mapOf(ext(ep, base+extExitRoute)["valueCoding"])["code"])
			if p := refID(ep["managingOrganization"], "Organization"); p != "" {
				r.Provider = p
			}
			per := mapOf(ep["period"])
			r.Start, r.End = instant(per["start"]), instant(per["end"])
			byEpisode[r.Episode] = r
		}
		if f.Provider != "" && r.Provider != f.Provider {
			return
		}
		byID[id] = r
		reg.Referrals = append(reg.Referrals, r)
	})
	if err != nil {
		return nil, err
	}
	// Encounters: the acute stays the referrals name and the home visits of the
	// episodes. A filtered load asks for its people's only.
	visit := func(o map[string]any) {
		id := str(o["id"])
		if r, ok := acute[id]; ok {
			r.Arrival = instant(mapOf(o["period"])["end"])
			return
		}
		if str(mapOf(o["class"])["code"]) != "HH" {
			return
		}
		var r *Referral
		for _, e := range arr(o["episodeOfCare"]) {
			if r = byEpisode[refID(e, "EpisodeOfCare")]; r != nil {
				break
			}
		}
		if r == nil {
			return
		}
		start := instant(mapOf(o["period"])["start"])
		switch str(o["status"]) {
		case "finished":
			if r.FirstVisit.IsZero() || start.Before(r.FirstVisit) {
				r.FirstVisit = start
			}
			if start.After(r.LastVisit) {
				r.LastVisit = start
			}
			if hasCode(o["type"], base+csVisitType, "home-assessment") && (r.Assessment.IsZero() || start.Before(r.Assessment)) {
				r.Assessment = start
			}
		case "cancelled":
			r.Missed++
		case "planned":
			if r.NextVisit.IsZero() || start.Before(r.NextVisit) {
				r.NextVisit = start
			}
		}
	}
	plan := func(o map[string]any) {
		for _, b := range arr(o["basedOn"]) {
			if r := byID[refID(b, "ServiceRequest")]; r != nil {
				if v, ok := ext(o, base+extCallsPerDay)["valueInteger"]; ok {
					r.Calls = int(num(v))
				}
				r.Plan = str(o["id"])
				return
			}
		}
	}
	if episodic {
		for _, chunk := range patientChunks(reg.Referrals) {
			p := []fhir.RawParam{{Name: "subject", Value: chunk}}
			if err := searchAll(ctx, s, "Encounter", p, visit); err != nil {
				return nil, err
			}
			if err := searchAll(ctx, s, "CarePlan", p, plan); err != nil {
				return nil, err
			}
		}
		return reg, nil
	}
	if err := searchAll(ctx, s, "Encounter", nil, visit); err != nil {
		return nil, err
	}
	if err := searchAll(ctx, s, "CarePlan", nil, plan); err != nil {
		return nil, err
	}
	return reg, nil
}

// patientChunks returns the referrals' patients as OR-lists of at most 100.
func patientChunks(rs []*Referral) []string {
	var out []string
	var cur []string
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Patient == "" || seen[r.Patient] {
			continue
		}
		seen[r.Patient] = true
		cur = append(cur, "Patient/"+r.Patient)
		if len(cur) == 100 {
			out = append(out, strings.Join(cur, ","))
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, strings.Join(cur, ","))
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func arr(v any) []any {
	a, _ := v.([]any)
	return a
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func num(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case int:
		return float64(n)
	case json.Number:
		f, _ := n.Float64()
		return f
	}
	return 0
}

// ext returns the first extension of o with url, or nil.
func ext(o map[string]any, url string) map[string]any {
	for _, e := range arr(o["extension"]) {
		if m := mapOf(e); str(m["url"]) == url {
			return m
		}
	}
	return nil
}

func firstCoding(cc any) map[string]any {
	c := arr(mapOf(cc)["coding"])
	if len(c) == 0 {
		return nil
	}
	return mapOf(c[0])
}

func hasCode(ccs any, system, code string) bool {
	for _, cc := range arr(ccs) {
		for _, c := range arr(mapOf(cc)["coding"]) {
			if m := mapOf(c); str(m["system"]) == system && str(m["code"]) == code {
				return true
			}
		}
	}
	return false
}

// refID returns the id of a literal reference to type rt, or "".
func refID(r any, rt string) string {
	s := str(mapOf(r)["reference"])
	if i := strings.LastIndex(s, rt+"/"); i >= 0 && (i == 0 || s[i-1] == '/') {
		id, _, _ := strings.Cut(s[i+len(rt)+1:], "/")
		return id
	}
	return ""
}

// instant parses a FHIR date or dateTime (a date is its midnight UTC).
func instant(v any) time.Time {
	s := str(v)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
