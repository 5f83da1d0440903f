package mongo

import (
	"math"
	"strings"
	"time"

	"crs/fhir"
)

// The search semantics, evaluated in Go over a resource's extracted index
// values. They are the SQLite backend's, condition for condition (the same
// conformance suite holds both to them). The server answers what plan.go
// compiles; these check the candidates of a plan that is not exact.

const (
	minInt = math.MinInt64
	maxInt = math.MaxInt64
	maxNum = 1e308
)

func lowMillis(t time.Time) int64 {
	if t.IsZero() {
		return minInt
	}
	return t.UnixMilli()
}

func highMillis(t time.Time) int64 {
	if t.IsZero() {
		return maxInt
	}
	return t.UnixMilli()
}

func finite(f float64) float64 {
	switch {
	case math.IsInf(f, 1) || f > maxNum:
		return maxNum
	case math.IsInf(f, -1) || f < -maxNum:
		return -maxNum
	}
	return f
}

// indexed is one stored index value, in the form the conditions compare.
// Zero fields are left out of the document (they decode to the same zero):
// most values use two or three of them, and FerretDB decodes every field of
// every document it scans.
type indexed struct {
	P   string  `bson:"p,omitempty"`  // parameter code (":of-type" suffix for of-type tokens)
	S   string  `bson:"s,omitempty"`  // token/quantity/reference system
	C   string  `bson:"c,omitempty"`  // token/quantity code, reference identifier value
	T   string  `bson:"t,omitempty"`  // token text
	Str string  `bson:"st,omitempty"` // string: normalised
	X   string  `bson:"x,omitempty"`  // string: exact; uri; reference: url
	Lo  int64   `bson:"lo,omitempty"` // date range, ms
	Hi  int64   `bson:"hi,omitempty"`
	N   float64 `bson:"n,omitempty"` // number
	NL  float64 `bson:"nl,omitempty"`
	NH  float64 `bson:"nh,omitempty"`
	RT  string  `bson:"rt,omitempty"` // reference type and id
	RI  string  `bson:"ri,omitempty"`
	Typ string  `bson:"ty,omitempty"` // parameter type
}

func toIndexed(iv fhir.IndexValue) indexed {
	x := indexed{P: iv.Param, Typ: string(iv.Type)}
	switch iv.Type {
	case fhir.TypeToken:
		x.S, x.C, x.T = iv.System, iv.Code, iv.Text
	case fhir.TypeString:
		x.Str, x.X = iv.Str, iv.Exact
	case fhir.TypeDate:
		x.Lo, x.Hi = lowMillis(iv.Low), highMillis(iv.High)
	case fhir.TypeNumber, fhir.TypeQuantity:
		x.N, x.NL, x.NH, x.S, x.C = iv.Num, finite(iv.NumLow), finite(iv.NumHi), iv.System, iv.Code
	case fhir.TypeReference:
		x.RT, x.RI, x.X, x.S, x.C = iv.RefType, iv.RefID, iv.Exact, iv.System, iv.Code
	case fhir.TypeURI:
		x.X = iv.Exact
	}
	return x
}

// keysOf are the flat equality keys a multikey index serves: every token
// (code, system|code, system), every reference (Type/id, id, URL, identifier),
// every exact uri and string (equalityKeys asks for them).
func keysOf(vals []indexed) []string {
	var keys []string
	for _, v := range vals {
		switch fhir.ParamType(v.Typ) {
		case fhir.TypeToken:
			keys = append(keys, "t|"+v.P+"|"+v.C, "t|"+v.P+"|"+v.S+"|"+v.C)
			if v.S != "" {
				keys = append(keys, "ts|"+v.P+"|"+v.S)
			}
		case fhir.TypeReference:
			if v.RI != "" {
				keys = append(keys, "r|"+v.P+"|"+v.RT+"/"+v.RI, "ri|"+v.P+"|"+v.RI)
			}
			if v.C != "" {
				keys = append(keys, "rc|"+v.P+"|"+v.C, "rs|"+v.P+"|"+v.S+"|"+v.C)
			}
			if v.X != "" {
				keys = append(keys, "rx|"+v.P+"|"+v.X)
			}
		case fhir.TypeString:
			keys = append(keys, "sx|"+v.P+"|"+v.X)
		case fhir.TypeURI:
			keys = append(keys, "u|"+v.P+"|"+v.X)
		}
	}
	return keys
}

func isTypeModifier(m string) bool { return m != "" && m[0] >= 'A' && m[0] <= 'Z' }

// valueMatches is the SQLite backend's cond: does one index value satisfy one
// query value of p?
func valueMatches(p fhir.Param, x indexed, v fhir.Value) bool {
	switch p.Def.Type {
	case fhir.TypeToken:
		switch {
		case p.Modifier == "text":
			return strings.Contains(strings.ToLower(x.T), strings.ToLower(v.Str))
		case p.Modifier == "of-type":
			return x.S == v.System && x.C == v.Code && x.T == v.Str
		case !v.HasSystem:
			return x.C == v.Code
		case v.Code == "":
			return x.S == v.System
		default:
			return x.S == v.System && x.C == v.Code
		}
	case fhir.TypeString:
		switch p.Modifier {
		case "exact":
			return x.X == v.Raw
		case "contains":
			return strings.Contains(strings.ToLower(x.Str), strings.ToLower(v.Str))
		default:
			return strings.HasPrefix(x.Str, v.Str)
		}
	case fhir.TypeURI:
		switch p.Modifier {
		case "below":
			return strings.HasPrefix(x.X, v.Str)
		case "above":
			return strings.HasPrefix(v.Str, x.X)
		default:
			return x.X == v.Str
		}
	case fhir.TypeReference:
		switch {
		case p.Modifier == "identifier" && v.HasSystem:
			return x.S == v.System && x.C == v.Code
		case p.Modifier == "identifier":
			return x.C == v.Code
		case v.URL != "":
			return x.X == v.URL
		case v.RefType != "":
			return x.RI == v.RefID && x.RT == v.RefType
		default:
			return x.RI == v.RefID
		}
	case fhir.TypeDate:
		lo, hi := lowMillis(v.Low), highMillis(v.High)
		switch v.Prefix {
		case fhir.PrefixEq:
			return x.Lo >= lo && x.Hi <= hi
		case fhir.PrefixNe:
			return !(x.Lo >= lo && x.Hi <= hi)
		case fhir.PrefixGt:
			return x.Hi > hi
		case fhir.PrefixLt:
			return x.Lo < lo
		case fhir.PrefixGe:
			return x.Hi > hi || (x.Lo >= lo && x.Hi <= hi)
		case fhir.PrefixLe:
			return x.Lo < lo || (x.Lo >= lo && x.Hi <= hi)
		case fhir.PrefixSa:
			return x.Lo >= hi
		case fhir.PrefixEb:
			return x.Hi <= lo
		case fhir.PrefixAp:
			w := (hi - lo) / 10
			return x.Lo < hi+w && x.Hi > lo-w
		}
	case fhir.TypeNumber, fhir.TypeQuantity:
		ok := false
		switch v.Prefix {
		case fhir.PrefixEq:
			ok = x.N >= v.NumLow && x.N < v.NumHi
		case fhir.PrefixNe:
			ok = !(x.N >= v.NumLow && x.N < v.NumHi)
		case fhir.PrefixGt, fhir.PrefixSa:
			ok = x.N > v.Num
		case fhir.PrefixLt, fhir.PrefixEb:
			ok = x.N < v.Num
		case fhir.PrefixGe:
			ok = x.N >= v.Num
		case fhir.PrefixLe:
			ok = x.N <= v.Num
		case fhir.PrefixAp:
			d := math.Abs(v.Num) / 10
			ok = x.N >= v.Num-d && x.N <= v.Num+d
		}
		if ok && p.Def.Type == fhir.TypeQuantity && v.Code != "" {
			ok = x.C == v.Code && (!v.HasSystem || x.S == v.System)
		}
		return ok
	}
	return false
}

// validPrefix reports whether a date or number value's prefix is one the
// conditions know (an unknown one is an error, as in SQLite).
func validPrefix(p fhir.Param) error {
	if p.Def == nil {
		return nil
	}
	switch p.Def.Type {
	case fhir.TypeDate, fhir.TypeNumber, fhir.TypeQuantity:
		for _, v := range p.Values {
			switch v.Prefix {
			case fhir.PrefixEq, fhir.PrefixNe, fhir.PrefixGt, fhir.PrefixLt, fhir.PrefixGe, fhir.PrefixLe, fhir.PrefixSa, fhir.PrefixEb, fhir.PrefixAp:
			default:
				return fhir.Errorf(fhir.Invalid, p.Def.Code, "unknown prefix %q", v.Prefix)
			}
		}
	}
	return nil
}

// sortValue is a resource's key for one sort parameter: the smallest value
// ascending, the largest descending; a resource without one sorts last.
type sortValue struct {
	kind byte // 'i', 'f' or 's'
	i    int64
	f    float64
	s    string
}

func sortKeyOf(vals []indexed, k fhir.SortKey) sortValue {
	out := sortValue{kind: 's'}
	switch k.Def.Type {
	case fhir.TypeDate:
		out.kind = 'i'
	case fhir.TypeNumber, fhir.TypeQuantity:
		out.kind = 'f'
	}
	found := false
	for _, x := range vals {
		if x.P != k.Def.Code {
			continue
		}
		var cand sortValue
		cand.kind = out.kind
		switch k.Def.Type {
		case fhir.TypeToken:
			cand.s = x.C
		case fhir.TypeString:
			cand.s = x.Str
		case fhir.TypeURI:
			cand.s = x.X
		case fhir.TypeReference:
			cand.s = x.RT + "/" + x.RI + x.X
		case fhir.TypeDate:
			cand.i = x.Lo
			if k.Descending {
				cand.i = x.Hi
			}
		case fhir.TypeNumber, fhir.TypeQuantity:
			cand.f = x.N
		}
		if !found || (k.Descending && compareSort(cand, out) > 0) || (!k.Descending && compareSort(cand, out) < 0) {
			out, found = cand, true
		}
	}
	if !found {
		switch {
		case out.kind == 'i' && k.Descending:
			out.i = minInt
		case out.kind == 'i':
			out.i = maxInt
		case out.kind == 'f' && k.Descending:
			out.f = -maxNum
		case out.kind == 'f':
			out.f = maxNum
		case k.Descending:
			out.s = ""
		default:
			out.s = "\U0010FFFF\U0010FFFF"
		}
	}
	return out
}

func compareSort(a, b sortValue) int {
	switch a.kind {
	case 'i':
		switch {
		case a.i < b.i:
			return -1
		case a.i > b.i:
			return 1
		}
	case 'f':
		switch {
		case a.f < b.f:
			return -1
		case a.f > b.f:
			return 1
		}
	default:
		return strings.Compare(a.s, b.s)
	}
	return 0
}
