package engine

import (
	"strings"
	"time"

	"crs/fhir"
	"crs/fhir/store"
	"crs/profiles"
)

// prestamped is a create's stamped version and search values, made before
// the transaction's write began, and the urn: references it rewrote to get
// them (each map holding one, its key, and the urn).
type prestamped struct {
	v       store.Version
	index   []fhir.IndexValue
	rewrote []urnRewrite
	// refs: the references finishEntry checks (refsKnown when it does), found
	// before the write too: the walk cost 4% of a visit row's CPU in the writer.
	refs      []profiles.Reference
	refsKnown bool
}

type urnRewrite struct {
	m        map[string]any
	urn, ref string
}

// prestamp stamps the creates of a transaction (their ids minted and the
// time taken by prepareTransaction) before its write begins: the store has
// one writer, and the search values and the encoded body of an import's
// hundreds of creates cost about a tenth of its time in it, while the
// caller's goroutine waits. A create is stamped ahead only when its content
// cannot change inside the write: no conditional reference ("Patient?…"),
// and each urn: reference rewritten to the Type/id its fullUrl names now.
// confirmPrestamps drops (and undoes) a stamp whose urn: references a
// conditional create or update then pointed elsewhere; anything else is
// stamped inside the write as before.
func (e *Engine) prestamp(sorted []*bundleEntry, ids map[string]string, now time.Time) {
	for _, be := range sorted {
		if be.method != "POST" || be.resource == nil {
			continue
		}
		var rewrote []urnRewrite
		if !urnRefsFixed(be.resource, ids, &rewrote) {
			undoRewrites(rewrote)
			continue
		}
		v, index, err := e.stamp(be.resource, be.checked.order, be.rt, be.id, 1, now, "POST")
		if err != nil {
			undoRewrites(rewrote) // stamped again inside the write, which reports it
			continue
		}
		be.pre = &prestamped{v: v, index: index, rewrote: rewrote}
		if be.checked.resolve {
			be.pre.refs, be.pre.refsKnown = profiles.References(be.resource, be.checked.allowed), true
		}
	}
}

// references are the references of what the entry wrote that finishEntry
// checks: found by prestamp when the create was stamped ahead (its content
// has not changed since), else now.
func (be *bundleEntry) references() []profiles.Reference {
	if be.pre != nil && be.pre.refsKnown {
		return be.pre.refs
	}
	return profiles.References(be.written(), be.checked.allowed)
}

// urnRefsFixed rewrites, in obj, each urn: reference that is a fullUrl of
// the Bundle to the Type/id ids gives it (recording each), and reports false
// when obj holds a reference rewriteReferences would resolve inside the
// write (a conditional one) or refuse (an urn: that is no fullUrl).
func urnRefsFixed(obj any, ids map[string]string, rewrote *[]urnRewrite) bool {
	switch x := obj.(type) {
	case map[string]any:
		for k, v := range x {
			if ref, ok := v.(string); ok && k == "reference" {
				if target, ok := ids[ref]; ok {
					x[k] = target
					*rewrote = append(*rewrote, urnRewrite{m: x, urn: ref, ref: target})
					continue
				}
				if strings.HasPrefix(ref, "urn:") {
					return false
				}
				if rt, _, ok := strings.Cut(ref, "?"); ok && fhir.Served(rt) {
					return false
				}
				continue
			}
			if !urnRefsFixed(v, ids, rewrote) {
				return false
			}
		}
	case []any:
		for _, v := range x {
			if !urnRefsFixed(v, ids, rewrote) {
				return false
			}
		}
	}
	return true
}

func undoRewrites(rewrote []urnRewrite) {
	for _, r := range rewrote {
		r.m["reference"] = r.urn
	}
}

// confirmPrestamps keeps, once the transaction's conditional creates and
// updates have picked their targets, the stamps whose urn: references still
// name what they named before the write; the others are dropped and their
// references put back, to be rewritten and stamped inside the write.
func confirmPrestamps(sorted []*bundleEntry, ids map[string]string) {
	for _, be := range sorted {
		if be.pre == nil {
			continue
		}
		if be.resource == nil { // a conditional create that matched
			be.pre = nil
			continue
		}
		for _, r := range be.pre.rewrote {
			if ids[r.urn] != r.ref {
				undoRewrites(be.pre.rewrote)
				be.pre = nil
				break
			}
		}
	}
}

// stampCreate is stamp for a create entry inside the write: its stamp made
// ahead when confirmed.
func (e *Engine) stampCreate(be *bundleEntry, now time.Time) (store.Version, []fhir.IndexValue, error) {
	if be.pre != nil {
		return be.pre.v, be.pre.index, nil
	}
	return e.stamp(be.resource, be.checked.order, be.rt, be.id, 1, now, "POST")
}
