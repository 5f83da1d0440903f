package export

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/mapping/mappingtest"
)

func newManager(t *testing.T, env *mappingtest.Env, dir string) *Manager {
	t.Helper()
	m, err := New(Config{Engine: env.Engine, Dir: dir, Base: "http://crs.test/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func kickoff(t *testing.T, m *Manager, p *auth.Principal, level, group, query string) (string, error) {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseRequest(level, group, "http://crs.test/fhir/$export?"+query, q, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	status, err := m.Kickoff(auth.WithPrincipal(context.Background(), p), req)
	if err != nil {
		return "", err
	}
	return status[strings.LastIndex(status, "/")+1:], nil
}

// wait polls the job until it is done and returns its manifest.
func wait(t *testing.T, m *Manager, p *auth.Principal, id string) map[string]any {
	t.Helper()
	ctx := auth.WithPrincipal(context.Background(), p)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, err := m.Status(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Running {
			return st.Manifest
		}
	}
	t.Fatal("export did not finish")
	return nil
}

// lines reads the resources of every output file of a manifest by type.
func lines(t *testing.T, m *Manager, p *auth.Principal, man map[string]any, key string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, f := range man[key].([]any) {
		fm := f.(map[string]any)
		u := fm["url"].(string)
		parts := strings.Split(u, "/")
		path, err := m.File(auth.WithPrincipal(context.Background(), p), parts[len(parts)-2], parts[len(parts)-1])
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r struct{ ResourceType, ID string }
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			out[fm["type"].(string)] = append(out[fm["type"].(string)], r.ID+"|"+l)
		}
	}
	return out
}

// TestProviderExportHoldsItsOwnPeople: a care provider's patient-level export
// holds the people referred to it only; the types it may not search are
// reported in the error file; another client cannot see the job.
func TestProviderExportHoldsItsOwnPeople(t *testing.T) {
	env := mappingtest.New(t, "testdata/fixtures.json")
	m := newManager(t, env, t.TempDir())
	defer m.Close()
	provider := mappingtest.Principal("care-provider", "VN1A2", "")
	provider.Scopes = auth.ParseScopes("system/Patient.rs system/EpisodeOfCare.rs")
	id, err := kickoff(t, m, provider, LevelPatient, "", "_type=Patient,EpisodeOfCare,RelatedPerson")
	if err != nil {
		t.Fatal(err)
	}
	man := wait(t, m, provider, id)
	got := lines(t, m, provider, man, "output")
	if len(got["Patient"]) != 1 || !strings.HasPrefix(got["Patient"][0], "alice|") {
		t.Errorf("provider's Patients: %v", got["Patient"])
	}
	if len(got["EpisodeOfCare"]) != 1 {
		t.Errorf("provider's episodes: %v", got["EpisodeOfCare"])
	}
	errs := lines(t, m, provider, man, "error")
	if len(errs["OperationOutcome"]) != 1 || !strings.Contains(errs["OperationOutcome"][0], "RelatedPerson") {
		t.Errorf("error file: %v", errs)
	}
	other := mappingtest.Principal("care-provider", "OTHER", "")
	if _, err := m.Status(auth.WithPrincipal(context.Background(), other), id); fhir.AsError(err).Kind != fhir.NotFound {
		t.Errorf("another client's status: %v", err)
	}
	if _, err := m.File(auth.WithPrincipal(context.Background(), other), id, "Patient-1.ndjson"); fhir.AsError(err).Kind != fhir.NotFound {
		t.Errorf("another client's file: %v", err)
	}
	// Kick-off, completion and the downloads are in the audit trail.
	var queries []string
	for _, ev := range env.Search(t, "AuditEvent", "_count=500") {
		ents, _ := ev["entity"].([]any)
		for _, en := range ents {
			q, _ := en.(map[string]any)["query"].(string)
			b, _ := base64.StdEncoding.DecodeString(q)
			queries = append(queries, string(b))
		}
	}
	audit := strings.Join(queries, "\n")
	for _, want := range []string{"$export http://crs.test", "$export complete", "$export download", "$export _type=Patient"} {
		if !strings.Contains(audit, want) {
			t.Errorf("no AuditEvent with %q", want)
		}
	}
}

// TestGroupExportElements exports a Group's members with _elements and _typeFilter.
func TestGroupExportElements(t *testing.T) {
	env := mappingtest.New(t, "testdata/fixtures.json")
	m := newManager(t, env, t.TempDir())
	defer m.Close()
	id, err := kickoff(t, m, env.Admin, LevelGroup, "north", "_type=Patient&_elements=gender&_typeFilter=Patient%3Fgender%3Dmale")
	if err != nil {
		t.Fatal(err)
	}
	got := lines(t, m, env.Admin, wait(t, m, env.Admin, id), "output")
	if len(got["Patient"]) != 1 || !strings.HasPrefix(got["Patient"][0], "bob|") || strings.Contains(got["Patient"][0], "Jones") || !strings.Contains(got["Patient"][0], "SUBSETTED") {
		t.Errorf("group export: %v", got)
	}
}

// TestConcurrentExportRefusedAndRestartResumes: a second export by the same
// client while one runs is TooManyRequests; a job a stop interrupted resumes
// at the next start and completes; DELETE cancels; expired jobs are removed.
func TestConcurrentExportRefusedAndRestartResumes(t *testing.T) {
	env := mappingtest.New(t, "testdata/fixtures.json")
	dir := t.TempDir()
	m := newManager(t, env, dir)
	m.gate = make(chan struct{}) // jobs wait
	id, err := kickoff(t, m, env.Admin, LevelSystem, "", "_type=Patient")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kickoff(t, m, env.Admin, LevelSystem, "", "_type=Patient"); fhir.AsError(err).Kind != fhir.TooManyRequests {
		t.Fatalf("second export: %v", err)
	}
	st, err := m.Status(auth.WithPrincipal(context.Background(), env.Admin), id)
	if err != nil || !st.Running || !strings.Contains(st.Progress, "%") {
		t.Fatalf("running status: %+v %v", st, err)
	}
	m.Close() // the server stops with the job running

	m2 := newManager(t, env, dir)
	defer m2.Close()
	man := wait(t, m2, env.Admin, id)
	if got := lines(t, m2, env.Admin, man, "output"); len(got["Patient"]) != 2 {
		t.Errorf("resumed export: %v", got)
	}

	// Expiry: past Expires the job is gone, and the sweep removes its files.
	m2.mu.Lock()
	m2.now = func() time.Time { return time.Now().Add(2 * DefaultExpiry) }
	m2.mu.Unlock()
	if _, err := m2.Status(auth.WithPrincipal(context.Background(), env.Admin), id); fhir.AsError(err).Kind != fhir.NotFound {
		t.Errorf("expired status: %v", err)
	}
	if _, err := m2.File(auth.WithPrincipal(context.Background(), env.Admin), id, "Patient-1.ndjson"); fhir.AsError(err).Kind != fhir.NotFound {
		t.Errorf("expired file: %v", err)
	}
	m2.Sweep()
	if _, err := os.Stat(filepath.Join(dir, id)); !os.IsNotExist(err) {
		t.Errorf("expired files kept: %v", err)
	}
}

// TestParseRequestRefusals: each bad kick-off parameter is an Invalid error naming it.
func TestParseRequestRefusals(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct{ level, query, expr string }{
		{LevelSystem, "_outputFormat=text/csv", "_outputFormat"},
		{LevelSystem, "_type=Banana", "_type"},
		{LevelPatient, "_type=Organization", "_type"},
		{LevelSystem, "_since=2027-01-01T00:00:00Z", "_since"},
		{LevelSystem, "_since=yesterday", "_since"},
		{LevelSystem, "_typeFilter=Patient", "_typeFilter"},
		{LevelSystem, "_type=Patient&_typeFilter=Goal?status=active", "_typeFilter"},
		{LevelSystem, "patient=Patient/x", "patient"},
		{LevelPatient, "patient=Patient/!!", "patient"},
		{LevelSystem, "_count=10", "_count"},
	} {
		q, _ := url.ParseQuery(c.query)
		_, err := ParseRequest(c.level, "", "u", q, now)
		fe := fhir.AsError(err)
		if err == nil || fe.Kind != fhir.Invalid || fe.Issues[0].Expression != c.expr {
			t.Errorf("%s %s: %v", c.level, c.query, err)
		}
	}
	q, _ := url.ParseQuery("_outputFormat=ndjson&_type=Patient,Goal&_typeFilter=Goal?lifecycle-status=active,Patient?gender=male")
	r, err := ParseRequest(LevelPatient, "", "u", q, now)
	if err != nil || len(r.Types) != 2 || len(r.TypeFilters["Goal"]) != 1 || len(r.TypeFilters["Patient"]) != 1 {
		t.Errorf("good request: %+v %v", r, err)
	}
	if _, err := ParametersValues([]byte(`{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/a"}}]}`)); err != nil {
		t.Errorf("Parameters: %v", err)
	}
	if _, err := ParametersValues([]byte(`{"resourceType":"Patient"}`)); fhir.AsError(err).Kind != fhir.Invalid {
		t.Errorf("not Parameters: %v", err)
	}
}

// TestDeletedOnlyForUnboundedCallers: with _since, a bounded caller gets no
// deleted list (a tombstone does not say whose record it was) but an
// informational issue saying so; an administrator gets the deletion.
func TestDeletedOnlyForUnboundedCallers(t *testing.T) {
	env := mappingtest.New(t, "testdata/fixtures.json")
	m := newManager(t, env, t.TempDir())
	defer m.Close()
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	ctx := auth.WithPrincipal(context.Background(), env.Admin)
	if _, err := env.Engine.Delete(ctx, "Group", "north", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Engine.Delete(ctx, "Patient", "bob", 0); err != nil {
		t.Fatal(err)
	}
	provider := mappingtest.Principal("care-provider", "VN1A2", "")
	id, err := kickoff(t, m, provider, LevelPatient, "", "_type=Patient&_since="+url.QueryEscape(since))
	if err != nil {
		t.Fatal(err)
	}
	man := wait(t, m, provider, id)
	if d := man["deleted"].([]any); len(d) != 0 {
		t.Errorf("bounded caller's deleted: %v", d)
	}
	if errs := lines(t, m, provider, man, "error"); len(errs["OperationOutcome"]) != 1 || !strings.Contains(errs["OperationOutcome"][0], "deletions of Patient") {
		t.Errorf("bounded caller's error file: %v", errs)
	}
	id, err = kickoff(t, m, env.Admin, LevelPatient, "", "_type=Patient&_since="+url.QueryEscape(since))
	if err != nil {
		t.Fatal(err)
	}
	man = wait(t, m, env.Admin, id)
	if d := lines(t, m, env.Admin, man, "deleted"); len(d["Bundle"]) != 1 || !strings.Contains(d["Bundle"][0], `"url":"Patient/bob"`) {
		t.Errorf("administrator's deleted: %v", d)
	}
}
