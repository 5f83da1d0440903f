package engine

import (
	"context"
	"errors"

	"crs/fhir"
	"crs/fhir/store"
)

// nhsNumbersClear answers, for the Patients a transaction wrote, which of
// them certainly hold their NHS numbers alone, with one search for all their
// numbers (identifier=system|a,system|b,…) instead of one per Patient: a
// Patient is clear when no other Patient has any of its numbers. Those not
// clear (or all, when the search finds more than a page) are left to
// checkNHSNumber, which decides and words the refusal as before. An import's
// transaction writes hundreds of Patients, and each search costs SQL
// statements that the embedded driver parses every time.
//
// Each written Patient's numbers come from its search values (indexes, one
// per Patient; nil: from its body), as writtenIdentity reads them.
func (e *Engine) nhsNumbersClear(ctx context.Context, tx store.Reader, patients []store.Version, indexes [][]fhir.IndexValue) ([]bool, error) {
	clear := make([]bool, len(patients))
	if len(patients) < 2 {
		return clear, nil
	}
	def, ok := e.params.Param("Patient", "identifier")
	if !ok {
		return clear, nil
	}
	numbers := make([][]string, len(patients))
	written := make(map[string]int, len(patients)) // id → its last version's index
	for i, v := range patients {
		written[v.ID] = i
	}
	var values []fhir.Value
	seen := map[string]bool{}
	for i, v := range patients {
		var index []fhir.IndexValue
		if i < len(indexes) {
			index = indexes[i]
		}
		holds, all, ok := writtenIdentity(v, index) // integrity_identity.go
		if !ok {
			return nil, fhir.InternalError("nhs number", errNotObject)
		}
		if !holds {
			clear[i] = true // holds no number: checkNHSNumber would pass it
			continue
		}
		for _, number := range all {
			if number == "" {
				continue
			}
			numbers[i] = append(numbers[i], number)
			if !seen[number] {
				seen[number] = true
				values = append(values, fhir.Value{System: nhsNumberSystem, HasSystem: true, Code: number})
			}
		}
	}
	if len(values) == 0 {
		return clear, nil
	}
	holders := map[string]map[string]bool{} // number → the ids of the Patients that have it
	for len(values) > 0 {
		chunk := values[:min(createCheckChunk, len(values))]
		values = values[len(chunk):]
		q := &fhir.Query{Type: "Patient", Count: 2 * len(chunk), Total: fhir.TotalNone,
			Params: []fhir.Param{{Def: def, Values: chunk}}}
		res, err := tx.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		if res.Next != "" {
			return make([]bool, len(patients)), nil // too many to tell here: check one by one
		}
		for _, m := range res.Matches {
			var found []string
			if i, ok := written[m.ID]; ok && patients[i].VersionID == m.VersionID {
				found = numbers[i] // written by this transaction: read above
			} else if _, all, ok := patientIdentity(m.Body); ok {
				found = all
			}
			for _, number := range found {
				if !seen[number] {
					continue
				}
				if holders[number] == nil {
					holders[number] = map[string]bool{}
				}
				holders[number][m.ID] = true
			}
		}
	}
	for i, v := range patients {
		if clear[i] {
			continue
		}
		clear[i] = true
		for _, number := range numbers[i] {
			for id := range holders[number] {
				if id != v.ID {
					clear[i] = false
				}
			}
		}
	}
	return clear, nil
}

var errNotObject = errors.New("a stored Patient is not a JSON object")
