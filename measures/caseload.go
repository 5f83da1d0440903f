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
)

// Flag is a reason the MDT looks at a person.
type Flag struct {
	Code, Text string
}

// The flags of the caseload table.
var (
	FlagPastSixWeeks   = Flag{"past-six-weeks", "Past six weeks"}
	FlagLateStart      = Flag{"late-start", "Care not started within 24 h"}
	FlagLateAssessment = Flag{"late-assessment", "No assessment within 2 h"}
	FlagMissedVisits   = Flag{"missed-visits", "Missed visits"}
	FlagIdentityReview = Flag{"identity-review", "Identity held for review"}
	FlagNoStart3Days   = Flag{"no-start-3-days", "Not started within 3 days"}
)

// GoalStatus is one goal and how it is going.
type GoalStatus struct {
	Text, Status string
}

// Row is one person on the caseload.
type Row struct {
	Referral  *Referral
	Name, NHS string
	Day       int // day of the episode, 1 on the day care started; 0 while waiting
	// Waiting is a referral accepted whose care has not started (no
	// EpisodeOfCare yet), waiting since it was made (ServiceRequest.authoredOn).
	Waiting      bool
	WaitingSince time.Time
	WaitingFor   string // how long, e.g. "2 d 5 h"
	Therapy      string
	Goals        []GoalStatus
	Flags        []Flag
	NextReview   time.Time
}

// Caseload is everyone on the pathway in a locality (or all), with flags.
type Caseload struct {
	Rows     []*Row
	OrgNames map[string]string
	Region   *Region // everything read, for the charts
}

// Caseloads builds caseloads and timelines through the engine.
type Caseloads struct {
	eng  Engine
	base string
	now  func() time.Time
}

// NewCaseloads returns a Caseloads on eng (base "" for the default canonical
// base, now nil for time.Now).
func NewCaseloads(eng Engine, base string, now func() time.Time) *Caseloads {
	if base == "" {
		base = defaultBase
	}
	if now == nil {
		now = time.Now
	}
	return &Caseloads{eng: eng, base: strings.TrimSuffix(base, "/"), now: now}
}

// Caseload returns the active episodes that match f, and the people waiting
// for care to start (Filter.Waiting), as the caller may see them: the waiting
// first, longest wait first, then the episodes by day (longest first).
func (c *Caseloads) Caseload(ctx context.Context, f Filter) (*Caseload, error) {
	f.Active, f.Waiting = true, true
	reg, err := load(ctx, c.eng, c.base, f, all, c.now())
	if err != nil {
		return nil, err
	}
	now := c.now()
	cl := &Caseload{OrgNames: reg.OrgNames, Region: reg}
	byPatient := map[string]*Row{}
	for _, r := range reg.Referrals {
		if r.Episode == "" && r.Status == "active" {
			row := waitingRow(r, now)
			cl.Rows = append(cl.Rows, row)
			byPatient[r.Patient] = row
			continue
		}
		if r.Episode == "" || r.EpisodeState != "active" {
			continue
		}
		row := &Row{Referral: r, Day: int(now.Sub(r.Start)/day) + 1, Therapy: therapyText(r), NextReview: r.NextVisit}
		if row.Day > 42 {
			row.Flags = append(row.Flags, FlagPastSixWeeks)
		}
		if !r.DRD.IsZero() && (r.FirstVisit.IsZero() || r.FirstVisit.Sub(r.DRD) > day) {
			row.Flags = append(row.Flags, FlagLateStart)
		}
		if !r.Arrival.IsZero() && (r.Assessment.IsZero() || r.Assessment.Sub(r.Arrival) > 2*time.Hour || r.Assessment.Before(r.Arrival)) {
			row.Flags = append(row.Flags, FlagLateAssessment)
		}
		if r.Missed > 0 {
			row.Flags = append(row.Flags, FlagMissedVisits)
		}
		cl.Rows = append(cl.Rows, row)
		byPatient[r.Patient] = row
	}
	// The people's names, goals and identity tasks: three searches per chunk
	// of people, run in parallel; mu guards the rows they fill in.
	var mu sync.Mutex
	var jobs []func() error
	for _, chunk := range patientChunks(reg.Referrals) {
		ids := strings.ReplaceAll(chunk, "Patient/", "")
		jobs = append(jobs, func() error {
			return searchAll(ctx, c.eng, "Patient", []fhir.RawParam{{Name: "_id", Value: ids}}, func(o map[string]any) {
				mu.Lock()
				defer mu.Unlock()
				if row := byPatient[str(o["id"])]; row != nil {
					row.Name, row.NHS = personName(o), nhsNumber(o)
				}
			})
		}, func() error {
			return searchAll(ctx, c.eng, "Goal", []fhir.RawParam{{Name: "subject", Value: chunk}}, func(o map[string]any) {
				mu.Lock()
				defer mu.Unlock()
				if row := byPatient[refID(o["subject"], "Patient")]; row != nil {
					st := str(firstCoding(o["achievementStatus"])["code"])
					if st == "" {
						st = str(o["lifecycleStatus"])
					}
					row.Goals = append(row.Goals, GoalStatus{Text: str(mapOf(o["description"])["text"]), Status: st})
				}
			})
		}, func() error {
			// Held-for-review identity problems: a caller without access to
			// Tasks simply sees no such flag.
			err := searchAll(ctx, c.eng, "Task", []fhir.RawParam{{Name: "code", Value: taskTypeSystem + "|identity-review"}, {Name: "status", Value: "requested"}, {Name: "subject", Value: chunk}}, func(o map[string]any) {
				mu.Lock()
				defer mu.Unlock()
				seen := map[*Row]bool{}
				for _, r := range append([]any{o["for"]}, o["focus"]) {
					if row := byPatient[refID(r, "Patient")]; row != nil && !seen[row] {
						seen[row] = true
						row.Flags = append(row.Flags, FlagIdentityReview)
					}
				}
			})
			if err != nil && fhir.KindOf(err) != fhir.Forbidden && fhir.KindOf(err) != fhir.NotSupportedType {
				return err
			}
			return nil
		})
	}
	if err := parallelN(max(2, runtime.GOMAXPROCS(0)), jobs); err != nil {
		return nil, err
	}
	sort.SliceStable(cl.Rows, func(i, j int) bool {
		a, b := cl.Rows[i], cl.Rows[j]
		if a.Waiting != b.Waiting {
			return a.Waiting
		}
		if a.Waiting && !a.WaitingSince.Equal(b.WaitingSince) {
			return a.WaitingSince.Before(b.WaitingSince)
		}
		if cl.Rows[i].Day != cl.Rows[j].Day {
			return cl.Rows[i].Day > cl.Rows[j].Day
		}
		return cl.Rows[i].Name < cl.Rows[j].Name
	})
	return cl, nil
}

// waitingRow is the row of a referral whose care has not started: flagged
// when 24 h have passed since the discharge ready date, or 3 days since the
// referral (the clocks of crs-care-start-24h and crs-care-start-3-days).
func waitingRow(r *Referral, now time.Time) *Row {
	row := &Row{Referral: r, Waiting: true, WaitingSince: r.Authored, WaitingFor: waited(now.Sub(r.Authored)), Therapy: therapyText(r), NextReview: r.NextVisit}
	if !r.DRD.IsZero() && now.Sub(r.DRD) > day {
		row.Flags = append(row.Flags, FlagLateStart)
	}
	if !r.Authored.IsZero() && now.Sub(r.Authored) > 3*day {
		row.Flags = append(row.Flags, FlagNoStart3Days)
	}
	return row
}

// waited says a wait in days and hours ("2 d 5 h", "7 h").
func waited(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	days, hours := int(d/day), int(d%day/time.Hour)
	if days == 0 {
		return itoa(hours) + " h"
	}
	return itoa(days) + " d " + itoa(hours) + " h"
}

func therapyText(r *Referral) string {
	switch r.Screening {
	case "accepted":
		return "Accepted"
	case "declined":
		return "Declined"
	}
	return "Awaiting screening"
}

func personName(o map[string]any) string {
	for _, n := range arr(o["name"]) {
		nm := mapOf(n)
		if t := str(nm["text"]); t != "" {
			return t
		}
		var parts []string
		for _, g := range arr(nm["given"]) {
			parts = append(parts, str(g))
		}
		if f := str(nm["family"]); f != "" {
			parts = append(parts, f)
		}
		if len(parts) > 0 {
			return strings.Join(parts, " ")
		}
	}
	return "(no name)"
}

func nhsNumber(o map[string]any) string {
	for _, id := range arr(o["identifier"]) {
		if m := mapOf(id); str(m["system"]) == nhsSystem {
			return str(m["value"])
		}
	}
	return ""
}

// Event is one entry of a person's episode timeline.
type Event struct {
	At     time.Time
	Kind   string // referral, discharge-ready, arrival, visit, missed-visit, planned-visit, plan, goal, episode-start, exit
	Text   string
	Status string
}

// Timeline is a person's episode: who, and what happened in order.
type Timeline struct {
	Name, NHS string
	Referral  *Referral
	Events    []Event
}

// Timeline returns the timeline of the referral with id (a ServiceRequest id)
// as the caller may see it. A referral the caller may not see is NotFound.
func (c *Caseloads) Timeline(ctx context.Context, id string) (*Timeline, error) {
	if !fhir.ValidID(id) {
		return nil, fhir.Errorf(fhir.Invalid, "", "%q is not a valid id", id)
	}
	v, err := c.eng.Read(ctx, "ServiceRequest", id)
	if err != nil {
		return nil, err
	}
	var sr map[string]any
	if err := json.Unmarshal(v.Body, &sr); err != nil {
		return nil, fhir.InternalError("decode ServiceRequest", err)
	}
	pat := refID(sr["subject"], "Patient")
	tl := &Timeline{Name: "(not visible)"}
	if pv, err := c.eng.Read(ctx, "Patient", pat); err == nil {
		var p map[string]any
		if json.Unmarshal(pv.Body, &p) == nil {
			tl.Name, tl.NHS = personName(p), nhsNumber(p)
		}
	}
	r := &Referral{ID: id, Patient: pat, Calls: -1}
	r.Authored = instant(sr["authoredOn"])
	r.DRD = instant(ext(sr, c.base+extDischargeReady)["valueDateTime"])
	r.Pattern = str(mapOf(ext(sr, c.base+extCallPattern)["valueCoding"])["code"])
	tl.Referral = r
	add := func(at time.Time, kind, text, status string) {
		if !at.IsZero() {
			tl.Events = append(tl.Events, Event{At: at, Kind: kind, Text: text, Status: status})
		}
	}
	add(r.DRD, "discharge-ready", "No longer meets the criteria to reside (discharge ready)", "")
	add(r.Authored, "referral", "Referred to Community Recovery ("+orUnknown(r.Pattern)+"s)", str(sr["status"]))
	if scr := ext(sr, c.base+extTherapyScreening); scr != nil {
		var outcome string
		var at time.Time
		for _, x := range arr(scr["extension"]) {
			switch xm := mapOf(x); str(xm["url"]) {
			case "outcome":
				outcome = str(xm["valueCode"])
			case "date":
				at = instant(xm["valueDateTime"])
			}
		}
		add(at, "screening", "Therapy screening: "+outcome, outcome)
	}
	if enc := refID(sr["encounter"], "Encounter"); enc != "" {
		if ev, err := c.eng.Read(ctx, "Encounter", enc); err == nil {
			var e map[string]any
			if json.Unmarshal(ev.Body, &e) == nil {
				add(instant(mapOf(e["period"])["end"]), "arrival", "Left hospital, arrived home", "")
			}
		}
	}
	subject := []fhir.RawParam{{Name: "subject", Value: "Patient/" + pat}}
	err = searchAll(ctx, c.eng, "EpisodeOfCare", []fhir.RawParam{{Name: "patient", Value: "Patient/" + pat}}, func(o map[string]any) {
		per := mapOf(o["period"])
		add(instant(per["start"]), "episode-start", "Episode started ("+LocalityName(str(firstCoding(ext(o, c.base+extLocality)["valueCodeableConcept"])["code"]))+")", str(o["status"]))
		if str(o["status"]) == "finished" {
			add(instant(per["end"]), "exit", "Episode ended: "+str(mapOf(ext(o, c.base+extExitRoute)["valueCoding"])["code"]), "finished")
		}
	})
	if err != nil {
		return nil, err
	}
	err = searchAll(ctx, c.eng, "Encounter", subject, func(o map[string]any) {
		if str(mapOf(o["class"])["code"]) != "HH" {
			return
		}
		vt := ""
		for _, cc := range arr(o["type"]) {
			for _, cd := range arr(mapOf(cc)["coding"]) {
				if m := mapOf(cd); str(m["system"]) == c.base+csVisitType {
					vt = str(m["code"])
				}
			}
		}
		kind, text := "visit", "Visit: "+vt
		switch str(o["status"]) {
		case "cancelled":
			kind, text = "missed-visit", "Missed visit: "+vt
		case "planned":
			kind, text = "planned-visit", "Planned: "+vt
		}
		add(instant(mapOf(o["period"])["start"]), kind, text, str(o["status"]))
	})
	if err != nil {
		return nil, err
	}
	var plans []string
	err = searchAll(ctx, c.eng, "CarePlan", subject, func(o map[string]any) { plans = append(plans, str(o["id"])) })
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		h, err := c.eng.History(ctx, "CarePlan", p, nil)
		if err != nil {
			return nil, err
		}
		for _, e := range h.Entry {
			var o map[string]any
			if json.Unmarshal(e.Resource, &o) != nil || o == nil {
				continue
			}
			calls := ext(o, c.base+extCallsPerDay)["valueInteger"]
			at := instant(mapOf(o["meta"])["lastUpdated"])
			text := "Care plan: " + formatFloat(num(calls)) + " calls a day (version " + str(mapOf(o["meta"])["versionId"]) + ", recorded)"
			add(at, "plan", text, str(o["status"]))
		}
	}
	err = searchAll(ctx, c.eng, "Goal", subject, func(o map[string]any) {
		var at time.Time
		if t := arr(o["target"]); len(t) > 0 {
			at = instant(mapOf(t[0])["dueDate"])
		}
		st := str(firstCoding(o["achievementStatus"])["code"])
		add(at, "goal", "Goal (due): "+str(mapOf(o["description"])["text"]), st)
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(tl.Events, func(i, j int) bool { return tl.Events[i].At.Before(tl.Events[j].At) })
	return tl, nil
}
