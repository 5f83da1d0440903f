package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"crs/fhir"
	"crs/fhir/store"
)

// Denormalised keys. The access policy and the caseload ask, for every
// candidate, chains such as "the performer organisation of one of this
// person's referrals" (Patient?_has:ServiceRequest:subject:performer:
// Organization.identifier=…) or "the responsible council of this record's
// person" (Goal?subject:Patient.responsible-la=…). Resolved as chains they
// cost several index seeks per candidate and cannot drive a search by a plain
// index lookup. Each chain listed in keyChains is instead kept on the resource
// that asks it, as idx_token rows whose param is the chain's short code
// (keyCodes), holding the token values the chain reaches; a search names the
// chain, and the store reads the rows instead (rewrite).
//
// The rows are maintained inside the write transaction that changes them,
// whatever the order of the writes: a carrier written (its references
// changed), a target written (its token values changed, or it was created or
// deleted), and for a reverse key a resource pointing at the carrier written
// or its own key changed. Put computes what it can in Go (a new carrier's
// rows from its targets' values, read through a cache of committed values that
// the transaction's own writes overlay) and adds them to the buffered search
// values; it records what became stale otherwise, which flush recomputes from
// the transaction's current state with the same joins the chain's SQL makes
// (refreshKeys), so a key always equals its chain. A key built from
// search values that the chain SQL would read the same way gives the same
// answers, which the storetest group DenormalisedKeys proves on every backend
// (MongoDB answers through the chain).

// keyChains are the chains kept as keys: "Type?chain", in an order where a
// reverse key comes after the key it copies. They are the organisation
// chains of auth/policy.json's conditions on referrals and episodes; the care
// provider's and the acute trust's conditions on people and their records
// (Patient?_has:ServiceRequest:subject:performer:Organization.identifier,
// Goal?subject:Patient._has:…) read them inside their _has, one join fewer
// per candidate at each level.
//
// Each key costs the writes of its carriers, and some cost more than they
// save (BenchmarkKeysWriteCost, CPU per create of the pathway's records):
// the first three below add about 8%, the care plan's person's organisation
// a few per cent more (round 5b: 1.11× the time of a person's records
// durable, all four); the reverse keys on Patient of the
// performer and requester chains (which the mechanism supports, and the
// tests keep correct) add about 35%, since every new referral then writes
// into its person's index rows as well; a record's person's council
// (subject:Patient.responsible-la) and a visit's provider are asked of the
// commonest writes and are one join as chains.
var keyChains = []string{
	"ServiceRequest?performer:Organization.identifier",
	"ServiceRequest?requester:Organization.identifier",
	"EpisodeOfCare?organization:Organization.identifier",
	"CarePlan?subject:Patient.organization",
}

// keyCodes are the short codes that key rows store as their idx_token.param
// instead of their chain ("~" cannot start a search parameter's code), one
// per chain the store supports (keyChains and the reverse keys the tests
// keep). A key row is written into the table and its rid index, and into the
// WAL that checkpoints them; a 3-byte param instead of a 30- to 60-byte chain
// makes each row about a third smaller. A code names one chain for ever:
// a chain dropped leaves its code unused, a new chain takes a new code, since
// keys_built records keys by code (a database built with the chains as
// params, before the codes, rebuilds its keys at Open). Searches never name
// a code: rewrite maps a chain to its key's code.
var keyCodes = map[string]string{
	"ServiceRequest?performer:Organization.identifier":                      "~k1",
	"ServiceRequest?requester:Organization.identifier":                      "~k2",
	"EpisodeOfCare?organization:Organization.identifier":                    "~k3",
	"CarePlan?subject:Patient.organization":                                 "~k4",
	"Patient?_has:ServiceRequest:subject:performer:Organization.identifier": "~k5",
	"Patient?_has:ServiceRequest:subject:requester:Organization.identifier": "~k6",
}

// keySystems are short codes that key rows store instead of their token
// values' commonest systems (ODS codes' system, 44 bytes, in every
// organisation key's row and again in its idx_token_rid entry). rewrite maps
// a search's system to its code; a search naming a system that starts with
// "~" reads the chain, so that no client's system can read a code. Like
// keyCodes, a code names one system for ever, and a system added here needs
// its keys rebuilt (new keyCodes for them).
var keySystems = map[string]string{odsSystem: odsCode}

const (
	odsSystem = "https://fhir.nhs.uk/Id/ods-organization-code"
	odsCode   = "~ods"
)

// keySystem is the system a key row stores for a token value's system.
func keySystem(system string) string {
	if c, ok := keySystems[system]; ok {
		return c
	}
	return system
}

// keySystemCase is keySystem in SQL, of a target's token row t.
const keySystemCase = "CASE t.system WHEN '" + odsSystem + "' THEN '" + odsCode + "' ELSE t.system END"

// keyChainOf maps a key's code back to its chain, for plan descriptions.
var keyChainOf = func() map[string]string {
	m := map[string]string{}
	for chain, code := range keyCodes {
		_, c, _ := strings.Cut(chain, "?")
		m[code] = c
	}
	return m
}()

// refParams are the key chains' last parameters that are references, not
// tokens (the store has no search parameter registry to ask). A reference
// key's rows hold each live target's reference as a token: system the
// referenced type, code its id (absolute URLs and identifiers are not kept,
// and a search naming one reads the chain). A provider's care plans
// (CarePlan?subject:Patient.organization=Organization/…, the MDT's list)
// then drive by one index lookup instead of walking care plans and probing
// each one's person.
var refParams = map[string]bool{"Patient.organization": true}

// key is one denormalised chain. A reference key (has == "") holds, on a
// resource of typ, the token values of tparam of the live targets of type
// target of its reference parameter ref. A reverse key holds, on a resource
// of typ, the values of key inner of the live resources of type has whose
// reference parameter hasRef points to it.
type key struct {
	typ, chain          string // carrier type; the chain it holds
	name                string // idx_token.param of its rows (keyCodes)
	ref, target, tparam string
	has, hasRef         string
	inner               *key
	refValued           bool              // tparam is a reference (refParams)
	def                 *fhir.SearchParam // the token parameter a search uses instead of the chain
}

// keySet is the keys a store keeps, in keyChains order; nil keeps none.
type keySet []*key

// parseKeys builds the keys of keyChains.
func parseKeys(chains []string) (keySet, error) {
	var ks keySet
	for _, c := range chains {
		typ, chain, ok := strings.Cut(c, "?")
		if !ok {
			return nil, fmt.Errorf("key %q: no Type?", c)
		}
		k, err := ks.parse(typ, chain)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", c, err)
		}
		code, ok := keyCodes[c]
		if !ok {
			return nil, fmt.Errorf("key %q: no code in keyCodes", c)
		}
		k.name = code
		k.def.Code = code
		ks = append(ks, k)
	}
	return ks, nil
}

// parse reads "ref:Target.param" or "_has:Type:ref:<a key of Type>".
func (ks keySet) parse(typ, chain string) (*key, error) {
	k := &key{typ: typ, chain: chain, def: &fhir.SearchParam{Type: fhir.TypeToken}}
	if rest, ok := strings.CutPrefix(chain, "_has:"); ok {
		parts := strings.SplitN(rest, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("_has takes Type:ref:chain")
		}
		k.has, k.hasRef = parts[0], parts[1]
		for _, in := range ks {
			if in.typ == k.has && in.chain == parts[2] && in.has == "" {
				k.inner = in
			}
		}
		if k.inner == nil {
			return nil, fmt.Errorf("no earlier reference key %s?%s", k.has, parts[2])
		}
		return k, nil
	}
	ref, rest, ok := strings.Cut(chain, ":")
	target, tparam, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || ref == "" || target == "" || tparam == "" || strings.ContainsAny(tparam, ".:") {
		return nil, fmt.Errorf("a key is ref:Target.param")
	}
	k.ref, k.target, k.tparam = ref, target, tparam
	k.refValued = refParams[target+"."+tparam]
	return k, nil
}

// defaultKeys are the keys every store keeps unless Options.NoKeys.
var defaultKeys = func() keySet {
	ks, err := parseKeys(keyChains)
	if err != nil {
		panic(err) // keyChains is a constant of this package: a test runs it
	}
	return ks
}()

// rewrite returns q with every chain that a key holds replaced by a lookup of
// the key's rows (q itself when there is none).
func (ks keySet) rewrite(q *fhir.Query) *fhir.Query {
	if len(ks) == 0 || q == nil {
		return q
	}
	var params []fhir.Param
	for i, p := range q.Params {
		np, changed := ks.rewriteParam(q.Type, p)
		if changed && params == nil {
			params = append([]fhir.Param(nil), q.Params...)
		}
		if params != nil {
			params[i] = np
		}
	}
	if params == nil {
		return q
	}
	cp := *q
	cp.Params = params
	return &cp
}

func (ks keySet) rewriteParam(typ string, p fhir.Param) (fhir.Param, bool) {
	for _, k := range ks {
		if k.typ != typ {
			continue
		}
		if ip, ok := k.matches(p); ok {
			return fhir.Param{Def: k.def, Modifier: ip.Modifier, Values: ip.Values}, true
		}
	}
	changed := false
	if len(p.Chain) > 0 {
		chain := make([]*fhir.Query, len(p.Chain))
		for i, c := range p.Chain {
			chain[i] = ks.rewrite(c)
			changed = changed || chain[i] != c
		}
		if changed {
			p.Chain = chain
		}
	}
	if p.Has != nil {
		if nq := ks.rewrite(p.Has.Query); nq != p.Has.Query {
			h := *p.Has
			h.Query = nq
			p.Has = &h
			changed = true
		}
	}
	return p, changed
}

// matches reports whether p, a parameter of k.typ, is the chain k holds
// (exactly: one target type, one token parameter at its end with no modifier
// but :text, or a reference parameter with no modifier whose values are all
// local references; nothing else inside), and returns the lookup of k's rows
// that replaces it.
func (k *key) matches(p fhir.Param) (*fhir.Param, bool) {
	if k.has != "" {
		if p.Has == nil || len(p.Chain) > 0 || p.Def != nil || p.Has.Type != k.has || p.Has.Ref == nil || p.Has.Ref.Code != k.hasRef ||
			len(p.Has.Query.Params) != 1 || p.Has.Query.Compartment != nil {
			return nil, false
		}
		return k.inner.matches(p.Has.Query.Params[0])
	}
	if p.Has != nil || len(p.Chain) != 1 || p.Def == nil || p.Def.Code != k.ref || p.Missing != nil || (p.Modifier != "" && p.Modifier != k.target) {
		return nil, false
	}
	cq := p.Chain[0]
	if cq.Type != k.target || len(cq.Params) != 1 || cq.Compartment != nil {
		return nil, false
	}
	ip := &cq.Params[0]
	if !plain(*ip) || ip.Def == nil || ip.Def.Code != k.tparam || ip.Missing != nil {
		return nil, false
	}
	if k.refValued {
		return k.refLookup(ip)
	}
	if ip.Def.Type != fhir.TypeToken || (ip.Modifier != "" && ip.Modifier != "text") {
		return nil, false
	}
	vals := make([]fhir.Value, len(ip.Values))
	for i, v := range ip.Values {
		if strings.HasPrefix(v.System, "~") {
			return nil, false
		}
		v.System = keySystem(v.System)
		vals[i] = v
	}
	return &fhir.Param{Def: k.def, Modifier: ip.Modifier, Values: vals}, true
}

// refLookup turns the values of reference parameter ip into token values of
// k's rows: Type/id is system Type and code id, a bare id is the code in any
// system (as a reference search by bare id matches any type). Any other
// value (an absolute URL, an identifier) keeps the chain.
func (k *key) refLookup(ip *fhir.Param) (*fhir.Param, bool) {
	if ip.Def.Type != fhir.TypeReference || ip.Modifier != "" {
		return nil, false
	}
	vals := make([]fhir.Value, len(ip.Values))
	for i, v := range ip.Values {
		if v.URL != "" || v.RefID == "" {
			return nil, false
		}
		vals[i] = fhir.Value{Raw: v.Raw, System: v.RefType, HasSystem: v.RefType != "", Code: v.RefID}
	}
	return &fhir.Param{Def: k.def, Values: vals}, true
}

// The statements that maintain keys. Sets of rows and ids are passed as one
// JSON array, so that each statement is prepared once.
const (
	// keyRefInsert adds the rows of a reference key (?1 name, ?2 target,
	// ?3 tparam, ?4 carrier rids, ?5 carrier type, ?6 ref): the chain's joins.
	keyRefInsert = `INSERT OR IGNORE INTO idx_token (rid, type, param, system, code, text)
		SELECT r.rid, r.type, ?1, ` + keySystemCase + `, t.code, t.text
		FROM json_each(?4) j
		CROSS JOIN idx_reference r INDEXED BY idx_reference_rid ON r.rid = j.value AND r.type = ?5 AND r.param = ?6
		CROSS JOIN current o ON o.type = ?2 AND o.id = r.ref_id
		CROSS JOIN idx_token t INDEXED BY idx_token_rid ON t.rid = o.rid AND t.type = ?2 AND t.param = ?3
		WHERE r.ref_type = ?2 AND o.deleted = 0`
	// keyRefInsertRef is keyRefInsert for a reference-valued key: the
	// targets' local references as (type, id) tokens.
	keyRefInsertRef = `INSERT OR IGNORE INTO idx_token (rid, type, param, system, code, text)
		SELECT r.rid, r.type, ?1, t.ref_type, t.ref_id, ''
		FROM json_each(?4) j
		CROSS JOIN idx_reference r INDEXED BY idx_reference_rid ON r.rid = j.value AND r.type = ?5 AND r.param = ?6
		CROSS JOIN current o ON o.type = ?2 AND o.id = r.ref_id
		CROSS JOIN idx_reference t INDEXED BY idx_reference_rid ON t.rid = o.rid AND t.type = ?2 AND t.param = ?3
		WHERE r.ref_type = ?2 AND o.deleted = 0 AND t.ref_id != ''`
	// keyHasInsert adds the rows of a reverse key (?1 name, ?2 has, ?3
	// hasRef, ?4 inner name, ?5 carrier rids).
	keyHasInsert = `INSERT OR IGNORE INTO idx_token (rid, type, param, system, code, text)
		SELECT p.rid, p.type, ?1, k.system, k.code, k.text
		FROM json_each(?5) j
		CROSS JOIN current p ON p.rid = j.value
		CROSS JOIN idx_reference r ON r.type = ?2 AND r.param = ?3 AND r.ref_id = p.id AND r.ref_type = p.type
		CROSS JOIN current s ON s.rid = r.rid
		CROSS JOIN idx_token k INDEXED BY idx_token_rid ON k.rid = r.rid AND k.type = ?2 AND k.param = ?4
		WHERE p.deleted = 0 AND s.deleted = 0`
	// keyRefBuild and keyHasBuild are the inserts for every carrier of the
	// type (the carriers' rids replaced by their type, ?4 or ?5).
	keyRefBuild = `INSERT OR IGNORE INTO idx_token (rid, type, param, system, code, text)
		SELECT r.rid, r.type, ?1, ` + keySystemCase + `, t.code, t.text
		FROM idx_reference r
		CROSS JOIN current o ON o.type = ?2 AND o.id = r.ref_id
		CROSS JOIN idx_token t INDEXED BY idx_token_rid ON t.rid = o.rid AND t.type = ?2 AND t.param = ?3
		WHERE r.type = ?4 AND r.param = ?5 AND r.ref_type = ?2 AND o.deleted = 0`
	keyRefBuildRef = `INSERT OR IGNORE INTO idx_token (rid, type, param, system, code, text)
		SELECT r.rid, r.type, ?1, t.ref_type, t.ref_id, ''
		FROM idx_reference r
		CROSS JOIN current o ON o.type = ?2 AND o.id = r.ref_id
		CROSS JOIN idx_reference t INDEXED BY idx_reference_rid ON t.rid = o.rid AND t.type = ?2 AND t.param = ?3
		WHERE r.type = ?4 AND r.param = ?5 AND r.ref_type = ?2 AND o.deleted = 0 AND t.ref_id != ''`
	keyHasBuild = `INSERT OR IGNORE INTO idx_token (rid, type, param, system, code, text)
		SELECT p.rid, p.type, ?1, k.system, k.code, k.text
		FROM current p
		CROSS JOIN idx_reference r ON r.type = ?2 AND r.param = ?3 AND r.ref_id = p.id AND r.ref_type = p.type
		CROSS JOIN current s ON s.rid = r.rid
		CROSS JOIN idx_token k INDEXED BY idx_token_rid ON k.rid = r.rid AND k.type = ?2 AND k.param = ?4
		WHERE p.type = ?5 AND p.deleted = 0 AND s.deleted = 0`
	// keyDelete removes a key's rows from carriers (?1 rids, ?2 type, ?3 name).
	keyDelete = `DELETE FROM idx_token WHERE rid IN (SELECT value FROM json_each(?1)) AND type = ?2 AND param = ?3`
	// keyCarriers finds the resources whose reference points to one of the
	// ids ?2 of type ?3, for each [type, reference parameter] of ?1, and
	// returns each with the index of its pair.
	keyCarriers = `SELECT r.rid, p.key FROM json_each(?1) p CROSS JOIN json_each(?2) i
		CROSS JOIN idx_reference r ON r.type = json_extract(p.value, '$[0]') AND r.param = json_extract(p.value, '$[1]') AND r.ref_id = i.value AND r.ref_type = ?3`
	// keyCarriersOne is keyCarriers for one pair (?1 type, ?2 reference
	// parameter) and one id ?3 of type ?4, the common case (a person
	// created): no JSON to parse, and the rows come from the primary key.
	keyCarriersOne = `SELECT rid FROM idx_reference WHERE type = ?1 AND param = ?2 AND ref_id = ?3 AND ref_type = ?4`
	// keyTargets lists the ids of type ?4 that the resources ?1 (of type ?2)
	// point to by reference ?3.
	keyTargets = `SELECT DISTINCT ref_id FROM idx_reference INDEXED BY idx_reference_rid WHERE rid IN (SELECT value FROM json_each(?1)) AND type = ?2 AND param = ?3 AND ref_type = ?4`
	// keyRids finds the rows of type ?1 with the ids ?2.
	keyRids = `SELECT rid FROM current WHERE type = ?1 AND id IN (SELECT value FROM json_each(?2))`
	// keyTokens lists the token values of parameter ?3 of the live ?1/?2.
	keyTokens = `SELECT t.system, t.code, t.text FROM current o
		CROSS JOIN idx_token t INDEXED BY idx_token_rid ON t.rid = o.rid AND t.type = o.type AND t.param = ?3
		WHERE o.type = ?1 AND o.id = ?2 AND o.deleted = 0`
	// keyTokensRef lists the local references of parameter ?3 of the live
	// ?1/?2 as a reference key holds them.
	keyTokensRef = `SELECT t.ref_type, t.ref_id, '' FROM current o
		CROSS JOIN idx_reference t INDEXED BY idx_reference_rid ON t.rid = o.rid AND t.type = o.type AND t.param = ?3
		WHERE o.type = ?1 AND o.id = ?2 AND o.deleted = 0 AND t.ref_id != ''`
	// keyCarrier finds the row of ?1/?2.
	keyCarrier = `SELECT rid, deleted FROM current WHERE type = ?1 AND id = ?2`
)

// keyStmts are the key statements prepared on the writer's connection. Each
// statement taking a set comes in two forms: for a JSON array, and for one
// value (a set of one is the common case, and json_each costs more than the
// rest of the statement).
type keyStmts struct {
	refInsert, refInsertRef, hasInsert, del, targets, rids pair
	tokens, tokensRef, carrier, carriers                   *sql.Stmt
	carriersOne                                            *sql.Stmt
}

// pair is a statement for many values ([0]) and for one ([1]).
type pair [2]*sql.Stmt

var jsonEach = regexp.MustCompile(`json_each\((\?[0-9])\)`)

func (ks *keyStmts) prepare(prep func(string) *sql.Stmt) {
	both := func(q string) pair {
		return pair{prep(q), prep(jsonEach.ReplaceAllString(q, "(SELECT $1 AS value)"))}
	}
	ks.refInsert, ks.refInsertRef, ks.hasInsert, ks.del = both(keyRefInsert), both(keyRefInsertRef), both(keyHasInsert), both(keyDelete)
	ks.targets, ks.rids = both(keyTargets), both(keyRids)
	ks.tokens, ks.tokensRef, ks.carrier, ks.carriers = prep(keyTokens), prep(keyTokensRef), prep(keyCarrier), prep(keyCarriers)
	ks.carriersOne = prep(keyCarriersOne)
}

// set is a set of rids or ids as a statement argument.
type set struct {
	n   int
	arg any // the one value, or the JSON array
}

func setOf[T comparable](xs []T) set {
	if len(xs) == 1 {
		return set{1, xs[0]}
	}
	b, _ := json.Marshal(xs)
	return set{len(xs), string(b)}
}

func keysOf[T comparable, V any](m map[T]V) []T {
	out := make([]T, 0, len(m))
	for x := range m {
		out = append(out, x)
	}
	return out
}

// with returns the form of p for s.
func (p pair) with(s set) *sql.Stmt {
	if s.n == 1 {
		return p[1]
	}
	return p[0]
}

// keyDirt is what a transaction's writes made stale, until the next flush.
type keyDirt struct {
	rids    map[*key]map[int64]bool  // carriers to recompute; true: delete their rows first
	targets map[*key]map[string]bool // reference keys: target ids whose values changed
	ids     map[*key]map[string]bool // reverse keys: carrier ids to recompute
	before  map[string][]tokenRow    // Put of an update: the target values it had, by param
}

func (d *keyDirt) empty() bool { return len(d.rids) == 0 && len(d.targets) == 0 && len(d.ids) == 0 }

func addTo[K comparable, V any](m *map[*key]map[K]V, k *key, x K, v V) {
	if *m == nil {
		*m = map[*key]map[K]V{}
	}
	if (*m)[k] == nil {
		(*m)[k] = map[K]V{}
	}
	(*m)[k][x] = v
}

// keysBefore runs in Put of a later version of v before its search values
// are replaced: it records the targets v's reverse keys pointed to and the
// token values v held for the reference keys that read it, which the new
// version may no longer have.
func (t *txn) keysBefore(ctx context.Context, v store.Version, rid int64) error {
	rids := setOf([]int64{rid})
	for _, k := range t.keys {
		if k.has == v.Type {
			ids, err := t.queryStrings(ctx, t.stmts.keys.targets.with(rids), rids.arg, k.has, k.hasRef, k.typ)
			if err != nil {
				return err
			}
			for _, id := range ids {
				addTo(&t.dirt.ids, k, id, true)
			}
		}
		if k.has == "" && k.target == v.Type {
			if t.dirt.before == nil {
				t.dirt.before = map[string][]tokenRow{}
			}
			if _, done := t.dirt.before[k.tparam]; done {
				continue
			}
			vals, err := t.targetTokens(ctx, k, v.ID)
			if err != nil {
				return err
			}
			t.dirt.before[k.tparam] = vals
		}
	}
	return nil
}

// keysAfter runs at the end of Put, before v's search values are buffered.
// It adds the rows it can compute from what it knows (v's own reference keys,
// from its targets' values; the reverse keys of what a new v points to, which
// only gain v's values) to the buffered search values, and records what
// became stale for flush to recompute.
func (t *txn) keysAfter(ctx context.Context, v store.Version, rid int64, index []fhir.IndexValue) error {
	before := t.dirt.before
	t.dirt.before = nil
	if len(t.keys) == 0 {
		return nil
	}
	// v as a target: its values as this transaction now sees them, and the
	// carriers to recompute when they changed.
	for _, k := range t.keys {
		if k.has != "" || k.target != v.Type {
			continue
		}
		var now []tokenRow
		if !v.Deleted {
			for _, iv := range index {
				switch {
				case iv.Param != k.tparam:
				case k.refValued && iv.Type == fhir.TypeReference && iv.RefID != "":
					now = append(now, tokenRow{iv.RefType, iv.RefID, ""})
				case !k.refValued && iv.Type == fhir.TypeToken:
					now = append(now, tokenRow{iv.System, iv.Code, iv.Text})
				}
			}
		}
		if t.written == nil {
			t.written = map[string][]tokenRow{}
		}
		t.written[cacheKey(v.Type, v.ID, k.tparam)] = now
		if !sameRows(before[k.tparam], now) {
			addTo(&t.dirt.targets, k, v.ID, true)
		}
	}
	if v.Deleted {
		return nil // keysBefore took the carriers it pointed to
	}
	own := map[*key][]tokenRow{}
	for _, k := range t.keys {
		switch {
		case k.typ == v.Type && k.has == "":
			for _, iv := range index {
				if iv.Type != fhir.TypeReference || iv.Param != k.ref || iv.RefType != k.target || iv.RefID == "" {
					continue
				}
				rows, err := t.targetTokens(ctx, k, iv.RefID)
				if err != nil {
					return err
				}
				own[k] = append(own[k], rows...)
			}
			t.bufferKey(rid, k, own[k])
		case k.typ == v.Type:
			addTo(&t.dirt.rids, k, rid, false)
		}
	}
	for _, k := range t.keys {
		if k.has != v.Type {
			continue
		}
		for _, iv := range index {
			if iv.Type != fhir.TypeReference || iv.Param != k.hasRef || iv.RefType != k.typ || iv.RefID == "" {
				continue
			}
			if v.VersionID != 1 {
				addTo(&t.dirt.ids, k, iv.RefID, true)
				continue
			}
			// A new resource pointing at the carrier adds its values to the
			// carrier's; a carrier not stored yet computes its own when it is.
			var crid int64
			var deleted int
			err := t.stmts.keys.carrier.QueryRowContext(ctx, k.typ, iv.RefID).Scan(&crid, &deleted)
			if errors.Is(err, sql.ErrNoRows) || deleted != 0 {
				continue
			}
			if err != nil {
				return fhir.InternalError("keys", err)
			}
			t.bufferKey(crid, k, own[k.inner])
		}
	}
	return nil
}

// bufferKey adds rows of key k on carrier rid to the buffered search values.
func (t *txn) bufferKey(rid int64, k *key, rows []tokenRow) {
	if len(rows) == 0 {
		return
	}
	if t.pending == nil {
		t.pending = map[string][][]any{}
	}
	for _, r := range rows {
		t.pending["idx_token"] = append(t.pending["idx_token"], []any{rid, k.typ, k.name, keySystem(r.system), r.code, r.text})
	}
}

// tokenRow is one token value of a key's target.
type tokenRow struct{ system, code, text string }

func cacheKey(typ, id, param string) string { return typ + "/" + id + "?" + param }

// maxCached bounds the store's cache of targets' values.
const maxCached = 200000

// targetTokens returns the values of k.tparam of the live k.target/id, as
// key k holds them, as this transaction sees it: written by it, or committed
// (cached in the store: only the writer goroutine uses the cache, and a
// commit by another connection empties it, see Store.commit).
func (t *txn) targetTokens(ctx context.Context, k *key, id string) ([]tokenRow, error) {
	typ, param := k.target, k.tparam
	ck := cacheKey(typ, id, param)
	if rows, ok := t.written[ck]; ok {
		return rows, nil
	}
	if rows, ok := t.cache[ck]; ok {
		return rows, nil
	}
	st := t.stmts.keys.tokens
	if k.refValued {
		st = t.stmts.keys.tokensRef
	}
	qr, err := st.QueryContext(ctx, typ, id, param)
	if err != nil {
		return nil, fhir.InternalError("keys", err)
	}
	defer qr.Close()
	var rows []tokenRow
	for qr.Next() {
		var r tokenRow
		if err := qr.Scan(&r.system, &r.code, &r.text); err != nil {
			return nil, fhir.InternalError("keys", err)
		}
		rows = append(rows, r)
	}
	if err := qr.Err(); err != nil {
		return nil, fhir.InternalError("keys", err)
	}
	if t.cache != nil {
		if len(t.cache) >= maxCached {
			clear(t.cache)
		}
		t.cache[ck] = rows
	}
	return rows, nil
}

func sameRows(a, b []tokenRow) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[tokenRow]bool{}
	for _, r := range a {
		set[r] = true
	}
	for _, r := range b {
		if !set[r] {
			return false
		}
	}
	return true
}

// refreshKeys recomputes every stale key from the transaction's current state:
// reference keys first (their targets' carriers found now), then reverse keys,
// which also take the carriers of a reference key they copy that changed.
func (t *txn) refreshKeys(ctx context.Context) error {
	if t.dirt.empty() {
		return nil
	}
	d := t.dirt
	t.dirt = keyDirt{}
	if err := t.carriersOf(ctx, &d); err != nil {
		return err
	}
	for _, k := range t.keys {
		if k.has != "" {
			continue
		}
		stale, err := t.recompute(ctx, k, d.rids[k])
		if err != nil {
			return err
		}
		if stale.n == 0 {
			continue
		}
		// Carriers whose values changed under them: the reverse keys that copy
		// them change on whatever they point to.
		for _, rk := range t.keys {
			if rk.inner != k {
				continue
			}
			ids, err := t.queryStrings(ctx, t.stmts.keys.targets.with(stale), stale.arg, k.typ, rk.hasRef, rk.typ)
			if err != nil {
				return err
			}
			for _, id := range ids {
				addTo(&d.ids, rk, id, true)
			}
		}
	}
	for _, k := range t.keys {
		if k.has == "" {
			continue
		}
		if ids := d.ids[k]; len(ids) > 0 {
			idSet := setOf(keysOf(ids))
			rids, err := t.queryInts(ctx, t.stmts.keys.rids.with(idSet), k.typ, idSet.arg)
			if err != nil {
				return err
			}
			for _, r := range rids {
				addTo(&d.rids, k, r, true)
			}
		}
		if _, err := t.recompute(ctx, k, d.rids[k]); err != nil {
			return err
		}
	}
	return nil
}

// carriersOf marks stale the carriers of the reference keys whose targets'
// values changed: one query per target type, for all its keys and ids.
func (t *txn) carriersOf(ctx context.Context, d *keyDirt) error {
	if len(d.targets) == 0 {
		return nil
	}
	byType := map[string][]*key{}
	ids := map[string]map[string]bool{}
	for _, k := range t.keys {
		if len(d.targets[k]) == 0 {
			continue
		}
		byType[k.target] = append(byType[k.target], k)
		if ids[k.target] == nil {
			ids[k.target] = map[string]bool{}
		}
		for id := range d.targets[k] {
			ids[k.target][id] = true
		}
	}
	for typ, ks := range byType {
		if len(ks) == 1 && len(ids[typ]) == 1 {
			id := keysOf(ids[typ])[0]
			rids, err := t.queryInts(ctx, t.stmts.keys.carriersOne, ks[0].typ, ks[0].ref, id, typ)
			if err != nil {
				return err
			}
			for _, rid := range rids {
				addTo(&d.rids, ks[0], rid, true)
			}
			continue
		}
		pairs := make([][2]string, len(ks))
		for i, k := range ks {
			pairs[i] = [2]string{k.typ, k.ref}
		}
		pj, _ := json.Marshal(pairs)
		ij, _ := json.Marshal(keysOf(ids[typ]))
		rows, err := t.stmts.keys.carriers.QueryContext(ctx, string(pj), string(ij), typ)
		if err != nil {
			return fhir.InternalError("keys", err)
		}
		for rows.Next() {
			var rid int64
			var i int
			if err := rows.Scan(&rid, &i); err != nil {
				rows.Close()
				return fhir.InternalError("keys", err)
			}
			addTo(&d.rids, ks[i], rid, true)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fhir.InternalError("keys", err)
		}
	}
	return nil
}

// recompute deletes (where stale) and inserts key k's rows of the carriers
// rids; it returns the stale ones.
func (t *txn) recompute(ctx context.Context, k *key, rids map[int64]bool) (set, error) {
	if len(rids) == 0 {
		return set{}, nil
	}
	all := keysOf(rids)
	var stale []int64
	for r, s := range rids {
		if s {
			stale = append(stale, r)
		}
	}
	var staleSet set
	if len(stale) > 0 {
		staleSet = setOf(stale)
		if _, err := t.stmts.keys.del.with(staleSet).ExecContext(ctx, staleSet.arg, k.typ, k.name); err != nil {
			return set{}, fhir.InternalError("keys", err)
		}
	}
	allSet := setOf(all)
	var err error
	switch {
	case k.has == "" && k.refValued:
		_, err = t.stmts.keys.refInsertRef.with(allSet).ExecContext(ctx, k.name, k.target, k.tparam, allSet.arg, k.typ, k.ref)
	case k.has == "":
		_, err = t.stmts.keys.refInsert.with(allSet).ExecContext(ctx, k.name, k.target, k.tparam, allSet.arg, k.typ, k.ref)
	default:
		_, err = t.stmts.keys.hasInsert.with(allSet).ExecContext(ctx, k.name, k.has, k.hasRef, k.inner.name, allSet.arg)
	}
	if err != nil {
		return set{}, fhir.InternalError("keys", err)
	}
	return staleSet, nil
}

func (t *txn) queryInts(ctx context.Context, st *sql.Stmt, args ...any) ([]int64, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fhir.InternalError("keys", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, fhir.InternalError("keys", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fhir.InternalError("keys", err)
	}
	return out, nil
}

func (t *txn) queryStrings(ctx context.Context, st *sql.Stmt, args ...any) ([]string, error) {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fhir.InternalError("keys", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fhir.InternalError("keys", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fhir.InternalError("keys", err)
	}
	return out, nil
}

// buildKeys makes sure that the database holds every key of ks, built from
// the resources stored (a database written before a key was listed, or with
// Options.NoKeys, lacks it), and forgets the keys not kept, so that a later
// Open rebuilds them. It runs once at Open, before the writer starts.
func buildKeys(db *sql.DB, ks keySet) error {
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS keys_built (type TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (type, name))`); err != nil {
		return err
	}
	if len(ks) == 0 {
		_, err := db.ExecContext(ctx, `DELETE FROM keys_built`)
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		return err
	}
	if err := buildMissing(ctx, conn, ks); err != nil {
		_, _ = conn.ExecContext(ctx, `ROLLBACK`)
		return err
	}
	_, err = conn.ExecContext(ctx, `COMMIT`)
	return err
}

func buildMissing(ctx context.Context, conn *sql.Conn, ks keySet) error {
	// Keys built before but not kept now go, rows and all: were they kept
	// again later, they would have missed the writes in between.
	rows, err := conn.QueryContext(ctx, `SELECT type, name FROM keys_built`)
	if err != nil {
		return err
	}
	var gone [][2]string
	for rows.Next() {
		var typ, name string
		if err := rows.Scan(&typ, &name); err != nil {
			rows.Close()
			return err
		}
		kept := false
		for _, k := range ks {
			kept = kept || (k.typ == typ && k.name == name)
		}
		if !kept {
			gone = append(gone, [2]string{typ, name})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, g := range gone {
		if _, err := conn.ExecContext(ctx, `DELETE FROM idx_token WHERE type = ? AND param = ?`, g[0], g[1]); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, `DELETE FROM keys_built WHERE type = ? AND name = ?`, g[0], g[1]); err != nil {
			return err
		}
	}
	for _, k := range ks {
		var n int
		if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM keys_built WHERE type = ? AND name = ?`, k.typ, k.name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		if _, err := conn.ExecContext(ctx, `DELETE FROM idx_token WHERE type = ? AND param = ?`, k.typ, k.name); err != nil {
			return err
		}
		var err error
		switch {
		case k.has == "" && k.refValued:
			_, err = conn.ExecContext(ctx, keyRefBuildRef, k.name, k.target, k.tparam, k.typ, k.ref)
		case k.has == "":
			_, err = conn.ExecContext(ctx, keyRefBuild, k.name, k.target, k.tparam, k.typ, k.ref)
		default:
			_, err = conn.ExecContext(ctx, keyHasBuild, k.name, k.has, k.hasRef, k.inner.name, k.typ)
		}
		if err != nil {
			return fmt.Errorf("build key %s?%s: %w", k.typ, k.name, err)
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO keys_built (type, name) VALUES (?, ?)`, k.typ, k.name); err != nil {
			return err
		}
	}
	return nil
}

// keysCommitted puts the key targets' values a committed transaction wrote in
// the store's cache.
func (s *Store) keysCommitted(t *txn) {
	if s.cache == nil {
		return
	}
	if len(s.cache)+len(t.written) > maxCached {
		clear(s.cache)
	}
	for k, rows := range t.written {
		s.cache[k] = rows
	}
}
