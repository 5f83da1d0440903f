package profiles

import (
	"sort"
	"strings"
	"time"

	"crs/fhir"
)

// Concept is one code of a value set's expansion.
type Concept struct {
	System, Code, Display string
}

// ValueSet is an embedded value set, expanded when it is loaded.
type ValueSet struct {
	URL, Version, Name, Title string
	Concepts                  []Concept
	// Complete is false when the compose includes a code system that is not
	// embedded without listing its codes: membership cannot then be decided.
	Complete bool
	members  map[string]bool // "system|code"
}

// expand computes a value set's expansion from its compose: whole embedded code
// systems and listed concepts (filters and excludes are not used by the pathway's
// value sets and make the expansion incomplete).
func (s *Set) expand(vs fhir.Object) *ValueSet {
	out := &ValueSet{URL: str(vs["url"]), Version: str(vs["version"]), Name: str(vs["name"]), Title: str(vs["title"]),
		Complete: true, members: map[string]bool{}}
	compose, _ := vs["compose"].(map[string]any)
	if _, has := compose["exclude"]; has {
		out.Complete = false
	}
	includes, _ := compose["include"].([]any)
	for _, inc := range includes {
		m, _ := inc.(map[string]any)
		system := str(m["system"])
		if _, has := m["filter"]; has || system == "" {
			out.Complete = false
			continue
		}
		if list, ok := m["concept"].([]any); ok {
			for _, c := range list {
				cm, _ := c.(map[string]any)
				out.add(Concept{System: system, Code: str(cm["code"]), Display: str(cm["display"])})
			}
			continue
		}
		codes, ok := s.codeSystems[system]
		if !ok {
			out.Complete = false
			continue
		}
		for _, code := range sortedKeys(codes) {
			out.add(Concept{System: system, Code: code, Display: codes[code]})
		}
	}
	return out
}

func (vs *ValueSet) add(c Concept) {
	if vs.members[c.System+"|"+c.Code] {
		return
	}
	vs.members[c.System+"|"+c.Code] = true
	vs.Concepts = append(vs.Concepts, c)
}

// Contains reports whether system|code is in the value set. An empty system
// matches a code of any of its systems (a FHIR code element has no system).
func (vs *ValueSet) Contains(system, code string) bool {
	if system != "" {
		return vs.members[system+"|"+code]
	}
	for _, c := range vs.Concepts {
		if c.Code == code {
			return true
		}
	}
	return false
}

// ValueSet returns the embedded value set with this canonical URL (a
// "|version" suffix is ignored).
func (s *Set) ValueSet(url string) (*ValueSet, bool) {
	url, _, _ = strings.Cut(url, "|")
	vs, ok := s.valueSets[url]
	return vs, ok
}

// Expand renders the $expand of an embedded value set: the ValueSet with an
// expansion, filtered by text when filter is set (case-insensitive, on code or
// display), paged by offset and count (count < 0: all).
func (s *Set) Expand(url, filter string, offset, count int, now time.Time) (fhir.Object, error) {
	vs, ok := s.ValueSet(url)
	if !ok {
		return nil, fhir.Errorf(fhir.NotFound, "url", "no value set with url %q is known to this server", url)
	}
	if !vs.Complete {
		return nil, fhir.Errorf(fhir.NotSupported, "url", "value set %q includes code systems this server does not hold: it cannot be expanded", url)
	}
	var src fhir.Object
	for _, r := range s.resources {
		if fhir.ResourceType(r) == "ValueSet" && str(r["url"]) == vs.URL {
			src = r
		}
	}
	filter = strings.ToLower(filter)
	var matched []any
	for _, c := range vs.Concepts {
		if filter != "" && !strings.Contains(strings.ToLower(c.Code), filter) && !strings.Contains(strings.ToLower(c.Display), filter) {
			continue
		}
		m := map[string]any{"system": c.System, "code": c.Code}
		if c.Display != "" {
			m["display"] = c.Display
		}
		matched = append(matched, m)
	}
	total := len(matched)
	if offset > len(matched) {
		offset = len(matched)
	}
	matched = matched[offset:]
	if count >= 0 && count < len(matched) {
		matched = matched[:count]
	}
	out := fhir.Object{}
	for k, v := range src {
		if k != "compose" && k != "text" {
			out[k] = v
		}
	}
	exp := map[string]any{
		"identifier": "urn:uuid:" + fhir.NewUUID(),
		"timestamp":  now.UTC().Format(time.RFC3339),
		"total":      total,
		"offset":     offset,
	}
	if filter != "" {
		exp["parameter"] = []any{map[string]any{"name": "filter", "valueString": filter}}
	}
	if len(matched) > 0 {
		exp["contains"] = matched
	}
	out["expansion"] = exp
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
