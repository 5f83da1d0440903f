package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/bulk_fhir_tools/bulkfhir"
	cpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
)

// noAuth is the bulkfhir client's authenticator for a development-mode crs.
type noAuth struct{}

func (noAuth) Authenticate(*http.Client) error                              { return nil }
func (noAuth) AuthenticateIfNecessary(*http.Client) error                   { return nil }
func (noAuth) AddAuthenticationToRequest(*http.Client, *http.Request) error { return nil }

// exportNHS makes a valid test NHS number (Modulus 11) for person i.
func exportNHS(i int) string {
	for k := 0; k < 2; k++ {
		base := fmt.Sprintf("999%06d", 3*i+k+900)
		sum := 0
		for d := 0; d < 9; d++ {
			sum += int(base[d]-'0') * (10 - d)
		}
		check := 11 - sum%11
		if check == 11 {
			check = 0
		}
		if check != 10 {
			return base + strconv.Itoa(check)
		}
	}
	panic("unreachable")
}

// startExportMain starts crs in development mode with small export files.
func startExportMain(t *testing.T, db string) (*Main, string) {
	t.Helper()
	m := &Main{
		Config: Config{Addr: "127.0.0.1:0", Store: "sqlite:" + db, MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100,
			ExportMaxFileBytes: 700},
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m, "http://" + m.Addr() + "/fhir"
}

// bulkExport runs one export with the independent bulk_fhir_tools client and
// returns the ids it downloaded per type.
func bulkExport(t *testing.T, base, group string, types []cpb.ResourceTypeCode_Value) map[string][]string {
	t.Helper()
	c, err := bulkfhir.NewClient(base, noAuth{})
	if err != nil {
		t.Fatal(err)
	}
	var status string
	if group != "" {
		status, err = c.StartBulkDataExport(types, time.Time{}, group)
	} else {
		status, err = c.StartBulkDataExportAll(types, time.Time{})
	}
	if err != nil {
		t.Fatalf("kick-off: %v", err)
	}
	var final bulkfhir.JobStatus
	for r := range c.MonitorJobStatus(status, 100*time.Millisecond, 60*time.Second) {
		if r.Error != nil {
			t.Fatalf("status: %v", r.Error)
		}
		final = r.Status
	}
	if !final.IsComplete || final.TransactionTime.IsZero() {
		t.Fatalf("not complete: %+v", final)
	}
	got := map[string][]string{}
	for code, urls := range final.ResultURLs {
		name, _ := bulkfhir.ResourceTypeCodeToName(code)
		for _, u := range urls {
			rc, err := c.GetData(u)
			if err != nil {
				t.Fatalf("download %s: %v", u, err)
			}
			sc := bufio.NewScanner(rc)
			for sc.Scan() {
				var r struct{ ResourceType, ID string }
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.ResourceType != name {
					t.Fatalf("line of %s: %q (%v)", u, sc.Text(), err)
				}
				got[name] = append(got[name], r.ID)
			}
			rc.Close()
		}
	}
	for _, ids := range got {
		sort.Strings(ids)
	}
	return got
}

func sorted(ids ...string) []string {
	sort.Strings(ids)
	return ids
}

func equalIDs(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// TestBulkExportWithBulkFHIRTools exports a Group and all patients from a
// running crs over HTTP with google/bulk_fhir_tools' client, which finds every
// resource it should and no other; files are split at the size limit.
func TestBulkExportWithBulkFHIRTools(t *testing.T) {
	m, base := startExportMain(t, filepath.Join(t.TempDir(), "crs.db"))
	defer m.Close()
	var patients, related []string
	for i := 0; i < 4; i++ {
		status, id := post(t, base+"/Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"`+exportNHS(i)+`"}],"name":[{"family":"Export`+strconv.Itoa(i)+`"}]}`)
		if status != http.StatusCreated {
			t.Fatalf("patient %d: %d", i, status)
		}
		patients = append(patients, id)
		status, rid := post(t, base+"/RelatedPerson", `{"resourceType":"RelatedPerson","patient":{"reference":"Patient/`+id+`"},"name":[{"family":"Carer`+strconv.Itoa(i)+`"}]}`)
		if status != http.StatusCreated {
			t.Fatalf("related person %d: %d", i, status)
		}
		related = append(related, rid)
	}
	status, group := post(t, base+"/Group", `{"resourceType":"Group","type":"person","actual":true,"name":"Locality North caseload","member":[{"entity":{"reference":"Patient/`+patients[0]+`"}},{"entity":{"reference":"Patient/`+patients[2]+`"}},{"entity":{"reference":"Patient/`+patients[3]+`"},"inactive":true}]}`)
	if status != http.StatusCreated {
		t.Fatalf("group: %d", status)
	}
	types := []cpb.ResourceTypeCode_Value{cpb.ResourceTypeCode_PATIENT, cpb.ResourceTypeCode_RELATED_PERSON}

	got := bulkExport(t, base, group, types)
	if want := sorted(patients[0], patients[2]); !equalIDs(got["Patient"], want) {
		t.Errorf("group export Patients = %v, want %v", got["Patient"], want)
	}
	if want := sorted(related[0], related[2]); !equalIDs(got["RelatedPerson"], want) {
		t.Errorf("group export RelatedPersons = %v, want %v", got["RelatedPerson"], want)
	}

	got = bulkExport(t, base, "", types)
	if want := sorted(patients...); !equalIDs(got["Patient"], want) {
		t.Errorf("patient export Patients = %v, want %v", got["Patient"], want)
	}
	if want := sorted(related...); !equalIDs(got["RelatedPerson"], want) {
		t.Errorf("patient export RelatedPersons = %v, want %v", got["RelatedPerson"], want)
	}
}

// do sends one request and returns the status, headers and body.
func do(t *testing.T, method, url, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// waitManifest polls a status URL until the manifest is there.
func waitManifest(t *testing.T, status string) (http.Header, map[string]any) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		code, h, b := do(t, "GET", status, "")
		switch code {
		case http.StatusAccepted:
			if !strings.Contains(h.Get("X-Progress"), "%") || h.Get("Retry-After") == "" {
				t.Fatalf("202 without X-Progress percentage or Retry-After: %v", h)
			}
			time.Sleep(50 * time.Millisecond)
		case http.StatusOK:
			var man map[string]any
			if err := json.Unmarshal(b, &man); err != nil {
				t.Fatal(err)
			}
			return h, man
		default:
			t.Fatalf("status: %d %s", code, b)
		}
	}
	t.Fatal("export did not finish")
	return nil, nil
}

// TestBulkExportProtocol checks the kick-off's refusals, the manifest, POST
// with Parameters, _since with deleted, _typeFilter, DELETE and 429.
func TestBulkExportProtocol(t *testing.T) {
	m, base := startExportMain(t, filepath.Join(t.TempDir(), "crs.db"))
	defer m.Close()
	var patients []string
	for i := 0; i < 3; i++ {
		status, id := post(t, base+"/Patient", `{"resourceType":"Patient","gender":"`+[]string{"male", "female", "female"}[i]+`","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"`+exportNHS(10+i)+`"}]}`)
		if status != http.StatusCreated {
			t.Fatalf("patient: %d", status)
		}
		patients = append(patients, id)
	}
	async := []string{"Prefer", "respond-async", "Accept", "application/fhir+json"}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, bad := range []struct{ name, url, want string }{
		{"no Prefer", "/$export", "respond-async"},
		{"format", "/$export?_outputFormat=text/csv", "_outputFormat"},
		{"unknown type", "/$export?_type=Banana", "_type"},
		{"future since", "/$export?_since=" + future, "future"},
		{"malformed typeFilter", "/Patient/$export?_typeFilter=Patient", "_typeFilter"},
		{"typeFilter outside _type", "/Patient/$export?_type=Patient&_typeFilter=RelatedPerson%3Fname%3Dx", "_typeFilter"},
		{"unknown parameter", "/$export?_count=3", "_count"},
		{"missing group", "/Group/nope/$export", "Group"},
	} {
		h := async
		if bad.name == "no Prefer" {
			h = nil
		}
		code, _, b := do(t, "GET", base+bad.url, "", h...)
		if code/100 != 4 || !strings.Contains(string(b), "OperationOutcome") || !strings.Contains(string(b), bad.want) {
			t.Errorf("%s: %d %s", bad.name, code, b)
		}
	}

	// POST with Parameters: a _typeFilter, and the manifest as the IG says.
	code, h, b := do(t, "POST", base+"/Patient/$export", `{"resourceType":"Parameters","parameter":[
		{"name":"_type","valueString":"Patient"},{"name":"_outputFormat","valueString":"application/fhir+ndjson"},
		{"name":"_typeFilter","valueString":"Patient?gender=female"}]}`, async...)
	if code != http.StatusAccepted || h.Get("Content-Location") == "" {
		t.Fatalf("kick-off: %d %s", code, b)
	}
	status := h.Get("Content-Location")
	mh, man := waitManifest(t, status)
	if mh.Get("Expires") == "" || man["requiresAccessToken"] != true || man["transactionTime"] == nil || !strings.Contains(man["request"].(string), "Patient/$export") {
		t.Fatalf("manifest: %v %v", mh, man)
	}
	if _, has := man["deleted"]; has {
		t.Errorf("deleted without _since: %v", man)
	}
	var ids []string
	for _, o := range man["output"].([]any) {
		out := o.(map[string]any)
		code, fh, data := do(t, "GET", out["url"].(string), "", "Accept", "application/fhir+ndjson")
		if code != http.StatusOK || fh.Get("Content-Type") != "application/fhir+ndjson" {
			t.Fatalf("file: %d %v", code, fh)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r struct{ ID string }
			_ = json.Unmarshal([]byte(line), &r)
			ids = append(ids, r.ID)
		}
	}
	sort.Strings(ids)
	if want := sorted(patients[1], patients[2]); !equalIDs(ids, want) {
		t.Errorf("_typeFilter export = %v, want %v", ids, want)
	}

	// _since: changes after it, and the deleted list.
	time.Sleep(20 * time.Millisecond)
	since := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(20 * time.Millisecond)
	if code, _, b := do(t, "DELETE", base+"/Patient/"+patients[0], ""); code/100 != 2 {
		t.Fatalf("delete: %d %s", code, b)
	}
	_, p4 := post(t, base+"/Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"`+exportNHS(20)+`"}]}`)
	code, h, b = do(t, "GET", base+"/$export?_type=Patient&_since="+since, "", async...)
	if code != http.StatusAccepted {
		t.Fatalf("kick-off _since: %d %s", code, b)
	}
	_, man = waitManifest(t, h.Get("Content-Location"))
	outs := man["output"].([]any)
	if len(outs) != 1 || outs[0].(map[string]any)["count"].(float64) != 1 {
		t.Fatalf("_since output: %v", outs)
	}
	_, _, data := do(t, "GET", outs[0].(map[string]any)["url"].(string), "")
	if !strings.Contains(string(data), p4) {
		t.Errorf("_since file: %s", data)
	}
	del := man["deleted"].([]any)
	if len(del) != 1 {
		t.Fatalf("deleted: %v", man)
	}
	_, _, data = do(t, "GET", del[0].(map[string]any)["url"].(string), "")
	if !strings.Contains(string(data), `"method":"DELETE"`) || !strings.Contains(string(data), "Patient/"+patients[0]) {
		t.Errorf("deleted file: %s", data)
	}

	// DELETE on the status URL: 202, then 404 for it and its files.
	code, _, _ = do(t, "DELETE", status, "")
	if code != http.StatusAccepted {
		t.Fatalf("cancel: %d", code)
	}
	if code, _, _ = do(t, "GET", status, ""); code != http.StatusNotFound {
		t.Errorf("status after cancel: %d", code)
	}

	// The CapabilityStatement lists $export.
	_, _, cs := do(t, "GET", base+"/metadata", "")
	for _, want := range []string{"bulkdata/OperationDefinition/export", "patient-export", "group-export", `"type":"Group"`} {
		if !strings.Contains(string(cs), want) {
			t.Errorf("CapabilityStatement lacks %s", want)
		}
	}
}

// TestExportFlags: the export settings come from flags or CRS_EXPORT_*, and a
// bad value names its variable.
func TestExportFlags(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"CRS_EXPORT_EXPIRY", "soon"},
		{"CRS_EXPORT_EXPIRY", "-1h"},
		{"CRS_EXPORT_MAX_FILE_BYTES", "0"},
	} {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			t.Setenv(c.name, c.value)
			if _, err := parseServeFlags(nil, io.Discard); err == nil || !strings.Contains(err.Error(), c.name) {
				t.Errorf("%s=%q: %v", c.name, c.value, err)
			}
		})
	}
	t.Setenv("CRS_EXPORT_EXPIRY", "30m")
	t.Setenv("CRS_EXPORT_DIR", "/var/lib/crs/exports")
	cfg, err := parseServeFlags([]string{"--export-max-file-bytes", "1000"}, io.Discard)
	if err != nil || cfg.ExportExpiry != 30*time.Minute || cfg.ExportDir != "/var/lib/crs/exports" || cfg.ExportMaxFileBytes != 1000 {
		t.Errorf("export flags: %+v %v", cfg, err)
	}
	if d := exportDir(Config{Store: "sqlite:/data/crs.db"}); d != "/data/crs.db.exports" {
		t.Errorf("default export dir: %s", d)
	}
}

// TestExportOverHTTPIsBounded: with real tokens, a care provider's export
// holds its own people only; another client cannot poll its status or fetch
// its files; an auditor's Group export holds the whole group.
func TestExportOverHTTPIsBounded(t *testing.T) {
	r := startRegion(t)
	r.seed(t)
	call := func(who, method, url string, header ...string) (int, http.Header, string) {
		t.Helper()
		if who != "" {
			header = append(header, "Authorization", "Bearer "+r.tokens[who])
		}
		code, h, b := do(t, method, url, "", header...)
		return code, h, string(b)
	}
	export := func(who, path string) map[string][]string {
		t.Helper()
		code, h, body := call(who, "GET", r.base+path, "Prefer", "respond-async")
		if code != http.StatusAccepted {
			t.Fatalf("%s kick-off %s: %d %s", who, path, code, body)
		}
		status := h.Get("Content-Location")
		var man struct {
			Output []struct{ Type, URL string }
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("export did not finish")
			}
			code, _, body = call(who, "GET", status)
			if code == http.StatusOK {
				if err := json.Unmarshal([]byte(body), &man); err != nil {
					t.Fatal(err)
				}
				break
			}
			if code != http.StatusAccepted {
				t.Fatalf("status: %d %s", code, body)
			}
		}
		// Another client learns nothing of the job; no token is 401.
		if code, _, _ := call("provider-p2", "GET", status); code != http.StatusNotFound {
			t.Errorf("another client's status: %d", code)
		}
		got := map[string][]string{}
		for _, o := range man.Output {
			if code, _, _ := call("provider-p2", "GET", o.URL); code != http.StatusNotFound {
				t.Errorf("another client's file: %d", code)
			}
			if code, _, _ := call("", "GET", o.URL); code != http.StatusUnauthorized {
				t.Errorf("file without a token: %d", code)
			}
			code, _, body := call(who, "GET", o.URL)
			if code != http.StatusOK {
				t.Fatalf("file: %d", code)
			}
			for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
				var res struct{ ID string }
				_ = json.Unmarshal([]byte(line), &res)
				got[o.Type] = append(got[o.Type], res.ID)
			}
		}
		return got
	}
	got := export("provider-p1", "/Patient/$export?_type=Patient,EpisodeOfCare,CarePlan,Goal")
	for typ, want := range map[string]string{"Patient": "pat-a", "EpisodeOfCare": "ep-a", "CarePlan": "cp-a"} {
		if strings.Join(got[typ], ",") != want {
			t.Errorf("provider's %s: %v, want %s only", typ, got[typ], want)
		}
	}
	if status, body := r.do(t, "admin", "PUT", "/Group/both", `{"resourceType":"Group","id":"both","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/pat-a"}},{"entity":{"reference":"Patient/pat-b"}}]}`); status != http.StatusCreated {
		t.Fatalf("group: %d %s", status, body)
	}
	if code, _, _ := call("provider-p1", "GET", r.base+"/Group/both/$export", "Prefer", "respond-async"); code != http.StatusForbidden {
		t.Errorf("provider's Group export: %d, want 403", code)
	}
	got = export("auditor", "/Group/both/$export?_type=Patient,Goal")
	if strings.Join(sorted(got["Patient"]...), ",") != "pat-a,pat-b" || len(got["Goal"]) != 2 {
		t.Errorf("auditor's group export: %v", got)
	}
	// A provider keeps Groups it manages; exporting one is bounded by its
	// policy: the other provider's member is left out. Another provider can
	// neither read it nor make a Group managed by someone else.
	mine := `{"resourceType":"Group","type":"person","actual":true,"managingEntity":{"reference":"Organization/org-p1"},"member":[{"entity":{"reference":"Patient/pat-a"}},{"entity":{"reference":"Patient/pat-b"}}]}`
	status, body := r.do(t, "provider-p1", "POST", "/Group", mine)
	var g struct{ ID string }
	if err := json.Unmarshal([]byte(body), &g); status != http.StatusCreated || err != nil || g.ID == "" {
		t.Fatalf("provider's group: %d %s", status, body)
	}
	got = export("provider-p1", "/Group/"+g.ID+"/$export?_type=Patient,EpisodeOfCare")
	if strings.Join(got["Patient"], ",") != "pat-a" || strings.Join(got["EpisodeOfCare"], ",") != "ep-a" {
		t.Errorf("provider's own group export: %v, want pat-a and ep-a only", got)
	}
	if status, _ := r.do(t, "provider-p2", "GET", "/Group/"+g.ID, ""); status != http.StatusForbidden {
		t.Errorf("another provider reads the group: %d, want 403", status)
	}
	if status, _ := r.do(t, "provider-p2", "POST", "/Group", mine); status != http.StatusForbidden {
		t.Errorf("a provider makes a group managed by another: %d, want 403", status)
	}
}
