package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/server"
)

// examplesDir holds the R4 examples of the served types (testdata/README.md).
const examplesDir = "../testdata/r4/examples"

// newServer starts crs over HTTP on a real SQLite file in a temp directory.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Start()
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: ts.URL + "/fhir", Limits: fhir.Limits{MaxBytes: 1 << 20, MaxDepth: 40},
		// No query timeout: these tests check answers, and a loaded CI machine must
		// not turn a slow answer into a 400 (fhir/engine tests the timeout).
		QueryTimeout: -1})
	ts.Config.Handler = server.New(server.Config{Engine: eng, MaxBodyBytes: 1 << 20, Software: engine.Software{Name: "crs", Version: "test"}})
	t.Cleanup(func() { ts.Close(); st.Close() })
	return ts
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	obj, err := fhir.Parse(r.body, fhir.Limits{})
	if err != nil {
		t.Fatalf("response is not a resource: %v: %s", err, r.body)
	}
	return obj
}

func do(t *testing.T, method, url string, body []byte, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// stripServerFields removes the fields the server owns from a resource tree.
func stripServerFields(obj map[string]any) {
	delete(obj, "id")
	if meta, ok := obj["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(obj, "meta")
		}
	}
}

// TestRoundTripExamples writes every R4 example of the writable served types and
// reads it back: everything but id and meta.versionId/lastUpdated must be equal,
// numbers compared as their text.
func TestRoundTripExamples(t *testing.T) {
	ts := newServer(t)
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.json"))
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sent, err := fhir.Parse(data, fhir.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		rt := fhir.ResourceType(sent)
		if !fhir.Allows(rt, fhir.Update) {
			continue
		}
		n++
		url := ts.URL + "/fhir/" + rt + "/" + fhir.ID(sent)
		put := do(t, "PUT", url, data)
		if put.status != http.StatusCreated {
			t.Errorf("%s: PUT %d: %s", filepath.Base(f), put.status, put.body)
			continue
		}
		got := do(t, "GET", url, nil)
		if got.status != http.StatusOK {
			t.Errorf("%s: GET %d", filepath.Base(f), got.status)
			continue
		}
		back := got.json(t)
		stripServerFields(sent)
		stripServerFields(back)
		if !reflect.DeepEqual(sent, back) {
			t.Errorf("%s: read back differs from what was sent\nsent: %s\nback: %s", filepath.Base(f), data, got.body)
		}
	}
	if n < 90 {
		t.Fatalf("only %d examples of served types found in %s", n, examplesDir)
	}
	t.Logf("%d examples round-tripped losslessly", n)
}

func TestDecimalAndPrimitiveExtensionKept(t *testing.T) {
	ts := newServer(t)
	body := `{"resourceType":"Patient","birthDate":"1940-03-02","_birthDate":{"extension":[{"url":"http://example.org/x","valueDecimal":1.50}]},"name":[{"family":"O'Brien <&>"}]}`
	r := do(t, "POST", ts.URL+"/fhir/Patient", []byte(body))
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if !bytes.Contains(r.body, []byte(`"valueDecimal":1.50`)) || !bytes.Contains(r.body, []byte(`O'Brien <&>`)) {
		t.Fatalf("decimal text or characters not kept: %s", r.body)
	}
}

func issueOf(t *testing.T, r response) map[string]any {
	t.Helper()
	obj := r.json(t)
	if fhir.ResourceType(obj) != "OperationOutcome" {
		t.Fatalf("expected an OperationOutcome, got %s", r.body)
	}
	issues, _ := obj["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues: %s", r.body)
	}
	return issues[0].(map[string]any)
}

func TestInteractions(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	pat := `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"name":[{"family":"Smith","given":["Ann"]}],"gender":"female","birthDate":"1950-01-02"}`

	// create
	r := do(t, "POST", base+"/Patient", []byte(pat))
	if r.status != 201 || r.header.Get("ETag") != `W/"1"` || !strings.HasPrefix(r.header.Get("Location"), base+"/Patient/") || r.header.Get("Last-Modified") == "" {
		t.Fatalf("create: %d %v %s", r.status, r.header, r.body)
	}
	id := fhir.ID(r.json(t))
	url := base + "/Patient/" + id

	// read and conditional read
	if r := do(t, "GET", url, nil); r.status != 200 || r.header.Get("Content-Type") != "application/fhir+json; charset=utf-8" {
		t.Fatalf("read: %d %v", r.status, r.header)
	}
	if r := do(t, "GET", url, nil, "If-None-Match", `W/"1"`); r.status != 304 {
		t.Fatalf("If-None-Match: %d", r.status)
	}
	lm := do(t, "GET", url, nil).header.Get("Last-Modified")
	if r := do(t, "GET", url, nil, "If-Modified-Since", lm); r.status != 304 {
		t.Fatalf("If-Modified-Since: %d", r.status)
	}
	if r := do(t, "GET", url, nil, "If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"); r.status != 200 {
		t.Fatalf("If-Modified-Since in the past: %d", r.status)
	}
	if r := do(t, "GET", url+"?_format=json", nil); r.status != 200 {
		t.Fatalf("_format=json: %d", r.status)
	}

	// update with If-Match, stale If-Match
	upd := strings.Replace(pat, `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+id+`",`, 1)
	upd = strings.Replace(upd, "Smith", "Smyth", 1)
	if r := do(t, "PUT", url, []byte(upd), "If-Match", `W/"1"`); r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("update: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", url, []byte(upd), "If-Match", `W/"1"`); r.status != 412 {
		t.Fatalf("stale If-Match: %d %s", r.status, r.body)
	} else {
		issueOf(t, r)
	}
	// vread
	if r := do(t, "GET", url+"/_history/1", nil); r.status != 200 || !bytes.Contains(r.body, []byte("Smith")) {
		t.Fatalf("vread 1: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", url+"/_history/9", nil); r.status != 404 {
		t.Fatalf("vread 9: %d", r.status)
	}
	// Prefer
	// a real change (an unchanged PUT stores no new version)
	if r := do(t, "PUT", url, []byte(strings.Replace(upd, "Smyth", "Smythe", 1)), "Prefer", "return=minimal"); r.status != 200 || len(r.body) != 0 || r.header.Get("ETag") != `W/"3"` {
		t.Fatalf("return=minimal: %d %q", r.status, r.body)
	}
	if r := do(t, "PUT", url, []byte(upd), "Prefer", "return=OperationOutcome"); r.status != 200 || fhir.ResourceType(r.json(t)) != "OperationOutcome" {
		t.Fatalf("return=OperationOutcome: %d %s", r.status, r.body)
	}

	// update as create with a client id
	// (another person: one active Patient holds an NHS number)
	other := strings.Replace(pat, "9000000009", "9449305552", 1)
	if r := do(t, "PUT", base+"/Patient/client-1", []byte(strings.Replace(other, `"Patient",`, `"Patient","id":"client-1",`, 1))); r.status != 201 {
		t.Fatalf("update as create: %d %s", r.status, r.body)
	}

	// conditional create: one match returns it, nothing stored
	r = do(t, "POST", base+"/Patient", []byte(pat), "If-None-Exist", "family=Smyth")
	if r.status != 200 || fhir.ID(r.json(t)) != id {
		t.Fatalf("conditional create with a match: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", base+"/Patient", []byte(pat), "If-None-Exist", "birthdate=1950-01-02"); r.status != 412 {
		t.Fatalf("conditional create with two matches: %d %s", r.status, r.body)
	}
	if r := do(t, "POST", base+"/Patient", []byte(strings.Replace(pat, "9000000009", "9434765919", 1)), "If-None-Exist", "family=Nobody"); r.status != 201 {
		t.Fatalf("conditional create without a match: %d %s", r.status, r.body)
	}

	// conditional update
	cu := `{"resourceType":"Patient","name":[{"family":"Condupdated"}],"identifier":[{"system":"urn:x","value":"cu-1"}]}`
	if r := do(t, "PUT", base+"/Patient?identifier=urn:x|cu-1", []byte(cu)); r.status != 201 {
		t.Fatalf("conditional update, no match: %d %s", r.status, r.body)
	}
	// the same content again: 200, and no new version
	if r := do(t, "PUT", base+"/Patient?identifier=urn:x|cu-1", []byte(cu)); r.status != 200 || r.header.Get("ETag") != `W/"1"` {
		t.Fatalf("conditional update, one match, unchanged: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", base+"/Patient?identifier=urn:x|cu-1", []byte(strings.Replace(cu, "Condupdated", "Condupdated-2", 1))); r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("conditional update, one match: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", base+"/Patient?gender=female", []byte(cu)); r.status != 412 {
		t.Fatalf("conditional update, many matches: %d %s", r.status, r.body)
	}
	// conditional delete
	if r := do(t, "DELETE", base+"/Patient?identifier=urn:x|cu-1", nil); r.status != 204 {
		t.Fatalf("conditional delete: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", base+"/Patient?gender=female", nil); r.status != 412 {
		t.Fatalf("conditional delete, many matches: %d %s", r.status, r.body)
	}

	// delete, then read is 410, history shows all versions
	if r := do(t, "DELETE", url, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", url, nil); r.status != 410 {
		t.Fatalf("read after delete: %d", r.status)
	} else if issueOf(t, r)["code"] != "deleted" {
		t.Fatalf("read after delete: %s", r.body)
	}
	h := do(t, "GET", url+"/_history", nil).json(t)
	if h["type"] != "history" || len(h["entry"].([]any)) != 5 {
		t.Fatalf("instance history: %v", h)
	}
	first := h["entry"].([]any)[0].(map[string]any)
	if first["request"].(map[string]any)["method"] != "DELETE" || first["resource"] != nil {
		t.Fatalf("newest history entry is not the delete: %v", first)
	}
	if h := do(t, "GET", base+"/Patient/_history?_count=2", nil).json(t); len(h["entry"].([]any)) != 2 || !hasLink(h, "next") {
		t.Fatalf("type history paging: %v", h)
	}
	if h := do(t, "GET", base+"/_history?_since=2100-01-01T00:00:00Z", nil).json(t); h["entry"] != nil {
		t.Fatalf("system history _since future: %v", h)
	}
	if r := do(t, "GET", base+"/_history", nil); r.status != 200 {
		t.Fatalf("system history: %d", r.status)
	}
}

func hasLink(b map[string]any, rel string) bool {
	links, _ := b["link"].([]any)
	for _, l := range links {
		if l.(map[string]any)["relation"] == rel {
			return true
		}
	}
	return false
}

func linkURL(b map[string]any, rel string) string {
	links, _ := b["link"].([]any)
	for _, l := range links {
		if l.(map[string]any)["relation"] == rel {
			return l.(map[string]any)["url"].(string)
		}
	}
	return ""
}

func TestSearchPaging(t *testing.T) {
	ts := newServer(t)
	for i := 0; i < 25; i++ {
		body := fmt.Sprintf(`{"resourceType":"Patient","name":[{"family":"Page%02d"}],"gender":"other"}`, i)
		if r := do(t, "POST", ts.URL+"/fhir/Patient", []byte(body)); r.status != 201 {
			t.Fatal(r.status, string(r.body))
		}
	}
	seen := map[string]bool{}
	url := ts.URL + "/fhir/Patient?gender=other&_count=10&_sort=family"
	pages := 0
	last := ""
	for url != "" {
		b := do(t, "GET", url, nil).json(t)
		if b["type"] != "searchset" || fmt.Sprint(b["total"]) != "25" {
			t.Fatalf("page: %v", b)
		}
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			res := e.(map[string]any)["resource"].(map[string]any)
			fam := res["name"].([]any)[0].(map[string]any)["family"].(string)
			if fam <= last {
				t.Fatalf("not sorted: %s after %s", fam, last)
			}
			last = fam
			seen[fhir.ID(res)] = true
		}
		url = linkURL(b, "next")
		pages++
	}
	if len(seen) != 25 || pages != 3 {
		t.Fatalf("paging saw %d resources in %d pages", len(seen), pages)
	}
	// POST _search with a form body gives the same total.
	req, _ := http.NewRequest("POST", ts.URL+"/fhir/Patient/_search", strings.NewReader("gender=other&_count=5"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&b)
	resp.Body.Close()
	if fmt.Sprint(b["total"]) != "25" || len(b["entry"].([]any)) != 5 {
		t.Fatalf("POST _search: %v", b)
	}
}

// TestBadInput: every client mistake is a 4xx with an OperationOutcome, and
// nothing is stored.
func TestBadInput(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	deep := strings.Repeat(`{"extension":[`, 30) + strings.Repeat(`]}`, 30)
	cases := []struct {
		name    string
		method  string
		path    string
		body    string
		headers []string
		status  int
		expr    string // expected expression of the first issue, when there is one
	}{
		{"malformed JSON", "POST", "/Patient", `{"resourceType":"Patient",`, nil, 400, ""},
		{"not an object", "POST", "/Patient", `[1,2]`, nil, 400, ""},
		{"duplicate key", "POST", "/Patient", `{"resourceType":"Patient","gender":"male","gender":"female"}`, nil, 400, "gender"},
		{"no resourceType", "POST", "/Patient", `{"gender":"male"}`, nil, 400, "resourceType"},
		{"unknown resourceType", "POST", "/Patient", `{"resourceType":"Nonsense"}`, nil, 400, "resourceType"},
		{"type mismatch", "POST", "/Patient", `{"resourceType":"Goal"}`, nil, 400, "resourceType"},
		{"id mismatch", "PUT", "/Patient/a1", `{"resourceType":"Patient","id":"b2"}`, nil, 400, "Patient.id"},
		{"update without id", "PUT", "/Patient/a1", `{"resourceType":"Patient"}`, nil, 400, "Patient.id"},
		{"bad id", "PUT", "/Patient/a_b", `{"resourceType":"Patient","id":"a_b"}`, nil, 400, ""},
		{"id too long", "GET", "/Patient/" + strings.Repeat("a", 65), "", nil, 400, ""},
		{"oversize", "POST", "/Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"` + strings.Repeat("x", 1<<20) + `"}}`, nil, 413, ""},
		{"deep nesting", "POST", "/Patient", `{"resourceType":"Patient","extension":[` + deep + `]}`, nil, 400, ""},
		{"unknown element", "POST", "/Patient", `{"resourceType":"Patient","foo":1}`, nil, 400, "Patient.foo"},
		{"invalid date", "POST", "/Patient", `{"resourceType":"Patient","birthDate":"2026-13-01"}`, nil, 400, "Patient.birthDate"},
		{"bad code", "POST", "/ServiceRequest", `{"resourceType":"ServiceRequest","status":"bogus","intent":"order","subject":{"reference":"Patient/x"}}`, nil, 400, "ServiceRequest.status"},
		{"invalid search date", "GET", "/Patient?birthdate=2026-13", "", nil, 400, "birthdate"},
		{"unknown search param", "GET", "/Patient?nonsense=1", "", nil, 400, "nonsense"},
		{"operator-looking value", "GET", "/Patient?birthdate=%7B%22%24gt%22%3A%22%22%7D", "", nil, 400, "birthdate"},
		{"unsupported type", "GET", "/Observation/1", "", nil, 404, ""},
		{"unsupported type search", "GET", "/Observation", "", nil, 404, ""},
		{"AuditEvent is read-only", "POST", "/AuditEvent", `{"resourceType":"AuditEvent"}`, nil, 405, ""},
		{"xml accept", "GET", "/metadata", "", []string{"Accept", "application/fhir+xml"}, 406, ""},
		{"xml _format", "GET", "/metadata?_format=xml", "", nil, 406, "_format"},
		{"xml body", "POST", "/Patient", `<Patient/>`, []string{"Content-Type", "application/fhir+xml"}, 415, ""},
		{"bad If-Match", "PUT", "/Patient/a1", `{"resourceType":"Patient","id":"a1"}`, []string{"If-Match", "nonsense"}, 400, ""},
		{"bad history param", "GET", "/Patient/_history?_since=yesterday", "", nil, 400, "_since"},
		{"empty conditional", "DELETE", "/Patient", "", nil, 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			r := do(t, c.method, base+c.path, body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			is := issueOf(t, r)
			if c.expr != "" {
				exprs, _ := is["expression"].([]any)
				if len(exprs) == 0 || exprs[0] != c.expr {
					t.Fatalf("expression %v, want %q: %s", exprs, c.expr, r.body)
				}
			}
		})
	}
	// Nothing was stored by any of them.
	h := do(t, "GET", base+"/_history", nil).json(t)
	if fmt.Sprint(h["total"]) != "0" {
		t.Fatalf("bad input stored something: %v", h)
	}
	// Lenient handling ignores an unknown parameter.
	if r := do(t, "GET", base+"/Patient?nonsense=1", nil, "Prefer", "handling=lenient"); r.status != 200 {
		t.Fatalf("lenient: %d %s", r.status, r.body)
	}
}

// TestCapabilityStatementClaimsOnlyWhatWorks searches with every advertised
// search parameter and expects each to be accepted.
func TestCapabilityStatementClaimsOnlyWhatWorks(t *testing.T) {
	ts := newServer(t)
	cs := do(t, "GET", ts.URL+"/fhir/metadata", nil).json(t)
	if cs["fhirVersion"] != "4.0.1" {
		t.Fatalf("fhirVersion: %v", cs["fhirVersion"])
	}
	rest := cs["rest"].([]any)[0].(map[string]any)
	types := 0
	params := 0
	sample := map[string]string{
		"token": "x", "string": "x", "date": "2020", "reference": "Patient/x", "number": "1",
		"quantity": "1", "uri": "http://example.org/x", "special": "",
	}
	for _, r := range rest["resource"].([]any) {
		res := r.(map[string]any)
		rt := res["type"].(string)
		if !fhir.Served(rt) {
			t.Fatalf("claims unserved type %s", rt)
		}
		types++
		for _, p := range res["searchParam"].([]any) {
			sp := p.(map[string]any)
			v := sample[sp["type"].(string)]
			name := sp["name"].(string)
			if sp["type"] == "special" {
				continue
			}
			if sp["type"] == "reference" {
				v = "x"
			}
			if r := do(t, "GET", ts.URL+"/fhir/"+rt+"?"+name+"="+v, nil); r.status != 200 {
				t.Errorf("%s?%s=%s: %d %s", rt, name, v, r.status, r.body)
			}
			params++
		}
		for _, kind := range []string{"searchInclude", "searchRevInclude"} {
			list, _ := res[kind].([]any)
			for _, inc := range list {
				name := map[string]string{"searchInclude": "_include", "searchRevInclude": "_revinclude"}[kind]
				if r := do(t, "GET", ts.URL+"/fhir/"+rt+"?"+name+"="+inc.(string), nil); r.status != 200 {
					t.Errorf("%s?%s=%s: %d %s", rt, name, inc, r.status, r.body)
				}
				params++
			}
		}
	}
	if types != len(fhir.ServedTypes()) {
		t.Fatalf("%d types in the CapabilityStatement, %d served", types, len(fhir.ServedTypes()))
	}
	t.Logf("%d types, %d search parameters and includes, each accepted", types, params)
}
