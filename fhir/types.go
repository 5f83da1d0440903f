package fhir

import "sort"

// Interaction is a FHIR RESTful interaction code, as in CapabilityStatement.
type Interaction string

// The interactions crs serves.
const (
	Read            Interaction = "read"
	VRead           Interaction = "vread"
	Update          Interaction = "update"
	Delete          Interaction = "delete"
	HistoryInstance Interaction = "history-instance"
	HistoryType     Interaction = "history-type"
	Create          Interaction = "create"
	SearchType      Interaction = "search-type"
)

var (
	writable = []Interaction{Read, VRead, Update, Delete, HistoryInstance, HistoryType, Create, SearchType}
	readOnly = []Interaction{Read, VRead, HistoryInstance, HistoryType, SearchType}
)

// servedTypes lists the resource types crs serves and the interactions on each.
// The pathway's five come first; AuditEvent and the conformance resources are read
// and search only through the API.
var servedTypes = map[string][]Interaction{
	"ServiceRequest":      writable,
	"CarePlan":            writable,
	"Goal":                writable,
	"Encounter":           writable,
	"EpisodeOfCare":       writable,
	"Patient":             writable,
	"Organization":        writable,
	"Practitioner":        writable,
	"PractitionerRole":    writable,
	"CareTeam":            writable,
	"RelatedPerson":       writable,
	"Provenance":          writable,
	"Task":                writable,
	"Measure":             readOnly,
	"Group":               writable,
	"Subscription":        writable,
	"AuditEvent":          readOnly,
	"StructureDefinition": readOnly,
	"ValueSet":            readOnly,
	"CodeSystem":          readOnly,
	"ConceptMap":          readOnly,
	"SearchParameter":     readOnly,
}

// ServedTypes returns the resource types crs serves, sorted.
func ServedTypes() []string {
	out := make([]string, 0, len(servedTypes))
	for t := range servedTypes {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Served reports whether resource type t is served.
func Served(t string) bool {
	_, ok := servedTypes[t]
	return ok
}

// Interactions returns the interactions served on type t (nil if not served).
func Interactions(t string) []Interaction {
	return servedTypes[t]
}

// Allows reports whether interaction i is served on type t.
func Allows(t string, i Interaction) bool {
	for _, x := range servedTypes[t] {
		if x == i {
			return true
		}
	}
	return false
}
