package profiles

import (
	"sort"
	"strconv"
	"strings"

	"crs/fhir"
)

// ConceptMap is an embedded FHIR ConceptMap compiled for translation. Source
// codes are matched case-insensitively (with surrounding spaces ignored): the
// partner systems whose codes the maps translate spell the same value in
// different cases from one release to the next.
type ConceptMap struct {
	URL, Title           string
	SourceURI, TargetURI string
	groups               []conceptMapGroup
}

type conceptMapGroup struct {
	source, target string
	elements       map[string][]Translation // folded source code → targets
}

// Translation is one target of a source code in a ConceptMap.
type Translation struct {
	System, Code, Display string
	Equivalence           string // equivalent, unmatched, …
	SourceCode            string // the source code as the map spells it
}

// Unmatched reports whether the map says the source code has no target.
func (t Translation) Unmatched() bool {
	return t.Equivalence == "unmatched" || t.Equivalence == "disjoint"
}

func foldCode(code string) string { return strings.ToLower(strings.TrimSpace(code)) }

// compileConceptMap reads a ConceptMap resource.
func compileConceptMap(obj fhir.Object) *ConceptMap {
	cm := &ConceptMap{URL: str(obj["url"]), Title: str(obj["title"]), SourceURI: str(obj["sourceUri"]), TargetURI: str(obj["targetUri"])}
	groups, _ := obj["group"].([]any)
	for _, g := range groups {
		gm, _ := g.(map[string]any)
		grp := conceptMapGroup{source: str(gm["source"]), target: str(gm["target"]), elements: map[string][]Translation{}}
		elements, _ := gm["element"].([]any)
		for _, e := range elements {
			em, _ := e.(map[string]any)
			code := str(em["code"])
			targets, _ := em["target"].([]any)
			for _, t := range targets {
				tm, _ := t.(map[string]any)
				tr := Translation{Code: str(tm["code"]), Display: str(tm["display"]), Equivalence: str(tm["equivalence"]), SourceCode: code}
				if tr.Code != "" {
					tr.System = grp.target
				}
				grp.elements[foldCode(code)] = append(grp.elements[foldCode(code)], tr)
			}
		}
		cm.groups = append(cm.groups, grp)
	}
	return cm
}

// ConceptMap returns the embedded ConceptMap with canonical url.
func (s *Set) ConceptMap(url string) (*ConceptMap, bool) {
	cm, ok := s.conceptMaps[url]
	return cm, ok
}

// Translate returns the targets of code (from source system system, or from
// any system when system is empty) in the map. No targets: the map does not
// know the code.
func (cm *ConceptMap) Translate(system, code string) []Translation {
	var out []Translation
	for _, g := range cm.groups {
		if system != "" && g.source != system {
			continue
		}
		out = append(out, g.elements[foldCode(code)]...)
	}
	return out
}

// TranslateRequest is a ConceptMap $translate call.
type TranslateRequest struct {
	URL          string // the ConceptMap's canonical url
	System, Code string // the code to translate
	Source       string // the source value set (ConceptMap.sourceUri) when URL is empty
	Target       string // the target value set (ConceptMap.targetUri), optional
	TargetSystem string // only targets in this code system, optional
}

// Translate runs $translate over the embedded ConceptMaps and returns the
// Parameters answer: result, message and one match per target found.
func (s *Set) Translate(req TranslateRequest) (fhir.Object, error) {
	if req.Code == "" {
		return nil, fhir.Errorf(fhir.Invalid, "code", "$translate needs a code (code and system, or coding)")
	}
	var maps []*ConceptMap
	switch {
	case req.URL != "":
		cm, ok := s.conceptMaps[req.URL]
		if !ok {
			return nil, fhir.Errorf(fhir.NotFound, "url", "no ConceptMap with url %q is known to this server", req.URL)
		}
		maps = append(maps, cm)
	case req.System != "" || req.Source != "" || req.Target != "":
		for _, cm := range s.conceptMaps {
			if req.Source != "" && cm.SourceURI != req.Source {
				continue
			}
			if req.Target != "" && cm.TargetURI != req.Target {
				continue
			}
			maps = append(maps, cm)
		}
		sort.Slice(maps, func(i, j int) bool { return maps[i].URL < maps[j].URL })
	default:
		return nil, fhir.Errorf(fhir.Invalid, "url", "$translate needs a ConceptMap: url, or system, source or target to choose one")
	}
	var matches []any
	for _, cm := range maps {
		for _, t := range cm.Translate(req.System, req.Code) {
			if req.TargetSystem != "" && t.System != req.TargetSystem {
				continue
			}
			part := []any{map[string]any{"name": "equivalence", "valueCode": t.Equivalence}}
			if t.Code != "" {
				coding := map[string]any{"system": t.System, "code": t.Code}
				if t.Display != "" {
					coding["display"] = t.Display
				}
				part = append(part, map[string]any{"name": "concept", "valueCoding": coding})
			}
			part = append(part, map[string]any{"name": "source", "valueUri": cm.URL})
			matches = append(matches, map[string]any{"name": "match", "part": part})
		}
	}
	found := false
	for _, m := range matches {
		for _, p := range m.(map[string]any)["part"].([]any) {
			if p.(map[string]any)["name"] == "concept" {
				found = true
			}
		}
	}
	msg := "matched"
	if !found {
		msg = "no target for code " + strconv.Quote(req.Code)
		if req.URL != "" {
			msg += " in ConceptMap " + req.URL
		}
	}
	params := append([]any{
		map[string]any{"name": "result", "valueBoolean": found},
		map[string]any{"name": "message", "valueString": msg},
	}, matches...)
	return fhir.Object{"resourceType": "Parameters", "parameter": params}, nil
}
