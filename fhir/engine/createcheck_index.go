package engine

import "crs/fhir"

// inBoundsByIndex answers the policy's "as written" question for a create
// from the search values it was stored with (a prestamped create's), when
// every one of the caller's create conditions is a plain token condition
// (the council's "responsible-la=…|{la}"): it reports true only when each
// condition matches one of those values exactly as the store's search
// matches a token (code; system; or both: cond in fhir/store/sqlite), so that
// the search would have found the create. Any other condition, or no match,
// leaves the entry to the search, which decides as before.
func inBoundsByIndex(conds []fhir.Param, index []fhir.IndexValue) bool {
	if len(conds) == 0 {
		return false
	}
	for _, p := range conds {
		if p.Def == nil || p.Def.Type != fhir.TypeToken || p.Modifier != "" || p.Missing != nil || len(p.Chain) > 0 || p.Has != nil {
			return false
		}
		if !tokenMatches(p.Def.Code, p.Values, index) {
			return false
		}
	}
	return true
}

// tokenMatches reports whether any of values (ORed) matches a token value of
// param among index.
func tokenMatches(param string, values []fhir.Value, index []fhir.IndexValue) bool {
	for _, v := range values {
		for _, iv := range index {
			if iv.Param != param || iv.Type != fhir.TypeToken {
				continue
			}
			switch {
			case !v.HasSystem:
				if iv.Code == v.Code {
					return true
				}
			case v.Code == "":
				if iv.System == v.System {
					return true
				}
			default:
				if iv.System == v.System && iv.Code == v.Code {
					return true
				}
			}
		}
	}
	return false
}
