package engine

import (
	"context"
	"strconv"
	"strings"

	"crs/fhir"
	"crs/fhir/store"
)

// Record integrity in strict mode, checked at the end of every store
// transaction, whichever interaction wrote it (create, update, patch, delete,
// conditional ones, transaction and batch entries):
//
//   - a deleted resource must not leave live resources pointing at it: the
//     delete is refused (409 naming them) unless the caller asked for a cascade
//     (DELETE …?_cascade=delete), which deletes every referencing resource too,
//     each one only if the caller may delete it;
//   - an NHS number is held by one active Patient: a second active Patient with
//     it is refused (409 naming the first). A Patient with a link of type
//     replaced-by (merged into another) or active=false holds none, so the merge
//     path is the only way two records share a number.
//
// In declared mode neither check runs: that mode accepts references that do not
// resolve, so it accepts deletes that leave them too, and identity is the
// sending system's business.

// nhsNumberSystem is the identifier system of NHS numbers.
const nhsNumberSystem = "https://fhir.nhs.uk/Id/nhs-number"

// maxNamed bounds the resources an outcome names.
const maxNamed = 10

// maxCascade bounds the resources one cascading delete removes.
const maxCascade = 1000

type cascadeKey struct{}

// WithCascadeDelete returns ctx asking a delete to delete the resources that
// refer to the deleted one too (_cascade=delete).
func WithCascadeDelete(ctx context.Context) context.Context {
	return context.WithValue(ctx, cascadeKey{}, true)
}

func cascading(ctx context.Context) bool {
	on, _ := ctx.Value(cascadeKey{}).(bool)
	return on
}

// integrityStore is the engine's store: Write runs the integrity checks at the
// end of each transaction, inside it.
type integrityStore struct {
	store.Store
	e *Engine
}

func (s *integrityStore) Write(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.Store.Write(ctx, func(tx store.Tx) error {
		itx := &integrityTx{Tx: tx, e: s.e} // its searches read AuditEvent's _lastUpdated as date (auditalias.go)
		if err := fn(itx); err != nil {
			return err
		}
		if s.e.enforcement != EnforceStrict {
			return nil
		}
		return s.e.checkIntegrity(ctx, itx)
	})
}

// integrityTx notes the writes a transaction makes that need checking.
type integrityTx struct {
	store.Tx
	e        *Engine
	deleted  []store.Version
	patients []store.Version
	indexes  [][]fhir.IndexValue // per patient, its search values (integrity_identity.go)
}

func (t *integrityTx) Put(ctx context.Context, v store.Version, index []fhir.IndexValue) error {
	if err := t.Tx.Put(ctx, v, index); err != nil {
		return err
	}
	switch {
	case v.Type == "AuditEvent":
	case v.Deleted:
		t.deleted = append(t.deleted, v)
	case v.Type == "Patient":
		t.patients = append(t.patients, v)
		t.indexes = append(t.indexes, index)
	}
	return nil
}

func (e *Engine) checkIntegrity(ctx context.Context, tx *integrityTx) error {
	clear, err := e.nhsNumbersClear(ctx, tx, tx.patients, tx.indexes) // integrity_batch.go
	if err != nil {
		return err
	}
	for i, v := range tx.patients {
		if clear[i] {
			continue
		}
		if err := e.checkNHSNumber(ctx, tx, v); err != nil {
			return err
		}
	}
	if len(tx.deleted) == 0 {
		return nil
	}
	cascade := cascading(ctx)
	done := map[string]bool{}
	queue := append([]store.Version(nil), tx.deleted...)
	for n := 0; len(queue) > 0; n++ {
		v := queue[0]
		queue = queue[1:]
		if done[v.Type+"/"+v.ID] {
			continue
		}
		done[v.Type+"/"+v.ID] = true
		limit := maxNamed + 1 // enough to name them and say there are more
		if cascade {
			limit = 0 // every one is deleted
		}
		refs, err := e.referencing(ctx, tx, v.Type, v.ID, limit)
		if err != nil {
			return err
		}
		if len(refs) == 0 {
			continue
		}
		if !cascade {
			names := make([]string, 0, len(refs))
			for _, r := range refs[:min(len(refs), maxNamed)] {
				names = append(names, r.Type+"/"+r.ID)
			}
			more := ""
			if len(refs) > maxNamed {
				more = " and others"
			}
			return fhir.Errorf(fhir.Conflict, "", "%s/%s cannot be deleted: %s refer to it%s; delete or update those first, or ask for DELETE …?_cascade=delete",
				v.Type, v.ID, strings.Join(names, ", "), more)
		}
		if n+len(refs) > maxCascade {
			return fhir.Errorf(fhir.Conflict, "", "deleting %s/%s would cascade to more than %d resources", v.Type, v.ID, maxCascade)
		}
		for _, r := range refs {
			if err := e.mayChange(ctx, tx, r.Type, r.ID, fhir.PermDelete); err != nil {
				return err
			}
			t := store.Version{Type: r.Type, ID: r.ID, VersionID: r.VersionID + 1, LastUpdated: e.now(), Deleted: true, Method: "DELETE"}
			if v.LastUpdated.After(t.LastUpdated) {
				t.LastUpdated = v.LastUpdated
			}
			if err := tx.Tx.Put(ctx, t, nil); err != nil {
				return err
			}
			if err := e.auditInTx(ctx, tx.Tx, writeRecord("delete", "D", t)); err != nil {
				return err
			}
			queue = append(queue, t)
		}
	}
	return nil
}

// referencing returns the live resources whose reference search parameters
// point at rt/id, relative or absolute under this server's base (the audit
// trail excepted: it refers to everything), read before any is changed:
// every one when limit <= 0, else at least limit when there are that many.
func (e *Engine) referencing(ctx context.Context, tx store.Reader, rt, id string, limit int) ([]store.Version, error) {
	var out []store.Version
	seen := map[string]bool{}
	abs := strings.TrimRight(e.base, "/") + "/" + rt + "/" + id
	for _, typ := range fhir.ServedTypes() {
		if typ == "AuditEvent" {
			continue
		}
		for _, p := range e.params.Params(typ) {
			if p.Type != fhir.TypeReference || (len(p.Targets) > 0 && !contains(p.Targets, rt)) {
				continue
			}
			q := &fhir.Query{Type: typ, Count: 500, Total: fhir.TotalNone,
				Params: []fhir.Param{{Def: p, Values: []fhir.Value{{RefType: rt, RefID: id}, {URL: abs}}}}}
			if limit > 0 {
				q.Count = limit
			}
			for {
				res, err := tx.Search(ctx, q)
				if err != nil {
					return nil, err
				}
				for _, m := range res.Matches {
					if k := m.Type + "/" + m.ID; !seen[k] && (m.Type != rt || m.ID != id) {
						seen[k] = true
						out = append(out, m)
					}
				}
				if res.Next == "" || (limit > 0 && len(out) >= limit) {
					break
				}
				q.Cursor = res.Next
			}
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
	}
	return out, nil
}

// checkNHSNumber refuses a Patient that holds an NHS number another Patient
// already holds.
func (e *Engine) checkNHSNumber(ctx context.Context, tx store.Reader, v store.Version) error {
	obj, err := fhir.Parse(v.Body, fhir.Limits{})
	if err != nil {
		return fhir.InternalError("nhs number", err)
	}
	if !holdsIdentity(obj) {
		return nil
	}
	def, ok := e.params.Param("Patient", "identifier")
	if !ok {
		return nil
	}
	ids, _ := obj["identifier"].([]any)
	for i, x := range ids {
		ident, _ := x.(map[string]any)
		if ident["system"] != nhsNumberSystem {
			continue
		}
		number, _ := ident["value"].(string)
		if number == "" {
			continue
		}
		q := &fhir.Query{Type: "Patient", Count: 50, Total: fhir.TotalNone,
			Params: []fhir.Param{{Def: def, Values: []fhir.Value{{System: nhsNumberSystem, HasSystem: true, Code: number}}}}}
		res, err := tx.Search(ctx, q)
		if err != nil {
			return err
		}
		for _, m := range res.Matches {
			if m.ID == v.ID {
				continue
			}
			other, err := fhir.Parse(m.Body, fhir.Limits{})
			if err != nil || !holdsIdentity(other) {
				continue
			}
			return fhir.Errorf(fhir.Conflict, "Patient.identifier["+strconv.Itoa(i)+"].value",
				"NHS number %s is already held by Patient/%s: find it (conditional create with If-None-Exist: identifier=%s|%s finds or creates), or merge the records with a link of type replaced-by",
				number, m.ID, nhsNumberSystem, number)
		}
	}
	return nil
}

// holdsIdentity reports whether a Patient counts as the holder of its NHS
// number: active (not false) and not merged into another (no replaced-by link).
func holdsIdentity(p fhir.Object) bool {
	if a, ok := p["active"].(bool); ok && !a {
		return false
	}
	links, _ := p["link"].([]any)
	for _, l := range links {
		if lm, ok := l.(map[string]any); ok && lm["type"] == "replaced-by" {
			return false
		}
	}
	return true
}
