package profiles

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"crs/fhir"
	"crs/fhir/fhirpath"
)

// Profile is a compiled StructureDefinition: its differential as authored (for
// documentation) and its elements merged along the chain of base profiles that
// are embedded (the pathway's profiles on UK Core's).
type Profile struct {
	URL, Name, Title, Description string
	Type                          string // the constrained type: a resource type, or Extension
	Kind                          string // resource or complex-type
	BaseURL                       string
	Contexts                      []string   // for an extension: the types or elements it may be used on
	Differential                  []*Element // as authored

	// Unchecked lists the slices of base profiles the validator cannot recognise
	// (they depend on definitions that are not embedded), and so does not check.
	Unchecked []string

	elements map[string]*Element // merged along the base chain, by element id
	order    []*Element          // merged, parents before children

	// matchers holds each slice's compiled matcher (sliceID → sliceMatch):
	// the profile never changes once compiled, and compiling one for every
	// value of every check cost about 2% of an imported CLD row's CPU.
	matchers sync.Map
}

// sliceMatch is a compiled slice matcher, or why the slice has none.
type sliceMatch struct {
	match func(any) bool
	err   error
}

// Element is one element definition of a differential, or the merge of those
// with the same id along a base chain.
type Element struct {
	ID, Path, SliceName        string
	Min                        int
	MinSet                     bool
	Max                        string // "" when not constrained; "*" or a number
	Types                      []TypeRef
	Fixed, Pattern             any
	FixedKey, PatternKey       string // e.g. fixedUri, patternCodeableConcept
	Binding                    *Binding
	Slicing                    *Slicing
	Constraints                []Constraint
	Short, Definition, Comment string
}

// TypeRef is one allowed type of an element.
type TypeRef struct {
	Code           string
	Profiles       []string // for extensions: the extension's definition
	TargetProfiles []string // for references: what they may point to
}

// Binding ties a coded element to a value set.
type Binding struct {
	Strength, ValueSet string
}

// Slicing says how the repetitions of an element are told apart.
type Slicing struct {
	Discriminators []Discriminator
	Rules          string // open, closed, openAtEnd
}

// Discriminator is one way a slice is recognised.
type Discriminator struct {
	Type, Path string
}

// Constraint is a named invariant: its key selects a Go implementation or,
// when there is none, its FHIRPath expression is evaluated with fhir/fhirpath
// (it must then be within the subset that package evaluates).
type Constraint struct {
	Key, Severity, Human, Expression string
	expr                             *fhirpath.Expr // compiled Expression, when no Go implementation has the key
}

func newProfile(sd fhir.Object) (*Profile, error) {
	p := &Profile{URL: str(sd["url"]), Name: str(sd["name"]), Title: str(sd["title"]), Description: str(sd["description"]),
		Type: str(sd["type"]), Kind: str(sd["kind"]), BaseURL: str(sd["baseDefinition"])}
	if p.URL == "" || p.Type == "" {
		return nil, fmt.Errorf("a StructureDefinition without url or type: %v", sd["id"])
	}
	if ctx, ok := sd["context"].([]any); ok {
		for _, c := range ctx {
			m, _ := c.(map[string]any)
			p.Contexts = append(p.Contexts, str(m["expression"]))
		}
	}
	diff, _ := sd["differential"].(map[string]any)
	list, _ := diff["element"].([]any)
	for _, raw := range list {
		m, _ := raw.(map[string]any)
		el, err := newElement(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p.URL, err)
		}
		p.Differential = append(p.Differential, el)
	}
	return p, nil
}

func newElement(m map[string]any) (*Element, error) {
	el := &Element{ID: str(m["id"]), Path: str(m["path"]), SliceName: str(m["sliceName"]), Max: str(m["max"]),
		Short: str(m["short"]), Definition: str(m["definition"]), Comment: str(m["comment"])}
	if el.ID == "" {
		el.ID = el.Path
	}
	if v, ok := m["min"]; ok {
		n, err := strconv.Atoi(fmt.Sprint(v))
		if err != nil {
			return nil, fmt.Errorf("%s: min: %v", el.ID, err)
		}
		el.Min, el.MinSet = n, true
	}
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "fixed"):
			el.Fixed, el.FixedKey = v, k
		case strings.HasPrefix(k, "pattern"):
			el.Pattern, el.PatternKey = v, k
		}
	}
	if types, ok := m["type"].([]any); ok {
		for _, t := range types {
			tm, _ := t.(map[string]any)
			el.Types = append(el.Types, TypeRef{Code: str(tm["code"]), Profiles: strings1(tm["profile"]), TargetProfiles: strings1(tm["targetProfile"])})
		}
	}
	if b, ok := m["binding"].(map[string]any); ok {
		el.Binding = &Binding{Strength: str(b["strength"]), ValueSet: str(b["valueSet"])}
	}
	if sl, ok := m["slicing"].(map[string]any); ok {
		el.Slicing = &Slicing{Rules: str(sl["rules"])}
		ds, _ := sl["discriminator"].([]any)
		for _, d := range ds {
			dm, _ := d.(map[string]any)
			el.Slicing.Discriminators = append(el.Slicing.Discriminators, Discriminator{Type: str(dm["type"]), Path: str(dm["path"])})
		}
	}
	if cs, ok := m["constraint"].([]any); ok {
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			el.Constraints = append(el.Constraints, Constraint{Key: str(cm["key"]), Severity: str(cm["severity"]), Human: str(cm["human"]), Expression: str(cm["expression"])})
		}
	}
	return el, nil
}

func strings1(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// compile merges the differentials of p's embedded base chain into p.elements
// and checks that everything the validator relies on is there: slices it can
// recognise, invariants it implements, value sets of required bindings.
func (s *Set) compile(p *Profile) error {
	var chain []*Profile
	seen := map[string]bool{}
	for q := p; q != nil; q = s.profiles[q.BaseURL] {
		if seen[q.URL] {
			return fmt.Errorf("%s: circular baseDefinition", p.URL)
		}
		seen[q.URL] = true
		chain = append([]*Profile{q}, chain...)
	}
	p.elements = map[string]*Element{}
	p.order = nil
	p.matchers.Clear()            // compiled from the elements as they were
	origin := map[string]string{} // element id → the profile that introduced it
	for _, q := range chain {
		for _, d := range q.Differential {
			cur, ok := p.elements[d.ID]
			if !ok {
				cp := *d
				cp.Constraints = append([]Constraint(nil), d.Constraints...)
				p.elements[d.ID] = &cp
				p.order = append(p.order, &cp)
				origin[d.ID] = q.URL
				continue
			}
			merge(cur, d)
		}
	}
	// A slice of a base profile (UK Core) that can only be recognised through
	// definitions not embedded here (an extension's own sub-extensions) is not
	// checked, nor is anything below it; a slice of the pathway's own profiles
	// must be recognisable.
	var dropped []string
	kept := p.order[:0]
	for _, el := range p.order {
		if under(el.ID, dropped) {
			delete(p.elements, el.ID)
			continue
		}
		if el.SliceName != "" {
			if _, err := p.compileSliceMatcher(el.ID); err != nil {
				if strings.HasPrefix(origin[el.ID], s.base+"/") {
					return fmt.Errorf("%s: %v", p.URL, err)
				}
				dropped = append(dropped, el.ID)
				p.Unchecked = append(p.Unchecked, el.ID)
				delete(p.elements, el.ID)
				continue
			}
		}
		kept = append(kept, el)
	}
	p.order = kept
	for _, el := range p.order {
		if !strings.HasPrefix(el.ID, p.Type) {
			return fmt.Errorf("%s: element %s is not on %s", p.URL, el.ID, p.Type)
		}
		for i := range el.Constraints {
			c := &el.Constraints[i]
			if _, ok := invariants[c.Key]; ok {
				continue
			}
			e, err := fhirpath.Compile(c.Expression)
			if err != nil {
				return fmt.Errorf("%s: constraint %s on %s has no Go implementation and its expression is outside the FHIRPath subset: %v", p.URL, c.Key, el.ID, err)
			}
			c.expr = e
		}
		if b := el.Binding; b != nil && b.Strength == "required" {
			if vs, ok := s.ValueSet(b.ValueSet); !ok || !vs.Complete {
				if strings.HasPrefix(p.URL, s.base+"/") && !strings.HasPrefix(origin[el.ID], s.base+"/") && !declares(p, el.ID, "binding") {
					p.Unchecked = append(p.Unchecked, el.ID+" (required binding to "+b.ValueSet+", not embedded)")
					continue
				}
				if strings.HasPrefix(p.URL, s.base+"/") {
					return fmt.Errorf("%s: the required binding of %s needs value set %s, which is not embedded or not complete", p.URL, el.ID, b.ValueSet)
				}
			}
		}
	}
	return nil
}

// merge lays a derived profile's element over its base's.
func merge(cur, d *Element) {
	if d.MinSet {
		cur.Min, cur.MinSet = d.Min, true
	}
	if d.Max != "" {
		cur.Max = d.Max
	}
	if d.Types != nil {
		cur.Types = d.Types
	}
	if d.Fixed != nil {
		cur.Fixed, cur.FixedKey = d.Fixed, d.FixedKey
	}
	if d.Pattern != nil {
		cur.Pattern, cur.PatternKey = d.Pattern, d.PatternKey
	}
	if d.Binding != nil {
		cur.Binding = d.Binding
	}
	if d.Slicing != nil {
		cur.Slicing = d.Slicing
	}
	cur.Constraints = append(cur.Constraints, d.Constraints...)
	if d.Short != "" {
		cur.Short = d.Short
	}
	if d.Definition != "" {
		cur.Definition = d.Definition
	}
	if d.Comment != "" {
		cur.Comment = d.Comment
	}
}

// Element returns the merged element with this id.
func (p *Profile) Element(id string) (*Element, bool) {
	el, ok := p.elements[id]
	return el, ok
}

// Elements returns the merged elements, parents before children.
func (p *Profile) Elements() []*Element { return p.order }

// splitID splits an element id into its parent's id and its last segment.
func splitID(id string) (parent, last string) {
	i := strings.LastIndexByte(id, '.')
	if i < 0 {
		return "", id
	}
	return id[:i], id[i+1:]
}

// sliceMatcher returns the test that tells whether a repetition belongs to the
// slice whose element id is sliceID ("Patient.identifier:nhsNumber").
func (p *Profile) sliceMatcher(sliceID string) (func(any) bool, error) {
	if m, ok := p.matchers.Load(sliceID); ok {
		sm := m.(sliceMatch)
		return sm.match, sm.err
	}
	match, err := p.compileSliceMatcher(sliceID)
	p.matchers.Store(sliceID, sliceMatch{match, err})
	return match, err
}

// compileSliceMatcher is sliceMatcher, compiled.
func (p *Profile) compileSliceMatcher(sliceID string) (func(any) bool, error) {
	parent, last := splitID(sliceID)
	name, _, _ := strings.Cut(last, ":")
	slicedID := name
	if parent != "" {
		slicedID = parent + "." + name
	}
	slice := p.elements[sliceID]
	var ds []Discriminator
	if sl, ok := p.elements[slicedID]; ok && sl.Slicing != nil {
		ds = sl.Slicing.Discriminators
	}
	if ds == nil && (name == "extension" || name == "modifierExtension") {
		ds = []Discriminator{{Type: "value", Path: "url"}}
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("slice %s: no slicing discriminator on %s", sliceID, slicedID)
	}
	var tests []func(any) bool
	for _, d := range ds {
		if d.Path == "$this" {
			want := slice.Pattern
			if want == nil {
				want = slice.Fixed
			}
			if want == nil {
				return nil, fmt.Errorf("slice %s: a $this discriminator needs a pattern or fixed value", sliceID)
			}
			tests = append(tests, func(v any) bool { return containsPattern(v, want) })
			continue
		}
		var want any
		if el, ok := p.elements[sliceID+"."+d.Path]; ok {
			want = el.Fixed
			if want == nil {
				want = el.Pattern
			}
		}
		if m, ok := slice.Pattern.(map[string]any); want == nil && ok {
			want = m[d.Path]
		}
		if want == nil && d.Path == "url" && slice != nil && len(slice.Types) > 0 && len(slice.Types[0].Profiles) > 0 {
			want = slice.Types[0].Profiles[0]
		}
		if want == nil {
			return nil, fmt.Errorf("slice %s: no value for discriminator %s", sliceID, d.Path)
		}
		key := d.Path
		tests = append(tests, func(v any) bool {
			m, ok := v.(map[string]any)
			return ok && containsPattern(m[key], want)
		})
	}
	return func(v any) bool {
		for _, t := range tests {
			if !t(v) {
				return false
			}
		}
		return true
	}, nil
}

// containsPattern reports whether v has everything pattern has (FHIR pattern[x]
// semantics: every element of the pattern is present with the same value; each
// repetition in the pattern is matched by some repetition in v).
func containsPattern(v, pattern any) bool {
	switch pt := pattern.(type) {
	case map[string]any:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for k, pv := range pt {
			if !containsPattern(m[k], pv) {
				return false
			}
		}
		return true
	case []any:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		for _, pv := range pt {
			found := false
			for _, x := range list {
				if containsPattern(x, pv) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	case string:
		if sv, ok := v.(string); ok {
			return sv == pt // as fmt.Sprint compares them, without its buffers
		}
	}
	return fmt.Sprint(v) == fmt.Sprint(pattern) && v != nil
}

// under reports whether id is one of ids or below one of them.
func under(id string, ids []string) bool {
	for _, d := range ids {
		if id == d || strings.HasPrefix(id, d+".") || strings.HasPrefix(id, d+":") {
			return true
		}
	}
	return false
}

// declares reports whether p's own differential sets this part of an element.
func declares(p *Profile, id, what string) bool {
	for _, d := range p.Differential {
		if d.ID == id && what == "binding" && d.Binding != nil {
			return true
		}
	}
	return false
}
