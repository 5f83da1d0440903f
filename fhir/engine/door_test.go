package engine_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/profiles"
)

// twoCouncils seeds two people and their episodes with an unpoliced engine: pat-a
// and ep-a in Warwickshire, pat-b and ep-b in Coventry. It returns the store
// and an engine that polices and audits.
func twoCouncils(t *testing.T, st store.Store) *engine.Engine {
	t.Helper()
	_, v := openStore(t)
	params := pathwayParams(t)
	seed := engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", Params: params})
	ctx := context.Background()
	for _, x := range []struct{ k, la string }{{"a", "E10000031"}, {"b", "E08000026"}} { // Warwickshire, Coventry
		for _, res := range []string{
			fmt.Sprintf(`{"resourceType":"Patient","id":"pat-%s","name":[{"family":"F%s"}],"extension":[{"url":%q,"valueCoding":{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":%q}}]}`,
				x.k, x.k, profiles.DefaultCanonicalBase+"/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority", x.la),
			fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":"ep-%s","status":"active","patient":{"reference":"Patient/pat-%s"}}`, x.k, x.k),
		} {
			obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := seed.Update(ctx, fhir.ResourceType(obj), fhir.ID(obj), []byte(res), 0); err != nil {
				t.Fatalf("seed %s: %v", res, err)
			}
		}
	}
	policy, err := auth.LoadPolicy("", params)
	if err != nil {
		t.Fatal(err)
	}
	return engine.New(engine.Config{Store: st, Validator: v, Base: "http://test/fhir", Params: params, Access: policy, Audit: true})
}

// pathwayParams is R4's search parameters and the pathway's own (the council's
// bound, responsible-la, among them).
func pathwayParams(t *testing.T) *search.Registry {
	t.Helper()
	prof, err := profiles.Load(profiles.DefaultCanonicalBase)
	if err != nil {
		t.Fatal(err)
	}
	params, err := prof.SearchRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return params
}

// council is a Warwickshire council caller: it reads Warwickshire's people and
// writes their episodes, and nothing of Coventry's.
func council() context.Context {
	return auth.WithPrincipal(context.Background(), &auth.Principal{
		Issuer: "https://idp.test", Subject: "council-w", ClientID: "council-w", Roles: []string{"council"},
		LocalAuthority: "E10000031", Scopes: []auth.Scope{{Context: "system", Type: "*", Permissions: "cruds"}},
	})
}

// TestRefusalRevealsNothing: for every interaction, a caller outside its
// bounds gets the same answer for a hidden record that exists (ep-b, pat-b)
// and for an id that does not (ep-zz, pat-zz).
func TestRefusalRevealsNothing(t *testing.T) {
	st, _ := openStore(t)
	eng := twoCouncils(t, st)
	ctx := council()
	episode := func(id string) []byte {
		return []byte(`{"resourceType":"EpisodeOfCare","id":"` + id + `","status":"finished","patient":{"reference":"Patient/pat-b"}}`)
	}
	patch := []byte(`[{"op":"replace","path":"/status","value":"finished"}]`)
	entry := func(method, url string, res string) []byte {
		e := `{"request":{"method":"` + method + `","url":"` + url + `"}`
		if res != "" {
			e += `,"resource":` + res
		}
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + e + `}]}`)
	}
	binary := `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + base64.StdEncoding.EncodeToString(patch) + `"}`
	cases := []struct {
		name string
		do   func(id string) error
	}{
		{"read", func(id string) error { _, err := eng.Read(ctx, "EpisodeOfCare", id); return err }},
		{"vread", func(id string) error { _, err := eng.VRead(ctx, "EpisodeOfCare", id, "1"); return err }},
		{"vread of a version that is not there", func(id string) error { _, err := eng.VRead(ctx, "EpisodeOfCare", id, "7"); return err }},
		{"history", func(id string) error { _, err := eng.History(ctx, "EpisodeOfCare", id, nil); return err }},
		{"update", func(id string) error { _, err := eng.Update(ctx, "EpisodeOfCare", id, episode(id), 0); return err }},
		{"update If-Match", func(id string) error { _, err := eng.Update(ctx, "EpisodeOfCare", id, episode(id), 1); return err }},
		{"update If-Match stale", func(id string) error { _, err := eng.Update(ctx, "EpisodeOfCare", id, episode(id), 5); return err }},
		{"patch", func(id string) error { _, err := eng.Patch(ctx, "EpisodeOfCare", id, patch, 0); return err }},
		{"patch If-Match stale", func(id string) error { _, err := eng.Patch(ctx, "EpisodeOfCare", id, patch, 5); return err }},
		{"patch that fails", func(id string) error {
			_, err := eng.Patch(ctx, "EpisodeOfCare", id, []byte(`[{"op":"remove","path":"/nothing"}]`), 0)
			return err
		}},
		{"delete", func(id string) error { _, err := eng.Delete(ctx, "EpisodeOfCare", id, 0); return err }},
		{"delete If-Match stale", func(id string) error { _, err := eng.Delete(ctx, "EpisodeOfCare", id, 5); return err }},
		{"conditional update", func(id string) error {
			_, err := eng.ConditionalUpdate(ctx, "EpisodeOfCare", "_id="+id, episode(id), 0)
			return err
		}},
		{"conditional delete", func(id string) error { _, err := eng.ConditionalDelete(ctx, "EpisodeOfCare", "_id="+id, 0); return err }},
		{"transaction GET", func(id string) error {
			_, err := eng.Bundle(ctx, entry("GET", "EpisodeOfCare/"+id, ""), engine.SearchOptions{})
			return err
		}},
		{"transaction PUT", func(id string) error {
			_, err := eng.Bundle(ctx, entry("PUT", "EpisodeOfCare/"+id, string(episode(id))), engine.SearchOptions{})
			return err
		}},
		{"transaction PATCH", func(id string) error {
			_, err := eng.Bundle(ctx, entry("PATCH", "EpisodeOfCare/"+id, binary), engine.SearchOptions{})
			return err
		}},
		{"transaction DELETE", func(id string) error {
			_, err := eng.Bundle(ctx, entry("DELETE", "EpisodeOfCare/"+id, ""), engine.SearchOptions{})
			return err
		}},
		{"$everything", func(id string) error {
			_, err := eng.Everything(ctx, "EpisodeOfCare", id, nil)
			return err
		}},
	}
	answer := func(err error, id string) string {
		if err == nil {
			return "success"
		}
		fe := fhir.AsError(err)
		out := fe.Kind.String()
		for _, is := range fe.Issues {
			out += " | " + is.Expression + " " + is.Diagnostics
		}
		return strings.ReplaceAll(out, id, "ID")
	}
	for _, c := range cases {
		hidden, missing := answer(c.do("ep-b"), "ep-b"), answer(c.do("ep-zz"), "ep-zz")
		if hidden != missing {
			t.Errorf("%s: a hidden record answers %q, a missing one %q", c.name, hidden, missing)
		}
		if c.name != "conditional delete" && !strings.HasPrefix(hidden, fhir.Forbidden.String()) {
			t.Errorf("%s: answer %q, want a refusal", c.name, hidden)
		}
	}
	// $everything on a person is refused alike too.
	_, e1 := eng.Everything(ctx, "Patient", "pat-b", nil)
	_, e2 := eng.Everything(ctx, "Patient", "pat-zz", nil)
	if answer(e1, "pat-b") != answer(e2, "pat-zz") || fhir.KindOf(e1) != fhir.Forbidden {
		t.Errorf("$everything: %v / %v", e1, e2)
	}
	// Nothing of Coventry's changed.
	if v, err := st.Read(context.Background(), "EpisodeOfCare", "ep-b"); err != nil || v.VersionID != 1 || v.Deleted {
		t.Errorf("ep-b changed: %+v %v", v, err)
	}
	if _, err := st.Read(context.Background(), "EpisodeOfCare", "ep-zz"); fhir.KindOf(err) != fhir.NotFound {
		t.Errorf("ep-zz was created: %v", err)
	}
	// And the caller's own records still work.
	if _, err := eng.Patch(ctx, "EpisodeOfCare", "ep-a", patch, 1); err != nil {
		t.Errorf("patch of an own episode: %v", err)
	}
}

// countAudit counts the AuditEvents in st.
func countAudit(t *testing.T, st store.Store) int {
	t.Helper()
	res, err := st.History(context.Background(), store.HistoryQuery{Type: "AuditEvent", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	return res.Total
}

// TestEveryDoorIsAudited: an in-process caller (no HTTP at all) gets each of
// its interactions recorded, successes and refusals alike, each durable
// before the answer.
func TestEveryDoorIsAudited(t *testing.T) {
	st, _ := openStore(t)
	eng := twoCouncils(t, st)
	ctx := council()
	steps := []struct {
		name string
		do   func() error
	}{
		{"read", func() error { _, err := eng.Read(ctx, "Patient", "pat-a"); return err }},
		{"refused read", func() error { _, err := eng.Read(ctx, "Patient", "pat-b"); return err }},
		{"search", func() error {
			_, err := eng.Search(ctx, "EpisodeOfCare", []fhir.RawParam{{Name: "status", Value: "active"}}, engine.SearchOptions{})
			return err
		}},
		{"history", func() error { _, err := eng.History(ctx, "Patient", "pat-a", nil); return err }},
		{"vread", func() error { _, err := eng.VRead(ctx, "Patient", "pat-a", "1"); return err }},
		{"$everything", func() error { _, err := eng.Everything(ctx, "Patient", "pat-a", nil); return err }},
		{"create", func() error {
			_, err := eng.Create(ctx, "EpisodeOfCare", []byte(`{"resourceType":"EpisodeOfCare","status":"planned","patient":{"reference":"Patient/pat-a"}}`), "")
			return err
		}},
		{"refused create", func() error {
			_, err := eng.Create(ctx, "Goal", []byte(`{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"x"},"subject":{"reference":"Patient/pat-a"}}`), "")
			return err
		}},
		{"capabilities", func() error { _, err := eng.Capabilities(ctx, engine.Software{Name: "crs"}); return err }},
		{"batch", func() error {
			_, err := eng.Bundle(ctx, []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/pat-a"}}]}`), engine.SearchOptions{})
			return err
		}},
	}
	for _, s := range steps {
		before := countAudit(t, st)
		err := s.do()
		if strings.HasPrefix(s.name, "refused") != (fhir.KindOf(err) == fhir.Forbidden) {
			t.Errorf("%s: %v", s.name, err)
		}
		if after := countAudit(t, st); after <= before {
			t.Errorf("%s: answered with no AuditEvent on disk (%d before, %d after)", s.name, before, after)
		}
	}
}

// faultStore is a store whose AuditEvent writes can be made to fail or to
// wait: the one fault a real SQLite file cannot be made to produce on demand.
type faultStore struct {
	store.Store
	failAudit  atomic.Bool   // every audit record fails: AuditEvents and writes' pending records
	failEvents atomic.Bool   // AuditEvents fail (the materialiser cannot store any)
	hold       chan struct{} // when not nil, audit-only writes wait for it to close
	held       atomic.Int32
}

var errDiskFull = errors.New("disk full")

func (f *faultStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	return f.Store.Write(ctx, func(tx store.Tx) error { return fn(faultTx{tx, f}) })
}

type faultTx struct {
	store.Tx
	f *faultStore
}

// Purge passes a removal of records through (the materialiser removes a
// write's pending audit record with its AuditEvent).
func (t faultTx) Purge(ctx context.Context, typ string, ids []string) error {
	return t.Tx.(interface {
		Purge(context.Context, string, []string) error
	}).Purge(ctx, typ, ids)
}

// PendingAudits passes the reading of writes' pending audit rows through
// (the SQLite store's table, auditpendingtable.go).
func (f *faultStore) PendingAudits(ctx context.Context, limit int) ([]int64, [][]byte, error) {
	return f.Store.(pendingRows).PendingAudits(ctx, limit)
}

// pendingRows is the SQLite store's table of writes' pending audit records.
type pendingRows interface {
	PendingAudits(ctx context.Context, limit int) ([]int64, [][]byte, error)
}

// pendingRowsTx is a transaction of a store with pendingRows.
type pendingRowsTx interface {
	PutPendingAudit(ctx context.Context, body []byte) error
	DeletePendingAudits(ctx context.Context, seqs []int64) error
}

// PutPendingAudit fails as a write's pending audit record does with failAudit.
func (t faultTx) PutPendingAudit(ctx context.Context, body []byte) error {
	if t.f.failAudit.Load() {
		return fhir.InternalError("pending audit", errDiskFull)
	}
	return t.Tx.(pendingRowsTx).PutPendingAudit(ctx, body)
}

// DeletePendingAudits passes the removal of pending audit rows through.
func (t faultTx) DeletePendingAudits(ctx context.Context, seqs []int64) error {
	return t.Tx.(pendingRowsTx).DeletePendingAudits(ctx, seqs)
}

func (t faultTx) Put(ctx context.Context, v store.Version, index []fhir.IndexValue) error {
	switch {
	case v.Type == pendingAuditType && t.f.failAudit.Load():
		return fhir.InternalError("put", errDiskFull)
	case v.Type == "AuditEvent":
		if t.f.failAudit.Load() || t.f.failEvents.Load() {
			return fhir.InternalError("put", errDiskFull)
		}
		if t.f.hold != nil {
			t.f.held.Add(1)
			<-t.f.hold
		}
	}
	return t.Tx.Put(ctx, v, index)
}

// TestAuditFaults: when the AuditEvent cannot be made durable, the
// interaction answers Unavailable (503) and stores nothing; when the audit
// queue is full, further interactions are refused at once the same way.
func TestAuditFaults(t *testing.T) {
	sq, _ := openStore(t)
	fs := &faultStore{Store: sq}
	eng := twoCouncils(t, fs)
	ctx := council()
	fs.failAudit.Store(true)
	before := countAudit(t, sq)
	if _, err := eng.Read(ctx, "Patient", "pat-a"); fhir.KindOf(err) != fhir.Unavailable {
		t.Errorf("read with a failing audit: %v, want Unavailable", err)
	}
	res, err := eng.Create(ctx, "EpisodeOfCare", []byte(`{"resourceType":"EpisodeOfCare","status":"planned","patient":{"reference":"Patient/pat-a"}}`), "")
	if fhir.KindOf(err) != fhir.Unavailable {
		t.Errorf("create with a failing audit: %v, want Unavailable", err)
	}
	found, err2 := sq.Search(context.Background(), &fhir.Query{Type: "EpisodeOfCare", Count: 10, Total: fhir.TotalAccurate})
	if err2 != nil || found.Total != 2 {
		t.Errorf("a create whose audit failed stored something: %d episodes (%v), result %+v", found.Total, err2, res)
	}
	if after := countAudit(t, sq); after != before {
		t.Errorf("%d AuditEvents stored while the audit failed", after-before)
	}
	fs.failAudit.Store(false)

	// A full queue: one event held in its commit fills a queue of one.
	fs.hold = make(chan struct{})
	small := engine.New(engine.Config{Store: fs, Validator: nil, Base: "http://test/fhir", Audit: true, AuditQueue: 1})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := small.Capabilities(ctx, engine.Software{}); err != nil {
			t.Errorf("held interaction: %v", err)
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); fs.held.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if small.AuditQueueDepth() != 1 {
		t.Errorf("queue depth %d, want 1", small.AuditQueueDepth())
	}
	if _, err := small.Capabilities(ctx, engine.Software{}); fhir.KindOf(err) != fhir.Unavailable {
		t.Errorf("with the audit queue full: %v, want Unavailable", err)
	}
	close(fs.hold)
	wg.Wait()
}

// verifyChain checks the AuditEvents in st and returns how many there are.
func verifyChain(t *testing.T, st store.Store) int {
	t.Helper()
	res, err := st.History(context.Background(), store.HistoryQuery{Type: "AuditEvent", Count: 10000})
	if err != nil {
		t.Fatal(err)
	}
	i := len(res.Versions)
	n, err := audit.VerifyChain(func() (string, []byte, bool, error) {
		if i == 0 {
			return "", nil, false, nil
		}
		i-- // History is newest first
		return res.Versions[i].ID, res.Versions[i].Body, true, nil
	})
	if err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	return n
}

// TestAuditJournal: with an audit journal, reads are durable in it before
// they are answered and materialised behind, in the one hash chain with the
// writes' AuditEvents; what could not be materialised before a stop is
// materialised at the next start, once; a journal that cannot take the event
// makes the read Unavailable.
func TestAuditJournal(t *testing.T) {
	sq, _ := openStore(t)
	fs := &faultStore{Store: sq}
	_, v := openStore(t)
	path := filepath.Join(t.TempDir(), "audit-journal")
	j, _, err := audit.OpenJournal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(engine.Config{Store: fs, Validator: v, Base: "http://test/fhir", Audit: true, AuditJournal: j})
	ctx := context.Background()
	res, err := eng.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"J"}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := eng.Read(ctx, "Patient", res.Version.ID); err != nil {
			t.Fatal(err)
		}
	}
	// The store fails: the next reads are durable in the journal only.
	fs.failAudit.Store(true)
	for i := 0; i < 5; i++ {
		if _, err := eng.Read(ctx, "Patient", res.Version.ID); err != nil {
			t.Fatal(err)
		}
	}
	eng.Close()
	j.Close()
	stored := verifyChain(t, sq)
	if stored > 11 {
		t.Fatalf("%d AuditEvents stored while the store failed", stored)
	}
	fs.failAudit.Store(false)

	j, n, err := audit.OpenJournal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The create's record is a pending row in the store, not in the journal.
	if n < 15-stored {
		t.Fatalf("journal kept %d entries, want at least %d", n, 15-stored)
	}
	eng = engine.New(engine.Config{Store: sq, Validator: v, Base: "http://test/fhir", Audit: true, AuditJournal: j})
	eng.Close()
	if got := verifyChain(t, sq); got != 16 {
		t.Fatalf("%d AuditEvents after recovery, want 16 (1 create + 15 reads, each once)", got)
	}
	j.Close()
	if _, err := eng.Read(ctx, "Patient", res.Version.ID); fhir.KindOf(err) != fhir.Unavailable {
		t.Fatalf("read with the journal closed: %v, want Unavailable", err)
	}
}

// TestBundleReadsAudited: the AuditEvent of a batch names the records its
// GET entries disclosed.
func TestBundleReadsAudited(t *testing.T) {
	st, _ := openStore(t)
	eng := twoCouncils(t, st)
	ctx := council()
	if _, err := eng.Bundle(ctx, []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/pat-a"}},{"request":{"method":"GET","url":"Patient/pat-b"}}]}`), engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := st.History(context.Background(), store.HistoryQuery{Type: "AuditEvent", Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	var batch string
	for _, v := range res.Versions {
		if strings.Contains(string(v.Body), `"code":"batch"`) && strings.Contains(string(v.Body), `"outcome":"0"`) {
			batch = string(v.Body)
		}
	}
	if !strings.Contains(batch, `"reference":"Patient/pat-a"`) || strings.Contains(batch, "pat-b") {
		t.Errorf("the batch's AuditEvent must name pat-a (read) and not pat-b (refused): %s", batch)
	}
}
