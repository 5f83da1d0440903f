package engine

import (
	"context"
	"time"

	"crs/fhir"
	"crs/fhir/store"
)

// Patch applies a JSON Patch document (RFC 6902) to the current version of rt/id,
// validates the result like any update and stores it as the next version.
// ifMatch, when non-zero, must equal the current version. The patch is applied
// inside the store transaction, so no concurrent update is lost. A bundle's
// PATCH entry runs the same code (patchInTx).
func (e *Engine) Patch(ctx context.Context, rt, id string, patch []byte, ifMatch int) (_ Result, err error) {
	ctx, ia := e.begin(ctx, "patch", "U", rt, id)
	defer func() { err = e.end(ctx, ia, err) }()
	if err := checkType(rt, fhir.Update); err != nil {
		return Result{}, err
	}
	if err := checkID(id); err != nil {
		return Result{}, err
	}
	if _, err := e.conditions(ctx, rt, fhir.PermUpdate); err != nil {
		return Result{}, fhir.WithOp("patch", err)
	}
	ops, err := fhir.ParsePatch(patch, e.limits)
	if err != nil {
		return Result{}, fhir.WithOp("patch", err)
	}
	now := e.now()
	var res Result
	err = e.store.Write(ctx, func(tx store.Tx) error {
		var obj fhir.Object
		var chk checked
		if res, obj, chk, err = e.patchInTx(ctx, tx, rt, id, ops, ifMatch, now); err != nil {
			return err
		}
		if chk.resolve {
			if err := e.resolveReferences(ctx, tx, obj, chk.allowed); err != nil {
				return err
			}
		}
		res.Issues = chk.issues
		return e.auditInTx(ctx, tx, writeRecord("patch", "U", res.Version))
	})
	if err != nil {
		return Result{}, fhir.WithOp("patch", err)
	}
	return res, nil
}

// patchInTx patches rt/id inside tx: access first (before anything about the
// target is read), then the current version, If-Match, the patch and the
// validation of its result, and the write. It returns the patched resource
// and its checks, whose references the caller resolves.
func (e *Engine) patchInTx(ctx context.Context, tx store.Tx, rt, id string, ops []fhir.PatchOp, ifMatch int, now time.Time) (Result, fhir.Object, checked, error) {
	if err := e.mayChange(ctx, tx, rt, id, fhir.PermUpdate); err != nil {
		return Result{}, nil, checked{}, err
	}
	cur, err := tx.Read(ctx, rt, id)
	if err != nil {
		return Result{}, nil, checked{}, err
	}
	if cur.Deleted {
		return Result{}, nil, checked{}, fhir.Errorf(fhir.Gone, "", "%s/%s was deleted", rt, id)
	}
	if ifMatch != 0 && ifMatch != cur.VersionID {
		return Result{}, nil, checked{}, fhir.Errorf(fhir.PreconditionFailed, "", "If-Match version %d does not match the current version %d of %s/%s", ifMatch, cur.VersionID, rt, id)
	}
	obj, chk, err := e.applyPatch(cur, ops)
	if err != nil {
		return Result{}, nil, checked{}, err
	}
	res, err := e.putNext(ctx, tx, rt, id, false, obj, chk.order, nil, cur.VersionID, "PATCH", now)
	return res, obj, chk, err
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
	if err == nil {
		err = conditionalReferences(obj)
	}
	if err != nil {
		if fe, ok := err.(*fhir.Error); ok && fe.Kind == fhir.Invalid {
			fe.Kind = fhir.Unprocessable // the patch was well-formed; its result is not valid
		}
		return nil, checked{}, err
	}
	chk.order = fhir.KeyOrder(cur.Body) // the stored order; added elements by definition
	return obj, chk, nil
}
