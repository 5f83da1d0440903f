package fhir

import "time"

// ParamType is the type of a search parameter, as in SearchParameter.type.
type ParamType string

// The search parameter types.
const (
	TypeToken     ParamType = "token"
	TypeString    ParamType = "string"
	TypeDate      ParamType = "date"
	TypeReference ParamType = "reference"
	TypeQuantity  ParamType = "quantity"
	TypeNumber    ParamType = "number"
	TypeURI       ParamType = "uri"
	TypeComposite ParamType = "composite"
	TypeSpecial   ParamType = "special"
)

// SearchParam is the definition of one search parameter for one resource type,
// taken from a SearchParameter resource.
type SearchParam struct {
	Code       string    // the name used in query strings, e.g. "subject"
	Type       ParamType // token, string, date, ...
	URL        string    // canonical URL of the SearchParameter
	Expression string    // the FHIRPath expression restricted to this resource type
	Targets    []string  // target resource types of a reference parameter
}

// IndexValue is one value of one search parameter extracted from a resource at
// write time. The fields used depend on Type; unused fields are zero.
//
//   - token: System and Code (either may be empty); Text is the normalised display
//     or text, for :text.
//   - string: Str is the normalised value (lower case, accents removed, spaces
//     collapsed); Exact is the value as written.
//   - uri: Exact is the URI.
//   - date: Low and High bound the instant range the value denotes (a date of
//     2026-11 is [2026-11-01T00:00:00Z, 2026-12-01T00:00:00Z)), High exclusive;
//     an open end is the zero time.
//   - number: NumLow and NumHigh bound the value by its precision (1.5 is
//     [1.45, 1.55)); Num is the value.
//   - quantity: as number, plus System and Code for the unit code, Exact for the
//     unit as written.
//   - reference: RefType and RefID for a literal reference to a resource on this
//     server; Exact for any other reference (absolute URL or canonical). System and
//     Code hold Reference.identifier when present.
type IndexValue struct {
	Param   string
	Type    ParamType
	System  string
	Code    string
	Text    string
	Str     string
	Exact   string
	Low     time.Time
	High    time.Time
	Num     float64
	NumLow  float64
	NumHi   float64
	RefType string
	RefID   string
}

// Prefix is a search value comparison prefix.
type Prefix string

// The search prefixes of the R4 search page.
const (
	PrefixEq Prefix = "eq"
	PrefixNe Prefix = "ne"
	PrefixGt Prefix = "gt"
	PrefixLt Prefix = "lt"
	PrefixGe Prefix = "ge"
	PrefixLe Prefix = "le"
	PrefixSa Prefix = "sa"
	PrefixEb Prefix = "eb"
	PrefixAp Prefix = "ap"
)

// Value is one search value of a query parameter, already parsed by type. The
// fields used mirror IndexValue.
type Value struct {
	Raw       string // the value as written in the query (unescaped), for links
	Prefix    Prefix // date, number, quantity; PrefixEq when absent
	System    string // token system, quantity unit system
	HasSystem bool   // token: "system|code" or "|code" given (an empty System then means "no system")
	Code      string // token code, quantity unit code
	Str       string // string: normalised value; uri: the URI
	Low       time.Time
	High      time.Time // date range of the value, High exclusive
	Num       float64
	NumLow    float64
	NumHi     float64 // number range implied by the value's precision, NumHi exclusive
	RefType   string  // reference: resource type, when given
	RefID     string  // reference: logical id
	URL       string  // reference: absolute URL or canonical, when not a local reference
}

// Param is one parameter of a query with its OR-list of values. A query's Params
// are ANDed.
//
// A chained parameter (subject:Patient.name=x) has Def set to the reference
// parameter and Chain to the criteria on the resources it may point to, one
// query per target type; it matches when the reference points to a resource
// matching any of them. A reverse chain (_has:Goal:subject:lifecycle-status=x)
// has Def nil and Has set.
type Param struct {
	Def      *SearchParam
	Modifier string  // "", "missing", "exact", "contains", "not", "text", "above", "below", "identifier", or a resource type
	Values   []Value // ORed
	Missing  *bool   // :missing=true|false
	Chain    []*Query
	Has      *Has
}

// Has is a reverse chain: resources of Type whose reference parameter Ref points
// to the candidate and that match Query.
type Has struct {
	Type  string
	Ref   *SearchParam
	Query *Query
}

// Compartment restricts a search to one compartment instance, such as the
// resources of Patient/123: those whose reference parameters named in Params
// point to Type/ID (or, for the compartment's own type, the resource itself).
type Compartment struct {
	Type   string
	ID     string
	Params []string
}

// Include is one _include or _revinclude. For _include, resources of Type
// matched (or included) are followed along their reference parameter Param to
// resources of Target (any type when empty); for _revinclude, resources of Type
// whose Param points to a matched resource are added.
type Include struct {
	Type    string
	Param   *SearchParam // nil for "*": every reference parameter of Type
	Target  string
	Reverse bool
	Iterate bool
}

// SortKey is one key of _sort.
type SortKey struct {
	Def        *SearchParam
	Descending bool
}

// TotalMode is the value of _total.
type TotalMode string

// The _total modes.
const (
	TotalAccurate TotalMode = "accurate"
	TotalEstimate TotalMode = "estimate"
	TotalNone     TotalMode = "none"
)

// Query is a parsed, backend-neutral search. Every backend translates it into its
// own query language; nothing in it refers to storage.
type Query struct {
	Type   string  // the resource type searched
	Params []Param // ANDed
	Sort   []SortKey
	Count  int       // page size, already clamped by the parser
	Cursor string    // opaque continuation from a previous page's Next, "" for the first page
	Total  TotalMode // whether the store must count all matches
	// TotalLimit, when above zero, bounds the count of an accurate total: a
	// store that finds TotalLimit matches or more stops counting and reports
	// the total as unknown (-1). 0 counts every match.
	TotalLimit int

	// Compartment, when set, restricts the search to one compartment instance.
	Compartment *Compartment
	// Include lists the _include and _revinclude of the search; the engine
	// resolves them after the page is found.
	Include []Include
	// Summary is the _summary mode ("", "true", "text", "data", "count", "false");
	// Elements the _elements list. The engine applies both to the page.
	Summary  string
	Elements []string

	// Raw holds the parameters as given, for formatting self and next links.
	Raw []RawParam
}

// RawParam is one name=value pair of a query string as given.
type RawParam struct{ Name, Value string }

// HasCriteria reports whether q selects resources by at least one search
// parameter (or a compartment). A query made only of result parameters
// (_count, _sort, _elements, _summary, _total, _include, _revinclude, …)
// matches every resource of its type: a conditional create, update, delete
// or reference must not act on one.
func (q *Query) HasCriteria() bool {
	return len(q.Params) > 0 || q.Compartment != nil
}

// RequireCriteria returns an Invalid error naming what (e.g. "a conditional
// delete") when q has no criteria, and nil otherwise.
func (q *Query) RequireCriteria(what string) error {
	if q.HasCriteria() {
		return nil
	}
	return Errorf(Invalid, "", "%s needs at least one search criterion: result parameters such as _count, _sort, _elements, _summary, _total, _include or _revinclude select nothing, so the condition would match every resource", what)
}
