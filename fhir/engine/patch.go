package engine

import (
	"context"

	"crs/fhir"
	"crs/fhir/store"
)

// Patch applies a JSON Patch document (RFC 6902) to the current version of rt/id,
// validates the result like any update and stores it as the next version.
// ifMatch, when non-zero, must equal the current version. Without it, a write that
// lands between reading and storing makes Patch start again on the newer version
// (a few times at most), so no concurrent update is lost.
func (e *Engine) Patch(ctx context.Context, rt, id string, patch []byte, ifMatch int) (Result, error) {
	if err := checkType(rt, fhir.Update); err != nil {
		return Result{}, err
	}
	if err := checkID(id); err != nil {
		return Result{}, err
	}
	ops, err := fhir.ParsePatch(patch, e.limits)
	if err != nil {
		return Result{}, fhir.WithOp("patch", err)
	}
	for attempt := 0; ; attempt++ {
		res, err := e.patchOnce(ctx, rt, id, ops, ifMatch)
		if err == nil || ifMatch != 0 || attempt == 4 || fhir.KindOf(err) != fhir.PreconditionFailed {
			return res, fhir.WithOp("patch", err)
		}
	}
}

func (e *Engine) patchOnce(ctx context.Context, rt, id string, ops []fhir.PatchOp, ifMatch int) (Result, error) {
	cur, err := e.store.Read(ctx, rt, id)
	if err != nil {
		return Result{}, err
	}
	if cur.Deleted {
		return Result{}, fhir.Errorf(fhir.Gone, "", "%s/%s was deleted", rt, id)
	}
	if ifMatch != 0 && ifMatch != cur.VersionID {
		return Result{}, fhir.Errorf(fhir.PreconditionFailed, "", "If-Match version %d does not match the current version %d of %s/%s", ifMatch, cur.VersionID, rt, id)
	}
	obj, chk, err := e.applyPatch(cur, ops)
	if err != nil {
		return Result{}, err
	}
	now := e.now()
	var res Result
	err = e.store.Write(ctx, func(tx store.Tx) error {
		if chk.resolve {
			if err := e.resolveReferences(ctx, tx, obj, chk.allowed); err != nil {
				return err
			}
		}
		if res, err = e.putNext(ctx, tx, rt, id, obj, chk.order, nil, cur.VersionID, "PATCH", now); err != nil {
			return err
		}
		return e.auditInTx(ctx, tx, writeRecord("patch", "U", res.Version))
	})
	res.Issues = chk.issues
	return res, err
}

// applyPatch patches a stored version and validates the result, which must keep
// its type and id.
func (e *Engine) applyPatch(cur store.Version, ops []fhir.PatchOp) (fhir.Object, checked, error) {
	obj, err := fhir.Parse(cur.Body, fhir.Limits{})
	if err != nil {
		return nil, checked{}, fhir.InternalError("patch", err)
	}
	obj, err = fhir.ApplyPatch(obj, ops)
	if err != nil {
		return nil, checked{}, err
	}
	if fhir.ResourceType(obj) != cur.Type {
		return nil, checked{}, fhir.Errorf(fhir.Unprocessable, "resourceType", "a patch cannot change the resourceType")
	}
	if fhir.ID(obj) != cur.ID {
		return nil, checked{}, fhir.Errorf(fhir.Unprocessable, cur.Type+".id", "a patch cannot change the id")
	}
	chk, err := e.check(cur.Type, obj, "update")
	if err != nil {
		if fe, ok := err.(*fhir.Error); ok && fe.Kind == fhir.Invalid {
			fe.Kind = fhir.Unprocessable // the patch was well-formed; its result is not valid
		}
		return nil, checked{}, err
	}
	chk.order = fhir.KeyOrder(cur.Body) // the stored order; added elements by definition
	return obj, chk, nil
}
