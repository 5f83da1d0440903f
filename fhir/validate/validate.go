// Package validate is base R4 validation, driven by a table generated from the
// R4 StructureDefinitions (gen.go, `make generate`; embedded, never read at run
// time). One walk over the parsed JSON tree checks, for every element of every
// resource type:
//
//   - that it is an element of its parent (unknown elements are refused);
//   - its JSON shape: a complex element is an object, a primitive a JSON string,
//     number or boolean as its type says, an element of maximum cardinality one
//     a single value and any other an array;
//   - the lexical form and range of every primitive (primitives.go: integer is
//     32-bit, dates are real calendar dates, codes have no stray whitespace …),
//     and that strings stay within their 1 MB limit;
//   - choice elements ([x]) of an allowed type, with one value at most;
//   - minimum and maximum cardinalities, and required bindings to value sets
//     that can be expanded from the R4 content;
//   - ele-1: no empty objects, arrays, strings or nulls, and the alignment of a
//     primitive with its "_name" companion (extensions and ids of primitives);
//   - the core invariants of the types (invariants.go), each keyed by its
//     constraint key, and the XHTML of narratives (xhtml.go).
//
// Contained resources and Bundle entry resources are validated by their own
// type. Required value sets that cannot be expanded from the R4 content alone
// (they include external code systems or filters) are not enforced: the
// generator lists them in the table's "skipped".
package validate

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"crs/fhir"
	"crs/fhir/fhirpath"
)

//go:generate go run gen.go

//go:embed r4table.json.gz
var tableGz []byte

// maxIssues bounds the issues reported for one resource.
const maxIssues = 100

// elementDef is one element of a structure.
type elementDef struct {
	name     string // last path segment, "value[x]" for choices
	extName  string // "_" + name: the JSON name of a primitive's companion
	choice   string // "value" for value[x], "" otherwise
	path     string
	min      int
	max      string
	maxN     int  // numeric maximum above one; 0 when unbounded or at most one
	array    bool // represented as a JSON array (maximum cardinality above one)
	types    []string
	targets  []string // resource types a Reference may point to; none means any
	ref      string   // contentReference
	keys     []string // constraint keys declared on this element
	required map[string]map[string]bool
}

// field is what a JSON property name of an object means: an element, with the
// type a choice suffix names, or the "_name" companion of a primitive element.
type field struct {
	el   *elementDef
	typ  string // the element's type ("" for a contentReference)
	ext  bool   // the "_name" companion
	pair string // the other JSON name of a primitive: "_name" for name, "name" for "_name"
	prim bool   // typ is a primitive type
}

// structure is a resource, data type or backbone element: its elements and
// the JSON property names they may appear as.
type structure struct {
	elements []*elementDef
	fields   map[string]field
}

// Validator checks resources against base R4. Safe for concurrent use.
type Validator struct {
	structures  map[string]*structure // type name or backbone path → structure
	kinds       map[string]string
	primitives  map[string]primitive
	rootKeys    map[string][]string // structure → constraint keys declared on its root
	constraints map[string]constraint
	exprs       map[string]*fhirpath.Expr  // invariants checked by their R4 expression
	summary     map[string]map[string]bool // type → top-level elements with isSummary
	required    map[string]map[string]bool // type → top-level elements with min ≥ 1
}

// primitive is how a primitive type is written in JSON.
type primitive struct {
	JSON  string `json:"json"` // string, number or boolean
	Regex string `json:"regex"`
	Max   int    `json:"max"` // maximum length in characters; 0: none
}

// constraint is an invariant declared by an R4 structure.
type constraint struct {
	Severity   string `json:"severity"`
	Human      string `json:"human"`
	Expression string `json:"expression"`
	Path       string `json:"path"`
}

// New loads the embedded table.
func New() (*Validator, error) {
	tableJSON, err := gunzip(tableGz)
	if err != nil {
		return nil, err
	}
	var t struct {
		Structures map[string][]struct {
			Path     string   `json:"p"`
			Min      int      `json:"min"`
			Max      string   `json:"max"`
			Types    []string `json:"t"`
			Targets  []string `json:"tg"`
			Keys     []string `json:"k"`
			Ref      string   `json:"ref"`
			Required string   `json:"vs"`
			Summary  bool     `json:"s"`
		} `json:"structures"`
		Kinds       map[string]string              `json:"kinds"`
		ValueSets   map[string]map[string][]string `json:"valueSets"`
		Primitives  map[string]primitive           `json:"primitives"`
		Constraints map[string]constraint          `json:"constraints"`
		RootKeys    map[string][]string            `json:"rootKeys"`
	}
	if err := json.Unmarshal(tableJSON, &t); err != nil {
		return nil, err
	}
	sets := map[string]map[string]map[string]bool{}
	for url, systems := range t.ValueSets {
		m := map[string]map[string]bool{}
		for s, codes := range systems {
			m[s] = map[string]bool{}
			for _, c := range codes {
				m[s][c] = true
			}
		}
		sets[url] = m
	}
	v := &Validator{structures: map[string]*structure{}, kinds: t.Kinds, primitives: t.Primitives,
		rootKeys: t.RootKeys, constraints: t.Constraints,
		summary: map[string]map[string]bool{}, required: map[string]map[string]bool{}}
	get := func(path string) *structure {
		s := v.structures[path]
		if s == nil {
			s = &structure{fields: map[string]field{}}
			v.structures[path] = s
		}
		return s
	}
	for typ, els := range t.Structures {
		v.summary[typ], v.required[typ] = map[string]bool{}, map[string]bool{}
		for _, e := range els {
			i := strings.LastIndexByte(e.Path, '.')
			if i < 0 {
				continue
			}
			if e.Path[:i] == typ {
				v.summary[typ][e.Path[i+1:]] = e.Summary
				v.required[typ][e.Path[i+1:]] = e.Min > 0
			}
			d := &elementDef{name: e.Path[i+1:], extName: "_" + e.Path[i+1:], path: e.Path, min: e.Min, max: e.Max, types: e.Types,
				targets: e.Targets, keys: e.Keys, ref: e.Ref}
			d.array = e.Max != "1" && e.Max != "0"
			if n, err := strconv.Atoi(e.Max); err == nil && n > 1 {
				d.maxN = n
			}
			if e.Required != "" {
				d.required = sets[e.Required]
			}
			s := get(e.Path[:i])
			s.elements = append(s.elements, d)
			if strings.HasSuffix(d.name, "[x]") {
				d.choice = strings.TrimSuffix(d.name, "[x]")
				for _, ty := range d.types {
					name := d.choice + upperFirst(ty)
					prim := v.kinds[ty] == "primitive-type"
					s.fields[name] = field{el: d, typ: ty, pair: "_" + name, prim: prim}
					if prim {
						s.fields["_"+name] = field{el: d, typ: ty, ext: true, pair: name, prim: true}
					}
				}
				continue
			}
			ty := ""
			if len(d.types) == 1 {
				ty = d.types[0]
			}
			prim := v.kinds[ty] == "primitive-type"
			s.fields[d.name] = field{el: d, typ: ty, pair: "_" + d.name, prim: prim}
			if prim {
				s.fields["_"+d.name] = field{el: d, typ: ty, ext: true, pair: d.name, prim: true}
			}
		}
	}
	if err := v.compileInvariants(); err != nil {
		return nil, err
	}
	return v, nil
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// SummaryElements returns the top-level elements of resourceType marked
// isSummary (a choice element as value[x]), for _summary=true.
func (v *Validator) SummaryElements(resourceType string) map[string]bool {
	return v.summary[resourceType]
}

// MandatoryElements returns the top-level elements of resourceType with a
// minimum cardinality of one or more, for _summary=text.
func (v *Validator) MandatoryElements(resourceType string) map[string]bool {
	return v.required[resourceType]
}

// Known reports whether resourceType is an R4 resource type.
func (v *Validator) Known(resourceType string) bool {
	return v.kinds[resourceType] == "resource" && resourceType != "Resource" && resourceType != "DomainResource"
}

// run is the state of one Validate call.
type run struct {
	v           *Validator
	issues      []fhir.Issue
	root        *resourceCtx // the resource whose contained resources "#id" references name
	inContained int          // index of the contained resource being walked; -1 outside
}

// resourceCtx is what the invariants of one resource (with its contained
// resources) need to know about it.
type resourceCtx struct {
	contained map[string]bool // ids of the contained resources
	localRefs map[string]bool // "#id" references made anywhere in the resource
	selfRef   map[int]bool    // contained resources that refer to their container ("#")
}

// Validate checks a resource tree (as produced by fhir.Parse) and returns every
// issue found; none means valid. Issues are sorted by location.
func (v *Validator) Validate(res map[string]any) []fhir.Issue {
	r := &run{v: v, inContained: -1}
	rt, _ := res["resourceType"].(string)
	r.resource(res, rt)
	issues := r.issues
	if len(issues) > 1 {
		sort.SliceStable(issues, func(i, j int) bool { return issues[i].Expression < issues[j].Expression })
	}
	if len(issues) > maxIssues {
		issues = append(issues[:maxIssues], fhir.Issue{Severity: fhir.SeverityError, Code: "too-costly",
			Diagnostics: fmt.Sprintf("more than %d issues; the rest are not reported", maxIssues)})
	}
	return issues
}

func (r *run) add(code, expr, format string, args ...any) {
	r.issues = append(r.issues, fhir.Issue{Severity: fhir.SeverityError, Code: code, Diagnostics: fmt.Sprintf(format, args...), Expression: expr})
}

// resource checks one resource whose FHIRPath location is fp (its type for a
// top-level resource, "Patient.contained[0]" for a contained one).
func (r *run) resource(res map[string]any, fp string) {
	rt, ok := res["resourceType"].(string)
	if !ok || !r.v.Known(rt) {
		r.add("invalid", fp+".resourceType", "unknown resourceType %s", quoteShort(fmt.Sprint(res["resourceType"])))
		return
	}
	if fp == "" {
		fp = rt
	}
	s := r.v.structures[rt]
	_, isDomain := s.fields["contained"]
	outer := r.root
	if isDomain && outer == nil {
		// A top-level resource, or the resource of a Bundle entry: "#id"
		// references inside it name its own contained resources.
		r.root = &resourceCtx{contained: map[string]bool{}, localRefs: map[string]bool{}, selfRef: map[int]bool{}}
		if list, ok := res["contained"].([]any); ok {
			for _, c := range list {
				if m, ok := c.(map[string]any); ok {
					if id, ok := m["id"].(string); ok {
						r.root.contained[id] = true
					}
				}
			}
		}
	}
	r.object(res, s, rt, fp, true)
	switch {
	case isDomain && outer == nil:
		r.containedReferenced(res, fp)
		r.root = nil
	case isDomain:
		r.domainInvariants(res, fp)
	}
}

// object checks obj, an instance of structure s (named def), at fp.
func (r *run) object(obj map[string]any, s *structure, def, fp string, isResource bool) {
	r.elements(obj, s, def, fp, isResource, false)
}

// elements checks obj, an instance of structure s (named def), at fp; an object
// that is the companion of a primitive value (hasValue) may hold only an id.
func (r *run) elements(obj map[string]any, s *structure, def, fp string, isResource, hasValue bool) {
	if len(obj) == 0 || (len(obj) == 1 && obj["id"] != nil && !isResource && !hasValue) {
		r.add("structure", fp, "ele-1: an element must have a value or children; this one is empty")
		if len(obj) == 0 {
			return
		}
	}
	var choices map[string]string // choice element path → the first JSON name seen
	for k, val := range obj {
		if isResource && k == "resourceType" {
			continue
		}
		f, ok := s.fields[k]
		if !ok {
			r.add("structure", fp+"."+k, "unknown element %q: %s has no such element", k, def)
			continue
		}
		e := f.el
		if e.choice != "" {
			name := strings.TrimPrefix(k, "_")
			if choices == nil {
				choices = map[string]string{}
			}
			if first, seen := choices[e.path]; seen && first != name {
				a, b := first, name
				if b < a {
					a, b = b, a
				}
				r.add("structure", fp+"."+e.choice, "%s has more than one value: %s and %s (a choice element takes exactly one type)", e.path, a, b)
			} else {
				choices[e.path] = name
			}
		}
		if e.max == "0" {
			r.add("structure", fp+"."+strings.TrimPrefix(k, "_"), "%s is not allowed (maximum cardinality 0)", e.path)
			continue
		}
		if f.ext {
			if _, both := obj[f.pair]; both {
				continue // checked with its value
			}
			r.primitiveElement(f, f.pair, nil, val, fp, true)
			continue
		}
		if f.prim {
			companion, hasCompanion := obj[f.pair]
			r.primitiveElement(f, k, val, companion, fp, hasCompanion)
			continue
		}
		r.complexElement(f, k, val, fp)
	}
	for _, e := range s.elements {
		if e.min == 0 {
			continue
		}
		if !present(obj, e) {
			r.add("required", fp+"."+strings.TrimSuffix(e.name, "[x]"), "%s is required (minimum cardinality %d)", e.path, e.min)
		}
	}
	for _, key := range r.v.rootKeys[def] {
		r.invariant(key, obj, fp)
	}
}

// present reports whether element e has a value (or a primitive companion) in obj.
func present(obj map[string]any, e *elementDef) bool {
	if e.choice == "" {
		_, a := obj[e.name]
		_, b := obj[e.extName]
		return a || b
	}
	for k := range obj {
		k = strings.TrimPrefix(k, "_")
		if len(k) > len(e.choice) && strings.HasPrefix(k, e.choice) && k[len(e.choice)] >= 'A' && k[len(e.choice)] <= 'Z' {
			return true
		}
	}
	return false
}

// items returns the values of an element as written: the array's items, or the
// one value. It reports a cardinality error (array for a single, single for an
// array, an empty array, too many items) and returns nil then.
func (r *run) items(e *elementDef, val any, p string) ([]any, bool) {
	arr, isArr := val.([]any)
	switch {
	case e.array && !isArr:
		r.add("structure", p, "%s must be a JSON array (maximum cardinality %s)", e.path, e.max)
		return nil, false
	case !e.array && isArr:
		r.add("structure", p, "%s must be a single value, not an array (maximum cardinality 1)", e.path)
		return nil, false
	case isArr && len(arr) == 0:
		r.add("structure", p, "ele-1: %s is an empty array; leave the element out instead", e.path)
		return nil, false
	case e.maxN > 0 && len(arr) > e.maxN:
		r.add("structure", p, "%s has %d values; at most %d are allowed", e.path, len(arr), e.maxN)
	}
	if !isArr {
		return []any{val}, false
	}
	return arr, true
}

// complexElement checks the value(s) of a complex, backbone or resource element.
func (r *run) complexElement(f field, k string, val any, fp string) {
	e := f.el
	vals, isArr := r.items(e, val, fp+"."+k)
	for i, item := range vals {
		p := fp + "." + k
		if isArr {
			p += "[" + strconv.Itoa(i) + "]"
		}
		obj, ok := item.(map[string]any)
		if !ok {
			r.add("structure", p, "%s must be a JSON object (%s), not %s", e.path, typeName(f.typ), jsonKind(item))
			continue
		}
		if f.typ == "Resource" {
			if e.name == "contained" && r.root != nil && r.inContained < 0 {
				r.inContained = i
				r.resource(obj, p)
				r.inContained = -1
				continue
			}
			r.resource(obj, p)
			continue
		}
		def, s := r.v.structureOf(e, f.typ)
		if s == nil {
			r.add("not-supported", p, "no definition for type %s of %s", f.typ, e.path)
			continue
		}
		if e.required != nil {
			r.binding(e, obj, p)
		}
		r.object(obj, s, def, p, false)
		switch f.typ {
		case "Reference":
			r.reference(e, obj, p)
		case "Extension":
			r.extension(obj, p, e.path == "Extension.extension")
		}
		for _, key := range e.keys {
			r.invariant(key, obj, p)
		}
	}
}

// structureOf returns the structure whose elements an object of element e
// (with type typ) has.
func (v *Validator) structureOf(e *elementDef, typ string) (string, *structure) {
	if e.ref != "" {
		return e.ref, v.structures[e.ref]
	}
	if s, ok := v.structures[e.path]; ok {
		return e.path, s
	}
	return typ, v.structures[typ]
}

// primitiveElement checks a primitive element written as k (its values val,
// nil when only the companion is there) with its "_k" companion.
func (r *run) primitiveElement(f field, k string, val, companion any, fp string, hasCompanion bool) {
	e := f.el
	p := fp + "." + k
	var vals, exts []any
	var isArr bool
	if val != nil || !hasCompanion {
		var ok bool
		if vals, ok = r.items(e, val, p); vals == nil {
			return
		}
		isArr = ok
	}
	if hasCompanion {
		arr, ok := companion.([]any)
		switch {
		case e.array && !ok:
			r.add("structure", p, "_%s must be a JSON array, as %s is", k, e.path)
			return
		case !e.array && ok:
			r.add("structure", p, "_%s must be a JSON object, not an array (maximum cardinality 1)", k)
			return
		case ok && len(arr) == 0:
			r.add("structure", p, "ele-1: _%s is an empty array", k)
			return
		case ok && vals != nil && len(arr) != len(vals):
			r.add("structure", p, "_%s has %d items and %s has %d: a primitive array and its extensions must align item by item (null where one has nothing)", k, len(arr), k, len(vals))
			return
		case ok:
			exts = arr
			isArr = true
		default:
			exts = []any{companion}
		}
	}
	n := len(vals)
	if len(exts) > n {
		n = len(exts)
	}
	for i := 0; i < n; i++ {
		ip := p
		if isArr {
			ip += "[" + strconv.Itoa(i) + "]"
		}
		var x, ext any
		if i < len(vals) {
			x = vals[i]
		}
		if i < len(exts) {
			ext = exts[i]
		}
		if x == nil && ext == nil {
			r.add("structure", ip, "ele-1: %s has neither a value nor extensions (null)", e.path)
			continue
		}
		if x != nil {
			r.primitive(f.typ, e, x, ip)
		}
		if ext != nil {
			obj, ok := ext.(map[string]any)
			if !ok {
				r.add("structure", ip, "_%s must hold JSON objects (the id and extensions of the value), not %s", k, jsonKind(ext))
				continue
			}
			r.elements(obj, r.v.structures["Element"], "Element", ip, false, x != nil)
		}
	}
}

// primitive checks one value of a primitive element e of type t.
func (r *run) primitive(t string, e *elementDef, val any, p string) {
	if t == "" {
		t = "string"
	}
	pr := r.v.primitives[t]
	switch pr.JSON {
	case "boolean":
		if _, ok := val.(bool); !ok {
			r.add("value", p, "%s is a boolean: it must be JSON true or false, not %s", e.path, jsonKind(val))
		}
		return
	case "number":
		n, ok := val.(json.Number)
		if !ok {
			r.add("value", p, "%s is a %s: it must be a JSON number, not %s", e.path, t, jsonKind(val))
			return
		}
		if why := checkNumber(t, string(n)); why != "" {
			r.add("value", p, "invalid %s %s: %s", t, quoteShort(string(n)), why)
		}
		return
	}
	s, ok := val.(string)
	if !ok {
		r.add("value", p, "%s is a %s: it must be a JSON string, not %s", e.path, t, jsonKind(val))
		return
	}
	if s == "" {
		r.add("value", p, "ele-1: %s is an empty string; leave the element out instead", e.path)
		return
	}
	if pr.Max > 0 && len(s) > pr.Max {
		if n := len([]rune(s)); n > pr.Max {
			r.add("too-long", p, "%s is %d characters long; the limit is %d", e.path, n, pr.Max)
			return
		}
	}
	if t == "xhtml" {
		r.xhtml(s, p)
		return
	}
	if why := checkString(t, s); why != "" {
		r.add("value", p, "invalid %s %s: %s", t, quoteShort(s), why)
		return
	}
	if s[0] == '#' && r.root != nil && (t == "uri" || t == "canonical") {
		r.root.localRefs[s[1:]] = true // dom-3 counts these as references too
	}
	if e.required != nil {
		r.codeBinding(e, s, p)
	}
}

// binding checks a Coding or CodeableConcept against a required value set.
func (r *run) binding(e *elementDef, x map[string]any, p string) {
	var codings []any
	if c, ok := x["coding"].([]any); ok {
		codings = c
	} else if _, ok := x["code"]; ok {
		codings = []any{x}
	}
	for _, c := range codings {
		m, _ := c.(map[string]any)
		sys, _ := m["system"].(string)
		code, _ := m["code"].(string)
		if codes, ok := e.required[sys]; ok && code != "" && !codes[code] {
			r.add("code-invalid", p, "%q is not a valid code for %s (required binding) in %s", code, e.path, sys)
		}
	}
}

// codeBinding checks a code against a required value set.
func (r *run) codeBinding(e *elementDef, code, p string) {
	for _, codes := range e.required {
		if codes[code] {
			return
		}
	}
	r.add("code-invalid", p, "%q is not a valid code for %s (required binding)", code, e.path)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func typeName(t string) string {
	if t == "" {
		return "an element"
	}
	return "a " + t
}

// jsonKind names the JSON type of a value, for messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strconv.Quote(s)
}
