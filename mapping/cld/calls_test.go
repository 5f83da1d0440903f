package cld_test

import (
	"strings"
	"testing"

	"crs/mapping/cld"
	"crs/mapping/mappingtest"
)

// TestPlannedCallsPerDay: a Service event's Planned_units_per_week in care
// calls (Cost_Frequency_Unit_Type through ConceptMap cld-planned-unit) lands
// on the episode as Extension-CRS-CallsPerDay (a week's calls / 7); units that
// are not calls, a count without a unit, or more than 4 a day are reported and
// record none; an unknown unit or a count that is not a number rejects the row.
func TestPlannedCallsPerDay(t *testing.T) {
	const hdr = "LA_Code,NHS_Number,LA_Person_Unique_Identifier,Gender,Ethnicity,Date_of_Birth,Postcode,Event_Type,Event_Reference,Event_Start_Date,Event_End_Date,Service_Component,Provider_CQC_Location_ID,Planned_units_per_week,Cost_Frequency_Unit_Type\n"
	const person = "E10000031,9000000009,LA-1001,Female,White British,1941-03-14,CV21 1AA,Service,"
	cases := []struct {
		name, units, unit string
		calls             string // the episode's calls per day; "" none
		outcome, reason   string // a report line's outcome and reason; "" none
	}{
		{"calls", "28", "Call", "4", "", ""},
		{"visits, in Release 2's spelling", "14", "PER VISIT", "2", "", ""},
		{"not the same every day", "10", "Calls", "1", "warning", "10 calls a week is not the same number every day: recorded as 1 a day"},
		{"hours are care, not calls", "10.5", "Hours", "", "warning", `the units are "Hours", not care calls`},
		{"no unit", "21", "", "", "warning", "without a Cost_Frequency_Unit_Type"},
		{"more than the pathway's", "42", "Call", "", "warning", "42 calls a week is 6 a day, more than the pathway's 4: not recorded"},
		{"an unknown unit", "21", "Fortnights", "", "rejected", `unknown code "Fortnights": ConceptMap https://community-recovery.example.org/fhir/ConceptMap/cld-planned-unit`},
		{"not a number", "lots", "Call", "", "rejected", `"lots" is not a number of units a week`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			file := hdr + person + "S-1,2026-11-21,,Reablement,1-000000001," + c.units + "," + c.unit + "\n"
			sum, report, err := e.importFile(t, "calls.csv", []byte(file), cld.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if c.reason != "" && !strings.Contains(strings.ReplaceAll(report, `""`, `"`), "2,Planned_units_per_week,"+c.outcome+",") && !strings.Contains(strings.ReplaceAll(report, `""`, `"`), "2,Cost_Frequency_Unit_Type,"+c.outcome+",") {
				t.Errorf("want a %s line for the row:\n%s", c.outcome, report)
			}
			if c.reason != "" && !strings.Contains(strings.ReplaceAll(report, `""`, `"`), c.reason) {
				t.Errorf("want %q in the report:\n%s", c.reason, report)
			}
			eps := e.Search(t, "EpisodeOfCare", "patient=Patient/alice")
			if c.outcome == "rejected" {
				if len(eps) != 0 || sum.Rejected != 1 {
					t.Fatalf("a rejected row stored its episode: %v (%v)", eps, sum)
				}
				return
			}
			if len(eps) != 1 {
				t.Fatalf("episodes: %v\n%s", eps, report)
			}
			got := mappingtest.JSON(eps[0])
			const url = `"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-CallsPerDay"`
			switch {
			case c.calls == "" && strings.Contains(got, url):
				t.Errorf("calls per day recorded: %s", got)
			case c.calls != "" && !strings.Contains(got, url+`,"valueInteger":`+c.calls):
				t.Errorf("want %s calls a day on the episode: %s", c.calls, got)
			}
		})
	}
}
