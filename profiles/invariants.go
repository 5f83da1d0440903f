package profiles

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// An invariant checks one value at the element its constraint is declared on. It
// returns false with a detail for the message when the value breaks the rule.
type invariant func(r *run, n node) (ok bool, detail string)

// invariants are the named rules of the pathway written in Go, keyed by the
// constraint key the StructureDefinitions declare. A declared key that is not
// here is checked by its FHIRPath expression (crs-pat-1 is); loading fails
// when that expression is outside the subset fhir/fhirpath evaluates. A test
// fails when a key here is declared nowhere.
var invariants = map[string]invariant{
	"crs-nhs-1": nhsNumberValid,
	"crs-pat-2": hasResponsibleLocalAuthority,
	"crs-la-1":  gssLocalAuthorityCode,
	"crs-cp-1":  periodAtMost42Days,
	"crs-cp-2":  newPlanStartsAtFourCalls,
	"crs-cpd-1": callsPerDayInRange,
	"crs-enc-1": visitHasType,
	"crs-enc-2": visitHasEpisode,
	"crs-enc-3": finishedHasStartAndEnd,
	"crs-eoc-1": finishedEpisodeHasExitRoute,
	"crs-eoc-2": periodAtMost42Days,
	"crs-scr-1": declinedScreeningHasReason,
}

const pathwayEpisodeMaxDays = 42

// ValidNHSNumber checks an NHS number: ten digits whose last is the Modulus 11
// check digit of the first nine. It returns why not when it is not valid.
func ValidNHSNumber(s string) (bool, string) {
	if len(s) != 10 || strings.Trim(s, "0123456789") != "" {
		return false, fmt.Sprintf("%q is not 10 digits", s)
	}
	sum := 0
	for i := 0; i < 9; i++ {
		sum += int(s[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	if check == 11 {
		check = 0
	}
	if check == 10 {
		return false, fmt.Sprintf("NHS number %s fails the Modulus 11 check: no check digit exists for its first nine digits", s)
	}
	if int(s[9]-'0') != check {
		return false, fmt.Sprintf("NHS number %s fails the Modulus 11 check: the check digit should be %d", s, check)
	}
	return true, ""
}

func nhsNumberValid(_ *run, n node) (bool, string) {
	s, _ := n.v.(string)
	return ValidNHSNumber(s)
}

func hasResponsibleLocalAuthority(r *run, n node) (bool, string) {
	m, _ := n.v.(map[string]any)
	if hasExtension(m, r.set.base+"/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority") {
		return true, ""
	}
	return false, "no extension " + r.set.base + "/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority"
}

// gssLocalAuthorityCode checks the shape of an ONS/GSS code: a country letter
// and eight digits (E10000031 Warwickshire, E08000026 Coventry).
func gssLocalAuthorityCode(_ *run, n node) (bool, string) {
	s, _ := n.v.(string)
	if len(s) == 9 && strings.ContainsRune("EWSN", rune(s[0])) && strings.Trim(s[1:], "0123456789") == "" {
		return true, ""
	}
	return false, fmt.Sprintf("%q is not an ONS/GSS code (a letter and eight digits, e.g. E10000031)", s)
}

func hasExtension(m map[string]any, url string) bool {
	return extensionValue(m, url) != nil
}

// extensionValue returns the extension with url on m (the whole extension).
func extensionValue(m map[string]any, url string) map[string]any {
	list, _ := m["extension"].([]any)
	for _, e := range list {
		em, _ := e.(map[string]any)
		if str(em["url"]) == url {
			return em
		}
	}
	return nil
}

func periodAtMost42Days(r *run, n node) (bool, string) {
	m, _ := n.v.(map[string]any)
	start, err := parseDateTime(str(m["start"]))
	if err != nil {
		return true, "" // base validation reports malformed dates; a missing start is a cardinality issue
	}
	end, err := parseDateTime(str(m["end"]))
	if err != nil {
		return true, ""
	}
	days := end.Sub(start).Hours() / 24
	if days > pathwayEpisodeMaxDays {
		return false, fmt.Sprintf("the period is %.0f days", days)
	}
	return true, ""
}

func newPlanStartsAtFourCalls(r *run, n node) (bool, string) {
	if r.mode != "create" {
		return true, ""
	}
	m, _ := n.v.(map[string]any)
	ext := extensionValue(m, r.set.base+"/StructureDefinition/Extension-CRS-CallsPerDay")
	if ext == nil {
		return true, "" // cardinality reports a missing extension
	}
	if got := fmt.Sprint(ext["valueInteger"]); got != "4" {
		return false, "it starts with " + got
	}
	return true, ""
}

func callsPerDayInRange(_ *run, n node) (bool, string) {
	v, err := strconv.Atoi(fmt.Sprint(n.v))
	if err != nil {
		return true, "" // the extension's type check reports it
	}
	if v < 0 || v > 4 {
		return false, fmt.Sprintf("%d calls a day", v)
	}
	return true, ""
}

// isVisit reports whether an Encounter is a pathway visit (class HH, home health).
func isVisit(m map[string]any) bool {
	class, _ := m["class"].(map[string]any)
	return str(class["code"]) == "HH"
}

func visitHasType(r *run, n node) (bool, string) {
	m, _ := n.v.(map[string]any)
	if !isVisit(m) {
		return true, ""
	}
	vs, ok := r.set.ValueSet(r.set.base + "/ValueSet/crs-visit-type")
	if !ok {
		return false, "the visit type value set is not loaded"
	}
	types, _ := m["type"].([]any)
	for _, t := range types {
		tm, _ := t.(map[string]any)
		codings, _ := tm["coding"].([]any)
		for _, c := range codings {
			cm, _ := c.(map[string]any)
			if vs.Contains(str(cm["system"]), str(cm["code"])) {
				return true, ""
			}
		}
	}
	return false, "Encounter.type has no coding from " + vs.URL
}

func visitHasEpisode(_ *run, n node) (bool, string) {
	m, _ := n.v.(map[string]any)
	if !isVisit(m) {
		return true, ""
	}
	if list, _ := m["episodeOfCare"].([]any); len(list) > 0 {
		return true, ""
	}
	return false, ""
}

func finishedHasStartAndEnd(_ *run, n node) (bool, string) {
	m, _ := n.v.(map[string]any)
	if str(m["status"]) != "finished" {
		return true, ""
	}
	p, _ := m["period"].(map[string]any)
	switch {
	case str(p["start"]) == "":
		return false, "period.start is missing"
	case str(p["end"]) == "":
		return false, "period.end is missing"
	}
	return true, ""
}

func finishedEpisodeHasExitRoute(r *run, n node) (bool, string) {
	m, _ := n.v.(map[string]any)
	if str(m["status"]) != "finished" {
		return true, ""
	}
	if hasExtension(m, r.set.base+"/StructureDefinition/Extension-CRS-ExitRoute") {
		return true, ""
	}
	return false, ""
}

func declinedScreeningHasReason(_ *run, n node) (bool, string) {
	m, _ := n.v.(map[string]any)
	outcome := extensionValue(m, "outcome")
	if outcome == nil || str(outcome["valueCode"]) != "declined" {
		return true, ""
	}
	if extensionValue(m, "reason") != nil {
		return true, ""
	}
	return false, ""
}

// parseDateTime reads a FHIR date or dateTime; a partial date is its start.
func parseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a date: %q", s)
}
