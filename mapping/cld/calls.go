package cld

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	fm "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"crs/mapping"
)

// The calls-per-day extension, and the UCUM unit the cld-planned-unit
// ConceptMap gives a unit that is a care call.
const (
	callsPerDayPath = "/StructureDefinition/Extension-CRS-CallsPerDay"
	unitCall        = "{call}"
	maxCallsPerDay  = 4 // the pathway's plans: everyone starts with 4 (Extension-CRS-CallsPerDay)
)

// plannedCalls reads a Service event's Planned_units_per_week and, through
// the cld-planned-unit ConceptMap, its Cost_Frequency_Unit_Type: a unit that
// is a care call gives the calls a week. A count that is not a number, or a
// unit the map does not know, is a row error; units that are not calls
// (hours, weeks), or a count with no unit, give none (noted).
func (im *importer) plannedCalls(rw *row, rec mapping.Record) *mapping.RowError {
	units := strings.TrimSpace(rec.Get("Planned_units_per_week"))
	if units == "" {
		return nil
	}
	n, err := strconv.ParseFloat(units, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) {
		return &mapping.RowError{Line: rec.Line, Field: "Planned_units_per_week", Reason: fmt.Sprintf("%q is not a number of units a week", units)}
	}
	unit := rec.Get("Cost_Frequency_Unit_Type")
	if unit == "" {
		rw.unitsNote = "Planned_units_per_week without a Cost_Frequency_Unit_Type: whether the units are care calls is not known, so no calls per day are recorded"
		return nil
	}
	c, found, rerr := im.run.Translate(rec.Line, "Cost_Frequency_Unit_Type", im.cm("cld-planned-unit"), unit)
	if rerr != nil {
		return rerr
	}
	if !found || c.Code == nil || *c.Code != unitCall {
		rw.unitsNote = fmt.Sprintf("the units are %q, not care calls (ConceptMap %s): no calls per day are recorded", unit, im.cm("cld-planned-unit"))
		return nil
	}
	rw.calls = int(math.Round(n))
	if float64(rw.calls) != n {
		rw.unitsNote = fmt.Sprintf("%s calls a week is not a whole number of calls: counted as %d", units, rw.calls)
	}
	return nil
}

// setCallsPerDay records a Service event's planned calls on its episode: the
// calls a week / 7, rounded to the nearest whole call. A figure the pathway's
// plans cannot hold (over 4 a day) is reported and not recorded.
func (im *importer) setCallsPerDay(ep *mapping.State, rw *row) {
	line := rw.rec.Line
	if rw.unitsNote != "" {
		im.rep.Add(line, "Planned_units_per_week", "warning", rw.unitsNote)
	}
	if rw.calls < 0 {
		return
	}
	perDay := int(math.Round(float64(rw.calls) / 7))
	if perDay*7 != rw.calls {
		im.rep.Add(line, "Planned_units_per_week", "warning", fmt.Sprintf("%d calls a week is not the same number every day: recorded as %d a day", rw.calls, perDay))
	}
	if perDay > maxCallsPerDay {
		im.rep.Add(line, "Planned_units_per_week", "warning", fmt.Sprintf("%d calls a week is %d a day, more than the pathway's %d: not recorded", rw.calls, perDay, maxCallsPerDay))
		return
	}
	setExtension(ep.Obj, toObject(fm.Extension{Url: im.run.System(callsPerDayPath), ValueInteger: ptr(perDay)}))
}
