package validate

import (
	"sort"
	"testing"

	"crs/fhir"
)

// reachableKeys returns the constraint keys declared on the resource types
// clients write (the conformance resources and AuditEvent are read-only
// through the API: crs writes them itself) and on every structure reachable from them (data types, backbone
// elements), with where each is declared.
func reachableKeys() map[string]string {
	keys := map[string]string{}
	seen := map[string]bool{}
	var visit func(def string)
	visit = func(def string) {
		if seen[def] {
			return
		}
		seen[def] = true
		for _, k := range v.rootKeys[def] {
			keys[k] = def
		}
		s := v.structures[def]
		if s == nil {
			return
		}
		for _, e := range s.elements {
			for _, k := range e.keys {
				keys[k] = e.path
			}
			if e.ref != "" {
				visit(e.ref)
			}
			if _, ok := v.structures[e.path]; ok {
				visit(e.path)
			}
			for _, t := range e.types {
				if v.kinds[t] == "complex-type" {
					visit(t)
				}
			}
		}
	}
	for _, rt := range fhir.ServedTypes() {
		if fhir.Allows(rt, fhir.Create) {
			visit(rt)
		}
	}
	visit("DomainResource")
	return keys
}

// TestEveryInvariantAccountedFor: every R4 constraint of the served types (and
// the data types they use) is checked, or listed as not checked with why; and
// every key crs checks is an R4 constraint.
func TestEveryInvariantAccountedFor(t *testing.T) {
	keys := reachableKeys()
	var missing []string
	for k, where := range keys {
		_, a := invariants[k]
		_, b := structural[k]
		_, c := notChecked[k]
		if !a && !b && !c {
			missing = append(missing, k+" ("+where+"): "+v.constraints[k].Expression)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("neither checked nor listed as not checked: %s", m)
	}
	for _, m := range []map[string]string{structural, notChecked} {
		for k := range m {
			if _, ok := v.constraints[k]; !ok {
				t.Errorf("%s is not an R4 constraint key", k)
			}
		}
	}
	for k := range invariants {
		if _, ok := v.constraints[k]; !ok {
			t.Errorf("%s is not an R4 constraint key", k)
		}
		if _, ok := keys[k]; !ok {
			t.Errorf("%s is checked but declared nowhere the served types reach", k)
		}
	}
}
