package engine

import (
	"encoding/json"

	"crs/fhir"
	"crs/fhir/store"
)

// writtenIdentity is patientIdentity for a Patient version a transaction
// wrote, read from the search values extracted for it when they tell
// (index: its identifier and active values; reading the body of each of an
// import's hundreds of Patients cost about 4% of a row's CPU, in the store's
// one writer): a Patient with any link value is read from its body, as the
// link's type decides. Without search values (nil), from the body.
func writtenIdentity(v store.Version, index []fhir.IndexValue) (holds bool, numbers []string, ok bool) {
	if index == nil {
		return patientIdentity(v.Body)
	}
	holds = true
	for _, iv := range index {
		switch iv.Param {
		case "link":
			return patientIdentity(v.Body)
		case "active":
			if iv.Type == "token" && iv.Code == "false" {
				holds = false
			}
		case "identifier":
			if iv.Type == "token" && iv.System == nhsNumberSystem {
				numbers = append(numbers, iv.Code)
			}
		}
	}
	return holds, numbers, true
}

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
