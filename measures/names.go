// Package measures makes the Community Recovery pathway visible: its measures as
// FHIR Measure resources evaluated into MeasureReports, the MDT caseload page,
// and the synthetic demo region. It is a door into fhir/engine like the HTTP API:
// every read runs through the engine with the caller's principal, so the access
// policy bounds what is counted and shown, and every door use is audited.
package measures

import "crs/profiles"

// The pathway's URLs, relative to the canonical base, and fixed systems.
const (
	defaultBase         = profiles.DefaultCanonicalBase
	extDischargeReady   = "/StructureDefinition/Extension-CRS-DischargeReadyDate"
	extCallPattern      = "/StructureDefinition/Extension-CRS-CareCallPattern"
	extCallsPerDay      = "/StructureDefinition/Extension-CRS-CallsPerDay"
	extTherapyScreening = "/StructureDefinition/Extension-CRS-TherapyScreening"
	extLocality         = "/StructureDefinition/Extension-CRS-Locality"
	extExitRoute        = "/StructureDefinition/Extension-CRS-ExitRoute"
	csCallPattern       = "/CodeSystem/crs-care-call-pattern"
	csLocality          = "/CodeSystem/crs-locality"
	csExitRoute         = "/CodeSystem/crs-exit-route"
	csVisitType         = "/CodeSystem/crs-visit-type"

	nhsSystem      = "https://fhir.nhs.uk/Id/nhs-number"
	odsSystem      = "https://fhir.nhs.uk/Id/ods-organization-code"
	taskTypeSystem = "https://community-recovery.example.org/fhir/CodeSystem/crs-task-type"
)

// Localities are the pathway's localities (CodeSystem crs-locality), in the
// order the page offers them.
var Localities = []struct{ Code, Name string }{
	{"north-warwickshire", "North Warwickshire"},
	{"south-warwickshire", "South Warwickshire"},
	{"rugby", "Rugby"},
}

// LocalityName returns the display name of a locality code, or "" if unknown.
func LocalityName(code string) string {
	for _, l := range Localities {
		if l.Code == code {
			return l.Name
		}
	}
	return ""
}
