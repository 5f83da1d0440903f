package validate

import (
	"encoding/json"
	"sort"
	"strings"
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
		if _, ok := v.exprs[k]; ok {
			a = true
		}
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
	for _, k := range append(keys2(invariants), byExpression...) {
		if _, ok := v.constraints[k]; !ok {
			t.Errorf("%s is not an R4 constraint key", k)
		}
		if _, ok := keys[k]; !ok {
			t.Errorf("%s is checked but declared nowhere the served types reach", k)
		}
	}
}

// TestInvariants: every invariant crs checks, on one object that keeps it and
// one that breaks it.
func TestInvariants(t *testing.T) {
	cases := map[string][2]string{ // key → {keeps, breaks}
		"per-1":  {`{"start":"2026-01-01","end":"2026-01-02T00:00:00Z"}`, `{"start":"2026-01-02","end":"2026-01-01"}`},
		"rng-2":  {`{"low":{"value":1},"high":{"value":2}}`, `{"low":{"value":3,"code":"a"},"high":{"value":2,"code":"a"}}`},
		"qty-3":  {`{"code":"mg","system":"http://unitsofmeasure.org"}`, `{"code":"mg"}`},
		"cpt-2":  {`{"system":"phone","value":"1"}`, `{"value":"1"}`},
		"att-1":  {`{"data":"AAAA","contentType":"text/plain"}`, `{"data":"AAAA"}`},
		"age-1":  {`{"value":3,"code":"a","system":"http://unitsofmeasure.org"}`, `{"value":-3,"code":"a","system":"http://unitsofmeasure.org"}`},
		"cnt-3":  {`{"value":3,"code":"1"}`, `{"value":3.5,"code":"1"}`},
		"dis-1":  {`{"value":3,"code":"m"}`, `{"value":3}`},
		"drt-1":  {`{"value":3,"code":"min","system":"http://unitsofmeasure.org"}`, `{"value":3,"code":"min","system":"http://x"}`},
		"rat-1":  {`{"numerator":{"value":1},"denominator":{"value":2}}`, `{"numerator":{"value":1}}`},
		"tim-1":  {`{"duration":1,"durationUnit":"h"}`, `{"duration":1}`},
		"tim-2":  {`{"period":1,"periodUnit":"h"}`, `{"period":1}`},
		"tim-4":  {`{"duration":0}`, `{"duration":-1}`},
		"grp-1":  {`{"type":"person","actual":true,"member":[{"entity":{"reference":"Patient/a"}}]}`, `{"type":"person","actual":false,"member":[{"entity":{"reference":"Patient/a"}}]}`},
		"tim-5":  {`{"period":0}`, `{"period":-1}`},
		"tim-6":  {`{"period":1,"periodMax":2}`, `{"periodMax":2}`},
		"tim-7":  {`{"duration":1,"durationMax":2}`, `{"durationMax":2}`},
		"tim-8":  {`{"count":1,"countMax":2}`, `{"countMax":2}`},
		"tim-9":  {`{"offset":10,"when":["ACM"]}`, `{"offset":10,"when":["CM"]}`},
		"tim-10": {`{"timeOfDay":["10:00:00"]}`, `{"timeOfDay":["10:00:00"],"when":["MORN"]}`},
		"drq-1":  {`{"path":"x"}`, `{"path":"x","searchParam":"y"}`},
		"drq-2":  {`{"searchParam":"y"}`, `{}`},
		"exp-1":  {`{"expression":"x"}`, `{"language":"text/fhirpath"}`},
		"trd-1":  {`{"timingDate":"2026-01-01"}`, `{"timingDate":"2026-01-01","data":[{"type":"Patient"}]}`},
		"trd-2":  {`{"condition":{"language":"x"},"data":[{"type":"Patient"}]}`, `{"condition":{"language":"x"}}`},
		"trd-3":  {`{"type":"named-event","name":"x"}`, `{"type":"periodic"}`},
		"pat-1":  {`{"name":{"text":"x"}}`, `{"gender":"male"}`},
		"org-1":  {`{"name":"x"}`, `{"active":true}`},
		"org-2":  {`{"use":"work"}`, `{"use":"home"}`},
		"org-3":  {`{"use":"work"}`, `{"use":"home"}`},
		"cpl-3":  {`{"detail":{"status":"scheduled"}}`, `{"detail":{"status":"scheduled"},"reference":{"reference":"Appointment/1"}}`},
		"gol-1":  {`{"measure":{"text":"x"},"detailString":"x"}`, `{"detailString":"x"}`},
		"prr-1":  {`{"code":{"text":"x"},"orderDetail":[{"text":"x"}]}`, `{"orderDetail":[{"text":"x"}]}`},
		"ctm-1":  {`{"member":{"reference":"Practitioner/1"},"onBehalfOf":{"reference":"Organization/1"}}`, `{"member":{"reference":"RelatedPerson/1"},"onBehalfOf":{"reference":"Organization/1"}}`},
	}
	keys := append([]string{}, byExpression...)
	for k := range invariants {
		keys = append(keys, k)
	}
	for _, key := range keys {
		c, ok := cases[key]
		if !ok {
			t.Errorf("%s: no test case", key)
			continue
		}
		for i, want := range []bool{true, false} {
			var obj map[string]any
			d := json.NewDecoder(strings.NewReader(c[i]))
			d.UseNumber()
			if err := d.Decode(&obj); err != nil {
				t.Fatal(err)
			}
			if got, _, checked := v.holds(key, obj); got != want || !checked {
				t.Errorf("%s on %s: %v, want %v", key, c[i], got, want)
			}
		}
	}
}

func keys2(m map[string]invariant) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
