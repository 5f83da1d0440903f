package mongo

import (
	"context"
	"regexp"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"crs/fhir"
)

// A search is compiled to one server-side filter: the query value's
// conditions, chains, reverse chains, compartment and the access clauses
// inside it. The filter keeps to what MongoDB and FerretDB both answer alike —
// equality and $in/$nin on the flat "keys" array, one-sided ranges and
// anchored regular expressions on per-parameter arrays of scalars ("dl", "dh",
// "nv", "st"), $exists, $or and $and — and never $elemMatch (FerretDB
// evaluates it uncorrelated, MongoDB correlated). A condition on an array
// whose two bounds must hold for one and the same value cannot be said that
// way; such a condition is sent as a superset (each bound on its own) and the
// plan is not exact: its candidates are checked again in Go, with the same
// semantics as SQLite (eval.go). The shapes evaluated in Go:
//
//   - date eq, ne and ap; number and quantity eq, ne and ap; any quantity
//     with a unit (superset on the number, unit checked in Go);
//   - token :text and :of-type, string :contains, uri :below and :above;
//   - a parameter whose code is not usable as a field name (a '.', a leading
//     '$');
//   - _sort on more than one key (the matches are sorted in Go).
//
// Everything else is exact on the server: its count is the server's, and its
// page is the server's sort and limit with a keyset cursor.

// derived are the per-parameter fields of a resource document that the
// server-side filter and sort use; all are computed from its index values.
type derived struct {
	Sort map[string]sortPair  `bson:"so,omitempty"` // param → its sort keys
	DLo  map[string][]int64   `bson:"dl,omitempty"` // date: low ends, ms
	DHi  map[string][]int64   `bson:"dh,omitempty"` // date: high ends, ms
	Num  map[string][]float64 `bson:"nv,omitempty"` // number, quantity: values
	Str  map[string][]string  `bson:"st,omitempty"` // string: normalised values
}

// sortPair is a parameter's sort key ascending (the smallest value) and
// descending (the largest), as sortKeyOf computes them.
type sortPair struct {
	A any `bson:"a"`
	D any `bson:"d"`
}

// maxIn bounds the ids a chain or a reverse chain sends to the server as one
// $in list (a BSON command is at most 16 MB); past it the condition is
// checked in Go over the other conditions' candidates.
const maxIn = 100000

// layout is the version of the derived fields; documents written before it
// are brought up to date when the store opens.
const layout = 3

// fieldSafe reports whether a parameter code can name a document field.
func fieldSafe(p string) bool {
	return p != "" && !strings.ContainsAny(p, ".\x00") && p[0] != '$'
}

// derive computes the derived fields of a document from its index values.
func derive(vals []indexed) derived {
	var d derived
	seen := map[string]bool{}
	for _, x := range vals {
		if !fieldSafe(x.P) {
			continue
		}
		if !seen[x.P] {
			seen[x.P] = true
			def := &fhir.SearchParam{Code: x.P, Type: fhir.ParamType(x.Typ)}
			a := sortKeyOf(vals, fhir.SortKey{Def: def})
			z := sortKeyOf(vals, fhir.SortKey{Def: def, Descending: true})
			if d.Sort == nil {
				d.Sort = map[string]sortPair{}
			}
			d.Sort[x.P] = sortPair{A: a.native(), D: z.native()}
		}
		switch fhir.ParamType(x.Typ) {
		case fhir.TypeDate:
			if d.DLo == nil {
				d.DLo, d.DHi = map[string][]int64{}, map[string][]int64{}
			}
			d.DLo[x.P] = append(d.DLo[x.P], x.Lo)
			d.DHi[x.P] = append(d.DHi[x.P], x.Hi)
		case fhir.TypeNumber, fhir.TypeQuantity:
			if d.Num == nil {
				d.Num = map[string][]float64{}
			}
			d.Num[x.P] = append(d.Num[x.P], x.N)
		case fhir.TypeString:
			if d.Str == nil {
				d.Str = map[string][]string{}
			}
			d.Str[x.P] = append(d.Str[x.P], x.Str)
		}
	}
	return d
}

// native is the BSON value of a sort key.
func (v sortValue) native() any {
	switch v.kind {
	case 'i':
		return v.i
	case 'f':
		return v.f
	}
	return v.s
}

// plan is a compiled search: the server-side filter, whether it is exact,
// and what the Go check needs when it is not.
type plan struct {
	q      *fhir.Query
	filter bson.D
	exact  bool
	chains [][]map[string]bool // per parameter, per chained type: the ids that match
	has    []map[string]bool   // per parameter: the ids a reverse chain points to
}

// keep evaluates every condition of the query in Go (for plans that are not
// exact).
func (pl *plan) keep(d resourceDoc) bool {
	if !inCompartment(d, pl.q) {
		return false
	}
	for i, p := range pl.q.Params {
		if !paramMatches(d, p, pl.chains[i], pl.has[i]) {
			return false
		}
	}
	return true
}

// plan compiles q (resolving its chains and reverse chains on the server
// first).
func (r reader) plan(ctx context.Context, q *fhir.Query) (*plan, error) {
	for _, p := range q.Params {
		if err := validPrefix(p); err != nil {
			return nil, err
		}
		if p.Def != nil && (p.Def.Type == fhir.TypeComposite || p.Def.Type == fhir.TypeSpecial) {
			return nil, fhir.Errorf(fhir.NotSupported, p.Def.Code, "search parameters of type %s are not supported", p.Def.Type)
		}
	}
	pl := &plan{q: q, exact: true, chains: make([][]map[string]bool, len(q.Params)), has: make([]map[string]bool, len(q.Params))}
	and := bson.A{r.visible()}
	if c := q.Compartment; c != nil {
		var keys bson.A
		for _, p := range c.Params {
			keys = append(keys, "r|"+p+"|"+c.Type+"/"+c.ID)
		}
		or := bson.A{bson.D{{Key: "keys", Value: bson.D{{Key: "$in", Value: nonNil(keys)}}}}}
		if c.Type == q.Type {
			or = append(or, bson.D{{Key: "id", Value: c.ID}})
		}
		and = append(and, bson.D{{Key: "$or", Value: or}})
	}
	for i, p := range q.Params {
		clause, exact, err := r.compile(ctx, q, p, pl, i)
		if err != nil {
			return nil, err
		}
		if clause != nil {
			and = append(and, clause)
		}
		pl.exact = pl.exact && exact
	}
	pl.filter = bson.D{{Key: "type", Value: q.Type}, {Key: "deleted", Value: false}, {Key: "$and", Value: and}}
	return pl, nil
}

func nonNil(a bson.A) bson.A {
	if a == nil {
		return bson.A{}
	}
	return a
}

func keysIn(keys bson.A, not bool) bson.D {
	op := "$in"
	if not {
		op = "$nin"
	}
	return bson.D{{Key: "keys", Value: bson.D{{Key: op, Value: nonNil(keys)}}}}
}

func anyOf(clauses bson.A) bson.D {
	if len(clauses) == 1 {
		return clauses[0].(bson.D)
	}
	return bson.D{{Key: "$or", Value: nonNil(clauses)}}
}

func cmp(field, op string, v any) bson.D {
	return bson.D{{Key: field, Value: bson.D{{Key: op, Value: v}}}}
}

// compile returns the server-side clause of one parameter (nil: none, the
// parameter is left to Go) and whether it is exact.
func (r reader) compile(ctx context.Context, q *fhir.Query, p fhir.Param, pl *plan, i int) (bson.D, bool, error) {
	if p.Has != nil {
		inner, err := r.matches(ctx, p.Has.Query, true)
		if err != nil {
			return nil, false, err
		}
		set := map[string]bool{}
		ids := bson.A{}
		for _, d := range inner {
			for _, x := range d.Index {
				if x.P == p.Has.Ref.Code && x.RT == q.Type && x.RI != "" && !set[x.RI] {
					set[x.RI] = true
					ids = append(ids, x.RI)
				}
			}
		}
		pl.has[i] = set
		if len(ids) > maxIn {
			return nil, false, nil
		}
		return bson.D{{Key: "id", Value: bson.D{{Key: "$in", Value: ids}}}}, true, nil
	}
	if len(p.Chain) > 0 {
		keys := bson.A{}
		for _, cq := range p.Chain {
			ids, err := r.matchIDs(ctx, cq)
			if err != nil {
				return nil, false, err
			}
			pl.chains[i] = append(pl.chains[i], ids)
			for id := range ids {
				keys = append(keys, "r|"+p.Def.Code+"|"+cq.Type+"/"+id)
			}
		}
		if len(keys) > maxIn {
			return nil, false, nil
		}
		return keysIn(keys, false), true, nil
	}
	param := p.Def.Code
	if p.Modifier == "of-type" {
		param += ":of-type"
	}
	if p.Missing != nil {
		if !fieldSafe(param) {
			return nil, false, nil
		}
		return cmp("so."+param, "$exists", !*p.Missing), true, nil
	}
	if keys, ok := equalityKeys(p); ok {
		return keysIn(keys, p.Modifier == "not"), true, nil
	}
	if p.Modifier == "not" || !fieldSafe(param) {
		return nil, false, nil
	}
	exact := true
	var or bson.A
	switch p.Def.Type {
	case fhir.TypeString:
		if p.Modifier != "" {
			return nil, false, nil
		}
		for _, v := range p.Values {
			or = append(or, bson.D{{Key: "st." + param, Value: bson.D{{Key: "$regex", Value: "^" + regexp.QuoteMeta(v.Str)}}}})
		}
	case fhir.TypeDate:
		lo, hi := "dl."+param, "dh."+param
		for _, v := range p.Values {
			qlo, qhi := lowMillis(v.Low), highMillis(v.High)
			switch v.Prefix {
			case fhir.PrefixGt:
				or = append(or, cmp(hi, "$gt", qhi))
			case fhir.PrefixLt:
				or = append(or, cmp(lo, "$lt", qlo))
			case fhir.PrefixSa:
				or = append(or, cmp(lo, "$gte", qhi))
			case fhir.PrefixEb:
				or = append(or, cmp(hi, "$lte", qlo))
			case fhir.PrefixGe:
				// Some value ends after the range, or lies within it: the
				// latter, for a value starting within the range, is implied by
				// "some value starts at or after the range's start" together
				// with the former, so the two one-sided conditions are exact.
				or = append(or, cmp(hi, "$gt", qhi), cmp(lo, "$gte", qlo))
			case fhir.PrefixLe:
				or = append(or, cmp(lo, "$lt", qlo), cmp(hi, "$lte", qhi))
			case fhir.PrefixEq:
				exact = false
				or = append(or, bson.D{{Key: "$and", Value: bson.A{cmp(lo, "$gte", qlo), cmp(hi, "$lte", qhi)}}})
			case fhir.PrefixAp:
				exact = false
				w := (qhi - qlo) / 10
				or = append(or, bson.D{{Key: "$and", Value: bson.A{cmp(lo, "$lt", qhi+w), cmp(hi, "$gt", qlo-w)}}})
			default: // ne: in Go
				return nil, false, nil
			}
		}
	case fhir.TypeNumber, fhir.TypeQuantity:
		if p.Modifier != "" {
			return nil, false, nil
		}
		f := "nv." + param
		for _, v := range p.Values {
			if v.Code != "" && p.Def.Type == fhir.TypeQuantity {
				exact = false
			}
			switch v.Prefix {
			case fhir.PrefixGt, fhir.PrefixSa:
				or = append(or, cmp(f, "$gt", v.Num))
			case fhir.PrefixLt, fhir.PrefixEb:
				or = append(or, cmp(f, "$lt", v.Num))
			case fhir.PrefixGe:
				or = append(or, cmp(f, "$gte", v.Num))
			case fhir.PrefixLe:
				or = append(or, cmp(f, "$lte", v.Num))
			case fhir.PrefixEq:
				exact = false
				or = append(or, bson.D{{Key: "$and", Value: bson.A{cmp(f, "$gte", v.NumLow), cmp(f, "$lt", v.NumHi)}}})
			default: // ne, ap: in Go
				return nil, false, nil
			}
		}
	default:
		return nil, false, nil
	}
	if len(or) == 0 {
		return nil, false, nil
	}
	return anyOf(or), exact, nil
}

// equalityKeys returns the flat keys (keysOf) one of which a resource has
// exactly when it matches p, for the parameters that can be said that way:
// tokens (code, system|code, |code, system|), references (Type/id, id, URL,
// :identifier, a type modifier), uris (exact) and strings (:exact); :not of
// any of these is the absence of every key.
func equalityKeys(p fhir.Param) (bson.A, bool) {
	m := p.Modifier
	if m == "not" {
		m = ""
	}
	keys := bson.A{}
	code := p.Def.Code
	for _, v := range p.Values {
		// Keys are stored for non-empty values only: an empty system, code,
		// id or identifier is checked in Go.
		if p.Def.Type == fhir.TypeToken && v.HasSystem && v.Code == "" && v.System == "" ||
			p.Def.Type == fhir.TypeReference && (m == "identifier" && v.Code == "" || m != "identifier" && v.URL == "" && v.RefID == "") {
			return nil, false
		}
		switch p.Def.Type {
		case fhir.TypeToken:
			if m != "" {
				return nil, false
			}
			switch {
			case !v.HasSystem:
				keys = append(keys, "t|"+code+"|"+v.Code)
			case v.Code == "":
				keys = append(keys, "ts|"+code+"|"+v.System)
			default:
				keys = append(keys, "t|"+code+"|"+v.System+"|"+v.Code)
			}
		case fhir.TypeReference:
			switch {
			case m == "identifier" && v.HasSystem:
				keys = append(keys, "rs|"+code+"|"+v.System+"|"+v.Code)
			case m == "identifier":
				keys = append(keys, "rc|"+code+"|"+v.Code)
			case m != "" && !isTypeModifier(m):
				return nil, false
			case v.URL != "":
				keys = append(keys, "rx|"+code+"|"+v.URL)
			case v.RefType != "":
				keys = append(keys, "r|"+code+"|"+v.RefType+"/"+v.RefID)
			default:
				keys = append(keys, "ri|"+code+"|"+v.RefID)
			}
		case fhir.TypeURI:
			if m != "" {
				return nil, false
			}
			keys = append(keys, "u|"+code+"|"+v.Str)
		case fhir.TypeString:
			if m != "exact" || p.Modifier == "not" {
				return nil, false
			}
			keys = append(keys, "sx|"+code+"|"+v.Raw)
		default:
			return nil, false
		}
	}
	return keys, true
}

// upgrade brings documents written before the current layout up to date: it
// derives their keys and per-parameter fields from their index values.
func (s *Store) upgrade(ctx context.Context) error {
	var done struct {
		N int64 `bson:"n"`
	}
	err := s.meta.FindOne(ctx, bson.D{{Key: "_id", Value: "layout"}}).Decode(&done)
	if err == nil && done.N >= layout {
		return nil
	}
	cur, err := s.res.Find(ctx, bson.D{{Key: "lay", Value: bson.D{{Key: "$ne", Value: layout}}}}, options.Find().SetProjection(bson.D{{Key: "idx", Value: 1}}))
	if err != nil {
		return internal("upgrade", err)
	}
	var old []resourceDoc
	if err := cur.All(ctx, &old); err != nil {
		return internal("upgrade", err)
	}
	for _, d := range old {
		dv := derive(d.Index)
		set := bson.D{{Key: "keys", Value: nonNilKeys(keysOf(d.Index))}, {Key: "lay", Value: layout}}
		unset := bson.D{}
		for name, v := range map[string]any{"so": dv.Sort, "dl": dv.DLo, "dh": dv.DHi, "nv": dv.Num, "st": dv.Str} {
			if isEmptyMap(v) {
				unset = append(unset, bson.E{Key: name, Value: ""})
			} else {
				set = append(set, bson.E{Key: name, Value: v})
			}
		}
		update := bson.D{{Key: "$set", Value: set}}
		if len(unset) > 0 {
			update = append(update, bson.E{Key: "$unset", Value: unset})
		}
		if _, err := s.res.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, update); err != nil {
			return internal("upgrade", err)
		}
	}
	if _, err := s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: "layout"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: int64(layout)}}}}, options.UpdateOne().SetUpsert(true)); err != nil {
		return internal("upgrade", err)
	}
	if len(old) > 0 {
		s.log.Info("MongoDB store: brought documents up to the current search layout", "documents", len(old), "layout", layout)
	}
	return nil
}

func nonNilKeys(k []string) []string {
	if k == nil {
		return []string{}
	}
	return k
}

func isEmptyMap(v any) bool {
	switch m := v.(type) {
	case map[string]sortPair:
		return len(m) == 0
	case map[string][]int64:
		return len(m) == 0
	case map[string][]float64:
		return len(m) == 0
	case map[string][]string:
		return len(m) == 0
	}
	return true
}
