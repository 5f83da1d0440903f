package sqlite

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"crs/fhir"
	"crs/fhir/store"
)

// indexRow is the row of table that holds search value iv of resource rid
// of type typ, its values in the table's column order (columnNames).
func indexRow(rid int64, typ string, iv fhir.IndexValue) (table string, r []any, err error) {
	switch iv.Type {
	case fhir.TypeToken:
		r = []any{rid, typ, iv.Param, iv.System, iv.Code, iv.Text}
	case fhir.TypeString:
		r = []any{rid, typ, iv.Param, iv.Str, iv.Exact}
	case fhir.TypeDate:
		r = []any{rid, typ, iv.Param, lowMillis(iv.Low), highMillis(iv.High)}
	case fhir.TypeNumber, fhir.TypeQuantity:
		r = []any{rid, typ, iv.Param, iv.Num, finite(iv.NumLow), finite(iv.NumHi), iv.System, iv.Code}
	case fhir.TypeReference:
		r = []any{rid, typ, iv.Param, iv.RefType, iv.RefID, iv.Exact, iv.System, iv.Code}
	case fhir.TypeURI:
		r = []any{rid, typ, iv.Param, iv.Exact}
	default:
		return "", nil, fhir.InternalError("index", fmt.Errorf("index value of unknown type %q", iv.Type))
	}
	return tableOf(iv.Type), r, nil
}

// columnNames are each index table's columns in order.
var columnNames = map[string][]string{
	"idx_token":     {"rid", "type", "param", "system", "code", "text"},
	"idx_string":    {"rid", "type", "param", "str", "exact"},
	"idx_date":      {"rid", "type", "param", "lo", "hi"},
	"idx_number":    {"rid", "type", "param", "num", "lo", "hi", "system", "code"},
	"idx_reference": {"rid", "type", "param", "ref_type", "ref_id", "url", "system", "code"},
	"idx_uri":       {"rid", "type", "param", "uri"},
}

// replaceIndex removes the search values of resource rid that its next
// version v does not have, before Put buffers v's values. Most updates change
// a few values of many (a status, a period's end): the values the versions
// share stay where they are, and their buffered rows are ignored on insert
// (INSERT OR IGNORE), so the update writes a few B-tree entries instead of
// deleting and inserting every value in the table and in its rid index. A
// table of which v has no values, and a deleted v, lose all of rid's rows
// with one statement. Rows that are not search values (the denormalised keys'
// rows on rid) are never among v's values, so they go, as before; keysAfter
// and refreshKeys put them back.
func (t *txn) replaceIndex(ctx context.Context, rid int64, v store.Version, index []fhir.IndexValue) error {
	keep := map[string]map[string]bool{} // table → rowKey of v's values
	if !v.Deleted {
		for _, iv := range index {
			table, r, err := indexRow(rid, v.Type, iv)
			if err != nil {
				return err
			}
			if keep[table] == nil {
				keep[table] = map[string]bool{}
			}
			keep[table][rowKey(r)] = true
		}
	}
	for i, table := range indexTables {
		if len(keep[table]) == 0 {
			if _, err := t.stmts.deleteIndex[i].ExecContext(ctx, rid); err != nil {
				return fhir.InternalError("put", err)
			}
			continue
		}
		gone, err := t.rowsNotIn(ctx, table, rid, keep[table])
		if err != nil {
			return fhir.InternalError("put", err)
		}
		if len(gone) == 0 {
			continue
		}
		cols := columnNames[table]
		del := "DELETE FROM " + table + " WHERE " + strings.Join(cols, " = ? AND ") + " = ?"
		for _, r := range gone {
			if _, err := t.q.ExecContext(ctx, del, r...); err != nil {
				return fhir.InternalError("put", err)
			}
		}
	}
	return nil
}

// rowsNotIn reads rid's rows of table (through its rid index) and returns
// those whose rowKey is not in keep.
func (t *txn) rowsNotIn(ctx context.Context, table string, rid int64, keep map[string]bool) ([][]any, error) {
	cols := columnNames[table]
	rows, err := t.q.QueryContext(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+table+" INDEXED BY "+table+"_rid WHERE rid = ?", rid)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var gone [][]any
	for rows.Next() {
		r := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range r {
			ptrs[i] = &r[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		if !keep[rowKey(r)] {
			gone = append(gone, r)
		}
	}
	return gone, rows.Err()
}

// rowKey is a row's values as one string that two rows share only when every
// value is equal and of the same type (a value read back from SQLite may come
// in another Go type: such a row is replaced, which is correct, only slower).
func rowKey(r []any) string {
	var b []byte
	for _, v := range r {
		switch x := v.(type) {
		case int64:
			b = append(b, 'i')
			b = strconv.AppendInt(b, x, 10)
		case float64:
			b = append(b, 'f')
			b = strconv.AppendFloat(b, x, 'g', -1, 64)
		case string:
			b = append(b, 's')
			b = strconv.AppendInt(b, int64(len(x)), 10)
			b = append(b, ':')
			b = append(b, x...)
		default:
			b = append(b, '?')
			b = fmt.Appendf(b, "%T:%v", v, v)
		}
		b = append(b, 0)
	}
	return string(b)
}
