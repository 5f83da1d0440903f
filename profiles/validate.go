package profiles

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"crs/fhir"
	"crs/fhir/fhirpath"
)

// Options say how a resource is checked.
type Options struct {
	// Mode is the interaction the resource is written by: "create" or "update"
	// (some invariants depend on it, e.g. a new care plan starts at 4 calls).
	Mode string
	// Strict applies the pathway profile of the resource's type whether or not
	// the resource claims it, and adds it to meta.profile when absent.
	Strict bool
	// Profile, when set, is the one profile to check against ($validate's
	// profile parameter); claims in meta.profile are then not checked.
	Profile string
}

// Reference is a reference found in a checked resource, with the types the
// profiles allow it to point to (none: any type).
type Reference struct {
	Expression string // FHIRPath of the Reference element
	Value      string // the reference string as written
	Allowed    []string
}

// Result is the outcome of a check.
type Result struct {
	Issues   []fhir.Issue        // errors reject the resource; warnings are reported with it
	Profiles []string            // the profiles checked
	Allowed  map[string][]string // reference element (FHIRPath) → the types its profile allows
}

// HasErrors reports whether any issue is an error (or fatal).
func (r Result) HasErrors() bool {
	for _, is := range r.Issues {
		if is.Severity == fhir.SeverityError || is.Severity == fhir.SeverityFatal {
			return true
		}
	}
	return false
}

// Applies reports whether the options would check a resource of this type at
// all (a profile is claimed, named or, in strict mode, the type has one).
func (s *Set) Applies(res fhir.Object, opt Options) bool {
	if opt.Profile != "" || len(claimed(res)) > 0 {
		return true
	}
	_, ok := s.pathway[fhir.ResourceType(res)]
	return opt.Strict && ok
}

// Check validates a resource (already through base validation) against the
// profiles that apply. In strict mode it adds the pathway profile to
// meta.profile when it is not there.
func (s *Set) Check(res fhir.Object, opt Options) Result {
	r := &run{set: s, mode: opt.Mode, allowed: map[string][]string{}}
	rt := fhir.ResourceType(res)
	var urls []string
	switch {
	case opt.Profile != "":
		urls = []string{opt.Profile}
	default:
		urls = claimed(res)
		if p, ok := s.pathway[rt]; ok && opt.Strict {
			if !contains(urls, p.URL) {
				urls = append(urls, p.URL)
				addProfile(res, p.URL)
			}
		}
	}
	var checked []string
	for _, u := range urls {
		url, _, _ := strings.Cut(u, "|")
		p, ok := s.profiles[url]
		switch {
		case !ok && opt.Profile != "":
			r.add(fhir.SeverityError, "not-supported", "", "profile %q is not known to this server", url)
			continue
		case !ok:
			r.add(fhir.SeverityWarning, "not-supported", rt+".meta.profile", "profile %q is not known to this server: the resource was not checked against it", url)
			continue
		case p.Type != rt:
			r.add(fhir.SeverityError, "invalid", rt+".meta.profile", "profile %q constrains %s, not %s", url, p.Type, rt)
			continue
		}
		checked = append(checked, url)
		r.profile(p, res, rt)
	}
	if len(checked) > 0 {
		r.extensions(res, rt, rt)
	}
	return Result{Issues: r.issues, Profiles: checked, Allowed: r.allowed}
}

func claimed(res fhir.Object) []string {
	meta, _ := res["meta"].(map[string]any)
	return strings1(meta["profile"])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func addProfile(res fhir.Object, url string) {
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		res["meta"] = meta
	}
	list, _ := meta["profile"].([]any)
	meta["profile"] = append(list, url)
}

// run is one check: its issues and what it learnt about references.
type run struct {
	set     *Set
	mode    string
	issues  []fhir.Issue
	allowed map[string][]string // reference element path → allowed types
}

func (r *run) add(sev fhir.Severity, code, expr, format string, args ...any) {
	r.issues = append(r.issues, fhir.Issue{Severity: sev, Code: code, Expression: expr, Diagnostics: fmt.Sprintf(format, args...)})
}

// node is a value in the resource with its FHIRPath location, built only
// when asked for (a report, a reference's element): building every value's
// path cost about a fifth of a profile check.
type node struct {
	v  any
	at loc
}

// loc is where a node is: a root path (root), or a key (and index, -1 for
// none) under its parent's location.
type loc struct {
	up   *loc
	key  string
	idx  int
	root bool
}

func (n node) path() string {
	var b strings.Builder
	n.at.write(&b)
	return b.String()
}

func (l *loc) write(b *strings.Builder) {
	if l.root {
		b.WriteString(l.key)
		return
	}
	l.up.write(b)
	writeStep(b, l.key, l.idx)
}

// writeStep writes one step of a FHIRPath to b: ".key" unless key is empty,
// then "[idx]" when idx is not negative.
func writeStep(b *strings.Builder, key string, idx int) {
	if key != "" {
		b.WriteByte('.')
		b.WriteString(key)
	}
	if idx >= 0 {
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(idx))
		b.WriteByte(']')
	}
}

// nodes finds the values of an element id, memoised per profile walk.
type walker struct {
	p     *Profile
	root  node
	cache map[string][]node
}

func (w *walker) nodes(id string) []node {
	if id == w.p.Type {
		return []node{w.root}
	}
	if ns, ok := w.cache[id]; ok {
		return ns
	}
	parent, last := splitID(id)
	var out []node
	for _, n := range w.nodes(parent) {
		out = append(out, w.children(n, parent, last)...)
	}
	w.cache[id] = out
	return out
}

// children returns the values of one segment ("identifier", "value[x]",
// "extension:locality") under n, whose element id is parentID.
func (w *walker) children(n node, parentID, seg string) []node {
	m, ok := n.v.(map[string]any)
	if !ok {
		return nil
	}
	name, slice, _ := strings.Cut(seg, ":")
	var out []node
	up := &n.at
	addValue := func(key string, v any) {
		if list, ok := v.([]any); ok {
			if out == nil {
				out = make([]node, 0, len(list))
			}
			for i, x := range list {
				out = append(out, node{x, loc{up: up, key: key, idx: i}})
			}
			return
		}
		out = append(out, node{v, loc{up: up, key: key, idx: -1}})
	}
	if strings.HasSuffix(name, "[x]") {
		prefix := strings.TrimSuffix(name, "[x]")
		for _, k := range sortedMapKeys(m) {
			if len(k) > len(prefix) && strings.HasPrefix(k, prefix) && k[len(prefix)] >= 'A' && k[len(prefix)] <= 'Z' {
				addValue(k, m[k])
			}
		}
	} else if v, ok := m[name]; ok {
		addValue(name, v)
	}
	if slice == "" {
		return out
	}
	match, err := w.p.sliceMatcher(parentID + "." + seg)
	if err != nil {
		return nil // compile refused such profiles
	}
	kept := out[:0]
	for _, c := range out {
		if match(c.v) {
			kept = append(kept, c)
		}
	}
	return kept
}

func sortedMapKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// holds evaluates constraint c on n: its Go implementation, or its FHIRPath
// expression, which holds when it gives true.
func (r *run) holds(c Constraint, n node) (bool, string) {
	if inv, ok := invariants[c.Key]; ok {
		return inv(r, n)
	}
	got := c.expr.EvalFocus([]fhirpath.Item{{Value: n.v}})
	if len(got) == 1 {
		if b, ok := got[0].Value.(bool); ok {
			return b, ""
		}
	}
	return false, ""
}

// profile checks the value at root (a resource, or an extension) against p.
func (r *run) profile(p *Profile, v any, rootPath string) {
	w := &walker{p: p, root: node{v, loc{key: rootPath, root: true}}, cache: make(map[string][]node, len(p.order))}
	for _, el := range p.order {
		if el.ID != p.Type {
			r.cardinality(w, el)
		}
		nodes := w.nodes(el.ID)
		if el.Slicing != nil && el.Slicing.Rules == "closed" {
			r.closed(w, el, nodes)
		}
		for _, n := range nodes {
			r.element(el, n)
		}
		for _, c := range el.Constraints {
			for _, n := range nodes {
				if ok, detail := r.holds(c, n); !ok {
					msg := c.Human
					if detail != "" {
						msg += ": " + detail
					}
					r.issues = append(r.issues, fhir.Issue{Severity: severity(c.Severity), Code: "invariant", Expression: n.path(),
						Diagnostics: msg + " (" + c.Key + ", " + p.Title + ")"})
				}
			}
		}
	}
}

func severity(s string) fhir.Severity {
	if s == "warning" {
		return fhir.SeverityWarning
	}
	return fhir.SeverityError
}

func (r *run) cardinality(w *walker, el *Element) {
	if !el.MinSet && el.Max == "" {
		return
	}
	parent, last := splitID(el.ID)
	max := -1
	if el.Max != "" && el.Max != "*" {
		max, _ = strconv.Atoi(el.Max)
	}
	name, _, _ := strings.Cut(last, ":")
	for _, n := range w.nodes(parent) {
		if _, isMap := n.v.(map[string]any); !isMap {
			continue
		}
		got := len(w.children(n, parent, last))
		if el.Min <= got && (max < 0 || got <= max) {
			continue // built below only for a report: most values are fine
		}
		what := n.path() + "." + strings.TrimSuffix(name, "[x]")
		if el.SliceName != "" {
			what = n.path() + "." + name
		}
		label := last
		if el.Min > got {
			r.add(fhir.SeverityError, "required", what, "%s: at least %d %s required, %d found (%s)", w.p.Title, el.Min, plural(el.Min, label), got, el.ID)
		}
		if max >= 0 && got > max {
			if max == 0 {
				r.add(fhir.SeverityError, "structure", what, "%s: %s is not allowed (%s)", w.p.Title, label, el.ID)
			} else {
				r.add(fhir.SeverityError, "structure", what, "%s: at most %d %s allowed, %d found (%s)", w.p.Title, max, plural(max, label), got, el.ID)
			}
		}
	}
}

func plural(n int, label string) string {
	if n == 1 {
		return label
	}
	return label + " values"
}

// closed reports repetitions of a closed slicing that belong to no slice.
func (r *run) closed(w *walker, el *Element, nodes []node) {
	var matchers []func(any) bool
	for _, other := range w.p.order {
		if other.SliceName != "" && strings.HasPrefix(other.ID, el.ID+":") && !strings.Contains(other.ID[len(el.ID)+1:], ".") {
			if m, err := w.p.sliceMatcher(other.ID); err == nil {
				matchers = append(matchers, m)
			}
		}
	}
	for _, n := range nodes {
		found := false
		for _, m := range matchers {
			if m(n.v) {
				found = true
				break
			}
		}
		if !found {
			r.add(fhir.SeverityError, "structure", n.path(), "%s: %s does not match any of the slices the profile allows (%s)", w.p.Title, n.path(), el.ID)
		}
	}
}

// element checks one value against fixed and pattern values, a required binding
// and reference target types.
func (r *run) element(el *Element, n node) {
	if el.Fixed != nil && !fhir.EqualJSON(n.v, el.Fixed) {
		r.add(fhir.SeverityError, "value", n.path(), "the value must be exactly %s (%s of %s)", compact(el.Fixed), el.FixedKey, el.ID)
	}
	if el.Pattern != nil && !containsPattern(n.v, el.Pattern) {
		r.add(fhir.SeverityError, "value", n.path(), "the value must contain %s (%s of %s)", compact(el.Pattern), el.PatternKey, el.ID)
	}
	if b := el.Binding; b != nil && b.Strength == "required" {
		if vs, ok := r.set.ValueSet(b.ValueSet); ok && vs.Complete {
			r.binding(vs, n)
		}
	}
	for _, t := range el.Types {
		if t.Code == "Reference" && len(t.TargetProfiles) > 0 {
			allowed := r.set.targetTypes(t.TargetProfiles)
			r.allowed[n.path()] = allowed
			r.referenceType(n, allowed)
		}
	}
}

// binding checks a code, Coding or CodeableConcept against a required value set.
func (r *run) binding(vs *ValueSet, n node) {
	switch v := n.v.(type) {
	case string:
		if !vs.Contains("", v) {
			r.add(fhir.SeverityError, "code-invalid", n.path(), "code %q is not in value set %s", v, vs.URL)
		}
	case map[string]any:
		if codings, ok := v["coding"].([]any); ok || v["text"] != nil {
			for _, c := range codings {
				cm, _ := c.(map[string]any)
				if vs.Contains(str(cm["system"]), str(cm["code"])) {
					return
				}
			}
			r.add(fhir.SeverityError, "code-invalid", n.path(), "none of the codings is in value set %s", vs.URL)
			return
		}
		if !vs.Contains(str(v["system"]), str(v["code"])) || str(v["system"]) == "" {
			r.add(fhir.SeverityError, "code-invalid", n.path(), "%s|%s is not in value set %s", str(v["system"]), str(v["code"]), vs.URL)
		}
	}
}

// targetTypes turns target profiles into resource types.
func (s *Set) targetTypes(profiles []string) []string {
	var out []string
	for _, u := range profiles {
		if p, ok := s.profiles[u]; ok {
			out = append(out, p.Type)
		} else if t, ok := strings.CutPrefix(u, "http://hl7.org/fhir/StructureDefinition/"); ok {
			out = append(out, t)
		} else {
			return nil // a profile we do not know: any type
		}
	}
	return out
}

// referenceType checks the type a literal reference names. urn:uuid references
// (resolved later in a transaction) and contained ones ("#x") are left to the
// reference resolution.
func (r *run) referenceType(n node, allowed []string) {
	m, _ := n.v.(map[string]any)
	ref := str(m["reference"])
	if ref == "" || len(allowed) == 0 {
		return
	}
	typ, _, ok := ReferenceTarget(ref)
	if !ok {
		return
	}
	if !contains(allowed, typ) {
		r.add(fhir.SeverityError, "invalid", n.path()+".reference", "a reference to %s is not allowed here: it must be to %s", typ, strings.Join(allowed, " or "))
	}
}

// ReferenceTarget reads the type and id of a literal reference to a resource
// ("Patient/1", "Patient/1/_history/2" or an absolute URL ending so). It reports
// false for urn: and contained ("#") references and anything else.
func ReferenceTarget(ref string) (typ, id string, ok bool) {
	if strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return "", "", false
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	// An absolute URL: its last two segments are Type/id.
	if j := strings.LastIndexByte(ref, '/'); j > 0 {
		if k := strings.LastIndexByte(ref[:j], '/'); k >= 0 {
			ref = ref[k+1:]
		}
	}
	r, ok := fhir.ParseReference(ref, "")
	return r.Type, r.ID, ok
}

// extensions checks every extension the server defines wherever it is used.
func (r *run) extensions(v any, path, rt string) {
	r.extensionsAt(v, &extPath{root: path}, rt)
}

// extPath is the FHIRPath of a value extensions walks through, built only
// for the extensions it finds: building it for every value cost a tenth of
// a profile check.
type extPath struct {
	root string
	segs []extSeg
}

type extSeg struct {
	key string // "" for an index only
	idx int    // -1: none
}

func (p *extPath) String() string {
	var b strings.Builder
	b.WriteString(p.root)
	for _, s := range p.segs {
		writeStep(&b, s.key, s.idx)
	}
	return b.String()
}

func (p *extPath) push(key string, idx int) { p.segs = append(p.segs, extSeg{key, idx}) }
func (p *extPath) pop()                     { p.segs = p.segs[:len(p.segs)-1] }

func (r *run) extensionsAt(v any, path *extPath, rt string) {
	switch x := v.(type) {
	case map[string]any:
		// Only objects and arrays can hold an extension; in key order, so
		// that the issues come in the same order every time.
		keys := make([]string, 0, len(x))
		for k, c := range x {
			switch c.(type) {
			case map[string]any, []any:
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			child := x[k]
			if k == "extension" || k == "modifierExtension" {
				list, _ := child.([]any)
				for i, e := range list {
					em, _ := e.(map[string]any)
					path.push(k, i)
					if def, ok := r.set.profiles[str(em["url"])]; ok && def.Type == "Extension" {
						p := path.String()
						path.pop()
						parent := path.String()
						path.push(k, i)
						r.context(def, parent, rt, p)
						r.profile(def, em, p)
					}
					r.extensionsAt(em, path, rt)
					path.pop()
				}
				continue
			}
			if k == "contained" {
				continue // contained resources are checked as themselves, not as part of this one
			}
			path.push(k, -1)
			r.extensionsAt(child, path, rt)
			path.pop()
		}
	case []any:
		for i, e := range x {
			path.push("", i)
			r.extensionsAt(e, path, rt)
			path.pop()
		}
	}
}

// context checks that an extension is used where its definition allows: on the
// resource itself when its context names the resource type.
func (r *run) context(def *Profile, parentPath, rt, at string) {
	if len(def.Contexts) == 0 {
		return
	}
	elem := stripIndexes(parentPath)
	for _, c := range def.Contexts {
		if c == elem || c == "Element" || c == "Resource" || c == "DomainResource" {
			return
		}
	}
	r.add(fhir.SeverityError, "structure", at, "extension %s may be used on %s, not on %s", def.URL, strings.Join(def.Contexts, ", "), elem)
}

func stripIndexes(p string) string {
	var b strings.Builder
	depth := 0
	for _, c := range p {
		switch {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth == 0:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// References lists every literal reference in a resource (outside contained
// resources), with the types allowed, keyed by element as in Result.Allowed.
func References(res fhir.Object, allowed map[string][]string) []Reference {
	var out []Reference
	collectReferences(res, fhir.ResourceType(res), allowed, &out)
	return out
}

func collectReferences(v any, path string, allowed map[string][]string, out *[]Reference) {
	switch x := v.(type) {
	case map[string]any:
		if ref, ok := x["reference"].(string); ok {
			*out = append(*out, Reference{Expression: path, Value: ref, Allowed: allowed[path]})
		}
		for _, k := range sortedMapKeys(x) {
			if k == "contained" {
				continue
			}
			collectReferences(x[k], path+"."+k, allowed, out)
		}
	case []any:
		for i, e := range x {
			collectReferences(e, path+"["+strconv.Itoa(i)+"]", allowed, out)
		}
	}
}

// compact renders a value as compact JSON, for messages and documentation.
func compact(v any) string {
	data, err := fhir.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}
