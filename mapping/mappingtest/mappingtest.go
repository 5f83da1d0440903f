// Package mappingtest is the test bench of the importers: an engine wired as
// cmd/crs wires it (SQLite, strict profiles, the access policy, audit) with a
// test's fixtures stored, and helpers to look at what an import left.
package mappingtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/mapping"
	"crs/profiles"
)

// Env is an engine with fixtures, and an administrator to look with.
type Env struct {
	Engine   *engine.Engine
	Profiles *profiles.Set
	Admin    *auth.Principal
	Store    store.Store // the SQLite store under the engine (for the audit chain)
}

// New starts an Env and stores the transaction Bundle in the file fixtures
// (as an administrator).
func New(t testing.TB, fixtures string) *Env {
	t.Helper()
	return NewWith(t, fixtures, sqlite.Options{NoSync: true})
}

// NewWith is New on a SQLite store opened with opt (e.g. with fsync, for a
// benchmark of durable writes).
func NewWith(t testing.TB, fixtures string, opt sqlite.Options) *Env {
	t.Helper()
	return newEnv(t, fixtures, opt, false, nil)
}

// NewWrapped is NewWith with the engine writing through wrap(store): a test
// may add a hook around each write transaction (e.g. a pause before its
// commit). Env.Store stays the SQLite store.
func NewWrapped(t testing.TB, fixtures string, opt sqlite.Options, wrap func(store.Store) store.Store) *Env {
	t.Helper()
	return newEnv(t, fixtures, opt, false, wrap)
}

// NewServing is NewWith wired as crs serve runs: the AuditEvents of reads,
// searches and refusals made durable in an audit journal (group-committed
// fdatasync) and materialised behind, a write's in its own transaction.
func NewServing(t testing.TB, fixtures string, opt sqlite.Options) *Env {
	t.Helper()
	return newEnv(t, fixtures, opt, true, nil)
}

func newEnv(t testing.TB, fixtures string, opt sqlite.Options, journaled bool, wrap func(store.Store) store.Store) *Env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "crs.db"), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var journal *audit.Journal
	if journaled {
		if journal, _, err = audit.OpenJournal(filepath.Join(dir, "crs.db.audit-journal"), 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { journal.Close() })
	}
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	prof, err := profiles.Load("")
	if err != nil {
		t.Fatal(err)
	}
	params, err := prof.SearchRegistry()
	if err != nil {
		t.Fatal(err)
	}
	policy, err := auth.LoadPolicy("", params)
	if err != nil {
		t.Fatal(err)
	}
	var under store.Store = st
	if wrap != nil {
		under = wrap(st)
	}
	eng := engine.New(engine.Config{Store: under, Validator: v, Elements: v, Base: "http://crs.test/fhir", Params: params,
		Profiles: prof, Enforcement: engine.EnforceStrict, Access: policy, Audit: true, AuditJournal: journal})
	// Registered after the store's and the journal's: runs before them.
	t.Cleanup(func() { eng.Close() })
	if err := eng.InstallConformance(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := &Env{Engine: eng, Profiles: prof, Admin: Principal("admin", "", ""), Store: st}
	data, err := os.ReadFile(fixtures)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Bundle(auth.WithPrincipal(context.Background(), e.Admin), data, engine.SearchOptions{}); err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	return e
}

// Principal is a backend service of role for organisation org (ODS code) in
// local authority la, with every SMART system scope (the policy bounds it).
func Principal(role, org, la string) *auth.Principal {
	return &auth.Principal{ClientID: role + "-" + org, Org: org, Roles: []string{role}, LocalAuthority: la, Scopes: auth.ParseScopes("system/*.cruds")}
}

// Search returns the resources a search finds, as the administrator.
func (e *Env) Search(t testing.TB, rt, query string) []map[string]any {
	t.Helper()
	raw, err := engine.ParseQueryString(query)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Engine.Search(auth.WithPrincipal(context.Background(), e.Admin), rt, raw, engine.SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, en := range b.Entry {
		if en.Search != nil && en.Search.Mode != "match" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(en.Resource, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// Versions returns how many versions of type rt the store holds.
func (e *Env) Versions(t testing.TB, rt string) int {
	t.Helper()
	b, err := e.Engine.History(auth.WithPrincipal(context.Background(), e.Admin), rt, "", []fhir.RawParam{{Name: "_count", Value: "500"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Entry) == 500 {
		t.Fatalf("more than 500 versions of %s: count them in pages", rt)
	}
	return len(b.Entry)
}

// JSON is v as JSON, for looking for a piece of it.
func JSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// VerifyAudit checks the hash chain of the AuditEvents (as crs audit verify
// does) and returns their bodies, oldest first. With an audit journal
// (NewServing) it first has every AuditEvent durable so far stored.
func (e *Env) VerifyAudit(t testing.TB) []string {
	t.Helper()
	e.Engine.MaterialiseAudit(context.Background())
	res, err := e.Store.History(context.Background(), store.HistoryQuery{Type: "AuditEvent", Count: 100000})
	if err != nil {
		t.Fatal(err)
	}
	i := len(res.Versions)
	var bodies []string
	if _, err := audit.VerifyChain(func() (string, []byte, bool, error) {
		if i == 0 {
			return "", nil, false, nil
		}
		i-- // History is newest first
		bodies = append(bodies, string(res.Versions[i].Body))
		return res.Versions[i].ID, res.Versions[i].Body, true, nil
	}); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	return bodies
}

// CompleteHeld does what a person resolving a held row does: as the
// importing organisation p, it completes each requested identity-review Task
// whose source row contains row, with an output naming Patient/patient. It
// returns how many it completed.
func (e *Env) CompleteHeld(t testing.TB, p *auth.Principal, row, patient string) int {
	t.Helper()
	n := 0
	for _, task := range e.Search(t, "Task", "status=requested") {
		if !strings.Contains(JSON(task["input"]), row) {
			continue
		}
		task["status"] = "completed"
		task["output"] = []any{map[string]any{"type": map[string]any{"text": "patient"}, "valueReference": map[string]any{"reference": "Patient/" + patient}}}
		if _, err := e.Engine.Update(auth.WithPrincipal(context.Background(), p), "Task", task["id"].(string), []byte(JSON(task)), 0); err != nil {
			t.Fatalf("complete Task/%s: %v", task["id"], err)
		}
		n++
	}
	return n
}

// ResolvedTasks returns the Tasks marked re-imported.
func (e *Env) ResolvedTasks(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, task := range e.Search(t, "Task", "status=completed") {
		if strings.Contains(JSON(task["businessStatus"]), `"re-imported: linked to Patient/`) {
			out = append(out, task)
		}
	}
	return out
}

// Importer is a source's Import with its options bound.
type Importer func(ctx context.Context, door mapping.Door, run *mapping.Run, r io.Reader, rep *mapping.Report) error

// ImportFile imports data, as the file name, through the engine as p for
// the organisation with ODS code ods (as crs import does), and returns the
// summary and the row report (CSV).
func (e *Env) ImportFile(t testing.TB, p *auth.Principal, source, ods, name string, data []byte, imp Importer) (mapping.Summary, string, error) {
	t.Helper()
	door := &mapping.EngineDoor{Engine: e.Engine, Principal: p}
	org, err := mapping.FindOrganization(context.Background(), door, ods)
	if err != nil {
		t.Fatal(err)
	}
	run := &mapping.Run{ID: "run-" + name, Source: source, File: name, Org: org, ODS: ods, Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
		Base: profiles.DefaultCanonicalBase, Profiles: e.Profiles}
	var out bytes.Buffer
	rep := mapping.NewReport(&out)
	err = imp(context.Background(), door, run, bytes.NewReader(data), rep)
	_ = rep.Flush()
	return rep.Summary, out.String(), err
}

// PutFirstVersion writes body straight into a store transaction as the first
// version of its resource, with the search values reg extracts: the raw store
// write the import benchmarks compare themselves with.
func PutFirstVersion(ctx context.Context, tx store.Tx, reg *search.Registry, body []byte) error {
	obj, err := fhir.Parse(body, fhir.Limits{})
	if err != nil {
		return err
	}
	rt := fhir.ResourceType(obj)
	index, err := reg.Extract(rt, obj)
	if err != nil {
		return err
	}
	return tx.Put(ctx, store.Version{Type: rt, ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: body}, index)
}
