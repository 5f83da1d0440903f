package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"crs/fhir"
)

// A total counted by merging index rows. When every condition of a query is
// one exact value whose index rows form one run in row id order (a token
// with its system, a typed reference, a denormalised key; a code alone when
// every row of that code has the same system), the matches are the row ids
// present in every run: SQLite's INTERSECT with ORDER BY merges the runs as
// it reads them, sequentially, and stops at the total limit. The streamed
// count (total.go) instead seeks every other condition's rows once per
// driving row, in the large rid indexes; at a million resources that is
// about 750 random seeks for a total of 500 ("a provider's active care
// plans", "a provider's active episodes"). Every index row belongs to the
// current, live version of a resource of its type (Put deletes a resource's
// rows before a new version's and writes none for a deletion), so the runs
// need no join to current.

// mergeTotal counts q's matches whose row id is above after, up to limit,
// by merging its conditions' index runs. It reports false when a condition
// is not one run.
func mergeTotal(ctx context.Context, db querier, q *fhir.Query, after int64, limit int) (int, bool, error) {
	if limit <= 0 || q.Compartment != nil || len(q.Params) < 2 {
		return 0, false, nil
	}
	var b builder
	b.add("SELECT COUNT(*) FROM (")
	for i, p := range q.Params {
		if i > 0 {
			b.add(" INTERSECT ")
		}
		ok, err := runOf(ctx, db, &b, q.Type, p, after)
		if err != nil || !ok {
			return 0, false, err
		}
	}
	b.add(" ORDER BY 1 LIMIT ?)", limit)
	total, err := b.count(ctx, db)
	return total, err == nil, err
}

// runOf adds to b the SELECT of p's index rows above after as one run of
// its index in row id order, and reports false when p's rows are not one
// run.
func runOf(ctx context.Context, db querier, b *builder, typ string, p fhir.Param, after int64) (bool, error) {
	if !plain(p) || p.Missing != nil || p.Modifier != "" || len(p.Values) != 1 || p.Def == nil {
		return false, nil
	}
	v := p.Values[0]
	switch p.Def.Type {
	case fhir.TypeToken:
		if v.Code == "" {
			return false, nil
		}
		system := v.System
		if !v.HasSystem {
			one, s, err := oneSystem(ctx, db, typ, p.Def.Code, v.Code)
			if err != nil || !one {
				return false, err
			}
			system = s
		}
		b.add("SELECT rid FROM idx_token WHERE type = ? AND param = ? AND code = ? AND system = ? AND rid > ?", typ, p.Def.Code, v.Code, system, after)
		return true, nil
	case fhir.TypeReference:
		if v.RefType == "" || v.RefID == "" || v.URL != "" {
			return false, nil
		}
		b.add("SELECT rid FROM idx_reference WHERE type = ? AND param = ? AND ref_id = ? AND ref_type = ? AND rid > ?", typ, p.Def.Code, v.RefID, v.RefType, after)
		return true, nil
	}
	return false, nil
}

// oneSystem reports whether every token row of typ's param with code has the
// same system (two seeks: the least and the greatest), and which. A code no
// row has is one run (of nothing).
func oneSystem(ctx context.Context, db querier, typ, param, code string) (bool, string, error) {
	var lo, hi string
	const q = "SELECT system FROM idx_token WHERE type = ? AND param = ? AND code = ? ORDER BY system "
	if err := db.QueryRowContext(ctx, q+"ASC LIMIT 1", typ, param, code).Scan(&lo); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return true, "", nil
		}
		return false, "", fhir.InternalError("search", err)
	}
	if err := db.QueryRowContext(ctx, q+"DESC LIMIT 1", typ, param, code).Scan(&hi); err != nil {
		return false, "", fhir.InternalError("search", err)
	}
	return lo == hi, lo, nil
}
