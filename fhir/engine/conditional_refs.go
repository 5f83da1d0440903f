package engine

import (
	"strconv"
	"strings"

	"crs/fhir"
)

// conditionalReferences refuses conditional references ("Patient?identifier=…")
// in a resource written on its own: FHIR resolves them only in a transaction,
// where the engine rewrites each to the one resource it matches; anywhere else
// one would be stored as a reference nothing can follow.
func conditionalReferences(obj fhir.Object) error {
	var issues []fhir.Issue
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["reference"].(string); ok {
				if t, _, cond := strings.Cut(ref, "?"); cond && !strings.Contains(t, "/") && !strings.Contains(t, ":") {
					issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: "invalid", Expression: path + ".reference",
						Diagnostics: "conditional reference " + strconv.Quote(ref) + " is resolved only inside a transaction Bundle; refer to the resource by Type/id"})
				}
			}
			for k, c := range x {
				if k == "resourceType" {
					continue
				}
				walk(c, path+"."+k)
			}
		case []any:
			for i, c := range x {
				walk(c, path+"["+strconv.Itoa(i)+"]")
			}
		}
	}
	walk(obj, fhir.ResourceType(obj))
	if err := fhir.IssuesError(fhir.Invalid, issues); err != nil {
		return err
	}
	return nil
}
