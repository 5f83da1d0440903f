package search

import (
	"net/url"
	"slices"
	"strconv"
	"strings"

	"crs/fhir"
)

// ParseOptions control ParseQuery.
type ParseOptions struct {
	Lenient      bool // unknown parameters are dropped instead of rejected (Prefer: handling=lenient)
	DefaultCount int  // page size when _count is absent
	MaxCount     int  // _count is clamped to this
}

// modifiers lists the modifiers supported per parameter type. A reference
// parameter also takes a resource type as modifier (subject:Patient).
var modifiers = map[fhir.ParamType][]string{
	fhir.TypeToken:     {"missing", "not", "text", "of-type"},
	fhir.TypeString:    {"missing", "exact", "contains"},
	fhir.TypeDate:      {"missing"},
	fhir.TypeNumber:    {"missing"},
	fhir.TypeQuantity:  {"missing"},
	fhir.TypeReference: {"missing", "identifier"},
	fhir.TypeURI:       {"missing", "below", "above"},
}

// notYet are the result and special parameters of the R4 search page that this
// server does not evaluate: a query using one is answered 400, never ignored.
var notYet = map[string]bool{
	"_contained": true, "_containedType": true, "_text": true, "_content": true, "_list": true,
	"_query": true, "_filter": true, "_type": true,
}

// maxChain bounds the depth of chained and reverse-chained parameters.
const maxChain = 4

// ParseQuery parses the name/value pairs of a search on resourceType into a
// fhir.Query. Client mistakes are Invalid errors naming the parameter; features
// the server does not have are NotSupported.
func (r *Registry) ParseQuery(resourceType string, params []fhir.RawParam, opt ParseOptions) (*fhir.Query, error) {
	if opt.MaxCount <= 0 {
		opt.MaxCount = 500
	}
	if opt.DefaultCount <= 0 || opt.DefaultCount > opt.MaxCount {
		opt.DefaultCount = min(20, opt.MaxCount)
	}
	q := &fhir.Query{Type: resourceType, Count: opt.DefaultCount}
	for _, p := range params {
		name, modifier, _ := strings.Cut(p.Name, ":")
		switch name {
		case "_count":
			n, err := strconv.Atoi(p.Value)
			if err != nil || n < 0 {
				return nil, fhir.Errorf(fhir.Invalid, "_count", "_count must be a non-negative integer, not %q", p.Value)
			}
			q.Count = min(n, opt.MaxCount)
			q.Raw = append(q.Raw, fhir.RawParam{Name: "_count", Value: strconv.Itoa(q.Count)})
			continue
		case "_cursor":
			q.Cursor = p.Value
			continue
		case "_total":
			switch fhir.TotalMode(p.Value) {
			case fhir.TotalAccurate, fhir.TotalEstimate, fhir.TotalNone:
				q.Total = fhir.TotalMode(p.Value)
			default:
				return nil, fhir.Errorf(fhir.Invalid, "_total", "_total must be none, estimate or accurate, not %q", p.Value)
			}
			q.Raw = append(q.Raw, p)
			continue
		case "_sort":
			keys, err := r.parseSort(resourceType, p.Value)
			if err != nil {
				return nil, err
			}
			q.Sort = append(q.Sort, keys...)
			q.Raw = append(q.Raw, p)
			continue
		case "_summary":
			switch p.Value {
			case "true", "text", "data", "count", "false":
				q.Summary = p.Value
			default:
				return nil, fhir.Errorf(fhir.Invalid, "_summary", "_summary must be true, text, data, count or false, not %q", p.Value)
			}
			q.Raw = append(q.Raw, p)
			continue
		case "_elements":
			for _, e := range strings.Split(p.Value, ",") {
				if e = strings.TrimSpace(e); e != "" {
					if !nameOK(e) {
						return nil, fhir.Errorf(fhir.Invalid, "_elements", "_elements lists element names, not %q", e)
					}
					q.Elements = append(q.Elements, e)
				}
			}
			q.Raw = append(q.Raw, p)
			continue
		case "_include", "_revinclude":
			inc, err := r.parseInclude(resourceType, name == "_revinclude", modifier, p)
			if err != nil {
				return nil, err
			}
			q.Include = append(q.Include, inc)
			q.Raw = append(q.Raw, p)
			continue
		case "_format", "_pretty":
			continue
		}
		param, ok, err := r.parseParam(resourceType, p.Name, p.Value, opt.Lenient, 0)
		if err != nil {
			return nil, err
		}
		if ok {
			q.Params = append(q.Params, param)
			q.Raw = append(q.Raw, p)
		}
	}
	if q.Summary == "count" {
		q.Count = 0
	}
	return q, nil
}

func nameOK(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' && i > 0) {
			return false
		}
	}
	return s != ""
}

// parseParam parses one search parameter (possibly chained or reverse-chained)
// of resource type rt. ok is false when an unknown parameter is dropped under
// lenient handling.
func (r *Registry) parseParam(rt, name, value string, lenient bool, depth int) (fhir.Param, bool, error) {
	if depth > maxChain {
		return fhir.Param{}, false, fhir.Errorf(fhir.Invalid, name, "chains deeper than %d are not allowed", maxChain)
	}
	if strings.HasPrefix(name, "_has:") {
		p, err := r.parseHas(rt, name, value, lenient, depth)
		return p, err == nil, err
	}
	if first, rest, chained := strings.Cut(name, "."); chained {
		p, err := r.parseChain(rt, name, first, rest, value, lenient, depth)
		return p, err == nil, err
	}
	code, modifier, _ := strings.Cut(name, ":")
	if notYet[code] {
		return fhir.Param{}, false, fhir.Errorf(fhir.NotSupported, name, "the search parameter %q is not supported by this server", name)
	}
	d, ok := r.byType[rt][code]
	if !ok {
		if lenient {
			return fhir.Param{}, false, nil
		}
		return fhir.Param{}, false, fhir.Errorf(fhir.Invalid, name, "unknown search parameter %q for %s", code, rt)
	}
	if d.unsupported != "" {
		return fhir.Param{}, false, fhir.Errorf(fhir.NotSupported, name, "the search parameter %q of %s is not supported: %s", code, rt, d.unsupported)
	}
	p, err := parseValues(&d.param, name, modifier, value)
	return p, err == nil, err
}

// parseChain parses subject.name=x or subject:Patient.identifier=s|v.
func (r *Registry) parseChain(rt, name, first, rest, value string, lenient bool, depth int) (fhir.Param, error) {
	code, typ, _ := strings.Cut(first, ":")
	d, ok := r.byType[rt][code]
	if !ok || d.unsupported != "" {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "cannot chain through %q: not a search parameter of %s", code, rt)
	}
	if d.param.Type != fhir.TypeReference {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "cannot chain through %q: it is a %s parameter, not a reference", code, d.param.Type)
	}
	targets := d.param.Targets
	if typ != "" {
		if !allowedModifier(&d.param, typ) {
			return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "%q cannot refer to %s", code, typ)
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
		if _, ok := r.byType[t][next]; !ok && next != "_has" {
			continue
		}
		inner, ok, err := r.parseParam(t, rest, value, false, depth+1)
		if err != nil {
			return fhir.Param{}, err
		}
		if ok {
			p.Chain = append(p.Chain, &fhir.Query{Type: t, Params: []fhir.Param{inner}})
		}
	}
	if len(p.Chain) == 0 {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "no resource %q may refer to has a search parameter %q", code, next)
	}
	return p, nil
}

// parseHas parses _has:Type:ref:param=value (param may itself be _has:…).
func (r *Registry) parseHas(rt, name, value string, lenient bool, depth int) (fhir.Param, error) {
	parts := strings.SplitN(name, ":", 4)
	if len(parts) != 4 || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "_has takes the form _has:Type:reference:parameter=value")
	}
	typ, ref, rest := parts[1], parts[2], parts[3]
	if !fhir.Served(typ) {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "_has names %q, which is not a served resource type", typ)
	}
	d, ok := r.byType[typ][ref]
	if !ok || d.unsupported != "" || d.param.Type != fhir.TypeReference {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "%q is not a reference parameter of %s", ref, typ)
	}
	if len(d.param.Targets) > 0 && !slices.Contains(d.param.Targets, rt) {
		return fhir.Param{}, fhir.Errorf(fhir.Invalid, name, "%s.%s cannot refer to %s", typ, ref, rt)
	}
	inner, ok, err := r.parseParam(typ, rest, value, lenient, depth+1)
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
func (r *Registry) parseInclude(rt string, reverse bool, modifier string, p fhir.RawParam) (fhir.Include, error) {
	inc := fhir.Include{Reverse: reverse}
	switch modifier {
	case "":
	case "iterate", "recurse":
		inc.Iterate = true
	default:
		return inc, fhir.Errorf(fhir.Invalid, p.Name, "unknown modifier %q on %s", modifier, strings.Split(p.Name, ":")[0])
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
		d, ok := r.byType[inc.Type][parts[1]]
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

func (r *Registry) parseSort(rt, v string) ([]fhir.SortKey, error) {
	var keys []fhir.SortKey
	for _, k := range strings.Split(v, ",") {
		desc := strings.HasPrefix(k, "-")
		code := strings.TrimPrefix(k, "-")
		sp, ok := r.Param(rt, code)
		if !ok {
			return nil, fhir.Errorf(fhir.Invalid, "_sort", "cannot sort %s by %q: not a supported search parameter", rt, code)
		}
		keys = append(keys, fhir.SortKey{Def: sp, Descending: desc})
	}
	return keys, nil
}

func parseValues(sp *fhir.SearchParam, name, modifier, value string) (fhir.Param, error) {
	p := fhir.Param{Def: sp, Modifier: modifier}
	if modifier != "" && !allowedModifier(sp, modifier) {
		return p, fhir.Errorf(fhir.Invalid, name, "the modifier %q is not supported on the %s parameter %q", modifier, sp.Type, sp.Code)
	}
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

func allowedModifier(sp *fhir.SearchParam, m string) bool {
	for _, x := range modifiers[sp.Type] {
		if x == m {
			return true
		}
	}
	if sp.Type == fhir.TypeReference && fhir.Served(m) {
		if len(sp.Targets) == 0 {
			return true
		}
		for _, t := range sp.Targets {
			if t == m {
				return true
			}
		}
	}
	return false
}

// splitEscaped splits s on sep where sep is not escaped with a backslash; the
// parts keep their escapes.
func splitEscaped(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unescape removes the search escapes \, \| \$ \\.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hasUnescaped reports whether s contains c not preceded by a backslash.
func hasUnescaped(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case c:
			return true
		}
	}
	return false
}

var prefixes = []fhir.Prefix{fhir.PrefixEq, fhir.PrefixNe, fhir.PrefixGt, fhir.PrefixLt, fhir.PrefixGe, fhir.PrefixLe, fhir.PrefixSa, fhir.PrefixEb, fhir.PrefixAp}

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

func parseValue(sp *fhir.SearchParam, name, modifier, raw string) (fhir.Value, error) {
	v := fhir.Value{Raw: unescape(raw), Prefix: fhir.PrefixEq}
	bad := func(format string, args ...any) (fhir.Value, error) {
		return v, fhir.Errorf(fhir.Invalid, name, "invalid value %q for %s: "+format, append([]any{raw, name}, args...)...)
	}
	if raw == "" {
		return bad("empty value")
	}
	if hasUnescaped(raw, '$') {
		return bad("an unescaped '$' is only allowed in composite parameters (write \\$)")
	}
	switch sp.Type {
	case fhir.TypeToken:
		if modifier == "text" {
			v.Str = Normalize(v.Raw)
			return v, nil
		}
		parts := splitEscaped(raw, '|')
		if modifier == "of-type" {
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				return bad(":of-type takes [type system]|[type code]|[identifier value]")
			}
			v.HasSystem = true
			v.System, v.Code, v.Str = unescape(parts[0]), unescape(parts[1]), unescape(parts[2])
			return v, nil
		}
		switch len(parts) {
		case 1:
			v.Code = unescape(parts[0])
		case 2:
			v.HasSystem = true
			v.System, v.Code = unescape(parts[0]), unescape(parts[1])
			if v.System == "" && v.Code == "" {
				return bad("'|' alone names neither a system nor a code")
			}
		default:
			return bad("a token is [system]|[code] with at most one unescaped '|'")
		}
	case fhir.TypeString:
		v.Str = Normalize(v.Raw)
		if v.Str == "" && modifier != "exact" {
			return bad("no letters or digits to search for")
		}
	case fhir.TypeURI:
		v.Str = v.Raw
	case fhir.TypeDate:
		var rest string
		v.Prefix, rest = cutPrefix(raw)
		lo, hi, ok := DateRange(rest)
		if !ok {
			return bad("expected a date such as 2026-11, 2026-11-22 or 2026-11-22T10:00:00Z, with an optional prefix eq ne gt lt ge le sa eb ap")
		}
		v.Low, v.High = lo, hi
	case fhir.TypeNumber:
		var rest string
		v.Prefix, rest = cutPrefix(raw)
		n, lo, hi, ok := NumberRange(rest)
		if !ok {
			return bad("expected a number, with an optional prefix eq ne gt lt ge le sa eb ap")
		}
		v.Num, v.NumLow, v.NumHi = n, lo, hi
	case fhir.TypeQuantity:
		parts := splitEscaped(raw, '|')
		if len(parts) != 1 && len(parts) != 3 {
			return bad("a quantity is [prefix]number or [prefix]number|system|code")
		}
		var rest string
		v.Prefix, rest = cutPrefix(parts[0])
		n, lo, hi, ok := NumberRange(rest)
		if !ok {
			return bad("expected a number, with an optional prefix eq ne gt lt ge le sa eb ap")
		}
		v.Num, v.NumLow, v.NumHi = n, lo, hi
		if len(parts) == 3 {
			v.System, v.Code = unescape(parts[1]), unescape(parts[2])
			v.HasSystem = v.System != ""
		}
	case fhir.TypeReference:
		if modifier == "identifier" {
			parts := splitEscaped(raw, '|')
			if len(parts) == 2 {
				v.HasSystem = true
				v.System, v.Code = unescape(parts[0]), unescape(parts[1])
			} else {
				v.Code = v.Raw
			}
			return v, nil
		}
		if ref, ok := fhir.ParseReference(v.Raw, ""); ok {
			v.RefType, v.RefID = ref.Type, ref.ID
		} else if fhir.ValidID(v.Raw) {
			v.RefID = v.Raw
		} else if strings.Contains(v.Raw, ":") {
			v.URL = v.Raw
		} else {
			return bad("expected Type/id, an id or an absolute URL")
		}
		if modifier != "" && modifier != "identifier" {
			if v.RefType != "" && v.RefType != modifier {
				return bad("the reference type %s contradicts the modifier :%s", v.RefType, modifier)
			}
			v.RefType = modifier
		}
	}
	return v, nil
}

// FormatQuery renders q as a query string for a self or next link: its
// parameters as given (in order), with cursor as _cursor when not empty.
func FormatQuery(q *fhir.Query, cursor string) string {
	parts := make([]string, 0, len(q.Raw)+1)
	for _, p := range q.Raw {
		parts = append(parts, url.QueryEscape(p.Name)+"="+url.QueryEscape(p.Value))
	}
	if cursor != "" {
		parts = append(parts, "_cursor="+url.QueryEscape(cursor))
	}
	return strings.Join(parts, "&")
}
