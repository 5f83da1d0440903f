package measures

import (
	"fmt"
	"time"
)

// rule is the Go side of one Measure group: what places a referral in the
// period (anchor), who is in the denominator or measure population (eligible),
// the numerator, and the observation of a continuous variable. Rules are keyed
// by "<Measure.id>#<group.id>", the prefix of each population criteria
// expression, the way profile invariants are keyed by constraint key.
type rule struct {
	anchor    func(r *Referral) time.Time
	eligible  func(r *Referral, now time.Time) bool
	numerator func(r *Referral) bool
	observe   func(r *Referral) float64
	needs     Needs  // what the rule reads beyond referrals and episodes
	sum       bool   // aggregate observations by sum (default mean)
	unit      string // UCUM unit of the observation
}

const (
	day         = 24 * time.Hour
	sixWeeks    = 42 * day
	minutesCall = 30
)

func finishedEnd(r *Referral) time.Time {
	if r.EpisodeState != "finished" {
		return time.Time{}
	}
	return r.End
}

func hasPlan(r *Referral, _ time.Time) bool { return r.Calls >= 0 }

func carers(r *Referral) float64 {
	if r.Pattern == "double" {
		return 2
	}
	return 1
}

func exitRule(code string) rule {
	return rule{anchor: func(r *Referral) time.Time {
		if r.Exit != code {
			return time.Time{}
		}
		return finishedEnd(r)
	}}
}

var rules = map[string]rule{
	"crs-care-start-24h#main": {
		anchor:    func(r *Referral) time.Time { return r.DRD },
		eligible:  func(r *Referral, now time.Time) bool { return !r.FirstVisit.IsZero() || now.Sub(r.DRD) > day },
		numerator: func(r *Referral) bool { return !r.FirstVisit.IsZero() && r.FirstVisit.Sub(r.DRD) <= day },
		needs:     Needs{FirstVisitBy: []deadline{{func(r *Referral) time.Time { return r.DRD }, day}}},
	},
	"crs-care-start-3-days#main": {
		anchor:    func(r *Referral) time.Time { return r.Authored },
		eligible:  func(r *Referral, now time.Time) bool { return !r.FirstVisit.IsZero() || now.Sub(r.Authored) > 3*day },
		numerator: func(r *Referral) bool { return !r.FirstVisit.IsZero() && r.FirstVisit.Sub(r.Authored) <= 3*day },
		needs:     Needs{FirstVisitBy: []deadline{{func(r *Referral) time.Time { return r.Authored }, 3 * day}}},
	},
	"crs-assessment-2h#main": {
		anchor: func(r *Referral) time.Time { return r.Arrival },
		eligible: func(r *Referral, now time.Time) bool {
			return !r.Assessment.IsZero() || now.Sub(r.Arrival) > 2*time.Hour
		},
		numerator: func(r *Referral) bool {
			d := r.Assessment.Sub(r.Arrival)
			return !r.Assessment.IsZero() && d >= 0 && d <= 2*time.Hour
		},
		needs: Needs{Assessments: true, Arrivals: true},
	},
	"crs-therapy-accepted#main": {
		anchor: func(r *Referral) time.Time {
			if r.Screening == "" {
				return time.Time{}
			}
			return r.Screened
		},
		eligible:  func(*Referral, time.Time) bool { return true },
		numerator: func(r *Referral) bool { return r.Screening == "accepted" },
	},
	"crs-episode-over-six-weeks#main": {
		anchor:    finishedEnd,
		eligible:  func(*Referral, time.Time) bool { return true },
		numerator: func(r *Referral) bool { return r.End.Sub(r.Start) > sixWeeks },
	},
	"crs-episode-length#main": {
		anchor:   finishedEnd,
		eligible: func(*Referral, time.Time) bool { return true },
		observe:  func(r *Referral) float64 { return r.End.Sub(r.Start).Hours() / 24 },
		unit:     "d",
	},
	"crs-care-calls#calls-at-end": {
		anchor: finishedEnd, eligible: hasPlan, needs: Needs{Plans: true},
		observe: func(r *Referral) float64 { return float64(r.Calls) },
		unit:    "/d",
	},
	"crs-care-calls#calls-released": {
		anchor: finishedEnd, eligible: hasPlan, needs: Needs{Plans: true},
		observe: func(r *Referral) float64 { return float64(4 - r.Calls) },
		unit:    "/d",
	},
	"crs-care-calls#hours-released-per-week": {
		anchor: finishedEnd, eligible: hasPlan, needs: Needs{Plans: true},
		observe: func(r *Referral) float64 { return float64(4-r.Calls) * carers(r) * minutesCall / 60 * 7 },
		sum:     true,
		unit:    "h/wk",
	},
	"crs-exit-routes#independent":              exitRule("independent"),
	"crs-exit-routes#reduced-long-term-care":   exitRule("reduced-long-term-care"),
	"crs-exit-routes#long-term-care-unchanged": exitRule("long-term-care-unchanged"),
	"crs-exit-routes#readmitted":               exitRule("readmitted"),
	"crs-exit-routes#died":                     exitRule("died"),
	"crs-exit-routes#transferred":              exitRule("transferred"),
	"crs-exit-routes#other":                    exitRule("other"),
}

// checkRules fails unless every group of a Measure has a rule that can compute
// its populations and every stratifier is known.
func checkRules(m map[string]any) error {
	id := str(m["id"])
	scoring := str(firstCoding(m["scoring"])["code"])
	for _, g := range arr(m["group"]) {
		gm := mapOf(g)
		key := id + "#" + str(gm["id"])
		ru, ok := rules[key]
		if !ok {
			return fmt.Errorf("group %s has no rule", key)
		}
		switch scoring {
		case "proportion":
			if ru.eligible == nil || ru.numerator == nil {
				return fmt.Errorf("group %s: a proportion needs a denominator and a numerator", key)
			}
		case "continuous-variable":
			if ru.eligible == nil || ru.observe == nil {
				return fmt.Errorf("group %s: a continuous variable needs a measure population and an observation", key)
			}
		case "cohort":
		default:
			return fmt.Errorf("scoring %q is not supported", scoring)
		}
		for _, s := range arr(gm["stratifier"]) {
			name := str(mapOf(mapOf(s)["criteria"])["expression"])
			if _, ok := stratifiers[name]; !ok {
				return fmt.Errorf("group %s: unknown stratifier %q", key, name)
			}
		}
	}
	return nil
}

// needsOf returns what evaluating Measure m reads.
func needsOf(m map[string]any) Needs {
	var n Needs
	for _, g := range arr(m["group"]) {
		n = n.union(rules[str(m["id"])+"#"+str(mapOf(g)["id"])].needs)
	}
	return n
}
