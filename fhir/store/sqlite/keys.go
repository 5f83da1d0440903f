package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
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
// that asks it, as idx_token rows whose param is the chain itself, holding the
// token values the chain reaches; a search names the chain, and the store
// reads the rows instead (rewrite).
//
// The rows are maintained inside the write transaction that changes them,
// whatever the order of the writes: a carrier written (its references
// changed), a target written (its token values changed, or it was created or
// deleted), and for a reverse key a resource pointing at the carrier written
// or its own key changed. Put records what became stale; flush recomputes it
// from the transaction's current state with the same joins the chain's SQL
// makes (refreshKeys), so a key always equals its chain. A key built from
// search values that the chain SQL would read the same way gives the same
// answers, which the storetest group DenormalisedKeys proves on every backend
// (MongoDB answers through the chain).

// keyChains are the chains kept as keys: "Type?chain", in an order where a
// reverse key comes after the key it copies. They are the chains of
// auth/policy.json's conditions.
var keyChains = []string{
	"ServiceRequest?performer:Organization.identifier",
	"ServiceRequest?requester:Organization.identifier",
	"Task?requester:Organization.identifier",
	"EpisodeOfCare?organization:Organization.identifier",
	"Encounter?service-provider:Organization.identifier",
	"Provenance?agent:Organization.identifier",
	"Patient?_has:ServiceRequest:subject:performer:Organization.identifier",
	"Patient?_has:ServiceRequest:subject:requester:Organization.identifier",
	"Encounter?_has:ServiceRequest:encounter:requester:Organization.identifier",
	"Patient?_has:Provenance:target:agent:Organization.identifier",
	"ServiceRequest?subject:Patient.responsible-la",
	"CarePlan?subject:Patient.responsible-la",
	"Goal?subject:Patient.responsible-la",
	"Encounter?subject:Patient.responsible-la",
	"CareTeam?subject:Patient.responsible-la",
	"EpisodeOfCare?patient:Patient.responsible-la",
	"RelatedPerson?patient:Patient.responsible-la",
}

// key is one denormalised chain. A reference key (has == "") holds, on a
// resource of typ, the token values of tparam of the live targets of type
// target of its reference parameter ref. A reverse key holds, on a resource
// of typ, the values of key inner of the live resources of type has whose
// reference parameter hasRef points to it.
type key struct {
	typ, name           string // carrier type; idx_token.param of its rows (the chain)
	ref, target, tparam string
	has, hasRef         string
	inner               *key
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
		ks = append(ks, k)
	}
	return ks, nil
}

// parse reads "ref:Target.param" or "_has:Type:ref:<a key of Type>".
func (ks keySet) parse(typ, chain string) (*key, error) {
	k := &key{typ: typ, name: chain, def: &fhir.SearchParam{Code: chain, Type: fhir.TypeToken}}
	if rest, ok := strings.CutPrefix(chain, "_has:"); ok {
		parts := strings.SplitN(rest, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("_has takes Type:ref:chain")
		}
		k.has, k.hasRef = parts[0], parts[1]
		for _, in := range ks {
			if in.typ == k.has && in.name == parts[2] && in.has == "" {
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
// but :text, nothing else inside), and returns that innermost parameter.
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
	if !plain(*ip) || ip.Def == nil || ip.Def.Code != k.tparam || ip.Def.Type != fhir.TypeToken || ip.Missing != nil || (ip.Modifier != "" && ip.Modifier != "text") {
		return nil, false
	}
	return ip, true
}

// The statements that maintain keys. Sets of rows and ids are passed as one
// JSON array, so that each statement is prepared once.
const (
	// keyRefInsert adds the rows of a reference key (?1 name, ?2 target,
	// ?3 tparam, ?4 carrier rids, ?5 carrier type, ?6 ref): the chain's joins.
	keyRefInsert = `INSERT OR IGNORE INTO idx_token (rid, type, param, system, code, text)
		SELECT r.rid, r.type, ?1, t.system, t.code, t.text
		FROM idx_reference r INDEXED BY idx_reference_rid
		JOIN current o ON o.type = ?2 AND o.id = r.ref_id AND o.deleted = 0
		JOIN idx_token t INDEXED BY idx_token_rid ON t.rid = o.rid AND t.type = ?2 AND t.param = ?3
		WHERE r.rid IN (SELECT value FROM json_each(?4)) AND r.type = ?5 AND r.param = ?6 AND r.ref_type = ?2`
	// keyHasInsert adds the rows of a reverse key (?1 name, ?2 has, ?3
	// hasRef, ?4 inner name, ?5 carrier rids).
	keyHasInsert = `INSERT OR IGNORE INTO idx_token (rid, type, param, system, code, text)
		SELECT p.rid, p.type, ?1, k.system, k.code, k.text
		FROM current p
		JOIN idx_reference r ON r.type = ?2 AND r.param = ?3 AND r.ref_id = p.id AND r.ref_type = p.type
		JOIN current s ON s.rid = r.rid AND s.deleted = 0
		JOIN idx_token k INDEXED BY idx_token_rid ON k.rid = r.rid AND k.type = ?2 AND k.param = ?4
		WHERE p.rid IN (SELECT value FROM json_each(?5)) AND p.deleted = 0`
	// keyDelete removes a key's rows from carriers (?1 rids, ?2 type, ?3 name).
	keyDelete = `DELETE FROM idx_token WHERE rid IN (SELECT value FROM json_each(?1)) AND type = ?2 AND param = ?3`
	// keyCarriers finds the resources of ?1 whose reference ?2 points to one
	// of the ids ?3 of type ?4.
	keyCarriers = `SELECT rid FROM idx_reference WHERE type = ?1 AND param = ?2 AND ref_id IN (SELECT value FROM json_each(?3)) AND ref_type = ?4`
	// keyTargets lists the ids of type ?4 that the resources ?1 (of type ?2)
	// point to by reference ?3.
	keyTargets = `SELECT DISTINCT ref_id FROM idx_reference INDEXED BY idx_reference_rid WHERE rid IN (SELECT value FROM json_each(?1)) AND type = ?2 AND param = ?3 AND ref_type = ?4`
	// keyRids finds the rows of type ?1 with the ids ?2.
	keyRids = `SELECT rid FROM current WHERE type = ?1 AND id IN (SELECT value FROM json_each(?2))`
	// keyTokens lists a resource's token values of one parameter (?1 rid, ?2 type, ?3 param).
	keyTokens = `SELECT system, code, text FROM idx_token INDEXED BY idx_token_rid WHERE rid = ?1 AND type = ?2 AND param = ?3`
)

// keyStmts are the key statements prepared on the writer's connection.
type keyStmts struct {
	refInsert, hasInsert, del, carriers, targets, rids, tokens *sql.Stmt
}

func (ks *keyStmts) prepare(prep func(string) *sql.Stmt) {
	ks.refInsert, ks.hasInsert, ks.del = prep(keyRefInsert), prep(keyHasInsert), prep(keyDelete)
	ks.carriers, ks.targets, ks.rids, ks.tokens = prep(keyCarriers), prep(keyTargets), prep(keyRids), prep(keyTokens)
}

// keyDirt is what a transaction's writes made stale, until the next flush.
type keyDirt struct {
	rids    map[*key]map[int64]bool    // carriers to recompute; true: delete their rows first
	targets map[*key]map[string]bool   // reference keys: target ids whose values changed
	ids     map[*key]map[string]bool   // reverse keys: carrier ids to recompute
	before  map[string]map[string]bool // Put of an update: the target values it had, by type/param
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
	rids, _ := json.Marshal([]int64{rid})
	for _, k := range t.keys {
		if k.has == v.Type {
			ids, err := t.queryStrings(ctx, t.stmts.keys.targets, string(rids), k.has, k.hasRef, k.typ)
			if err != nil {
				return err
			}
			for _, id := range ids {
				addTo(&t.dirt.ids, k, id, true)
			}
		}
		if k.has == "" && k.target == v.Type {
			if t.dirt.before == nil {
				t.dirt.before = map[string]map[string]bool{}
			}
			if _, done := t.dirt.before[k.tparam]; done {
				continue
			}
			rows, err := t.stmts.keys.tokens.QueryContext(ctx, rid, v.Type, k.tparam)
			if err != nil {
				return fhir.InternalError("keys", err)
			}
			vals := map[string]bool{}
			for rows.Next() {
				var s, c, x string
				if err := rows.Scan(&s, &c, &x); err != nil {
					rows.Close()
					return fhir.InternalError("keys", err)
				}
				vals[s+"|"+c+"|"+x] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fhir.InternalError("keys", err)
			}
			t.dirt.before[k.tparam] = vals
		}
	}
	return nil
}

// keysAfter runs at the end of Put: it records which keys v's write made
// stale.
func (t *txn) keysAfter(v store.Version, rid int64, index []fhir.IndexValue) {
	before := t.dirt.before
	t.dirt.before = nil
	for _, k := range t.keys {
		if k.typ == v.Type && !v.Deleted {
			// Its own rows were removed with its search values.
			if k.has != "" || refersTo(index, k.ref, k.target) {
				addTo(&t.dirt.rids, k, rid, false)
			}
		}
		if k.has == v.Type && !v.Deleted {
			for _, iv := range index {
				if iv.Type == fhir.TypeReference && iv.Param == k.hasRef && iv.RefType == k.typ && iv.RefID != "" {
					addTo(&t.dirt.ids, k, iv.RefID, true)
				}
			}
		}
		if k.has == "" && k.target == v.Type {
			now := map[string]bool{}
			if !v.Deleted {
				for _, iv := range index {
					if iv.Type == fhir.TypeToken && iv.Param == k.tparam {
						now[iv.System+"|"+iv.Code+"|"+iv.Text] = true
					}
				}
			}
			if !sameSet(before[k.tparam], now) {
				addTo(&t.dirt.targets, k, v.ID, true)
			}
		}
	}
}

func refersTo(index []fhir.IndexValue, param, typ string) bool {
	for _, iv := range index {
		if iv.Type == fhir.TypeReference && iv.Param == param && iv.RefType == typ {
			return true
		}
	}
	return false
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for x := range a {
		if !b[x] {
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
	for _, k := range t.keys {
		if k.has != "" {
			continue
		}
		if ids := d.targets[k]; len(ids) > 0 {
			rids, err := t.queryInts(ctx, t.stmts.keys.carriers, k.typ, k.ref, jsonKeys(ids), k.target)
			if err != nil {
				return err
			}
			for _, r := range rids {
				addTo(&d.rids, k, r, true)
			}
		}
		stale, err := t.recompute(ctx, k, d.rids[k])
		if err != nil {
			return err
		}
		if len(stale) == 0 {
			continue
		}
		// Carriers whose values changed under them: the reverse keys that copy
		// them change on whatever they point to.
		for _, rk := range t.keys {
			if rk.inner != k {
				continue
			}
			ids, err := t.queryStrings(ctx, t.stmts.keys.targets, stale, k.typ, rk.hasRef, rk.typ)
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
			rids, err := t.queryInts(ctx, t.stmts.keys.rids, k.typ, jsonKeys(ids))
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

// recompute deletes (where stale) and inserts key k's rows of the carriers
// rids; it returns the stale ones as a JSON array ("" when none).
func (t *txn) recompute(ctx context.Context, k *key, rids map[int64]bool) (string, error) {
	if len(rids) == 0 {
		return "", nil
	}
	all := make([]int64, 0, len(rids))
	var stale []int64
	for r, s := range rids {
		all = append(all, r)
		if s {
			stale = append(stale, r)
		}
	}
	staleJSON := ""
	if len(stale) > 0 {
		b, _ := json.Marshal(stale)
		staleJSON = string(b)
		if _, err := t.stmts.keys.del.ExecContext(ctx, staleJSON, k.typ, k.name); err != nil {
			return "", fhir.InternalError("keys", err)
		}
	}
	allJSON, _ := json.Marshal(all)
	var err error
	if k.has == "" {
		_, err = t.stmts.keys.refInsert.ExecContext(ctx, k.name, k.target, k.tparam, string(allJSON), k.typ, k.ref)
	} else {
		_, err = t.stmts.keys.hasInsert.ExecContext(ctx, k.name, k.has, k.hasRef, k.inner.name, string(allJSON))
	}
	if err != nil {
		return "", fhir.InternalError("keys", err)
	}
	return staleJSON, nil
}

func jsonKeys(set map[string]bool) string {
	out := make([]string, 0, len(set))
	for x := range set {
		out = append(out, x)
	}
	b, _ := json.Marshal(out)
	return string(b)
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
		if k.has == "" {
			q := strings.Replace(keyRefInsert, "r.rid IN (SELECT value FROM json_each(?4))", "?4 = ?4", 1)
			q = strings.Replace(q, " INDEXED BY idx_reference_rid", "", 1)
			_, err = conn.ExecContext(ctx, q,
				k.name, k.target, k.tparam, "", k.typ, k.ref)
		} else {
			_, err = conn.ExecContext(ctx, strings.Replace(keyHasInsert, "p.rid IN (SELECT value FROM json_each(?5))", "p.type = ?6", 1),
				k.name, k.has, k.hasRef, k.inner.name, "", k.typ)
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
