package validate

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/fhirpath"
)

// An invariant checks one R4 constraint on obj, an instance of the structure or
// element that declares it. It returns false, with an optional detail, when
// obj breaks the rule.
type invariant func(obj map[string]any) (ok bool, detail string)

// byExpression are the R4 constraints whose own FHIRPath expression (from the
// generated table) the subset of fhir/fhirpath evaluates: crs runs the spec's
// expression, compiled once by New, and the constraint holds when it gives
// true.
var byExpression = []string{"pat-1", "prr-1", "cpl-3", "org-2", "org-3", "cpt-2", "qty-3", "att-1", "exp-1",
	"tim-1", "tim-2", "tim-6", "tim-7", "tim-8", "tim-10"}

// invariants are the other R4 constraints of the served types (and of the data
// types they use) that crs checks, in Go where the subset lacks what their
// expression uses (implies, xor, comparisons, arithmetic, %ucum, descendants()),
// keyed by constraint key. The structures declare
// where each applies (the generated table keeps the keys by element); a
// declared key not here is not checked, and notChecked says why
// (TestEveryInvariantAccountedFor keeps the two lists complete). ele-1, ext-1,
// ref-1, dom-2…dom-5 and txt-1/txt-2 are checked by the walk itself (they are
// about shape, references, contained resources and narrative), see structural.
var invariants = map[string]invariant{
	"per-1": periodOrdered,
	"rng-2": rangeOrdered,
	"age-1": ucumQuantity(true),
	"cnt-3": countQuantity,
	"dis-1": ucumQuantity(false),
	"drt-1": func(o map[string]any) (bool, string) {
		return absent(o, "code") || (str(o, "system") == ucum && has(o, "value")), ""
	},
	"rat-1": func(o map[string]any) (bool, string) {
		return has(o, "numerator") == has(o, "denominator") && (has(o, "numerator") || has(o, "extension")), ""
	},
	"tim-4": func(o map[string]any) (bool, string) { return notNegative(o, "duration"), "" },
	// grp-1: member.empty() or (actual = true): only an actual group lists members.
	"grp-1": func(o map[string]any) (bool, string) { return absent(o, "member") || o["actual"] == true, "" },
	"tim-5": func(o map[string]any) (bool, string) { return notNegative(o, "period"), "" },
	"tim-9": timingOffset,
	"drq-1": func(o map[string]any) (bool, string) { return has(o, "path") != has(o, "searchParam"), "" },
	"drq-2": func(o map[string]any) (bool, string) { return has(o, "path") != has(o, "searchParam"), "" },
	"trd-1": func(o map[string]any) (bool, string) { return absent(o, "data") || !hasChoice(o, "timing"), "" },
	"trd-2": func(o map[string]any) (bool, string) { return absent(o, "condition") || has(o, "data"), "" },
	"trd-3": func(o map[string]any) (bool, string) {
		typ := str(o, "type")
		return (typ != "named-event" || has(o, "name")) && (typ != "periodic" || hasChoice(o, "timing")) &&
			(!strings.HasPrefix(typ, "data-") || has(o, "data")), ""
	},
	// The served resource types' own.
	"org-1": func(o map[string]any) (bool, string) { return has(o, "identifier") || has(o, "name"), "" },
	"gol-1": func(o map[string]any) (bool, string) { return !hasChoice(o, "detail") || has(o, "measure"), "" },
	"ctm-1": careTeamOnBehalfOf,
}

// structural are the constraints the walk checks where it sees their subject
// rather than through the invariants map.
var structural = map[string]string{
	"ele-1": "every element has a value or children: empty objects, arrays, strings and nulls are refused",
	"ext-1": "an extension has a value or nested extensions, not both (and a top-level extension an absolute url)",
	"ref-1": "a local reference (#id) names a contained resource; reference syntax and target types are checked with it",
	"dom-2": "a contained resource contains no resources",
	"dom-3": "every contained resource is referenced from the rest of the resource (or refers to it)",
	"dom-4": "a contained resource has no meta.versionId or meta.lastUpdated",
	"dom-5": "a contained resource has no meta.security",
	"txt-1": "the narrative is XHTML with only the allowed elements and attributes",
	"txt-2": "the narrative has non-whitespace content",
}

// notChecked are the R4 constraints reachable from the served types that crs
// does not check, with why. The README lists them.
var notChecked = map[string]string{
	"dom-6": "a best-practice warning (a resource should have a narrative); crs does not warn about it",
	"inv-1": "R4 uses this key twice (Task: lastModified on or after authoredOn; Parameters: one of value, resource or part) and constraints are keyed by key; neither is checked",
}

const ucum = "http://unitsofmeasure.org"

// invariant runs the constraint key on obj at fp, if crs checks it.
func (r *run) invariant(key string, obj map[string]any, fp string) {
	if ok, detail, checked := r.v.holds(key, obj); checked && !ok {
		r.violated(key, fp, detail)
	}
}

// holds evaluates constraint key on obj; checked is false when crs does not
// check key.
func (v *Validator) holds(key string, obj map[string]any) (ok bool, detail string, checked bool) {
	if e, found := v.exprs[key]; found {
		got := e.EvalFocus([]fhirpath.Item{{Value: obj}})
		b, isBool := false, len(got) == 1
		if isBool {
			b, isBool = got[0].Value.(bool)
		}
		return isBool && b, "", true
	}
	if check, found := invariants[key]; found {
		ok, detail := check(obj)
		return ok, detail, true
	}
	return true, "", false
}

// compileInvariants compiles the expressions of byExpression.
func (v *Validator) compileInvariants() error {
	v.exprs = map[string]*fhirpath.Expr{}
	for _, key := range byExpression {
		c, ok := v.constraints[key]
		if !ok {
			return fmt.Errorf("no R4 constraint %s", key)
		}
		e, err := fhirpath.Compile(c.Expression)
		if err != nil {
			return fmt.Errorf("constraint %s (%s): %v", key, c.Expression, err)
		}
		v.exprs[key] = e
	}
	return nil
}

// violated reports a broken constraint, with the spec's words for it.
func (r *run) violated(key, fp, detail string) {
	c := r.v.constraints[key]
	msg := c.Human
	if detail != "" {
		msg += ": " + detail
	}
	sev := fhir.SeverityError
	if c.Severity == "warning" {
		sev = fhir.SeverityWarning
	}
	r.issues = append(r.issues, fhir.Issue{Severity: sev, Code: "invariant", Expression: fp, Diagnostics: msg + " (" + key + ")"})
}

// has reports whether element k is in o (a value, or a primitive's companion).
func has(o map[string]any, k string) bool {
	if _, ok := o[k]; ok {
		return true
	}
	_, ok := o["_"+k]
	return ok
}

// hasChoice reports whether choice element k[x] is in o under any type
// ("detail" as detailQuantity, detailString …).
func hasChoice(o map[string]any, k string) bool {
	for name := range o {
		name = strings.TrimPrefix(name, "_")
		if len(name) > len(k) && strings.HasPrefix(name, k) && name[len(k)] >= 'A' && name[len(k)] <= 'Z' {
			return true
		}
	}
	return false
}

func absent(o map[string]any, k string) bool { return !has(o, k) }

func str(o map[string]any, k string) string {
	s, _ := o[k].(string)
	return s
}

func number(o map[string]any, k string) (*big.Float, bool) {
	n, ok := o[k].(json.Number)
	if !ok {
		return nil, false
	}
	f, _, err := big.ParseFloat(string(n), 10, 128, big.ToNearestEven)
	return f, err == nil
}

func notNegative(o map[string]any, k string) bool {
	f, ok := number(o, k)
	return !ok || f.Sign() >= 0
}

// ucumQuantity is age-1 and dis-1: a code with any value, UCUM as the system,
// and (for an Age) a positive value.
func ucumQuantity(positive bool) invariant {
	return func(o map[string]any) (bool, string) {
		if has(o, "value") && absent(o, "code") {
			return false, "a value needs a code"
		}
		if has(o, "system") && str(o, "system") != ucum {
			return false, "the system must be " + ucum
		}
		if f, ok := number(o, "value"); positive && ok && f.Sign() <= 0 {
			return false, "the value must be above zero"
		}
		return true, ""
	}
}

func countQuantity(o map[string]any) (bool, string) {
	if ok, d := ucumQuantity(false)(o); !ok {
		return ok, d
	}
	if has(o, "code") && str(o, "code") != "1" {
		return false, "the code must be 1"
	}
	if f, ok := number(o, "value"); ok && !f.IsInt() {
		return false, "the value must be a whole number"
	}
	return true, ""
}

func timingOffset(o map[string]any) (bool, string) {
	if absent(o, "offset") {
		return true, ""
	}
	when, _ := o["when"].([]any)
	if len(when) == 0 {
		return false, ""
	}
	for _, w := range when {
		switch w {
		case "C", "CM", "CD", "CV":
			return false, fmt.Sprintf("an offset cannot apply to when = %v", w)
		}
	}
	return true, ""
}

// careTeamOnBehalfOf is ctm-1: onBehalfOf only when the member is a
// Practitioner (told from the reference: crs does not fetch the target).
func careTeamOnBehalfOf(o map[string]any) (bool, string) {
	if absent(o, "onBehalfOf") {
		return true, ""
	}
	m, _ := o["member"].(map[string]any)
	ref, _ := m["reference"].(string)
	if ref == "" {
		return true, "" // resolve() is empty: iif(empty(), true, …)
	}
	typ, _, ok := referenceType(ref)
	return !ok || typ == "Practitioner", "the member is a " + typ
}

// periodOrdered is per-1: start <= end, compared as FHIRPath compares dates:
// on the time line when both have a time (zones taken into account), else
// part by part down to the coarser precision. Two values equal down to that
// precision but of different precisions (2026-06-21 and 2026-06-21T06:20Z)
// compare as unknown, and an invariant that is not true fails: this is also
// the reference validator's verdict.
func periodOrdered(o map[string]any) (bool, string) {
	start, end := str(o, "start"), str(o, "end")
	if start == "" || end == "" {
		return true, ""
	}
	switch compareDateTimes(start, end) {
	case 1:
		return false, fmt.Sprintf("start %s is after end %s", start, end)
	case 2:
		return false, fmt.Sprintf("start %s and end %s are equal to the precision of the coarser one, so which comes first is unknown", start, end)
	}
	return true, ""
}

// compareDateTimes compares two valid FHIR dateTimes: -1, 0 or 1 as a is
// before, equal to or after b; 2 when it cannot be told (different precisions).
func compareDateTimes(a, b string) int {
	if len(a) > 10 && len(b) > 10 {
		ta, errA := time.Parse(time.RFC3339Nano, a)
		tb, errB := time.Parse(time.RFC3339Nano, b)
		if errA == nil && errB == nil {
			return ta.Compare(tb)
		}
	}
	n := min(len(a), len(b), 10)
	if c := strings.Compare(a[:n], b[:n]); c != 0 {
		return c
	}
	if len(a) != len(b) && (len(a) <= 10 || len(b) <= 10) {
		return 2
	}
	return 0
}

// rangeOrdered is rng-2: low ≤ high, when both have a value in the same unit.
func rangeOrdered(o map[string]any) (bool, string) {
	low, _ := o["low"].(map[string]any)
	high, _ := o["high"].(map[string]any)
	if low == nil || high == nil {
		return true, ""
	}
	l, ok1 := number(low, "value")
	h, ok2 := number(high, "value")
	if !ok1 || !ok2 || str(low, "code") != str(high, "code") || str(low, "unit") != str(high, "unit") && str(low, "code") == "" {
		return true, ""
	}
	if l.Cmp(h) > 0 {
		return false, fmt.Sprintf("low %s is above high %s", l.Text('g', 20), h.Text('g', 20))
	}
	return true, ""
}

// referenceType returns the resource type and id a literal reference names
// (relative "Type/id[/_history/v]" or an absolute RESTful URL); ok is false
// for anything else.
func referenceType(ref string) (typ, id string, ok bool) {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 {
		return "", "", false
	}
	id = ref[j+1:]
	rest := ref[:j]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	return typ, id, typ != "" && typ[0] >= 'A' && typ[0] <= 'Z' && validID(id)
}

// reference checks a Reference: ref-1 (a local reference names a contained
// resource), the syntax of its reference and the types the element allows.
func (r *run) reference(e *elementDef, obj map[string]any, fp string) {
	ref, ok := obj["reference"].(string)
	if !ok || ref == "" {
		return
	}
	p := fp + ".reference"
	switch {
	case ref == "#":
		if r.root != nil && r.inContained >= 0 {
			r.root.selfRef[r.inContained] = true
		}
		return
	case ref[0] == '#':
		if r.root != nil {
			r.root.localRefs[ref[1:]] = true
		}
		if r.root == nil || !r.root.contained[ref[1:]] {
			r.violated("ref-1", p, fmt.Sprintf("there is no contained resource with id %q", ref[1:]))
		}
		return
	case strings.HasPrefix(ref, "urn:uuid:"):
		if !validUUID(ref) {
			r.add("value", p, "reference %s is not a valid urn:uuid: (lower-case UUID, 8-4-4-4-12 hex digits)", quoteShort(ref))
		}
		return
	case strings.HasPrefix(ref, "urn:oid:"):
		if !validOID(ref) {
			r.add("value", p, "reference %s is not a valid urn:oid:", quoteShort(ref))
		}
		return
	case strings.HasPrefix(ref, "urn:"):
		return
	}
	if t, q, cond := strings.Cut(ref, "?"); cond && !strings.Contains(t, "/") {
		// A conditional reference ("Patient?identifier=…"): resolved in a
		// transaction; its type is still checked.
		if !r.v.Known(t) {
			r.add("value", p, "conditional reference %s names no resource type", quoteShort(ref))
		} else if q == "" {
			r.add("value", p, "conditional reference %s has no search criteria", quoteShort(ref))
		} else {
			r.targetAllowed(e, t, p)
		}
		return
	}
	absolute := strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://")
	typ, _, ok := referenceType(ref)
	if absolute {
		if ok && r.v.Known(typ) {
			r.targetAllowed(e, typ, p)
		}
		return
	}
	rest := ref
	if i := strings.Index(rest, "/_history/"); i >= 0 {
		if !validID(rest[i+len("/_history/"):]) {
			ok = false
		}
		rest = rest[:i]
	}
	if !ok || strings.Count(rest, "/") != 1 {
		r.add("value", p, "reference %s is not a valid reference: expected Type/id, Type/id/_history/version, #id, an absolute URL or urn:uuid:", quoteShort(ref))
		return
	}
	if !r.v.Known(typ) {
		r.add("value", p, "reference %s: %q is not a resource type", quoteShort(ref), typ)
		return
	}
	r.targetAllowed(e, typ, p)
}

// pathwayTargets are reference targets the pathway's profiles use beyond what
// R4 allows. R4 has CarePlan.basedOn as Reference(CarePlan) only, while the
// pathway's CRS-CarePlan profile makes every care plan based on its referral, a
// ServiceRequest (as R5 allows). Until the profile changes, base validation
// accepts that one widening; every other reference keeps the R4 targets.
var pathwayTargets = map[string]string{
	"CarePlan.basedOn": "ServiceRequest",
}

func (r *run) targetAllowed(e *elementDef, typ, p string) {
	if len(e.targets) == 0 || pathwayTargets[e.path] == typ {
		return
	}
	for _, t := range e.targets {
		if t == typ || t == "Resource" {
			return
		}
	}
	r.add("structure", p, "%s cannot refer to a %s: its target must be %s", e.path, typ, strings.Join(e.targets, " or "))
}

// extension checks ext-1 (a value or nested extensions, not both) and that the
// url of a top-level extension is absolute (nested ones may be names).
func (r *run) extension(obj map[string]any, fp string, nested bool) {
	values := 0
	for k := range obj {
		k = strings.TrimPrefix(k, "_")
		if len(k) > 5 && strings.HasPrefix(k, "value") && k[5] >= 'A' && k[5] <= 'Z' {
			values++
		}
	}
	_, hasExt := obj["extension"]
	switch {
	case hasExt && values > 0:
		r.violated("ext-1", fp, "this one has both")
	case !hasExt && values == 0:
		r.violated("ext-1", fp, "this one has neither")
	}
	if url, ok := obj["url"].(string); ok && !nested && url != "" {
		if !strings.Contains(url, ":") {
			r.add("value", fp+".url", "extension url %s must be an absolute URL", quoteShort(url))
		}
	}
}

// domainInvariants checks dom-2, dom-4 and dom-5 for a contained resource.
func (r *run) domainInvariants(res map[string]any, fp string) {
	if _, ok := res["contained"]; ok {
		r.violated("dom-2", fp+".contained", "")
	}
	meta, _ := res["meta"].(map[string]any)
	if has(meta, "versionId") || has(meta, "lastUpdated") {
		r.violated("dom-4", fp+".meta", "")
	}
	if has(meta, "security") {
		r.violated("dom-5", fp+".meta.security", "")
	}
}

// containedReferenced checks dom-3 and unique ids for the contained resources
// of a resource, once the whole resource has been walked.
func (r *run) containedReferenced(res map[string]any, fp string) {
	list, _ := res["contained"].([]any)
	seen := map[string]int{}
	for i, c := range list {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		p := fp + ".contained[" + strconv.Itoa(i) + "]"
		id, _ := m["id"].(string)
		if id == "" {
			r.add("required", p+".id", "a contained resource needs an id, to be referenced by (dom-3)")
			continue
		}
		if j, dup := seen[id]; dup {
			r.add("structure", p+".id", "contained resources %d and %d have the same id %q", j, i, id)
		}
		seen[id] = i
		if !r.root.localRefs[id] && !r.root.selfRef[i] {
			r.violated("dom-3", p, fmt.Sprintf("nothing refers to #%s", id))
		}
	}
}
