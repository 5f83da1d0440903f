package measures

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/profiles"
)

// DemoOptions shape the synthetic region that Demo generates.
type DemoOptions struct {
	Seed     uint64    // the same seed and Now give the same region, byte for byte
	Now      time.Time // "today": the region's six months end here
	Episodes int       // episodes over the six months (default 1,150)
	Batch    int       // episodes per transaction Bundle (default 50)
	Base     string    // canonical base of the pathway's URLs (default profiles' default)
}

// Organisations of the demo region: two acute trusts, one council, seven care
// providers and one therapy service. ODS codes are made up (never issued).
type demoOrg struct {
	ID, ODS, Name string
}

var (
	demoTrusts = []demoOrg{
		{"demo-trust-north", "RX9N1", "North Acute Hospitals NHS Trust (demo)"},
		{"demo-trust-south", "RX9S1", "South Acute Hospitals NHS Trust (demo)"},
	}
	demoCouncil   = demoOrg{"demo-council", "DEMOLA1", "Warwickshire County Council (demo)"}
	demoTherapy   = demoOrg{"demo-therapy", "RX9T1", "Community Therapy Service (demo)"}
	demoProviders = []demoOrg{
		{"demo-prov-alder", "VDEM1", "Alder Home Care (demo)"},
		{"demo-prov-beacon", "VDEM2", "Beacon Care Services (demo)"},
		{"demo-prov-canal", "VDEM3", "Canalside Care (demo)"},
		{"demo-prov-dove", "VDEM4", "Dove Reablement (demo)"},
		{"demo-prov-elm", "VDEM5", "Elm Support at Home (demo)"},
		{"demo-prov-foxglove", "VDEM6", "Foxglove Care (demo)"},
		{"demo-prov-greenway", "VDEM7", "Greenway Homecare (demo)"},
	}
	// Localities with their share of episodes and the providers serving them.
	demoLocalities = []struct {
		Code      string
		Share     float64
		Providers []int
		Trust     int
	}{
		{"north-warwickshire", 0.35, []int{0, 1, 2}, 0},
		{"south-warwickshire", 0.40, []int{3, 4, 5}, 1},
		{"rugby", 0.25, []int{6, 2}, 0},
	}
	demoGiven  = []string{"Ada", "Bert", "Cora", "Dennis", "Edna", "Frank", "Gwen", "Harold", "Iris", "Jack", "Kath", "Len", "Mabel", "Norman", "Olive", "Percy", "Queenie", "Ron", "Sylvia", "Ted", "Una", "Vera", "Walter", "Winifred"}
	demoFamily = []string{"Alderley", "Brookfield", "Coppice", "Dunmore", "Eastholme", "Fernleigh", "Glebeland", "Hollowell", "Ingleby", "Juniper", "Kingsmead", "Larchwood", "Meadowcroft", "Netherby", "Oakridge", "Pennyfield", "Quarrybank", "Rushwick", "Stonecroft", "Thornbury", "Underhill", "Vale", "Westerby", "Yewdale"}
	demoGoals  = []string{"Make my own cup of tea", "Walk to the corner shop with my stick", "Get in and out of the shower on my own", "Cook a simple meal", "Manage my own tablets", "Get up the stairs to bed", "Dress myself in the morning", "Go to the day centre on Tuesdays"}
	// Exit routes and their shares among finished episodes.
	demoExits = []struct {
		Code  string
		Share float64
	}{
		{"independent", 0.45}, {"reduced-long-term-care", 0.20}, {"long-term-care-unchanged", 0.15},
		{"readmitted", 0.12}, {"died", 0.03}, {"transferred", 0.03}, {"other", 0.02},
	}
)

// DemoNHSNumber returns the i-th synthetic NHS number: ten digits starting 999
// (a range never issued) with a valid Modulus 11 check digit.
func DemoNHSNumber(i int) string {
	// Person i owns the three prefixes 3i, 3i+1 and 3i+2: consecutive prefixes
	// move the Modulus 11 remainder by 2, so at most one of the three has no
	// check digit, and no two people share a number.
	for n := 3 * i; ; n++ {
		s := fmt.Sprintf("999%06d", n%1000000)
		for c := '0'; c <= '9'; c++ {
			if ok, _ := profiles.ValidNHSNumber(s + string(c)); ok {
				return s + string(c)
			}
		}
	}
}

// demoEpisode is one person's generated pathway, the source of its resources.
type demoEpisode struct {
	n                    int
	locality, pattern    string
	provider, trust      int
	admit, drd, referred time.Time
	arrival, assessed    time.Time
	started              bool // the first visit is in the past
	end                  time.Time
	finished             bool
	exit                 string
	calls                int // calls per day now (or at the end)
	screened             bool
	accepted             bool
	screenDate           time.Time
	goals                int
	missed               int
	given, family, birth string
	gender               string
	identityReview       bool
}

// Demo is a generated region: organisations and episodes, ready to load.
type Demo struct {
	opt      DemoOptions
	episodes []demoEpisode
}

// NewDemo generates the region for opt. Nothing is written.
func NewDemo(opt DemoOptions) *Demo {
	if opt.Episodes <= 0 {
		opt.Episodes = 1150
	}
	if opt.Batch <= 0 {
		opt.Batch = 50
	}
	if opt.Base == "" {
		opt.Base = defaultBase
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	opt.Now = opt.Now.UTC()
	rng := rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15))
	d := &Demo{opt: opt}
	today := opt.Now.Truncate(24 * time.Hour)
	first := today.AddDate(0, -6, 0)
	span := today.Sub(first)
	for i := 0; i < opt.Episodes; i++ {
		e := demoEpisode{n: i + 1}
		// Discharge-ready dates spread evenly over the six months, at a daytime hour.
		day := first.Add(time.Duration(float64(span) * (float64(i) + rng.Float64()) / float64(opt.Episodes))).Truncate(24 * time.Hour)
		e.drd = day.Add(time.Duration(8+rng.IntN(9))*time.Hour + time.Duration(rng.IntN(60))*time.Minute)
		r := rng.Float64()
		for _, l := range demoLocalities {
			if r < l.Share {
				e.locality = l.Code
				e.provider = l.Providers[rng.IntN(len(l.Providers))]
				e.trust = l.Trust
				break
			}
			r -= l.Share
		}
		if e.locality == "" {
			l := demoLocalities[len(demoLocalities)-1]
			e.locality, e.provider, e.trust = l.Code, l.Providers[0], l.Trust
		}
		e.pattern = "single"
		if rng.Float64() < 0.25 {
			e.pattern = "double"
		}
		e.admit = e.drd.Add(-time.Duration(2+rng.IntN(12)) * 24 * time.Hour)
		e.referred = e.drd.Add(time.Duration(rng.IntN(240)) * time.Minute)
		// Weekly variation: the share started within three days swings around 53%.
		week := float64(day.Sub(first).Hours() / 24 / 7)
		pFast := 0.51 + 0.09*math.Sin(week/2.3) + 0.05*(rng.Float64()-0.5)
		var wait time.Duration // referral → arrival home
		if rng.Float64() < pFast {
			f := rng.Float64()
			wait = time.Duration((2 + 64*f*f*f) * float64(time.Hour))
		} else {
			wait = time.Duration((75 + 260*rng.Float64()) * float64(time.Hour))
		}
		e.arrival = e.referred.Add(wait)
		if rng.Float64() < 0.88 {
			e.assessed = e.arrival.Add(time.Duration(15+rng.IntN(95)) * time.Minute)
		} else {
			e.assessed = e.arrival.Add(time.Duration(125+rng.IntN(300)) * time.Minute)
		}
		e.started = e.assessed.Before(opt.Now)
		// Length: most finish within six weeks; a few run over.
		days := 28 + rng.IntN(15)
		if rng.Float64() < 0.06 {
			days = 43 + rng.IntN(10)
		}
		e.end = e.assessed.Truncate(24*time.Hour).AddDate(0, 0, days).Add(11 * time.Hour)
		e.finished = e.started && e.end.Before(today)
		e.screened = e.assessed.Add(-2 * time.Hour).Before(opt.Now)
		// Accepted with a low-discrepancy sequence: 85% to within a few referrals.
		e.accepted = math.Mod(float64(i)*0.6180339887+float64(opt.Seed%97)/97, 1) < 0.85
		e.screenDate = e.referred.Add(time.Duration(2+rng.IntN(20)) * time.Hour)
		if e.screenDate.After(opt.Now) {
			e.screened = false
		}
		if e.accepted && e.screened {
			e.goals = 1 + rng.IntN(2)
		}
		if rng.Float64() < 0.10 {
			e.missed = 1 + rng.IntN(2)
		}
		e.calls = 4
		if e.finished {
			r := rng.Float64()
			for _, x := range demoExits {
				if r < x.Share {
					e.exit = x.Code
					break
				}
				r -= x.Share
			}
			if e.exit == "" {
				e.exit = "other"
			}
			switch e.exit {
			case "independent":
				e.calls = 0
			case "reduced-long-term-care":
				e.calls = 1 + rng.IntN(2)
			case "long-term-care-unchanged":
				e.calls = 3 + rng.IntN(2)
			default:
				e.calls = 2 + rng.IntN(3)
			}
		} else if e.started {
			on := int(opt.Now.Sub(e.assessed).Hours() / 24)
			switch {
			case on > 21:
				e.calls = 1 + rng.IntN(2)
			case on > 10:
				e.calls = 2 + rng.IntN(2)
			}
		}
		e.identityReview = !e.finished && e.started && rng.Float64() < 0.01
		e.given = demoGiven[rng.IntN(len(demoGiven))]
		e.family = demoFamily[rng.IntN(len(demoFamily))]
		e.gender = "female"
		if rng.IntN(2) == 0 {
			e.gender = "male"
		}
		e.birth = fmt.Sprintf("%d-%02d-%02d", 1930+rng.IntN(30), 1+rng.IntN(12), 1+rng.IntN(28))
		d.episodes = append(d.episodes, e)
	}
	return d
}

// Size reports how many episodes the region has and how many are active today.
func (d *Demo) Size() (episodes, active int) {
	for _, e := range d.episodes {
		if e.started && !e.finished {
			active++
		}
	}
	return len(d.episodes), active
}

// LoadStats reports what a load wrote.
type LoadStats struct {
	Bundles, Resources int
	Took               time.Duration
}

// BundleRunner runs transaction Bundles (implemented by *engine.Engine).
type BundleRunner interface {
	Bundle(ctx context.Context, body []byte, opt engine.SearchOptions) (*engine.Bundle, error)
	Search(ctx context.Context, rt string, params []fhir.RawParam, opt engine.SearchOptions) (*engine.Bundle, error)
}

// ErrNotEmpty is returned by Load when the store already holds pathway data
// and force is not set.
var ErrNotEmpty = fmt.Errorf("the store already holds pathway data: a demo region is loaded only into an empty store (use --force to load it anyway)")

// Empty reports whether the store holds no Patient, EpisodeOfCare or
// ServiceRequest that the caller can see.
func Empty(ctx context.Context, eng BundleRunner) (bool, error) {
	for _, rt := range []string{"Patient", "EpisodeOfCare", "ServiceRequest"} {
		b, err := eng.Search(ctx, rt, []fhir.RawParam{{Name: "_summary", Value: "count"}}, engine.SearchOptions{})
		if err != nil {
			return false, err
		}
		if b.Total != nil && *b.Total > 0 {
			return false, nil
		}
	}
	return true, nil
}

// DemoPrincipal is who a demo load acts as in the audit trail.
func DemoPrincipal() *auth.Principal {
	return &auth.Principal{Subject: "crs-demo", ClientID: "crs demo", Roles: []string{"demo-loader"}}
}

// Load writes the region through the engine in transaction Bundles, each with a
// Provenance naming the generator. It refuses a store that already holds pathway
// data unless force is set.
func (d *Demo) Load(ctx context.Context, eng BundleRunner, force bool) (LoadStats, error) {
	start := time.Now()
	var st LoadStats
	if !force {
		empty, err := Empty(ctx, eng)
		if err != nil {
			return st, err
		}
		if !empty {
			return st, ErrNotEmpty
		}
	}
	run := func(entries []map[string]any, label string) error {
		if len(entries) == 0 {
			return nil
		}
		entries = append(entries, d.provenance(entries, label))
		body, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
		if err != nil {
			return err
		}
		if _, err := eng.Bundle(ctx, body, engine.SearchOptions{Minimal: true}); err != nil {
			return fmt.Errorf("demo bundle %s: %w", label, err)
		}
		st.Bundles++
		st.Resources += len(entries)
		return nil
	}
	var orgs []map[string]any
	for _, o := range d.orgs() {
		orgs = append(orgs, put(o))
	}
	if err := run(orgs, "organisations"); err != nil {
		return st, err
	}
	for i := 0; i < len(d.episodes); i += d.opt.Batch {
		j := min(i+d.opt.Batch, len(d.episodes))
		var first, second []map[string]any
		for _, e := range d.episodes[i:j] {
			a, b := d.resources(e)
			for _, r := range a {
				first = append(first, put(r))
			}
			for _, r := range b {
				second = append(second, put(r))
			}
		}
		if err := run(first, fmt.Sprintf("episodes %d-%d", i+1, j)); err != nil {
			return st, err
		}
		// Call reductions are updates of the plans written above: every plan
		// starts at four calls a day (crs-cp-2) and is reduced later.
		if err := run(second, fmt.Sprintf("reductions %d-%d", i+1, j)); err != nil {
			return st, err
		}
	}
	st.Took = time.Since(start)
	return st, nil
}

func put(r map[string]any) map[string]any {
	ref := r["resourceType"].(string) + "/" + r["id"].(string)
	return map[string]any{"resource": r, "request": map[string]any{"method": "PUT", "url": ref}}
}

func (d *Demo) provenance(entries []map[string]any, label string) map[string]any {
	var targets []any
	for _, en := range entries {
		r := en["resource"].(map[string]any)
		targets = append(targets, map[string]any{"reference": r["resourceType"].(string) + "/" + r["id"].(string)})
	}
	id := "demo-prov-" + strconv.Itoa(len(label)) + "-" + fmt.Sprintf("%x", fnv(label))
	p := map[string]any{
		"resourceType": "Provenance", "id": id,
		"target":   targets,
		"recorded": d.opt.Now.Format(time.RFC3339),
		"activity": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}}},
		"agent": []any{map[string]any{
			"type": map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "assembler"}}},
			"who":  map[string]any{"display": fmt.Sprintf("crs demo region generator (seed %d): %s", d.opt.Seed, label)},
		}},
	}
	return map[string]any{"resource": p, "request": map[string]any{"method": "PUT", "url": "Provenance/" + id}}
}

func fnv(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func orgResource(o demoOrg) map[string]any {
	return map[string]any{
		"resourceType": "Organization", "id": o.ID, "active": true, "name": o.Name,
		"identifier": []any{map[string]any{"system": odsSystem, "value": o.ODS}},
	}
}

func (d *Demo) orgs() []map[string]any {
	var out []map[string]any
	for _, o := range demoTrusts {
		out = append(out, orgResource(o))
	}
	out = append(out, orgResource(demoCouncil), orgResource(demoTherapy))
	for _, o := range demoProviders {
		out = append(out, orgResource(o))
	}
	return out
}

func ts(t time.Time) string   { return t.UTC().Format(time.RFC3339) }
func date(t time.Time) string { return t.UTC().Format("2006-01-02") }
func ref(s string) map[string]any {
	return map[string]any{"reference": s}
}
func coding(system, code string) map[string]any {
	return map[string]any{"system": system, "code": code}
}

// resources returns an episode's resources: those written first, and the
// updates (call reductions) written after them.
func (d *Demo) resources(e demoEpisode) (first, second []map[string]any) {
	b := d.opt.Base
	id := fmt.Sprintf("demo-%04d", e.n)
	pat, acute, sr, eoc := "Patient/"+id, "Encounter/"+id+"-acute", "ServiceRequest/"+id, "EpisodeOfCare/"+id
	prov := "Organization/" + demoProviders[e.provider].ID
	first = append(first, map[string]any{
		"resourceType": "Patient", "id": id,
		"identifier": []any{map[string]any{"system": nhsSystem, "value": DemoNHSNumber(e.n)}},
		// The council responsible for the person's care (Warwickshire).
		"extension": []any{map[string]any{"url": b + "/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority",
			"valueCoding": coding("http://statistics.data.gov.uk/id/statistical-geography", "E10000031")}},
		"name":   []any{map[string]any{"family": e.family, "given": []any{e.given}}},
		"gender": e.gender, "birthDate": e.birth,
	})
	stay := map[string]any{
		"resourceType": "Encounter", "id": id + "-acute", "status": "finished",
		"class":   coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP"),
		"subject": ref(pat), "serviceProvider": ref("Organization/" + demoTrusts[e.trust].ID),
		"period": map[string]any{"start": ts(e.admit), "end": ts(e.arrival)},
	}
	if e.arrival.After(d.opt.Now) { // still in hospital, waiting for care to start
		stay["status"] = "in-progress"
		stay["period"] = map[string]any{"start": ts(e.admit)}
	}
	first = append(first, stay)
	ext := []any{
		map[string]any{"url": b + extDischargeReady, "valueDateTime": ts(e.drd)},
		map[string]any{"url": b + extCallPattern, "valueCoding": coding(b+csCallPattern, e.pattern)},
	}
	if e.screened {
		outcome := "accepted"
		scr := []any{}
		if !e.accepted {
			outcome = "declined"
		}
		scr = append(scr, map[string]any{"url": "outcome", "valueCode": outcome})
		if !e.accepted {
			scr = append(scr, map[string]any{"url": "reason", "valueCodeableConcept": map[string]any{"text": "Needs met by the care agency alone"}})
		}
		scr = append(scr, map[string]any{"url": "date", "valueDateTime": ts(e.screenDate)})
		ext = append(ext, map[string]any{"url": b + extTherapyScreening, "extension": scr})
	}
	srStatus := "active"
	if e.finished {
		srStatus = "completed"
	}
	first = append(first, map[string]any{
		"resourceType": "ServiceRequest", "id": id, "extension": ext, "status": srStatus, "intent": "plan",
		"category": []any{map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "892601000000108", "display": "Intermediate care service"}}}},
		"code":     map[string]any{"coding": []any{coding(b+"/CodeSystem/crs-referral-type", "community-recovery")}},
		"subject":  ref(pat), "encounter": ref(acute), "authoredOn": ts(e.referred),
		"requester": ref("Organization/" + demoTrusts[e.trust].ID),
		"performer": []any{ref(prov), ref("Organization/" + demoTherapy.ID)},
	})
	if !e.started {
		return first, nil
	}
	eext := []any{map[string]any{"url": b + extLocality, "valueCodeableConcept": map[string]any{"coding": []any{coding(b+csLocality, e.locality)}}}}
	period := map[string]any{"start": date(e.assessed)}
	status := "active"
	if e.finished {
		eext = append(eext, map[string]any{"url": b + extExitRoute, "valueCoding": coding(b+csExitRoute, e.exit)})
		period["end"] = date(e.end)
		status = "finished"
	}
	first = append(first, map[string]any{
		"resourceType": "EpisodeOfCare", "id": id, "extension": eext, "status": status,
		"patient": ref(pat), "managingOrganization": ref(prov), "referralRequest": []any{ref(sr)}, "period": period,
	})
	var goalRefs []any
	for g := 0; g < e.goals; g++ {
		gid := fmt.Sprintf("%s-goal-%d", id, g+1)
		life, ach := "active", "in-progress"
		if e.finished {
			life, ach = "completed", "achieved"
			if e.exit == "readmitted" || e.exit == "died" {
				life, ach = "cancelled", "not-achieved"
			}
		}
		first = append(first, map[string]any{
			"resourceType": "Goal", "id": gid, "lifecycleStatus": life,
			"achievementStatus": map[string]any{"coding": []any{coding("http://terminology.hl7.org/CodeSystem/goal-achievement", ach)}},
			"description":       map[string]any{"text": demoGoals[(e.n+g*3)%len(demoGoals)]},
			"subject":           ref(pat), "expressedBy": ref(pat),
			"target": []any{map[string]any{"dueDate": date(e.assessed.AddDate(0, 0, 21+7*g))}},
		})
		goalRefs = append(goalRefs, ref("Goal/"+gid))
	}
	plan := func(calls int) map[string]any {
		p := map[string]any{
			"resourceType": "CarePlan", "id": id,
			"extension": []any{
				map[string]any{"url": b + extCallsPerDay, "valueInteger": calls},
				map[string]any{"url": b + extCallPattern, "valueCoding": coding(b+csCallPattern, e.pattern)},
			},
			"status": "active", "intent": "plan", "subject": ref(pat), "basedOn": []any{ref(sr)},
			"period":      map[string]any{"start": date(e.assessed), "end": date(e.assessed.AddDate(0, 0, 42))},
			"author":      ref(prov),
			"description": "Four calls a day, reduced as the person regains independence",
		}
		if e.finished {
			p["status"] = "completed"
			end := e.end
			if end.Sub(e.assessed) > 42*24*time.Hour {
				end = e.assessed.AddDate(0, 0, 42)
			}
			p["period"] = map[string]any{"start": date(e.assessed), "end": date(end)}
		}
		if len(goalRefs) > 0 {
			p["goal"] = goalRefs
		}
		return p
	}
	first = append(first, plan(4))
	if e.calls != 4 {
		second = append(second, plan(e.calls))
	}
	visit := func(suffix, vtype, status string, start time.Time, minutes int) {
		v := map[string]any{
			"resourceType": "Encounter", "id": id + "-" + suffix, "status": status,
			"class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HH"),
			"type": []any{
				map[string]any{"coding": []any{coding(b+csVisitType, vtype)}},
				map[string]any{"coding": []any{map[string]any{"system": "http://snomed.info/sct", "code": "270420001", "display": "Seen in own home"}}},
			},
			"subject": ref(pat), "episodeOfCare": []any{ref(eoc)}, "basedOn": []any{ref(sr)},
			"serviceProvider": ref(prov),
		}
		if status == "finished" {
			v["period"] = map[string]any{"start": ts(start), "end": ts(start.Add(time.Duration(minutes) * time.Minute))}
		} else {
			v["period"] = map[string]any{"start": ts(start)}
		}
		if vtype == "therapy-visit" {
			v["serviceProvider"] = ref("Organization/" + demoTherapy.ID)
		}
		first = append(first, v)
	}
	visit("assess", "home-assessment", "finished", e.assessed, 50)
	last := d.opt.Now
	if e.finished {
		last = e.end
	}
	k := 0
	for t := e.assessed.Truncate(24*time.Hour).AddDate(0, 0, 1).Add(8 * time.Hour); t.Before(last); t = t.AddDate(0, 0, 7) {
		k++
		visit(fmt.Sprintf("care-%d", k), "care-visit", "finished", t, 30)
	}
	for m := 0; m < e.missed; m++ {
		t := e.assessed.Truncate(24*time.Hour).AddDate(0, 0, 2+3*m).Add(12 * time.Hour)
		if t.Before(last) {
			visit(fmt.Sprintf("missed-%d", m+1), "care-visit", "cancelled", t, 0)
		}
	}
	if e.goals > 0 {
		t := e.assessed.Truncate(24*time.Hour).AddDate(0, 0, 2).Add(10 * time.Hour)
		if t.Before(last) {
			visit("therapy-1", "therapy-visit", "finished", t, 45)
		}
	}
	if e.finished {
		visit("exit", "exit-review", "finished", e.end.Add(-2*time.Hour), 40)
	} else {
		visit("review", "mdt-review", "planned", d.opt.Now.Truncate(24*time.Hour).AddDate(0, 0, 1+e.n%4).Add(10*time.Hour), 0)
	}
	if e.identityReview {
		first = append(first, map[string]any{
			"resourceType": "Task", "id": id + "-identity", "status": "requested", "intent": "order",
			"code":        map[string]any{"coding": []any{coding(taskTypeSystem, "identity-review")}},
			"description": "A council record with a different date of birth may be this person: held for review",
			"for":         ref(pat), "focus": ref(pat), "authoredOn": ts(d.opt.Now.Add(-20 * time.Hour)),
		})
	}
	return first, second
}
