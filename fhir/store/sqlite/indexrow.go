package sqlite

import (
	"fmt"

	"crs/fhir"
)

// indexRow is the row of table that holds search value iv of resource rid
// of type typ, its values in the table's column order.
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
