package sqlite

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// Sentinels for open date ends and missing sort keys.
const (
	minInt = math.MinInt64
	maxInt = math.MaxInt64
	maxNum = 1e308
	// maxText sorts after every real string (BINARY collation compares UTF-8 bytes).
	maxText = "\U0010FFFF\U0010FFFF"
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

// builder accumulates SQL text and its bound arguments.
type builder struct {
	sql  strings.Builder
	args []any
}

func (b *builder) add(s string, args ...any) {
	b.sql.WriteString(s)
	b.args = append(b.args, args...)
}

// count runs the built SELECT COUNT(*) statement and returns its number.
func (b *builder) count(ctx context.Context, db querier) (int, error) {
	n := 0
	if err := db.QueryRowContext(ctx, b.sql.String(), b.args...).Scan(&n); err != nil {
		return 0, fhir.InternalError("search", err)
	}
	return n, nil
}

// without is params without its i-th parameter, in a new slice.
func without(params []fhir.Param, i int) []fhir.Param {
	out := make([]fhir.Param, 0, len(params)-1)
	return append(append(out, params[:i]...), params[i+1:]...)
}

// tableOf names the index table of a parameter type.
func tableOf(t fhir.ParamType) string {
	switch t {
	case fhir.TypeToken:
		return "idx_token"
	case fhir.TypeString:
		return "idx_string"
	case fhir.TypeDate:
		return "idx_date"
	case fhir.TypeNumber, fhir.TypeQuantity:
		return "idx_number"
	case fhir.TypeReference:
		return "idx_reference"
	case fhir.TypeURI:
		return "idx_uri"
	}
	return ""
}

// likeEscape escapes LIKE wildcards in s (with \ as the escape character).
func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// A search is a walk of one driving set of resource rows, probed for every other
// condition. The driver is the parameter whose index lookup finds fewest rows,
// counted up to sampleLimit at query time (SQLite's own statistics cannot tell
// "this patient's goals" from "every active goal"); every other parameter is a
// correlated EXISTS served by the index tables' rid indexes, so a large set
// that does not drive is never materialised.

// sampleLimit bounds the index rows counted to rank a parameter; a parameter
// that finds goodEnough rows or fewer drives without sampling the rest.
const (
	sampleLimit = 1000
	goodEnough  = 100
	bigSample   = 20 // the second sample, when several are saturated, is this many times larger
)

// planner ranks parameters by sampling their index lookups.
type planner struct {
	ctx  context.Context
	db   querier
	memo map[rankKey]int // the top-level ranks already sampled (the page and its plan choice share them)
	// walkFrom is the driving set size from which the page walks rather than
	// builds the set (walk.go).
	walkFrom int
	// total is the count of every match, when the page's plan counted it
	// (counted; intersect.go); search then gives it as Bundle.total.
	total   int
	counted bool
	// stats, when set, keeps large sampled counts across queries
	// (samplecache.go).
	stats *sampleCache
}

// rankKey names one sampled rank: a parameter of a query, and the sample size.
type rankKey struct {
	p     *fhir.Param
	limit int
}

// rankAt is rank for params[i], remembered so that the plan choice and the
// query text it leads to sample each parameter once.
func (pl *planner) rankAt(typ string, params []fhir.Param, i, limit int) (int, error) {
	k := rankKey{&params[i], limit}
	if n, ok := pl.memo[k]; ok {
		return n, nil
	}
	n, err := pl.rank(typ, params[i], limit)
	if err != nil {
		return 0, err
	}
	if pl.memo == nil {
		pl.memo = map[rankKey]int{}
	}
	pl.memo[k] = n
	return n, nil
}

// never ranks a parameter that cannot drive (a negation).
const never = math.MaxInt

// rank estimates how many rows the parameter selects, counting up to limit
// (a result of limit means "limit or more"). A plain parameter counts its index
// rows; a chain or _has counts what its inner query's most selective parameter
// finds there (the resources it points through: a proxy, since the fan-out is
// not known), so that a chain to a few hundred people drives rather than
// "status=active" over every care plan.
func (pl *planner) rank(typ string, p fhir.Param, limit int) (int, error) {
	switch {
	case negated(p):
		return never, nil
	case len(p.Chain) > 0:
		total := 0
		for _, inner := range p.Chain {
			n, err := pl.smallest(inner.Type, inner.Params, limit)
			if err != nil {
				return 0, err
			}
			if total += n; total >= limit {
				return limit, nil
			}
		}
		return total, nil
	case p.Has != nil:
		return pl.smallest(p.Has.Query.Type, p.Has.Query.Params, limit)
	}
	if n, ok := idRank(p, limit); ok {
		return n, nil
	}
	return pl.count(typ, p, limit)
}

// smallest estimates the rows an inner query matches: the fewest that any one
// of its parameters selects, up to limit.
func (pl *planner) smallest(typ string, params []fhir.Param, limit int) (int, error) {
	best := limit
	for _, p := range params {
		n, err := pl.rank(typ, p, limit)
		if err != nil {
			return 0, err
		}
		best = min(best, n)
		if best <= goodEnough {
			break
		}
	}
	return best, nil
}

// count counts a plain parameter's index rows, up to limit. A date bounded
// from below is counted through the latest ends' index (hiFloor); a count of
// none is then made again without it, since an empty driver is trusted to
// have no rows (emptyDriver).
func (pl *planner) count(typ string, p fhir.Param, limit int) (int, error) {
	floor, floored := hiFloor(p)
	n, err := pl.countFloor(typ, p, limit, floor, floored)
	if err == nil && floored && n == 0 {
		return pl.countFloor(typ, p, limit, 0, false)
	}
	return n, err
}

func (pl *planner) countFloor(typ string, p fhir.Param, limit int, floor int64, floored bool) (int, error) {
	var b builder
	b.add("SELECT COUNT(*) FROM (")
	if err := lookup(&b, typ, p, ""); err != nil {
		return 0, err
	}
	if floored {
		b.add(" AND rid > 0 AND hi >= ?", floor)
	}
	var key string
	var writes int64
	if pl.stats.cacheable(p) {
		key = sampleKey(&b)
		n, w, ok := pl.stats.get(typ, key, limit)
		if ok {
			return n, nil
		}
		writes = w
	}
	b.add(" LIMIT ?)", limit)
	n, err := b.count(pl.ctx, pl.db)
	if err == nil && key != "" {
		pl.stats.put(typ, key, limit, n, writes)
	}
	return n, err
}

// plain reports whether a parameter is an index lookup of its own (not a chain
// or _has).
func plain(p fhir.Param) bool { return p.Has == nil && len(p.Chain) == 0 }

// driver picks the parameter that drives, or -1 when none can.
func (pl *planner) driver(typ string, params []fhir.Param) (int, error) {
	i, _, err := pl.driverCount(typ, params, false)
	return i, err
}

// driverCount picks the parameter that drives, or -1 when none can, and its
// sampled row count (never when none drives). With sized set, a lone parameter
// is sampled too (the plan choice needs its size); otherwise it drives unsampled.
func (pl *planner) driverCount(typ string, params []fhir.Param, sized bool) (int, int, error) {
	switch len(params) {
	case 0:
		return -1, never, nil
	case 1:
		if negated(params[0]) {
			return -1, never, nil
		}
		if !sized {
			return 0, never, nil
		}
	}
	best, bestN := -1, never
	var saturated []int
	for i, p := range params {
		if negated(p) {
			continue
		}
		n, err := pl.rankAt(typ, params, i, sampleLimit)
		if err != nil {
			return 0, 0, err
		}
		if n < bestN {
			best, bestN = i, n
		}
		if n == sampleLimit {
			saturated = append(saturated, i)
		}
		if n <= goodEnough {
			return best, bestN, nil // small enough to drive: sampling the rest would cost more
		}
	}
	if bestN < sampleLimit || len(saturated) == 0 {
		return best, bestN, nil
	}
	// Nothing small: a second, larger sample tells the large ones apart.
	// Each is counted only up to one row past the fewest found so far: past
	// that it cannot drive, and counting a huge set costs a read per row.
	limit := sampleLimit * bigSample
	fewest, pick := never, -1
	for _, i := range plainFirst(params, saturated) { // sampleorder.go
		bound := limit
		if fewest < limit {
			bound = fewest + 1
		}
		n, err := pl.rankAt(typ, params, i, bound)
		if err != nil {
			return 0, 0, err
		}
		if n < fewest {
			pick, fewest = i, n
		}
	}
	if fewest < limit {
		return pick, fewest, nil
	}
	// All huge: a plain parameter drives (a chain or _has driving a huge set
	// costs a join per row on top).
	for _, i := range saturated {
		if plain(params[i]) {
			return i, limit, nil
		}
	}
	return saturated[0], limit, nil
}

// negated reports whether the parameter selects by absence (:not, :missing=true).
func negated(p fhir.Param) bool {
	return p.Modifier == "not" || (p.Missing != nil && *p.Missing)
}

// conditions adds the filters of params on the row named alias of type typ.
// With a planner, the best parameter drives (an IN on the row's rid or id) and
// the rest probe; without one, all of them probe (the caller has a driver). It
// reports whether a parameter drives.
func conditions(b *builder, pl *planner, alias, typ string, params []fhir.Param, depth int) (bool, error) {
	drive := -1
	if pl != nil {
		var err error
		if drive, err = pl.driver(typ, params); err != nil {
			return false, err
		}
	}
	parts := make([]fragment, len(params))
	for i, p := range params {
		var pb builder
		if err := where(&pb, pl, alias, typ, p, depth, i == drive); err != nil {
			return false, err
		}
		parts[i] = fragment{strings.TrimPrefix(pb.sql.String(), " AND "), pb.args}
	}
	if len(parts) > 0 {
		b.add(" AND ")
		balanced(b, " AND ", parts)
	}
	return drive >= 0, nil
}

// fragment is a piece of SQL with its arguments.
type fragment struct {
	sql  string
	args []any
}

// balanced writes parts joined by op as a balanced tree of parentheses, so
// that the depth of the expression grows with the logarithm of the number of
// parts: a flat "a OR b OR c …" is a chain as deep as it is long, and SQLite
// refuses expressions deeper than 1000 (SQLITE_MAX_EXPR_DEPTH). SQLite
// flattens nested ANDs and ORs when planning, so the tree costs nothing.
// The parts' arguments keep their order.
func balanced(b *builder, op string, parts []fragment) {
	if len(parts) == 1 {
		b.add(parts[0].sql, parts[0].args...)
		return
	}
	mid := len(parts) / 2
	b.add("(")
	balanced(b, op, parts[:mid])
	b.add(op)
	balanced(b, op, parts[mid:])
	b.add(")")
}

// where adds the filter of one query parameter on the current row named alias
// (c, or c1, c2 … inside chains). depth numbers the nested aliases. A driving
// filter is an uncorrelated IN subquery that SQLite walks; a probing one is a
// correlated EXISTS looked up through the rid index.
func where(b *builder, pl *planner, alias, typ string, p fhir.Param, depth int, drive bool) error {
	r, inner := "r"+strconv.Itoa(depth), "c"+strconv.Itoa(depth+1)
	if p.Has != nil {
		if drive {
			// The ids found become rows through current's (type, id) key, so
			// that the driver is a row id list like every other (the caller
			// keeps SQLite off the type's rows with a unary + on c.type,
			// which would also keep it off that key: it scanned the type).
			h := "h" + strconv.Itoa(depth)
			b.add(" AND "+alias+".rid IN (SELECT "+h+".rid FROM current "+h+" WHERE "+h+".type = ? AND "+h+".id IN (SELECT "+r+".ref_id FROM idx_reference "+r+" JOIN current "+inner+" ON "+inner+".rid = "+r+".rid"+
				" WHERE "+r+".type = ? AND "+r+".param = ? AND "+r+".ref_type = ? AND "+inner+".deleted = 0",
				typ, p.Has.Type, p.Has.Ref.Code, typ)
			if _, err := conditions(b, pl, inner, p.Has.Type, p.Has.Query.Params, depth+1); err != nil {
				return err
			}
			b.add(")")
		} else {
			b.add(" AND EXISTS (SELECT 1 FROM idx_reference "+r+" JOIN current "+inner+" ON "+inner+".rid = "+r+".rid"+
				" WHERE "+r+".type = ? AND "+r+".param = ? AND "+r+".ref_id = "+alias+".id AND "+r+".ref_type = ? AND "+inner+".deleted = 0",
				p.Has.Type, p.Has.Ref.Code, typ)
			if _, err := conditions(b, nil, inner, p.Has.Type, p.Has.Query.Params, depth+1); err != nil {
				return err
			}
		}
		b.add(")")
		return nil
	}
	if len(p.Chain) > 0 {
		if drive {
			b.add(" AND "+alias+".rid IN (SELECT "+r+".rid FROM idx_reference "+r+" WHERE "+r+".type = ? AND "+r+".param = ? AND (", typ, p.Def.Code)
		} else {
			b.add(" AND EXISTS (SELECT 1 FROM idx_reference "+r+" INDEXED BY idx_reference_rid WHERE "+r+".rid = "+alias+".rid AND "+r+".type = ? AND "+r+".param = ? AND (", typ, p.Def.Code)
		}
		for i, q := range p.Chain {
			if i > 0 {
				b.add(" OR ")
			}
			if drive {
				// The chained type's own parameters pick its rows; the + keeps
				// SQLite from walking the whole type when one of them drives.
				var cb builder
				ok, err := conditions(&cb, pl, inner, q.Type, q.Params, depth+1)
				if err != nil {
					return err
				}
				typeCol := inner + ".type"
				if ok {
					typeCol = "+" + typeCol
				}
				b.add("("+r+".ref_type = ? AND "+r+".ref_id IN (SELECT "+inner+".id FROM current "+inner+" WHERE "+typeCol+" = ? AND "+inner+".deleted = 0", q.Type, q.Type)
				b.add(cb.sql.String(), cb.args...)
				b.add("))")
			} else {
				b.add("("+r+".ref_type = ? AND EXISTS (SELECT 1 FROM current "+inner+" WHERE "+inner+".type = ? AND "+inner+".id = "+r+".ref_id AND "+inner+".deleted = 0", q.Type, q.Type)
				if _, err := conditions(b, nil, inner, q.Type, q.Params, depth+1); err != nil {
					return err
				}
				b.add("))")
			}
		}
		b.add("))")
		return nil
	}
	if tableOf(p.Def.Type) == "" {
		return fhir.Errorf(fhir.NotSupported, p.Def.Code, "search parameters of type %s are not supported", p.Def.Type)
	}
	switch {
	case drive && negated(p):
		return fhir.InternalError("search", fmt.Errorf("a negated parameter cannot drive"))
	case drive:
		b.add(" AND " + alias + ".rid IN (")
	case negated(p):
		b.add(" AND NOT EXISTS (")
	default:
		b.add(" AND EXISTS (")
	}
	probe := ""
	if !drive {
		probe = alias
	}
	if err := lookup(b, typ, p, probe); err != nil {
		return err
	}
	b.add(")")
	return nil
}

// lookup writes the SELECT of the index rows a plain parameter matches (ignoring
// :not, which the caller turns into NOT EXISTS). With probe set it is correlated
// with that row's rid and reads through the table's rid index.
func lookup(b *builder, typ string, p fhir.Param, probe string) error {
	table := tableOf(p.Def.Type)
	param := p.Def.Code
	if p.Modifier == "of-type" {
		param += ":of-type" // the values extraction keeps for :of-type
	}
	if probe != "" {
		b.add("SELECT 1 FROM "+table+" INDEXED BY "+table+"_rid WHERE rid = "+probe+".rid AND type = ? AND param = ?", typ, param)
	} else {
		b.add("SELECT rid FROM "+table+" WHERE type = ? AND param = ?", typ, param)
	}
	if p.Missing != nil {
		return nil
	}
	if refList(p) {
		// Many typed references (revinclude, $everything): the ids as an IN list
		// that the (type, param, ref_id, …) key serves, then the typed pairs as
		// a row-value list (SQLite does not seek on a row-value IN).
		b.add(" AND ref_id IN (")
		for i, v := range p.Values {
			if i > 0 {
				b.add(", ")
			}
			b.add("?", v.RefID)
		}
		b.add(") AND (ref_id, ref_type) IN (VALUES ")
		for i, v := range p.Values {
			if i > 0 {
				b.add(", ")
			}
			b.add("(?, ?)", v.RefID, v.RefType)
		}
		b.add(")")
		return nil
	}
	if tokenList(p) {
		// Many system|code tokens (identifier lists): the codes as an IN list
		// that the (type, param, code, …) key serves, then the pairs, as for
		// references; as ORed pairs, SQLite takes a second to plan 1,000.
		b.add(" AND code IN (")
		for i, v := range p.Values {
			if i > 0 {
				b.add(", ")
			}
			b.add("?", v.Code)
		}
		b.add(") AND (system, code) IN (VALUES ")
		for i, v := range p.Values {
			if i > 0 {
				b.add(", ")
			}
			b.add("(?, ?)", v.System, v.Code)
		}
		b.add(")")
		return nil
	}
	parts := make([]fragment, len(p.Values))
	for i, v := range p.Values {
		var vb builder
		if err := cond(&vb, p, v); err != nil {
			return err
		}
		parts[i] = fragment{"(" + vb.sql.String() + ")", vb.args}
	}
	b.add(" AND ")
	balanced(b, " OR ", parts)
	if identifierCodes(p) {
		b.add(" AND code != ''")
	}
	return nil
}

// identifierCodes reports whether p is a reference :identifier search whose
// every value names a code. Its lookup then says the code is not empty in as many
// words, so that SQLite may use the partial index of identifier codes
// (idx_reference_ident): it does not infer that from code = ?, and without
// it walks every row of the parameter (every Provenance's entity, for an
// importer's duplicate check of one message control id).
func identifierCodes(p fhir.Param) bool {
	if p.Def.Type != fhir.TypeReference || p.Modifier != "identifier" || len(p.Values) == 0 {
		return false
	}
	for _, v := range p.Values {
		if v.Code == "" {
			return false
		}
	}
	return true
}

// refList reports whether p is a plain list of several typed references.
func refList(p fhir.Param) bool {
	if p.Def.Type != fhir.TypeReference || p.Modifier != "" || p.Missing != nil || len(p.Values) < 2 {
		return false
	}
	for _, v := range p.Values {
		if v.RefID == "" || v.RefType == "" || v.URL != "" {
			return false
		}
	}
	return true
}

// tokenList reports whether p is a plain list of several system|code tokens.
func tokenList(p fhir.Param) bool {
	if p.Def.Type != fhir.TypeToken || (p.Modifier != "" && p.Modifier != "not") || p.Missing != nil || len(p.Values) < 2 {
		return false
	}
	for _, v := range p.Values {
		if !v.HasSystem || v.System == "" || v.Code == "" {
			return false
		}
	}
	return true
}

// cond adds the condition one value puts on a row of the parameter's table.
func cond(b *builder, p fhir.Param, v fhir.Value) error {
	switch p.Def.Type {
	case fhir.TypeToken:
		switch {
		case p.Modifier == "text":
			b.add(`text LIKE ? ESCAPE '\'`, "%"+likeEscape(v.Str)+"%")
		case p.Modifier == "of-type":
			b.add("system = ? AND code = ? AND text = ?", v.System, v.Code, v.Str)
		case !v.HasSystem:
			b.add("code = ?", v.Code)
		case v.Code == "":
			b.add("system = ?", v.System)
		default:
			b.add("system = ? AND code = ?", v.System, v.Code)
		}
	case fhir.TypeString:
		switch p.Modifier {
		case "exact":
			b.add("exact = ?", v.Raw)
		case "contains":
			b.add(`str LIKE ? ESCAPE '\'`, "%"+likeEscape(v.Str)+"%")
		default:
			b.add("str >= ? AND str < ?", v.Str, v.Str+maxText)
		}
	case fhir.TypeURI:
		switch p.Modifier {
		case "below":
			b.add("uri >= ? AND uri < ?", v.Str, v.Str+maxText)
		case "above":
			b.add("substr(?, 1, length(uri)) = uri", v.Str)
		default:
			b.add("uri = ?", v.Str)
		}
	case fhir.TypeReference:
		switch {
		case p.Modifier == "identifier" && v.HasSystem:
			b.add("system = ? AND code = ?", v.System, v.Code)
		case p.Modifier == "identifier":
			b.add("code = ?", v.Code)
		case v.URL != "":
			b.add("url = ?", v.URL)
		case v.RefType != "":
			b.add("ref_id = ? AND ref_type = ?", v.RefID, v.RefType)
		default:
			b.add("ref_id = ?", v.RefID)
		}
	case fhir.TypeDate:
		lo, hi := lowMillis(v.Low), highMillis(v.High)
		switch v.Prefix {
		case fhir.PrefixEq:
			b.add("lo >= ? AND hi <= ?", lo, hi)
		case fhir.PrefixNe:
			b.add("NOT (lo >= ? AND hi <= ?)", lo, hi)
		case fhir.PrefixGt:
			b.add("hi > ?", hi)
		case fhir.PrefixLt:
			b.add("lo < ?", lo)
		case fhir.PrefixGe:
			b.add("(hi > ? OR (lo >= ? AND hi <= ?))", hi, lo, hi)
		case fhir.PrefixLe:
			b.add("(lo < ? OR (lo >= ? AND hi <= ?))", lo, lo, hi)
		case fhir.PrefixSa:
			b.add("lo >= ?", hi)
		case fhir.PrefixEb:
			b.add("hi <= ?", lo)
		case fhir.PrefixAp:
			w := (hi - lo) / 10
			b.add("lo < ? AND hi > ?", hi+w, lo-w)
		default:
			return fhir.Errorf(fhir.Invalid, p.Def.Code, "unknown prefix %q", v.Prefix)
		}
	case fhir.TypeNumber, fhir.TypeQuantity:
		switch v.Prefix {
		case fhir.PrefixEq:
			b.add("num >= ? AND num < ?", v.NumLow, v.NumHi)
		case fhir.PrefixNe:
			b.add("NOT (num >= ? AND num < ?)", v.NumLow, v.NumHi)
		case fhir.PrefixGt, fhir.PrefixSa:
			b.add("num > ?", v.Num)
		case fhir.PrefixLt, fhir.PrefixEb:
			b.add("num < ?", v.Num)
		case fhir.PrefixGe:
			b.add("num >= ?", v.Num)
		case fhir.PrefixLe:
			b.add("num <= ?", v.Num)
		case fhir.PrefixAp:
			d := math.Abs(v.Num) / 10
			b.add("num >= ? AND num <= ?", v.Num-d, v.Num+d)
		default:
			return fhir.Errorf(fhir.Invalid, p.Def.Code, "unknown prefix %q", v.Prefix)
		}
		if p.Def.Type == fhir.TypeQuantity && v.Code != "" {
			b.add(" AND code = ?", v.Code)
			if v.HasSystem {
				b.add(" AND system = ?", v.System)
			}
		}
	}
	return nil
}

// sortKey returns the SQL expression of one sort key (never NULL: a resource
// without the value gets a sentinel that sorts it last) and the kind of its
// values ('i' integer, 'f' float, 's' text).
func sortKey(b *builder, typ string, k fhir.SortKey) (string, byte) {
	agg := "MIN"
	if k.Descending {
		agg = "MAX"
	}
	col, kind := "", byte('s')
	switch k.Def.Type {
	case fhir.TypeToken:
		col = "code"
	case fhir.TypeString:
		col = "str"
	case fhir.TypeURI:
		col = "uri"
	case fhir.TypeReference:
		col = "ref_type || '/' || ref_id || url"
	case fhir.TypeDate:
		col, kind = "lo", 'i'
		if k.Descending {
			col = "hi"
		}
	case fhir.TypeNumber, fhir.TypeQuantity:
		col, kind = "num", 'f'
	}
	var missing any
	switch {
	case kind == 'i' && k.Descending:
		missing = int64(minInt)
	case kind == 'i':
		missing = int64(maxInt)
	case kind == 'f' && k.Descending:
		missing = -maxNum
	case kind == 'f':
		missing = maxNum
	case k.Descending:
		missing = ""
	default:
		missing = maxText
	}
	b.args = append(b.args, typ, k.Def.Code, missing)
	return "COALESCE((SELECT " + agg + "(" + col + ") FROM " + tableOf(k.Def.Type) + " WHERE rid = c.rid AND type = ? AND param = ?), ?)", kind
}

// cursor is the position after the last row of a page: its sort key values and
// rid.
type cursor struct {
	Keys []string `json:"k"` // each value prefixed by its kind: "i:", "f:" or "s:"
	RID  int64    `json:"r"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, kinds []byte) (cursor, []any, error) {
	var c cursor
	bad := fhir.Errorf(fhir.Invalid, "_cursor", "the paging cursor is not valid for this search (was the query changed?)")
	data, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(data, &c) != nil || len(c.Keys) != len(kinds) {
		return c, nil, bad
	}
	vals := make([]any, len(kinds))
	for i, k := range c.Keys {
		if len(k) < 2 || k[0] != kinds[i] || k[1] != ':' {
			return c, nil, bad
		}
		switch kinds[i] {
		case 'i':
			n, err := strconv.ParseInt(k[2:], 10, 64)
			if err != nil {
				return c, nil, bad
			}
			vals[i] = n
		case 'f':
			f, err := strconv.ParseFloat(k[2:], 64)
			if err != nil {
				return c, nil, bad
			}
			vals[i] = f
		default:
			vals[i] = k[2:]
		}
	}
	return c, vals, nil
}

func keyString(kind byte, v any) string {
	switch x := v.(type) {
	case int64:
		return string(kind) + ":" + strconv.FormatInt(x, 10)
	case float64:
		return string(kind) + ":" + strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		return string(kind) + ":" + string(x)
	case string:
		return string(kind) + ":" + x
	}
	return string(kind) + ":" + fmt.Sprint(v)
}

// filters writes the FROM and WHERE clauses common to the page and the count.
func filters(b *builder, pl *planner, q *fhir.Query) error {
	var where builder
	if cp := q.Compartment; cp != nil {
		// The compartment drives (one IN that SQLite seeks: an OR around it
		// would make it scan the type); every parameter probes.
		var parts []string
		if cp.Type == q.Type {
			parts = append(parts, "SELECT rid FROM current WHERE type = ? AND id = ?")
			where.args = append(where.args, cp.Type, cp.ID)
		}
		if len(cp.Params) > 0 {
			parts = append(parts, "SELECT rid FROM idx_reference WHERE type = ? AND param IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(cp.Params)), ", ")+") AND ref_id = ? AND ref_type = ?")
			where.args = append(where.args, q.Type)
			for _, p := range cp.Params {
				where.args = append(where.args, p)
			}
			where.args = append(where.args, cp.ID, cp.Type)
		}
		if len(parts) == 0 {
			parts = append(parts, "SELECT NULL WHERE 0")
		}
		args := where.args
		where.args = nil
		where.add(" AND c.rid IN ("+strings.Join(parts, " UNION ALL ")+")", args...)
		pl = nil
	}
	driven, err := conditions(&where, pl, "c", q.Type, q.Params, 0)
	if err != nil {
		return err
	}
	if driven || q.Compartment != nil {
		// An index lookup drives: the unary + keeps SQLite from walking every
		// resource of the type instead.
		b.add(" FROM current c WHERE +c.type = ? AND c.deleted = 0", q.Type)
	} else {
		// rid > 0 (true of every row) lets SQLite use the partial index
		// current_type (type, deleted, rid): the type's live rows in rid
		// order, so a page after a cursor is a seek. Without it SQLite took
		// the (type, id) index, read every row of the type with its body and
		// sorted them, on every page: a walk of a type was quadratic.
		b.add(" FROM current c WHERE c.type = ? AND c.deleted = 0 AND c.rid > 0", q.Type)
	}
	b.add(where.sql.String(), where.args...)
	return nil
}

// search answers q: its total (bounded by q.TotalLimit) and one page, found by
// the plan choosePlan picks; a driving set of walkFrom rows or more is walked.
func search(ctx context.Context, db querier, q *fhir.Query, walkFrom int) (*store.SearchResult, error) {
	return searchStats(ctx, db, q, walkFrom, nil)
}

// searchStats is search with the planner's counts kept in stats when it is
// not nil (samplecache.go).
func searchStats(ctx context.Context, db querier, q *fhir.Query, walkFrom int, stats *sampleCache) (*store.SearchResult, error) {
	res := &store.SearchResult{Total: -1}
	pl := &planner{ctx: ctx, db: db, walkFrom: walkFrom, stats: stats}
	var fb builder
	if err := filters(&fb, pl, q); err != nil {
		return nil, err
	}
	countTotal := func() error {
		total, streamed, err := boundedTotal(ctx, db, pl, q)
		if err != nil {
			return err
		}
		if !streamed {
			var cb builder
			if q.TotalLimit > 0 {
				cb.add("SELECT COUNT(*) FROM (SELECT 1"+fb.sql.String()+" LIMIT ?)", append(append([]any{}, fb.args...), q.TotalLimit)...)
			} else {
				cb.add("SELECT COUNT(*)"+fb.sql.String(), fb.args...)
			}
			if err := db.QueryRowContext(ctx, cb.sql.String(), cb.args...).Scan(&total); err != nil {
				return fhir.InternalError("search", err)
			}
		}
		res.Total = limitTotal(q, total)
		return nil
	}
	if q.Count <= 0 {
		if q.Total != fhir.TotalNone {
			if err := countTotal(); err != nil {
				return nil, err
			}
		}
		return res, nil
	}
	if err := page(ctx, db, pl, q, &fb, res); err != nil {
		return nil, err
	}
	switch {
	case q.Total == fhir.TotalNone:
	case pl.counted:
		res.Total = limitTotal(q, pl.total)
	case q.Cursor == "" && res.Next == "":
		// The first page holds every match: they are the total, with no
		// count (which costs as much as the page again, or far more).
		res.Total = limitTotal(q, len(res.Matches))
	case q.Cursor == "" && len(q.Sort) == 0:
		// The first page in row id order: only the matches after it are
		// counted (pagetotal.go).
		total, err := firstPageTotal(ctx, db, pl, q, &fb, res)
		if err != nil {
			return nil, err
		}
		res.Total = limitTotal(q, total)
	default:
		if err := countTotal(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// limitTotal is the Bundle.total of total matches: none (-1) at or past a
// total limit.
func limitTotal(q *fhir.Query, total int) int {
	if q.TotalLimit > 0 && total >= q.TotalLimit {
		return -1
	}
	return total
}

// page finds res's page of q by the plan choosePlan picks; fb is the
// driving-set plan's FROM and WHERE.
func page(ctx context.Context, db querier, pl *planner, q *fhir.Query, fb *builder, res *store.SearchResult) error {
	kinds := make([]byte, len(q.Sort))
	for i, k := range q.Sort {
		_, kinds[i] = sortKey(&builder{}, q.Type, k)
	}
	if ok, err := intersectPage(ctx, db, pl, q, kinds, res); err != nil || ok {
		return err
	}
	plan, err := choosePlan(pl, q)
	if err != nil {
		return err
	}
	after, last := q.Cursor, cursor{}
	if plan.walk {
		done, from, found, walked, err := walkPage(ctx, db, q, kinds, plan, res)
		if err != nil {
			return err
		}
		res.Plan = plan.describe(q, walked, done)
		if done {
			return nil
		}
		after, last = from, found
	} else {
		res.Plan = plan.describe(q, 0, true)
		if empty, err := pl.emptyDriver(q); err != nil || empty {
			return err
		}
	}
	return drivePage(ctx, db, q, fb, kinds, after, last, res)
}

// drivePage completes res's page with the driving-set plan: the matches after
// the keyset position after, with sort keys computed per matching row, sorted.
// last is the cursor of the last match already in res.
func drivePage(ctx context.Context, db querier, q *fhir.Query, fb *builder, kinds []byte, after string, last cursor, res *store.SearchResult) error {
	// The page: sort keys computed per current row, then keyset seek and order.
	var b builder
	b.add("SELECT m.rid, v.id, v.vid, v.ts, v.method, v.body")
	var inner builder
	inner.add("SELECT c.rid, c.seq")
	for i, k := range q.Sort {
		expr, _ := sortKey(&inner, q.Type, k)
		inner.sql.WriteString(", " + expr + " AS k" + strconv.Itoa(i))
		b.add(", m.k" + strconv.Itoa(i))
	}
	inner.add(fb.sql.String(), fb.args...)
	var order builder
	order.add(" ORDER BY ")
	for i, k := range q.Sort {
		dir := " ASC, "
		if k.Descending {
			dir = " DESC, "
		}
		order.add("m.k" + strconv.Itoa(i) + dir)
	}
	order.add("m.rid ASC LIMIT ?", q.Count+1-len(res.Matches))
	if len(q.Sort) > 0 {
		// Sorted: the matches' keys are sorted and the page cut before any
		// version is read, so only the page's bodies are (a join before the
		// sort read every match's body).
		var sorted builder
		sorted.add("SELECT * FROM ("+inner.sql.String()+") m", inner.args...)
		if err := keysetWhere(&sorted, q, kinds, after); err != nil {
			return err
		}
		sorted.add(order.sql.String(), order.args...)
		b.add(" FROM ("+sorted.sql.String()+") m JOIN versions v ON v.seq = m.seq", sorted.args...)
		b.add(order.sql.String(), order.args...)
	} else {
		b.add(" FROM ("+inner.sql.String()+") m JOIN versions v ON v.seq = m.seq", inner.args...)
		if err := keysetWhere(&b, q, kinds, after); err != nil {
			return err
		}
		b.add(order.sql.String(), order.args...)
	}

	rows, err := db.QueryContext(ctx, b.sql.String(), b.args...)
	if err != nil {
		return fhir.InternalError("search", err)
	}
	defer rows.Close()
	for rows.Next() {
		var rid, ts int64
		v := store.Version{Type: q.Type}
		keys := make([]any, len(q.Sort))
		dest := []any{&rid, &v.ID, &v.VersionID, &ts, &v.Method, &v.Body}
		for i := range keys {
			dest = append(dest, &keys[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return fhir.InternalError("search", err)
		}
		if len(res.Matches) == q.Count {
			res.Next = encodeCursor(last)
			break
		}
		v.LastUpdated = time.Unix(0, ts).UTC()
		res.Matches = append(res.Matches, v)
		last = cursor{RID: rid, Keys: make([]string, len(keys))}
		for i, k := range keys {
			last.Keys[i] = keyString(kinds[i], k)
		}
	}
	if err := rows.Err(); err != nil {
		return fhir.InternalError("search", err)
	}
	return nil
}

// keysetWhere adds the WHERE clause that keeps the rows of m after the keyset
// position after (nothing when after is "").
func keysetWhere(b *builder, q *fhir.Query, kinds []byte, after string) error {
	if after == "" {
		return nil
	}
	c, vals, err := decodeCursor(after, kinds)
	if err != nil {
		return err
	}
	b.add(" WHERE ")
	keysetAfter(b, q.Sort, vals, "m.k", "m.rid", c.RID)
	return nil
}

// History returns versions newest first.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) (*store.HistoryResult, error) {
	var f builder
	f.add(" FROM versions WHERE 1 = 1")
	if q.Type != "" {
		f.add(" AND type = ?", q.Type)
	}
	if q.ID != "" {
		f.add(" AND id = ?", q.ID)
	}
	if !q.Since.IsZero() {
		f.add(" AND ts >= ?", q.Since.UnixNano())
	}
	res := &store.HistoryResult{}
	if err := s.rq.QueryRowContext(ctx, "SELECT COUNT(*)"+f.sql.String(), f.args...).Scan(&res.Total); err != nil {
		return nil, fhir.InternalError("history", err)
	}
	b := builder{args: append([]any(nil), f.args...)}
	b.add("SELECT seq, type, id, vid, ts, deleted, method, body" + f.sql.String())
	if q.Cursor != "" {
		seq, err := strconv.ParseInt(q.Cursor, 36, 64)
		if err != nil || seq <= 0 {
			return nil, fhir.Errorf(fhir.Invalid, "_cursor", "the paging cursor is not valid")
		}
		b.add(" AND seq < ?", seq)
	}
	count := max(q.Count, 1)
	if q.ID != "" {
		// One resource: its (type, id, vid) key gives the order; seq would make
		// SQLite walk every version of the type.
		b.add(" ORDER BY vid DESC LIMIT ?", count+1)
	} else {
		b.add(" ORDER BY seq DESC LIMIT ?", count+1)
	}
	rows, err := s.rq.QueryContext(ctx, b.sql.String(), b.args...)
	if err != nil {
		return nil, fhir.InternalError("history", err)
	}
	defer rows.Close()
	var lastSeq int64
	for rows.Next() {
		var seq, ts int64
		var deleted int
		var v store.Version
		if err := rows.Scan(&seq, &v.Type, &v.ID, &v.VersionID, &ts, &deleted, &v.Method, &v.Body); err != nil {
			return nil, fhir.InternalError("history", err)
		}
		if len(res.Versions) == count {
			res.Next = strconv.FormatInt(lastSeq, 36)
			break
		}
		v.LastUpdated = time.Unix(0, ts).UTC()
		v.Deleted = deleted != 0
		if v.Deleted {
			v.Body = nil
		}
		res.Versions = append(res.Versions, v)
		lastSeq = seq
	}
	if err := rows.Err(); err != nil {
		return nil, fhir.InternalError("history", err)
	}
	return res, nil
}
