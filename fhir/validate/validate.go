// Package validate is base R4 validation: every resource is checked against the
// official R4 JSON Schema definition of its type (never the root oneOf), and then
// against a table derived from the R4 StructureDefinitions that adds what the
// schema leaves out: minimum cardinalities, max 0, and required bindings
// (ServiceRequest.status = "bogus" passes the schema; it fails here). Both are
// generated from ../shared/fhir-r4 by `go generate` (gen.go) and embedded, so the
// binary needs nothing at run time.
//
// Contained resources (and Bundle entry resources) are validated against their
// own type: the schema's ResourceList oneOf is replaced by "any object" at
// generation time, which keeps validation fast and the issue locations precise.
// Required value sets that cannot be expanded from the R4 content alone (they
// include external code systems or filters) are not enforced: the generator
// lists them in the table's "skipped".
package validate

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"crs/fhir"
)

//go:generate go run gen.go

//go:embed r4schema.json.gz
var schemaGz []byte

//go:embed r4table.json.gz
var tableGz []byte

// maxIssues bounds the issues reported for one resource.
const maxIssues = 100

const schemaURL = "http://hl7.org/fhir/json-schema/4.0"

// elementDef is one element of a structure.
type elementDef struct {
	name     string // last path segment, "value[x]" for choices
	choice   string // "value" for value[x], "" otherwise
	path     string
	min      int
	max      string
	types    []string
	ref      string // contentReference
	required map[string]map[string]bool
}

// Validator checks resources against base R4. Safe for concurrent use.
type Validator struct {
	compiler *jsonschema.Compiler
	mu       sync.Mutex
	schemas  sync.Map // resource type → *jsonschema.Schema
	children map[string][]*elementDef
	kinds    map[string]string
	printer  *message.Printer
	summary  map[string]map[string]bool // type → top-level elements with isSummary
	required map[string]map[string]bool // type → top-level elements with min ≥ 1
}

// New loads the embedded schema and table. The schema of each resource type is
// compiled on first use.
func New() (*Validator, error) {
	schemaJSON, err := gunzip(schemaGz)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft6)
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
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
			Ref      string   `json:"ref"`
			Required string   `json:"vs"`
			Summary  bool     `json:"s"`
		} `json:"structures"`
		Kinds     map[string]string              `json:"kinds"`
		ValueSets map[string]map[string][]string `json:"valueSets"`
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
	v := &Validator{compiler: c, children: map[string][]*elementDef{}, kinds: t.Kinds, printer: message.NewPrinter(language.English),
		summary: map[string]map[string]bool{}, required: map[string]map[string]bool{}}
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
			d := &elementDef{name: e.Path[i+1:], path: e.Path, min: e.Min, max: e.Max, types: e.Types, ref: e.Ref}
			if strings.HasSuffix(d.name, "[x]") {
				d.choice = strings.TrimSuffix(d.name, "[x]")
			}
			if e.Required != "" {
				d.required = sets[e.Required]
			}
			v.children[e.Path[:i]] = append(v.children[e.Path[:i]], d)
		}
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

func (v *Validator) schema(rt string) (*jsonschema.Schema, error) {
	if s, ok := v.schemas.Load(rt); ok {
		return s.(*jsonschema.Schema), nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.schemas.Load(rt); ok {
		return s.(*jsonschema.Schema), nil
	}
	s, err := v.compiler.Compile(schemaURL + "#/definitions/" + rt)
	if err != nil {
		return nil, err
	}
	v.schemas.Store(rt, s)
	return s, nil
}

// Validate checks a resource tree (as produced by fhir.Parse) and returns every
// issue found; none means valid.
func (v *Validator) Validate(res map[string]any) []fhir.Issue {
	var issues []fhir.Issue
	v.validate(res, "", &issues)
	if len(issues) > maxIssues {
		issues = append(issues[:maxIssues], fhir.Issue{Severity: fhir.SeverityError, Code: "too-costly",
			Diagnostics: fmt.Sprintf("more than %d issues; the rest are not reported", maxIssues)})
	}
	return issues
}

// validate checks one resource whose FHIRPath location is prefix ("" for the
// top level, "ServiceRequest.contained[0]" for a contained one).
func (v *Validator) validate(res map[string]any, prefix string, issues *[]fhir.Issue) {
	rt, _ := res["resourceType"].(string)
	if prefix == "" {
		prefix = rt
	}
	if !v.Known(rt) {
		*issues = append(*issues, fhir.Issue{Severity: fhir.SeverityError, Code: "invalid", Diagnostics: fmt.Sprintf("unknown resourceType %q", rt), Expression: prefix + ".resourceType"})
		return
	}
	s, err := v.schema(rt)
	if err != nil {
		*issues = append(*issues, fhir.Issue{Severity: fhir.SeverityError, Code: "exception", Diagnostics: "no schema for " + rt, Expression: prefix})
		return
	}
	seen := map[string]bool{}
	if err := s.Validate(res); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			v.schemaIssues(ve, prefix, issues, seen)
		}
	}
	v.walk(res, rt, prefix, issues, seen)
	// Nested resources, each against its own type.
	nested := func(path string, r any) {
		if m, ok := r.(map[string]any); ok {
			v.validate(m, path, issues)
		}
	}
	if list, ok := res["contained"].([]any); ok {
		for i, c := range list {
			nested(prefix+".contained["+strconv.Itoa(i)+"]", c)
		}
	}
	if rt == "Bundle" {
		entries, _ := res["entry"].([]any)
		for i, e := range entries {
			if m, ok := e.(map[string]any); ok && m["resource"] != nil {
				nested(prefix+".entry["+strconv.Itoa(i)+"].resource", m["resource"])
			}
		}
	}
	if rt == "Parameters" {
		params, _ := res["parameter"].([]any)
		for i, p := range params {
			if m, ok := p.(map[string]any); ok && m["resource"] != nil {
				nested(prefix+".parameter["+strconv.Itoa(i)+"].resource", m["resource"])
			}
		}
	}
}

// schemaIssues turns the leaves of a schema validation error into issues.
func (v *Validator) schemaIssues(ve *jsonschema.ValidationError, prefix string, issues *[]fhir.Issue, seen map[string]bool) {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			v.schemaIssues(c, prefix, issues, seen)
		}
		return
	}
	expr := fhirPath(prefix, ve.InstanceLocation)
	code := "structure"
	msg := ve.ErrorKind.LocalizedString(v.printer)
	switch k := ve.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			e := fhirPath(prefix, append(append([]string{}, ve.InstanceLocation...), p))
			seen[e] = true
			*issues = append(*issues, fhir.Issue{Severity: fhir.SeverityError, Code: "structure", Diagnostics: fmt.Sprintf("unknown element %q", p), Expression: e})
		}
		return
	case *kind.Required:
		for _, p := range k.Missing {
			e := fhirPath(prefix, append(append([]string{}, ve.InstanceLocation...), p))
			seen[e] = true
			*issues = append(*issues, fhir.Issue{Severity: fhir.SeverityError, Code: "required", Diagnostics: fmt.Sprintf("missing required element %q", p), Expression: e})
		}
		return
	case *kind.Type:
		code = "value"
		msg = fmt.Sprintf("wrong JSON type: expected %s, got %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.Pattern:
		code = "value"
		msg = fmt.Sprintf("invalid value %s", quoteShort(k.Got))
	case *kind.Enum:
		code = "code-invalid"
		msg = fmt.Sprintf("invalid code %s", quoteShort(fmt.Sprint(k.Got)))
	}
	seen[expr] = true
	*issues = append(*issues, fhir.Issue{Severity: fhir.SeverityError, Code: code, Diagnostics: msg, Expression: expr})
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strconv.Quote(s)
}

// fhirPath renders a JSON instance location as a FHIRPath: array indexes in
// brackets, a primitive's extension (_birthDate) as the primitive (birthDate).
func fhirPath(prefix string, loc []string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, s := range loc {
		if _, err := strconv.Atoi(s); err == nil {
			b.WriteString("[" + s + "]")
			continue
		}
		b.WriteByte('.')
		b.WriteString(strings.TrimPrefix(s, "_"))
	}
	return b.String()
}

// walk checks obj, an instance of structure path def, against the table.
func (v *Validator) walk(obj map[string]any, def, fp string, issues *[]fhir.Issue, seen map[string]bool) {
	for _, e := range v.children[def] {
		if e.name == "id" && def == "Element" {
			continue
		}
		var keys []string
		var keyTypes []string
		if e.choice != "" {
			for k := range obj {
				if len(k) > len(e.choice) && strings.HasPrefix(k, e.choice) && unicode.IsUpper(rune(k[len(e.choice)])) {
					keys = append(keys, k)
					keyTypes = append(keyTypes, k[len(e.choice):])
				}
			}
			sort.Strings(keys)
		} else if _, ok := obj[e.name]; ok {
			keys, keyTypes = []string{e.name}, []string{""}
		}
		present := len(keys) > 0
		if !present && e.choice == "" {
			_, present = obj["_"+e.name]
		}
		where := fp + "." + strings.TrimSuffix(e.name, "[x]")
		if e.min > 0 && !present && !seen[where] {
			seen[where] = true
			*issues = append(*issues, fhir.Issue{Severity: fhir.SeverityError, Code: "required", Diagnostics: fmt.Sprintf("%s is required (minimum cardinality %d)", e.path, e.min), Expression: where})
		}
		if e.max == "0" && present {
			*issues = append(*issues, fhir.Issue{Severity: fhir.SeverityError, Code: "structure", Diagnostics: e.path + " is not allowed (maximum cardinality 0)", Expression: where})
		}
		for i, k := range keys {
			kp := fp + "." + k
			vals, isArr := obj[k].([]any)
			if !isArr {
				vals = []any{obj[k]}
			}
			for j, val := range vals {
				p := kp
				if isArr {
					p += "[" + strconv.Itoa(j) + "]"
				}
				if seen[p] {
					continue
				}
				v.element(e, keyTypes[i], val, p, issues, seen)
			}
		}
	}
}

// element checks one value of element e (typ is the choice type suffix, if any).
func (v *Validator) element(e *elementDef, typ string, val any, p string, issues *[]fhir.Issue, seen map[string]bool) {
	t := typ
	if t == "" && len(e.types) == 1 {
		t = e.types[0]
	}
	if e.required != nil {
		v.binding(e, t, val, p, issues)
	}
	obj, ok := val.(map[string]any)
	if !ok {
		return
	}
	switch {
	case e.ref != "":
		v.walk(obj, e.ref, p, issues, seen)
	case len(v.children[e.path]) > 0:
		v.walk(obj, e.path, p, issues, seen)
	case t == "Resource" || t == "":
		// nested resources are validated on their own; unknown types are the schema's
	default:
		if name := upperFirst(t); v.kinds[name] == "complex-type" {
			v.walk(obj, name, p, issues, seen)
		}
	}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// binding checks a value against a required value set.
func (v *Validator) binding(e *elementDef, t string, val any, p string, issues *[]fhir.Issue) {
	bad := func(code, system string) {
		*issues = append(*issues, fhir.Issue{Severity: fhir.SeverityError, Code: "code-invalid",
			Diagnostics: fmt.Sprintf("%q is not a valid code for %s (required binding)%s", code, e.path, systemNote(system)), Expression: p})
	}
	switch x := val.(type) {
	case string: // code
		for _, codes := range e.required {
			if codes[x] {
				return
			}
		}
		bad(x, "")
	case map[string]any:
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
				bad(code, sys)
			}
		}
	}
}

func systemNote(s string) string {
	if s == "" {
		return ""
	}
	return " in " + s
}
