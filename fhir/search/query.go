package search

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"crs/fhir"
)

// ParseOptions control ParseQuery.
type ParseOptions struct {
	// Lenient drops unknown parameters instead of rejecting them (Prefer:
	// handling=lenient). Known parameters the server does not support, bad
	// modifiers and bad values are errors either way.
	Lenient bool
	// DefaultCount is the page size when _count is absent (20 when not set or
	// above MaxCount).
	DefaultCount int
	// MaxCount is the largest page size; a larger _count is clamped to it (500
	// when not set).
	MaxCount int
	// Limits bounds the size of a query before any store sees it; a zero
	// field takes its value from DefaultLimits.
	Limits Limits
}

// Limits bound a query's size. Each one exceeded is an Invalid error naming
// the limit, so no query can make a store build an unbounded statement.
// Repeated identical name=value pairs count once (they are dropped: ANDing a
// condition with itself, or including the same thing twice, changes nothing).
type Limits struct {
	MaxRepeats  int // times one search parameter name may appear (each appearance is ANDed)
	MaxParams   int // search parameters (ANDed) in one query, all names together
	MaxOr       int // comma-separated (ORed) values in one parameter
	MaxValues   int // values of every search parameter of the query together
	MaxIncludes int // _include and _revinclude parameters together
	MaxChain    int // links of a chain or reverse chain (subject.organization.name is 2)
	MaxChained  int // chained and reverse-chained (_has) parameters in one query
	MaxSort     int // keys of _sort
}

// DefaultLimits are the limits a query gets when ParseOptions leaves them
// zero: generous for any real client (1,000 ids in one _id, a date range
// and a few more conditions on one parameter) and bounded in cost: every
// ANDed parameter is a probe per candidate and every OR value a term SQLite
// plans, so the count of parameters is what bounds a query over many
// matches (BenchmarkLargeQuery in fhir/store/sqlite measures them).
var DefaultLimits = Limits{MaxRepeats: 20, MaxParams: 50, MaxOr: 1000, MaxValues: 1000, MaxIncludes: 20, MaxChain: 4, MaxChained: 20, MaxSort: 8}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&l.MaxRepeats, DefaultLimits.MaxRepeats}, {&l.MaxParams, DefaultLimits.MaxParams}, {&l.MaxOr, DefaultLimits.MaxOr}, {&l.MaxValues, DefaultLimits.MaxValues},
		{&l.MaxIncludes, DefaultLimits.MaxIncludes}, {&l.MaxChain, DefaultLimits.MaxChain}, {&l.MaxSort, DefaultLimits.MaxSort},
		{&l.MaxChained, DefaultLimits.MaxChained},
	} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	return l
}

// The modifiers of the R4 search page, by parameter type: those the server
// evaluates, and those R4 defines that it does not (a query using one is
// answered "not supported"). A reference parameter also takes one of its
// target types as modifier (subject:Patient).
var (
	modifiers = map[fhir.ParamType][]string{
		fhir.TypeToken:     {"missing", "not", "text", "of-type"},
		fhir.TypeString:    {"missing", "exact", "contains"},
		fhir.TypeDate:      {"missing"},
		fhir.TypeNumber:    {"missing"},
		fhir.TypeQuantity:  {"missing"},
		fhir.TypeReference: {"missing", "identifier"},
		fhir.TypeURI:       {"missing", "below", "above"},
	}
	notYetModifiers = map[fhir.ParamType][]string{
		fhir.TypeToken:     {"above", "below", "in", "not-in"},
		fhir.TypeReference: {"above", "below"},
	}
	knownModifiers = map[string]bool{
		"missing": true, "exact": true, "contains": true, "not": true, "text": true, "above": true, "below": true,
		"in": true, "not-in": true, "of-type": true, "identifier": true, "type": true, "iterate": true,
	}
)

// notYet are the parameters of the R4 search page that this server does not
// evaluate: a query using one is answered 400 "not supported", never ignored,
// even under lenient handling.
var notYet = map[string]bool{
	"_contained": true, "_containedType": true, "_text": true, "_content": true, "_list": true,
	"_query": true, "_filter": true, "_type": true, "_score": true,
}

// ParseQuery parses the name/value pairs of a search on resourceType into a
// fhir.Query, once: the backends only translate it.
//
// Supported: every parameter type with its values (comma-separated values are
// ORed, repeated parameters ANDed, \, \| \$ \\ escape), the prefixes eq ne gt
// lt ge le sa eb ap on date, number and quantity, the modifiers of the
// modifiers table (unknown or misplaced ones are Invalid), chained parameters
// (subject.name, subject:Patient.name), reverse chains (_has), _include and
// _revinclude (with :iterate), _count (clamped to MaxCount), _sort, _total,
// _summary, _elements and _cursor (copied to Query.Cursor). _format and
// _pretty are left to the HTTP layer.
//
// Errors name the parameter as their expression: Invalid for a client's
// mistake (an unknown parameter unless opt.Lenient, a bad value or modifier),
// NotSupported for what the server does not do (composite parameters,
// _contained, _filter, ...).
//
// Query.Raw keeps the parameters as given, in order, less _cursor, _format,
// _pretty and dropped unknown ones, with _count as clamped: FormatQuery builds
// the self and next links from it.
func (r *Registry) ParseQuery(resourceType string, params []fhir.RawParam, opt ParseOptions) (*fhir.Query, error) {
	if opt.MaxCount <= 0 {
		opt.MaxCount = fhir.MaxPageSize
	}
	if opt.DefaultCount <= 0 || opt.DefaultCount > opt.MaxCount {
		opt.DefaultCount = min(fhir.DefaultPageSize, opt.MaxCount)
	}
	limits := opt.Limits.withDefaults()
	q := &fhir.Query{Type: resourceType, Count: opt.DefaultCount}
	seen := make(map[fhir.RawParam]bool, len(params))
	repeats := make(map[string]int)
	values, includes, chained, nparams := 0, 0, 0, 0
	for _, p := range params {
		if seen[p] {
			continue
		}
		seen[p] = true
		base, modifier, hasModifier := strings.Cut(p.Name, ":")
		switch base {
		case "_count", "_cursor", "_total", "_sort", "_summary", "_elements", "_format", "_pretty":
			if hasModifier {
				return nil, fhir.Errorf(fhir.Invalid, p.Name, "%s takes no modifier", base)
			}
		}
		switch base {
		case "_count":
			n, err := strconv.Atoi(p.Value)
			if err != nil && errors.Is(err, strconv.ErrRange) && p.Value != "" && p.Value[0] != '-' {
				n, err = opt.MaxCount, nil
			}
			if err != nil || n < 0 {
				return nil, fhir.Errorf(fhir.Invalid, "_count", "_count must be a non-negative integer, not %q", p.Value)
			}
			q.Count = min(n, opt.MaxCount)
			q.Raw = append(q.Raw, fhir.RawParam{Name: "_count", Value: strconv.Itoa(q.Count)})
		case "_cursor":
			q.Cursor = p.Value
		case "_format", "_pretty":
			// The HTTP layer handles these.
		case "_total":
			switch fhir.TotalMode(p.Value) {
			case fhir.TotalAccurate, fhir.TotalEstimate, fhir.TotalNone:
				q.Total = fhir.TotalMode(p.Value)
			default:
				return nil, fhir.Errorf(fhir.Invalid, "_total", "_total must be none, estimate or accurate, not %q", p.Value)
			}
			q.Raw = append(q.Raw, p)
		case "_sort":
			keys, err := r.parseSort(resourceType, p.Value)
			if err != nil {
				return nil, err
			}
			q.Sort = append(q.Sort, keys...)
			if len(q.Sort) > limits.MaxSort {
				return nil, fhir.Errorf(fhir.Invalid, "_sort", "_sort has more than %d keys, the limit", limits.MaxSort)
			}
			q.Raw = append(q.Raw, p)
		case "_summary":
			switch p.Value {
			case "true", "text", "data", "count", "false":
				q.Summary = p.Value
			default:
				return nil, fhir.Errorf(fhir.Invalid, "_summary", "_summary must be true, text, data, count or false, not %q", p.Value)
			}
			q.Raw = append(q.Raw, p)
		case "_elements":
			for _, e := range strings.Split(p.Value, ",") {
				if e = strings.TrimSpace(e); e != "" {
					if !elementName(e) {
						return nil, fhir.Errorf(fhir.Invalid, "_elements", "_elements lists element names, not %q", e)
					}
					q.Elements = append(q.Elements, e)
				}
			}
			q.Raw = append(q.Raw, p)
		case "_include", "_revinclude":
			if includes++; includes > limits.MaxIncludes {
				return nil, fhir.Errorf(fhir.Invalid, p.Name, "too many _include and _revinclude parameters: the limit is %d", limits.MaxIncludes)
			}
			inc, err := r.parseInclude(resourceType, base == "_revinclude", modifier, hasModifier, p)
			if err != nil {
				return nil, err
			}
			q.Include = append(q.Include, inc)
			q.Raw = append(q.Raw, p)
		default:
			if nparams++; nparams > limits.MaxParams {
				return nil, fhir.Errorf(fhir.Invalid, p.Name, "the query has more than %d search parameters, the limit", limits.MaxParams)
			}
			if repeats[p.Name]++; repeats[p.Name] > limits.MaxRepeats {
				return nil, fhir.Errorf(fhir.Invalid, p.Name, "the parameter %s is repeated more than %d times, the limit", p.Name, limits.MaxRepeats)
			}
			n := len(splitEscaped(p.Value, ','))
			if n > limits.MaxOr {
				return nil, fhir.Errorf(fhir.Invalid, p.Name, "the parameter %s has %d comma-separated values: the limit is %d", p.Name, n, limits.MaxOr)
			}
			if values += n; values > limits.MaxValues {
				return nil, fhir.Errorf(fhir.Invalid, p.Name, "the query has more than %d search values in all, the limit", limits.MaxValues)
			}
			param, ok, err := r.parseParam(resourceType, p.Name, p.Value, opt.Lenient, limits.MaxChain, 0)
			if err != nil {
				return nil, err
			}
			if ok && (param.Has != nil || len(param.Chain) > 0) {
				if chained++; chained > limits.MaxChained {
					return nil, fhir.Errorf(fhir.Invalid, p.Name, "the query has more than %d chained or _has parameters, the limit", limits.MaxChained)
				}
			}
			if ok {
				q.Params = append(q.Params, param)
				q.Raw = append(q.Raw, p)
			}
		}
	}
	if q.Summary == "count" {
		q.Count = 0
	}
	return q, nil
}

// elementName reports whether s is an element name (or dotted path) for
// _elements.
func elementName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' && i > 0 && i < len(s)-1) {
			return false
		}
	}
	return s != ""
}

// parseParam parses one search parameter (possibly chained or reverse-chained)
// of resource type rt. ok is false when an unknown parameter is dropped under
// lenient handling.
func (r *Registry) parseParam(rt, name, value string, lenient bool, maxChain, depth int) (fhir.Param, bool, error) {
	if depth > maxChain {
		return fhir.Param{}, false, fhir.Errorf(fhir.Invalid, name, "the chain is longer than %d links, the limit", maxChain)
	}
	if name == "" {
		if lenient {
			return fhir.Param{}, false, nil
		}
		return fhir.Param{}, false, fhir.Errorf(fhir.Invalid, "", "a search parameter has no name")
	}
	if name == "_has" || strings.HasPrefix(name, "_has:") {
		p, err := r.parseHas(rt, name, value, lenient, maxChain, depth)
		return p, err == nil, err
	}
	first, rest, chained := strings.Cut(name, ".")
	code, modifier, hasModifier := strings.Cut(first, ":")
	if notYet[code] {
		return fhir.Param{}, false, fhir.Errorf(fhir.NotSupported, name, "the search parameter %s is not supported by this server", code)
	}
	d, ok := r.lookup(rt, code)
	if !ok {
		if lenient {
			return fhir.Param{}, false, nil
		}
		return fhir.Param{}, false, fhir.Errorf(fhir.Invalid, name, "unknown search parameter %q for %s", code, rt)
	}
	if d.unsupported != "" {
		return fhir.Param{}, false, fhir.Errorf(fhir.NotSupported, name, "the search parameter %q of %s is not supported: %s", code, rt, d.unsupported)
	}
	if chained {
		p, err := r.parseChain(rt, name, d, modifier, rest, value, maxChain, depth)
		return p, err == nil, err
	}
	if hasModifier {
		if err := checkModifier(&d.param, name, modifier); err != nil {
			return fhir.Param{}, false, err
		}
	}
	p, err := parseValues(&d.param, name, modifier, value)
	return p, err == nil, err
}

// checkModifier validates a modifier against the parameter's type.
func checkModifier(sp *fhir.SearchParam, name, m string) error {
	if slices.Contains(modifiers[sp.Type], m) {
		return nil
	}
	if sp.Type == fhir.TypeReference && isTypeName(m) {
		if slices.Contains(sp.Targets, m) || len(sp.Targets) == 0 {
			return nil
		}
		return fhir.Errorf(fhir.Invalid, name, "the reference parameter %q cannot refer to %s (it refers to %s)", sp.Code, m, strings.Join(sp.Targets, ", "))
	}
	if slices.Contains(notYetModifiers[sp.Type], m) {
		return fhir.Errorf(fhir.NotSupported, name, "the modifier :%s is not supported by this server", m)
	}
	if knownModifiers[m] || isTypeName(m) {
		return fhir.Errorf(fhir.Invalid, name, "the modifier :%s does not apply to the %s parameter %q", m, sp.Type, sp.Code)
	}
	return fhir.Errorf(fhir.Invalid, name, "unknown modifier :%s on the search parameter %q", m, sp.Code)
}

// isTypeName reports whether s looks like a resource type name.
func isTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !(s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
			return false
		}
	}
	return true
}

// parseChain parses subject.name=x or subject:Patient.identifier=s|v: d is the
// reference parameter, typ the optional type modifier, rest what follows the
// dot.
func (r *Registry) parseChain(rt, name string, d *definition, typ, rest, value string, maxChain, depth int) (fhir.Param, error) {
	if d.param.Type != fhir.TypeReference {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "cannot chain through %q: it is a %s parameter, not a reference", d.param.Code, d.param.Type)
	}
	targets := d.param.Targets
	if typ != "" {
		if !isTypeName(typ) {
			return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "a chain takes a resource type as modifier, not :%s", typ)
		}
		if err := checkModifier(&d.param, name, typ); err != nil {
			return fhir.Param{}, err
		}
		targets = []string{typ}
	}
	p := fhir.Param{Def: &d.param, Modifier: typ}
	next, _, _ := strings.Cut(rest, ".")
	next, _, _ = strings.Cut(next, ":")
	for _, t := range targets {
		if !fhir.Served(t) {
			continue
		}
		if _, ok := r.lookup(t, next); !ok && next != "_has" && !notYet[next] {
			continue
		}
		inner, ok, err := r.parseParam(t, rest, value, false, maxChain, depth+1)
		if err != nil {
			return fhir.Param{}, err
		}
		if ok {
			p.Chain = append(p.Chain, &fhir.Query{Type: t, Params: []fhir.Param{inner}})
		}
	}
	if len(p.Chain) == 0 {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "no resource type that %q may refer to has a search parameter %q", d.param.Code, next)
	}
	return p, nil
}

// parseHas parses _has:Type:ref:param=value (param may itself be _has:…).
func (r *Registry) parseHas(rt, name, value string, lenient bool, maxChain, depth int) (fhir.Param, error) {
	parts := strings.SplitN(name, ":", 4)
	if len(parts) != 4 || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "_has takes the form _has:Type:reference:parameter=value")
	}
	typ, ref, rest := parts[1], parts[2], parts[3]
	if !fhir.Served(typ) {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "_has names %q, which is not a served resource type", typ)
	}
	d, ok := r.lookup(typ, ref)
	if !ok || d.unsupported != "" || d.param.Type != fhir.TypeReference {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "%q is not a reference parameter of %s", ref, typ)
	}
	if len(d.param.Targets) > 0 && !slices.Contains(d.param.Targets, rt) {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "%s.%s cannot refer to %s", typ, ref, rt)
	}
	inner, ok, err := r.parseParam(typ, rest, value, lenient, maxChain, depth+1)
	if err != nil {
		return fhir.Param{}, err
	}
	if !ok {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "unknown search parameter %q for %s", rest, typ)
	}
	return fhir.Param{Has: &fhir.Has{Type: typ, Ref: &d.param, Query: &fhir.Query{Type: typ, Params: []fhir.Param{inner}}}}, nil
}

// parseInclude parses _include and _revinclude values: Type:param[:target], or
// * (every reference parameter of the searched type).
func (r *Registry) parseInclude(rt string, reverse bool, modifier string, hasModifier bool, p fhir.RawParam) (fhir.Include, error) {
	inc := fhir.Include{Reverse: reverse}
	if hasModifier {
		if modifier != "iterate" && modifier != "recurse" {
			return inc, fhir.Errorf(fhir.Invalid, p.Name, "unknown modifier :%s on %s (only :iterate)", modifier, strings.Split(p.Name, ":")[0])
		}
		inc.Iterate = true
	}
	parts := strings.Split(p.Value, ":")
	if p.Value == "*" {
		parts = []string{rt, "*"}
	}
	if len(parts) < 2 || len(parts) > 3 {
		return inc, fhir.Errorf(fhir.Invalid, p.Name, "%s takes Type:parameter[:targetType], not %q", p.Name, p.Value)
	}
	inc.Type = parts[0]
	if !fhir.Served(inc.Type) {
		return inc, fhir.Errorf(fhir.Invalid, p.Name, "%q is not a served resource type", inc.Type)
	}
	if !reverse && !inc.Iterate && inc.Type != rt {
		return inc, fhir.Errorf(fhir.Invalid, p.Name, "_include starts from the searched type %s (or use _include:iterate), not %s", rt, inc.Type)
	}
	if parts[1] != "*" {
		d, ok := r.lookup(inc.Type, parts[1])
		if !ok || d.unsupported != "" || d.param.Type != fhir.TypeReference {
			return inc, fhir.Errorf(fhir.Invalid, p.Name, "%q is not a reference parameter of %s", parts[1], inc.Type)
		}
		inc.Param = &d.param
	} else if reverse {
		return inc, fhir.Errorf(fhir.Invalid, p.Name, "_revinclude needs a named parameter, not *")
	}
	if len(parts) == 3 {
		inc.Target = parts[2]
		if !fhir.Served(inc.Target) {
			return inc, fhir.Errorf(fhir.Invalid, p.Name, "%q is not a served resource type", inc.Target)
		}
	}
	return inc, nil
}

// parseSort parses a _sort value: a comma list of supported parameter codes,
// each with "-" for descending order.
func (r *Registry) parseSort(rt, v string) ([]fhir.SortKey, error) {
	var keys []fhir.SortKey
	for _, k := range strings.Split(v, ",") {
		desc := strings.HasPrefix(k, "-")
		code := strings.TrimPrefix(k, "-")
		if code == "" {
			return nil, fhir.Errorf(fhir.Invalid, "_sort", "_sort lists parameter names, each with an optional '-', not %q", v)
		}
		d, ok := r.lookup(rt, code)
		switch {
		case ok && d.unsupported == "":
			keys = append(keys, fhir.SortKey{Def: &d.param, Descending: desc})
		case ok:
			return nil, fhir.Errorf(fhir.NotSupported, "_sort", "cannot sort %s by %q: %s", rt, code, d.unsupported)
		default:
			return nil, fhir.Errorf(fhir.Invalid, "_sort", "cannot sort %s by %q: not a search parameter of %s", rt, code, rt)
		}
	}
	return keys, nil
}

// parseValues parses the value of a parameter: true or false for :missing,
// otherwise a comma-separated list of values of the parameter's type.
func parseValues(sp *fhir.SearchParam, name, modifier, value string) (fhir.Param, error) {
	p := fhir.Param{Def: sp, Modifier: modifier}
	if modifier == "missing" {
		switch value {
		case "true", "false":
			b := value == "true"
			p.Missing = &b
			return p, nil
		}
		return p, fhir.Errorf(fhir.Invalid, name, ":missing takes true or false, not %q", value)
	}
	for _, raw := range splitEscaped(value, ',') {
		v, err := parseValue(sp, name, modifier, raw)
		if err != nil {
			return p, err
		}
		p.Values = append(p.Values, v)
	}
	return p, nil
}

// escapable are the characters a backslash escapes in a search value.
const escapable = `,|$\`

// splitEscaped splits s on sep where sep is not escaped with a backslash; the
// parts keep their escapes.
func splitEscaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) && strings.IndexByte(escapable, s[i+1]) >= 0 {
				i++
			}
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unescape removes the search escapes \, \| \$ \\; any other backslash stays.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(escapable, s[i+1]) >= 0 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hasUnescaped reports whether s contains c not escaped with a backslash.
func hasUnescaped(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) && strings.IndexByte(escapable, s[i+1]) >= 0 {
				i++
			}
		case c:
			return true
		}
	}
	return false
}

var prefixes = []fhir.Prefix{fhir.PrefixEq, fhir.PrefixNe, fhir.PrefixGt, fhir.PrefixLt, fhir.PrefixGe, fhir.PrefixLe, fhir.PrefixSa, fhir.PrefixEb, fhir.PrefixAp}

// cutPrefix splits a comparison prefix off a date, number or quantity value.
func cutPrefix(s string) (fhir.Prefix, string) {
	if len(s) > 2 {
		for _, p := range prefixes {
			if s[:2] == string(p) {
				return p, s[2:]
			}
		}
	}
	return fhir.PrefixEq, s
}

const prefixHelp = "with an optional prefix eq, ne, gt, lt, ge, le, sa, eb or ap"

// parseValue parses one value (one item of a comma list) of a parameter.
func parseValue(sp *fhir.SearchParam, name, modifier, raw string) (fhir.Value, error) {
	v := fhir.Value{Raw: unescape(raw), Prefix: fhir.PrefixEq}
	bad := func(format string, args ...any) (fhir.Value, error) {
		return v, fhir.Errorf(fhir.Invalid, name, "invalid value %q for %s: "+format, append([]any{raw, name}, args...)...)
	}
	if raw == "" {
		return bad("empty value")
	}
	if hasUnescaped(raw, '$') {
		return bad("'$' separates the parts of composite parameters only (escape it as \\$)")
	}
	switch sp.Type {
	case fhir.TypeToken:
		parts := splitEscaped(raw, '|')
		switch {
		case modifier == "text":
			if v.Str = Normalize(v.Raw); v.Str == "" {
				return bad("no letters or digits to search for")
			}
		case modifier == "of-type":
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				return bad(":of-type takes [type system]|[type code]|[identifier value]")
			}
			v.HasSystem = true
			v.System, v.Code, v.Str = unescape(parts[0]), unescape(parts[1]), unescape(parts[2])
		case len(parts) == 1:
			v.Code = v.Raw
		case len(parts) == 2:
			v.HasSystem = true
			v.System, v.Code = unescape(parts[0]), unescape(parts[1])
			if v.System == "" && v.Code == "" {
				return bad("'|' alone names neither a system nor a code")
			}
		default:
			return bad("a token is [system]|[code], with any '|' in them escaped as \\|")
		}
	case fhir.TypeString:
		v.Str = Normalize(v.Raw)
		if v.Str == "" && modifier != "exact" {
			return bad("no letters or digits to search for")
		}
	case fhir.TypeURI:
		v.Str = v.Raw
		if strings.ContainsAny(v.Raw, " \t\r\n") {
			return bad("a URI has no white space")
		}
	case fhir.TypeDate:
		var rest string
		v.Prefix, rest = cutPrefix(raw)
		lo, hi, ok := DateRange(rest)
		if !ok {
			return bad("expected a date such as 2026, 2026-11, 2026-11-22 or 2026-11-22T10:00:00Z, " + prefixHelp)
		}
		v.Low, v.High = lo, hi
	case fhir.TypeNumber:
		var rest string
		v.Prefix, rest = cutPrefix(raw)
		n, lo, hi, ok := NumberRange(rest)
		if !ok {
			return bad("expected a number, " + prefixHelp)
		}
		v.Num, v.NumLow, v.NumHi = n, lo, hi
	case fhir.TypeQuantity:
		parts := splitEscaped(raw, '|')
		if len(parts) != 1 && len(parts) != 3 {
			return bad("a quantity is [prefix]number or [prefix]number|[system]|[code]")
		}
		var rest string
		v.Prefix, rest = cutPrefix(parts[0])
		n, lo, hi, ok := NumberRange(rest)
		if !ok {
			return bad("expected a number, " + prefixHelp)
		}
		v.Num, v.NumLow, v.NumHi = n, lo, hi
		if len(parts) == 3 {
			v.System, v.Code = unescape(parts[1]), unescape(parts[2])
			v.HasSystem = v.System != ""
			if v.System != "" && v.Code == "" {
				return bad("a unit system needs a unit code")
			}
		}
	case fhir.TypeReference:
		if modifier == "identifier" {
			parts := splitEscaped(raw, '|')
			switch len(parts) {
			case 1:
				v.Code = v.Raw
			case 2:
				v.HasSystem = true
				v.System, v.Code = unescape(parts[0]), unescape(parts[1])
				if v.Code == "" {
					return bad(":identifier takes [system|]value")
				}
			default:
				return bad(":identifier takes [system|]value")
			}
			return v, nil
		}
		switch ref, ok := fhir.ParseReference(v.Raw, ""); {
		case ok:
			v.RefType, v.RefID = ref.Type, ref.ID
		case fhir.ValidID(v.Raw):
			v.RefID = v.Raw
		case absoluteURL(v.Raw):
			v.URL = v.Raw
		default:
			return bad("expected Type/id, an id or an absolute URL")
		}
		if modifier != "" {
			if v.URL != "" {
				return bad("the modifier :%s applies to Type/id or id values, not URLs", modifier)
			}
			if v.RefType != "" && v.RefType != modifier {
				return bad("the reference type %s contradicts the modifier :%s", v.RefType, modifier)
			}
			v.RefType = modifier
		}
	}
	return v, nil
}

// absoluteURL reports whether s is an absolute URL or URN, without white space.
func absoluteURL(s string) bool {
	if strings.ContainsAny(s, " \t\r\n") {
		return false
	}
	if strings.HasPrefix(s, "urn:") {
		return len(s) > 4
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Host != ""
}

// FormatQuery renders q as the query string of a self or next link: its
// parameters as given (q.Raw, in their order, URL-encoded), then cursor as
// _cursor when not empty. The same query always gives the same string.
func FormatQuery(q *fhir.Query, cursor string) string {
	var b strings.Builder
	for _, p := range q.Raw {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p.Name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p.Value))
	}
	if cursor != "" {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString("_cursor=")
		b.WriteString(url.QueryEscape(cursor))
	}
	return b.String()
}
