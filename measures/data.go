package measures

import (
	"context"
	"encoding/json"
	"runtime"
	"sort"
	"strings"
	"sync"
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
// resource of every page, decoded as a generic tree.
func searchAll(ctx context.Context, s Searcher, rt string, params []fhir.RawParam, fn func(obj map[string]any)) error {
	return searchRaw(ctx, s, rt, params, func(raw []byte) error {
		var obj map[string]any
		if err := json.Unmarshal(raw, &obj); err != nil {
			return fhir.InternalError("decode "+rt, err)
		}
		fn(obj)
		return nil
	})
}

// searchInto runs a search like searchAll and decodes each resource into a
// new T (only the elements T names are decoded).
func searchInto[T any](ctx context.Context, s Searcher, rt string, params []fhir.RawParam, fn func(*T)) error {
	return searchRaw(ctx, s, rt, params, func(raw []byte) error {
		v := new(T)
		if err := json.Unmarshal(raw, v); err != nil {
			return fhir.InternalError("decode "+rt, err)
		}
		fn(v)
		return nil
	})
}

// searchRaw runs a search and follows its next links (pages of 500, no
// total), calling fn with the bytes of each matching resource.
func searchRaw(ctx context.Context, s Searcher, rt string, params []fhir.RawParam, fn func(raw []byte) error) error {
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
			if err := fn(e.Resource); err != nil {
				return err
			}
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
	Providers map[string]bool // the providers managing the episodes found, before Filter.Provider
}

// Filter narrows what a load reads.
type Filter struct {
	Locality string // only episodes in this locality (referrals without an episode are left out)
	Provider string // only this provider's referrals (Organization id)
	Active   bool   // only active episodes
	// Waiting adds the referrals accepted (ServiceRequest status active) that
	// have no EpisodeOfCare yet: care has not started. They have no locality
	// of their own until then; with Locality they are kept when their care
	// provider manages active episodes in that locality.
	Waiting bool
}

// Needs say which resources beyond referrals and episodes a load reads: the
// data requirements of the measures being evaluated.
type Needs struct {
	Visits      bool // every finished, cancelled and planned home visit (Encounter class HH)
	Assessments bool // finished home-assessment visits only (a subset of Visits)
	Arrivals    bool // the acute stays that referrals name (ServiceRequest.encounter)
	Plans       bool // care plans
	// FirstVisitBy asks, without Visits, only for the finished home visits
	// that can be a referral's first visit in time for these deadlines: the
	// rules that read FirstVisit this way get it exact when it is in time, and
	// zero (or a later visit) when it is late, which they treat alike.
	FirstVisitBy []deadline
}

// all is what the caseload page reads.
var all = Needs{Visits: true, Arrivals: true, Plans: true}

func (n Needs) union(o Needs) Needs {
	return Needs{Visits: n.Visits || o.Visits, Assessments: n.Assessments || o.Assessments, Arrivals: n.Arrivals || o.Arrivals, Plans: n.Plans || o.Plans,
		FirstVisitBy: append(append([]deadline{}, n.FirstVisitBy...), o.FirstVisitBy...)}
}

// The elements the measures read, decoded into small structs: decoding only
// these is much cheaper than building a generic tree of every resource.
type (
	xRef    struct{ Reference string }
	xCoding struct{ System, Code string }
	xCC     struct{ Coding []xCoding }
	xPeriod struct{ Start, End string }
	xExt    struct {
		URL                  string
		ValueDateTime        string
		ValueCode            string
		ValueInteger         *int
		ValueCoding          *xCoding
		ValueCodeableConcept *xCC
		Extension            []xExt
	}
	xServiceRequest struct {
		ID         string
		Status     string
		AuthoredOn string
		Subject    xRef
		Encounter  xRef
		Performer  []xRef
		Extension  []xExt
	}
	xEpisode struct {
		ID                   string
		Status               string
		Extension            []xExt
		ManagingOrganization xRef
		ReferralRequest      []xRef
		Period               xPeriod
	}
	xEncounter struct {
		ID            string
		Status        string
		Class         xCoding
		Type          []xCC
		EpisodeOfCare []xRef
		Period        xPeriod
	}
	xCarePlan struct {
		ID        string
		BasedOn   []xRef
		Extension []xExt
	}
	xOrganization struct{ ID, Name string }
)

func findExt(exts []xExt, url string) *xExt {
	for i := range exts {
		if exts[i].URL == url {
			return &exts[i]
		}
	}
	return nil
}

func (e *xExt) coding() xCoding {
	switch {
	case e == nil:
		return xCoding{}
	case e.ValueCoding != nil:
		return *e.ValueCoding
	case e.ValueCodeableConcept != nil && len(e.ValueCodeableConcept.Coding) > 0:
		return e.ValueCodeableConcept.Coding[0]
	}
	return xCoding{}
}

func xRefID(r xRef, rt string) string { return refID(map[string]any{"reference": r.Reference}, rt) }

// load reads referrals, episodes and what needs asks for through the engine as
// the caller in ctx; now is the clock the rules will be evaluated at.
func load(ctx context.Context, s Searcher, base string, f Filter, needs Needs, now time.Time) (*Region, error) {
	l := &loader{s: s, base: base, f: f, episodic: f.Locality != "" || f.Active || f.Provider != "",
		reg:       &Region{OrgNames: map[string]string{}, Providers: map[string]bool{}},
		byID:      map[string]*Referral{},
		byEpisode: map[string]*Referral{},
		acute:     map[string]*Referral{},
		episodes:  map[string]*xEpisode{},
	}
	reg := l.reg
	var eocParams []fhir.RawParam
	if f.Locality != "" {
		eocParams = append(eocParams, fhir.RawParam{Name: "locality", Value: f.Locality})
	}
	if f.Active {
		eocParams = append(eocParams, fhir.RawParam{Name: "status", Value: "active"})
	}
	// The organisations, the episodes and (unfiltered) every referral are
	// independent reads: they run in parallel and are joined after.
	var srs []*xServiceRequest
	first := []func() error{
		func() error {
			return searchInto(ctx, s, "Organization", nil, func(o *xOrganization) { reg.OrgNames[o.ID] = o.Name })
		},
		func() error {
			return searchInto(ctx, s, "EpisodeOfCare", eocParams, func(o *xEpisode) {
				prov := xRefID(o.ManagingOrganization, "Organization")
				reg.Providers[prov] = true
				if f.Provider != "" && prov != f.Provider {
					return
				}
				for _, r := range o.ReferralRequest {
					if id := xRefID(r, "ServiceRequest"); id != "" {
						l.episodes[id] = o
						break
					}
				}
			})
		},
	}
	if !l.episodic {
		first = append(first, func() error {
			return searchInto(ctx, s, "ServiceRequest", nil, func(o *xServiceRequest) { srs = append(srs, o) })
		})
	}
	if err := parallel(first); err != nil {
		return nil, err
	}
	if l.episodic && len(l.episodes) == 0 && !f.Waiting {
		return reg, nil
	}
	if l.episodic {
		ids := make([]string, 0, len(l.episodes))
		for id := range l.episodes {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		// The chunks are read in parallel and joined in their order, so the
		// referrals keep the order of a sequential read.
		parts := chunks(ids, 100)
		read := make([][]*xServiceRequest, len(parts))
		jobs := make([]func() error, len(parts))
		for i, chunk := range parts {
			jobs[i] = func() error {
				return searchInto(ctx, s, "ServiceRequest", []fhir.RawParam{{Name: "_id", Value: chunk}}, func(o *xServiceRequest) { read[i] = append(read[i], o) })
			}
		}
		if err := parallelN(max(2, runtime.GOMAXPROCS(0)), jobs); err != nil {
			return nil, err
		}
		for _, part := range read {
			for _, o := range part {
				l.addReferral(o)
			}
		}
	} else {
		for _, o := range srs {
			l.addReferral(o)
		}
	}
	if f.Waiting {
		if err := loadWaiting(ctx, s, base, f, reg, l.byID); err != nil {
			return nil, err
		}
	}
	// The rest reads independent resources into distinct fields of the
	// referrals (Arrival; the visit times; Calls and Plan), so it runs in
	// parallel, on as many workers as there are processors.
	var jobs []func() error
	// A filtered load asks for its people's visits and plans only. The
	// longest single reads (the unfiltered walks) are the first jobs.
	var subjects [][]fhir.RawParam
	if l.episodic {
		for _, chunk := range patientChunks(reg.Referrals) {
			subjects = append(subjects, []fhir.RawParam{{Name: "subject", Value: chunk}})
		}
	} else {
		subjects = [][]fhir.RawParam{nil}
	}
	if needs.Plans {
		plan := serial(l, l.plan)
		for _, p := range subjects {
			jobs = append(jobs, func() error { return searchInto(ctx, s, "CarePlan", p, plan) })
		}
	}
	switch {
	case needs.Visits && !l.episodic:
		// Every Encounter, class filtered here: at 10x the demo region a
		// plain walk of the type took 11 s where the class=HH search took
		// 17–30 s (and 239 ms instead of 278 ms at 1x).
		jobs = append(jobs, func() error { return searchInto(ctx, s, "Encounter", []fhir.RawParam{}, serial(l, l.visit)) })
	case needs.Visits:
		visit := serial(l, l.visit)
		for _, p := range subjects {
			// subject alone, class checked here: a second parameter costs the
			// store's planner an index count per search.
			jobs = append(jobs, func() error { return searchInto(ctx, s, "Encounter", p, visit) })
		}
	default:
		if len(needs.FirstVisitBy) > 0 {
			// Class and status are checked here: each parameter more is one
			// more index count for the store's planner per search.
			jobs = append(jobs, visitJobs(ctx, s, nil,
				firstVisitChunks(reg.Referrals, needs.FirstVisitBy, now, 100), serial(l, l.firstVisit))...)
		}
		if needs.Assessments {
			// One walk of the home assessments, class and status checked
			// here (one parameter: no planner counts on each page).
			assess := serial(l, l.assessment)
			jobs = append(jobs, func() error {
				return searchInto(ctx, s, "Encounter", []fhir.RawParam{{Name: "type", Value: base + csVisitType + "|home-assessment"}}, assess)
			})
		}
	}
	if needs.Arrivals {
		ids := make([]string, 0, len(l.acute))
		for id := range l.acute {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, chunk := range chunks(ids, 100) {
			jobs = append(jobs, func() error {
				return searchInto(ctx, s, "Encounter", []fhir.RawParam{{Name: "_id", Value: chunk}}, func(o *xEncounter) {
					if r := l.acute[o.ID]; r != nil {
						r.Arrival = instant(o.Period.End)
					}
				})
			})
		}
	}
	if err := parallelN(max(2, runtime.GOMAXPROCS(0)), jobs); err != nil {
		return nil, err
	}
	return reg, nil
}

// loader is the state of one load: the referrals read so far, by id, by
// episode and by the acute stay they name.
type loader struct {
	s         Searcher
	base      string
	f         Filter
	episodic  bool
	reg       *Region
	byID      map[string]*Referral
	byEpisode map[string]*Referral
	acute     map[string]*Referral // acute Encounter id → referral
	episodes  map[string]*xEpisode // referral id → episode
	mu        sync.Mutex
}

// serial returns fn guarded by the loader's lock, for searches that run in
// parallel and update the same referrals.
func serial[T any](l *loader, fn func(*T)) func(*T) {
	return func(o *T) {
		l.mu.Lock()
		defer l.mu.Unlock()
		fn(o)
	}
}

// addReferral joins a ServiceRequest to its episode and adds it to the
// region, unless the filter leaves it out.
func (l *loader) addReferral(o *xServiceRequest) {
	ep, ok := l.episodes[o.ID]
	if l.episodic && !ok {
		return
	}
	r := newReferral(o, l.base)
	if enc := xRefID(o.Encounter, "Encounter"); enc != "" {
		l.acute[enc] = r
	}
	if ep != nil {
		r.Episode = ep.ID
		r.EpisodeState = ep.Status
		r.Locality = findExt(ep.Extension, l.base+extLocality).coding().Code
		r.Exit = findExt(ep.Extension, l.base+extExitRoute).coding().Code
		if p := xRefID(ep.ManagingOrganization, "Organization"); p != "" {
			r.Provider = p
		}
		r.Start, r.End = instant(ep.Period.Start), instant(ep.Period.End)
		l.byEpisode[r.Episode] = r
	}
	if l.f.Provider != "" && r.Provider != l.f.Provider {
		return
	}
	l.byID[o.ID] = r
	l.reg.Referrals = append(l.reg.Referrals, r)
}

// homeVisit returns the referral a home visit (class HH) belongs to, through
// its first episode the load knows, and its start; nil for any other
// Encounter.
func (l *loader) homeVisit(o *xEncounter) (*Referral, time.Time) {
	if o.Class.Code != "HH" {
		return nil, time.Time{}
	}
	for _, e := range o.EpisodeOfCare {
		if r := l.byEpisode[xRefID(e, "EpisodeOfCare")]; r != nil {
			return r, instant(o.Period.Start)
		}
	}
	return nil, time.Time{}
}

// visit reads everything the caseload knows of a home visit. A visit without
// a start counts as missed when cancelled and is otherwise left out: it has
// no time to compare.
func (l *loader) visit(o *xEncounter) {
	r, start := l.homeVisit(o)
	if r == nil {
		return
	}
	if o.Status == "cancelled" {
		r.Missed++
		return
	}
	if start.IsZero() {
		return
	}
	switch o.Status {
	case "finished":
		l.firstVisit(o)
		if start.After(r.LastVisit) {
			r.LastVisit = start
		}
		l.assessment(o)
	case "planned":
		if r.NextVisit.IsZero() || start.Before(r.NextVisit) {
			r.NextVisit = start
		}
	}
}

// firstVisit keeps the earliest start of the finished home visits.
func (l *loader) firstVisit(o *xEncounter) {
	r, start := l.homeVisit(o)
	if r == nil || o.Status != "finished" || start.IsZero() {
		return
	}
	if r.FirstVisit.IsZero() || start.Before(r.FirstVisit) {
		r.FirstVisit = start
	}
}

// assessment keeps the earliest start of the finished home assessments.
func (l *loader) assessment(o *xEncounter) {
	r, start := l.homeVisit(o)
	if r == nil || o.Status != "finished" || start.IsZero() {
		return
	}
	visitType := l.base + csVisitType
	for _, cc := range o.Type {
		for _, c := range cc.Coding {
			if c.System == visitType && c.Code == "home-assessment" && (r.Assessment.IsZero() || start.Before(r.Assessment)) {
				r.Assessment = start
			}
		}
	}
}

// plan reads the calls per day of a care plan into the referral it is based
// on.
func (l *loader) plan(o *xCarePlan) {
	for _, b := range o.BasedOn {
		if r := l.byID[xRefID(b, "ServiceRequest")]; r != nil {
			if e := findExt(o.Extension, l.base+extCallsPerDay); e != nil && e.ValueInteger != nil {
				r.Calls = *e.ValueInteger
			}
			r.Plan = o.ID
			return
		}
	}
}

// parallel runs jobs concurrently and returns the first error.
func parallel(jobs []func() error) error {
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, job := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = job()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// newReferral reads what the measures know of a referral from its
// ServiceRequest.
func newReferral(o *xServiceRequest, base string) *Referral {
	r := &Referral{ID: o.ID, Patient: xRefID(o.Subject, "Patient"), Status: o.Status, Calls: -1}
	r.Authored = instant(o.AuthoredOn)
	if e := findExt(o.Extension, base+extDischargeReady); e != nil {
		r.DRD = instant(e.ValueDateTime)
	}
	r.Pattern = findExt(o.Extension, base+extCallPattern).coding().Code
	if scr := findExt(o.Extension, base+extTherapyScreening); scr != nil {
		for _, x := range scr.Extension {
			switch x.URL {
			case "outcome":
				r.Screening = x.ValueCode
			case "date":
				r.Screened = instant(x.ValueDateTime)
			}
		}
	}
	for _, p := range o.Performer {
		if id := xRefID(p, "Organization"); id != "" {
			r.Provider = id
			break
		}
	}
	return r
}

// loadWaiting adds the accepted referrals (status active) that have no
// EpisodeOfCare at all (whatever its locality or state) to reg.
func loadWaiting(ctx context.Context, s Searcher, base string, f Filter, reg *Region, byID map[string]*Referral) error {
	params := []fhir.RawParam{{Name: "status", Value: "active"}}
	switch {
	case f.Provider != "":
		params = append(params, fhir.RawParam{Name: "performer", Value: "Organization/" + f.Provider})
	case f.Locality != "":
		var provs []string
		for p := range reg.Providers {
			if p != "" {
				provs = append(provs, "Organization/"+p)
			}
		}
		if len(provs) == 0 {
			return nil
		}
		sort.Strings(provs)
		params = append(params, fhir.RawParam{Name: "performer", Value: strings.Join(provs, ",")})
	}
	var waiting []*Referral
	err := searchInto(ctx, s, "ServiceRequest", params, func(o *xServiceRequest) {
		if byID[o.ID] != nil {
			return
		}
		r := newReferral(o, base)
		if f.Provider != "" && r.Provider != f.Provider {
			return
		}
		if f.Locality != "" && !reg.Providers[r.Provider] {
			return
		}
		waiting = append(waiting, r)
	})
	if err != nil || len(waiting) == 0 {
		return err
	}
	// A referral named by any episode the caller can see has started.
	started := map[string]bool{}
	ids := make([]string, 0, len(waiting))
	for _, r := range waiting {
		ids = append(ids, "ServiceRequest/"+r.ID)
	}
	for _, chunk := range chunks(ids, 100) {
		err := searchInto(ctx, s, "EpisodeOfCare", []fhir.RawParam{{Name: "incoming-referral", Value: chunk}}, func(o *xEpisode) {
			for _, ref := range o.ReferralRequest {
				started[xRefID(ref, "ServiceRequest")] = true
			}
		})
		if err != nil {
			return err
		}
	}
	for _, r := range waiting {
		if started[r.ID] {
			continue
		}
		byID[r.ID] = r
		reg.Referrals = append(reg.Referrals, r)
	}
	return nil
}

// chunks joins ids into OR-lists of at most n.
func chunks(ids []string, n int) []string {
	var out []string
	for i := 0; i < len(ids); i += n {
		out = append(out, strings.Join(ids[i:min(i+n, len(ids))], ","))
	}
	return out
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
