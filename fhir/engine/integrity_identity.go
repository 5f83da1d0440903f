package engine

import "encoding/json"

// patientIdentity reads, from a stored Patient's body, whether it holds its
// NHS numbers (holdsIdentity) and which they are, without parsing the whole
// resource into a tree: the batched NHS-number check of an import's
// transaction reads hundreds of Patients, and a full parse of each cost about
// 4% of an imported row's CPU. Top-level keys match exactly (not as
// encoding/json matches struct fields, ignoring case). ok is false when the
// body is not a JSON object.
func patientIdentity(body []byte) (holds bool, numbers []string, ok bool) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return false, nil, false
	}
	holds = true
	if raw, found := top["active"]; found {
		var active bool
		if json.Unmarshal(raw, &active) == nil && !active {
			holds = false
		}
	}
	if raw, found := top["link"]; found {
		var links []any
		if json.Unmarshal(raw, &links) == nil {
			for _, l := range links {
				if lm, isObj := l.(map[string]any); isObj && lm["type"] == "replaced-by" {
					holds = false
				}
			}
		}
	}
	if raw, found := top["identifier"]; found {
		var ids []any
		if json.Unmarshal(raw, &ids) == nil {
			for _, x := range ids {
				ident, _ := x.(map[string]any)
				if number, _ := ident["value"].(string); ident["system"] == nhsNumberSystem {
					numbers = append(numbers, number)
				}
			}
		}
	}
	return holds, numbers, true
}
