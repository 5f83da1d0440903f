package engine

import (
	"context"

	"crs/fhir"
)

// MergeBuildFunc makes a patient merge's transaction Bundle from what its
// lookups find (as BuildFunc does) and names the two Patients it merges:
// from into to. A nil Bundle writes nothing (from and to are then ignored).
type MergeBuildFunc func(ctx context.Context, l Lookup) (tree fhir.Object, from, to string, err error)

// MergePatientsWith is MergePatients for an importer that finds the two
// Patients inside the merge's write transaction (TransactionWith): build
// looks them up and returns the merge's own writes and their ids, and the
// references to Patient/from move onto Patient/to in the same transaction,
// as MergePatients moves them. Nothing can merge, move or create either
// Patient between the lookups and the writes.
func (e *Engine) MergePatientsWith(ctx context.Context, build MergeBuildFunc, opt SearchOptions) (*Bundle, error) {
	m := &patientMerge{}
	ctx = context.WithValue(ctx, mergeKey{}, m)
	return e.TransactionWith(ctx, func(ctx context.Context, l Lookup) (fhir.Object, error) {
		*m = patientMerge{} // build may run again
		tree, from, to, err := build(ctx, l)
		if err != nil || tree == nil {
			return nil, err
		}
		if !fhir.ValidID(from) || !fhir.ValidID(to) || from == to {
			return nil, fhir.Errorf(fhir.Invalid, "", "a merge names two different Patients by id: %q into %q", from, to)
		}
		m.from, m.to = from, to
		return tree, nil
	}, opt)
}
