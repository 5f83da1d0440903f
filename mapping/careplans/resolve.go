package careplans

import (
	"context"
	"io"

	"crs/mapping"
)

// Resolve re-processes the care plans (CSV) held for review that a person
// has resolved (mapping.ResolveHeld): the plan's NHS number and client
// reference are linked to the Patient the completed Task names, and the plan
// (all its rows, which the Task holds) is imported again. A plan held from a
// record system's own FHIR CarePlan is not re-processed: the Task is
// reported, and the system sends the plan again once the Patient is linked.
func Resolve(ctx context.Context, door mapping.Door, run *mapping.Run, opt Options, rep *mapping.Report) error {
	im := &importer{run: run}
	return mapping.ResolveHeld(ctx, door, run, mapping.HeldSource{
		Columns:     Columns,
		LocalSystem: im.clientSystem(),
		Person: func(rec mapping.Record) mapping.Person {
			return mapping.RowPerson(rec, "NHS_Number", "Client_Reference")
		},
		Reimport: func(ctx context.Context, run *mapping.Run, r io.Reader, rep *mapping.Report) error {
			o := opt
			o.Encoding, o.Progress = mapping.UTF8, nil
			return Import(ctx, door, run, r, o, rep)
		},
	}, opt.DryRun, rep)
}
