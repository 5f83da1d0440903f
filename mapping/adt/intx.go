package adt

import (
	"context"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
	"crs/mapping"
	"crs/mapping/hl7v2"
)

// lookupMax is how many matches a message's lookup takes; more is reported as
// too many candidates to match safely (as a second page was before).
const lookupMax = 50

// applyInTx applies a message in one engine transaction whose lookups run
// inside it (Engine.TransactionWith, or Engine.MergePatientsWith for a merge):
// the duplicate control id check, the Patient and Encounter lookups and the
// referral of a discharge see exactly what the writes will meet. So the
// writes need no conditional creates (nothing can have come in between), a
// control id applied by another connection at the same moment is found, not
// stored twice, and the lookups are audited with the writes in one
// AuditEvent instead of one each.
func (im *Importer) applyInTx(ctx context.Context, m *hl7v2.Message, ods, event, facility string, msgID identifier) Result {
	feed := Principal(ods)
	trust := Principal(ods)
	trust.Roles = []string{"acute-trust"}
	var res Result
	build := func(ctx context.Context, l engine.Lookup) (_ fhir.Object, from, to string, _ error) {
		res = Result{}
		a := &apply{im: im, m: m, ods: ods, event: event, facility: facility, msgID: msgID,
			door: txDoor{l: l}, referrals: txDoor{l: l, principal: trust}}
		found, err := a.door.Search(ctx, "Provenance", "entity:identifier="+msgID.System+"|"+msgID.Value)
		if err != nil {
			return nil, "", "", err
		}
		if len(found) > 0 {
			res = duplicateResult
			return nil, "", "", nil
		}
		org, err := im.organization(ctx, a.door, ods)
		if err != nil {
			res = Result{Code: hl7v2.AE, Err: fail("MSH", 4, hl7v2.CodeUnknownKey, "%s", mapping.Describe(err))}
			return nil, "", "", nil
		}
		a.org = org
		var entries []mapping.Entry
		if event == "A40" {
			entries, from, to, res = a.mergeWrites(ctx)
		} else {
			entries, res = a.writes(ctx)
		}
		if res.Code != hl7v2.AA {
			return nil, "", "", nil // nothing stored; the lookups are audited
		}
		return mapping.TransactionTree(entries), from, to, nil
	}
	ctx = auth.WithPrincipal(ctx, feed)
	opt := engine.SearchOptions{Minimal: true}
	var b *engine.Bundle
	var err error
	if event == "A40" {
		b, err = im.Engine.MergePatientsWith(ctx, build, opt)
	} else {
		b, err = im.Engine.TransactionWith(ctx, func(ctx context.Context, l engine.Lookup) (fhir.Object, error) {
			tree, _, _, err := build(ctx, l)
			return tree, err
		}, opt)
	}
	if err != nil {
		return Result{Code: hl7v2.AE, Err: describe(err)}
	}
	if res.Code == hl7v2.AA && !res.Duplicate {
		for i, e := range b.Entry {
			if i == 0 || e.Response == nil {
				continue // the Provenance
			}
			if e.Response.Location != "" {
				res.Written = append(res.Written, e.Response.Location)
			}
		}
	}
	return res
}

// txDoor is a Door whose searches are a TransactionWith's lookups, as the
// feed (principal nil: the transaction's own) or as another principal of the
// trust (its referrer role). It has no transaction of its own.
type txDoor struct {
	l         engine.Lookup
	principal *auth.Principal
}

// Search implements mapping.Door.
func (d txDoor) Search(ctx context.Context, rt, query string) ([]mapping.Current, error) {
	if d.principal != nil {
		ctx = auth.WithPrincipal(ctx, d.principal)
	}
	vs, err := d.l.Search(ctx, rt, query, lookupMax)
	if err != nil {
		return nil, err
	}
	out := make([]mapping.Current, 0, len(vs))
	for _, v := range vs {
		c, err := currentOfVersion(v)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Transaction implements mapping.Door: the writes go back to TransactionWith
// as its Bundle, never through here.
func (d txDoor) Transaction(context.Context, []mapping.Entry) ([]mapping.EntryResult, error) {
	return nil, fhir.Errorf(fhir.Internal, "", "a lookup of a transaction cannot write")
}

// currentOfVersion is a stored version as the mapping's current record.
func currentOfVersion(v store.Version) (mapping.Current, error) {
	obj, err := fhir.Parse(v.Body, fhir.Limits{})
	if err != nil {
		return mapping.Current{}, err
	}
	return mapping.Current{Obj: obj, ID: v.ID, Version: v.VersionID}, nil
}
