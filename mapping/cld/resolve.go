package cld

import (
	"context"
	"io"

	"crs/mapping"
)

// Resolved is the businessStatus text of a held-for-review Task whose row has
// been imported again after a person resolved it.
const Resolved = mapping.Resolved

// Resolve re-processes the CLD rows held for review that a person has
// resolved (mapping.ResolveHeld): the row's NHS number and LA person
// identifier are linked to the Patient the completed Task names, and the row
// is imported again.
func Resolve(ctx context.Context, door mapping.Door, run *mapping.Run, opt Options, rep *mapping.Report) error {
	im := &importer{run: run, opt: opt}
	return mapping.ResolveHeld(ctx, door, run, mapping.HeldSource{
		Columns:     Columns,
		LocalSystem: im.laSystem(),
		Person: func(rec mapping.Record) mapping.Person {
			return mapping.RowPerson(rec, "NHS_Number", "LA_Person_Unique_Identifier")
		},
		Reimport: func(ctx context.Context, run *mapping.Run, r io.Reader, rep *mapping.Report) error {
			o := opt
			o.Encoding, o.Progress = mapping.UTF8, nil
			return Import(ctx, door, run, r, o, rep)
		},
	}, opt.DryRun, rep)
}
