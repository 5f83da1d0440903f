package visits

import (
	"context"
	"io"

	"crs/mapping"
)

// Resolve re-processes the visits held for review that a person has resolved
// (mapping.ResolveHeld): the row's NHS number and client reference are linked
// to the Patient the completed Task names, and the visit is imported again.
// opt.Columns must be the column map the visit was imported with.
func Resolve(ctx context.Context, door mapping.Door, run *mapping.Run, opt Options, rep *mapping.Report) error {
	cols := opt.Columns
	if cols == nil {
		var err error
		if cols, err = ParseColumnMap(nil); err != nil {
			return err
		}
	}
	im := &importer{run: run, cols: cols}
	return mapping.ResolveHeld(ctx, door, run, mapping.HeldSource{
		Columns:     columnNames(cols),
		LocalSystem: im.clientSystem(),
		Person: func(rec mapping.Record) mapping.Person {
			return mapping.RowPerson(rec, cols["NHS_Number"], cols["Client_Reference"])
		},
		Reimport: func(ctx context.Context, run *mapping.Run, r io.Reader, rep *mapping.Report) error {
			o := opt
			o.Columns, o.Encoding, o.Progress = cols, mapping.UTF8, nil
			return Import(ctx, door, run, r, o, rep)
		},
	}, opt.DryRun, rep)
}
