package sqlite

import "crs/fhir"

// hiFloor is the least end (idx_date.hi) of a date range that a date
// parameter bounded from below matches: each of its values is ge, gt or sa,
// whose conditions (cond) all hold only of ranges ending at or after the
// value's start (ge's second branch through lo <= hi, true of every valid
// range). Counting "birthdate=ge1950" scanned the (type, param, lo) key from
// the earliest birth dates, passing every earlier one to find the later ones
// (a third of the people's rows at a million resources); with the floor, SQLite
// reads the matching rows from the latest ends' index (idx_date_hi, partial
// on rid > 0) and stops at the sample's limit.
func hiFloor(p fhir.Param) (int64, bool) {
	if p.Def == nil || p.Def.Type != fhir.TypeDate || !plain(p) || p.Modifier != "" || p.Missing != nil || len(p.Values) == 0 {
		return 0, false
	}
	floor := int64(maxInt)
	for _, v := range p.Values {
		switch v.Prefix {
		case fhir.PrefixGe, fhir.PrefixGt, fhir.PrefixSa:
			floor = min(floor, lowMillis(v.Low))
		default:
			return 0, false
		}
	}
	return floor, floor != minInt
}
