package server_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/server"
)

// lockedBuffer is a log sink the test reads while the server writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newEdgeServer starts crs with auditing on and the given edge settings; its
// request log goes to the returned buffer.
func newEdgeServer(t *testing.T, cfg server.Config) (*httptest.Server, *lockedBuffer) {
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
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: ts.URL + "/fhir", Limits: fhir.Limits{MaxBytes: 1 << 20, MaxDepth: 40}, Audit: true})
	logs := &lockedBuffer{}
	cfg.Engine, cfg.MaxBodyBytes, cfg.Software = eng, 1<<20, engine.Software{Name: "crs", Version: "test"}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	ts.Config.Handler = server.New(cfg)
	t.Cleanup(func() { ts.Close(); st.Close() })
	return ts, logs
}

// waitLog returns the request log once it has n lines (it is written after the
// response).
func waitLog(t *testing.T, logs *lockedBuffer, n int) string {
	t.Helper()
	for i := 0; i < 200; i++ {
		if s := logs.String(); strings.Count(s, `"msg":"request"`) >= n {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the request log has fewer than %d lines: %s", n, logs.String())
	return ""
}

// lastAuditNetwork returns the client agent's network of the newest AuditEvent.
func lastAuditNetwork(t *testing.T, base string) map[string]any {
	t.Helper()
	r := do(t, "GET", base+"/fhir/AuditEvent?_sort=-_lastUpdated&_count=50", nil)
	if r.status != 200 {
		t.Fatalf("audit search: %d %s", r.status, r.body)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				Subtype []struct{ Code string }
				Agent   []struct {
					Type    struct{ Coding []struct{ Code string } }
					Network map[string]any
				}
			}
		}
	}
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatal(err)
	}
	for _, e := range b.Entry {
		if len(e.Resource.Subtype) == 0 || e.Resource.Subtype[0].Code != "read" {
			continue
		}
		for _, a := range e.Resource.Agent {
			if len(a.Type.Coding) > 0 && a.Type.Coding[0].Code == "110153" {
				return a.Network
			}
		}
	}
	t.Fatalf("no read AuditEvent with a client agent: %s", r.body)
	return nil
}

// TestForwardedForNotTrustedByDefault: a client cannot choose the address the
// log and the audit trail record; the chain it sent is recorded beside it.
func TestForwardedForNotTrustedByDefault(t *testing.T) {
	ts, logs := newEdgeServer(t, server.Config{})
	do(t, "GET", ts.URL+"/fhir/Patient/nobody", nil, "X-Forwarded-For", "203.0.113.7")
	net := lastAuditNetwork(t, ts.URL)
	if net["address"] != "127.0.0.1" {
		t.Errorf("audit address %v, want the peer 127.0.0.1", net["address"])
	}
	if b, _ := json.Marshal(net); !strings.Contains(string(b), `"forwarded","valueString":"203.0.113.7"`) {
		t.Errorf("the audit network does not record the forwarded chain as received: %s", b)
	}
	if l := waitLog(t, logs, 2); strings.Contains(l, `"remote":"203.0.113.7"`) {
		t.Errorf("the request log believed X-Forwarded-For: %s", l)
	}
}

// TestForwardedForFromTrustedProxy: behind a configured proxy the client's
// address comes from X-Forwarded-For and the proxy's is kept as the peer.
func TestForwardedForFromTrustedProxy(t *testing.T) {
	ts, logs := newEdgeServer(t, server.Config{TrustedProxies: []string{"127.0.0.1/32"}})
	do(t, "GET", ts.URL+"/fhir/Patient/nobody", nil, "X-Forwarded-For", "198.51.100.4, 203.0.113.7")
	net := lastAuditNetwork(t, ts.URL)
	if net["address"] != "203.0.113.7" {
		t.Errorf("audit address %v, want 203.0.113.7 (the last hop before the trusted proxy)", net["address"])
	}
	b, _ := json.Marshal(net)
	for _, want := range []string{`"peer","valueString":"127.0.0.1"`, `"forwarded","valueString":"198.51.100.4, 203.0.113.7"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("audit network lacks %s: %s", want, b)
		}
	}
	if l := waitLog(t, logs, 1); !strings.Contains(l, `"remote":"203.0.113.7"`) || !strings.Contains(l, `"peer":"127.0.0.1"`) {
		t.Errorf("request log: want remote 203.0.113.7 and peer 127.0.0.1: %s", l)
	}
}

// TestDevelopmentModeRefusesProxiedRequests: without authentication, a request
// carrying a forwarded header is refused.
func TestDevelopmentModeRefusesProxiedRequests(t *testing.T) {
	ts, _ := newEdgeServer(t, server.Config{RefuseForwarded: true})
	for _, h := range []string{"X-Forwarded-For", "Forwarded", "X-Forwarded-Proto"} {
		r := do(t, "GET", ts.URL+"/fhir/metadata", nil, h, "for=203.0.113.7")
		if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "development mode") {
			t.Errorf("%s: %d %s, want 403 naming development mode", h, r.status, r.body)
		}
	}
	if r := do(t, "GET", ts.URL+"/fhir/metadata", nil); r.status != 200 {
		t.Errorf("direct request: %d", r.status)
	}
}

// TestRequestLogRedactsQueryValues: the log shows parameter names, never their
// values (an NHS number here), nor diagnostics quoting them.
func TestRequestLogRedactsQueryValues(t *testing.T) {
	ts, logs := newEdgeServer(t, server.Config{})
	do(t, "GET", ts.URL+"/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009&name=Smith", nil)
	do(t, "GET", ts.URL+"/fhir/Patient?birthdate=not-a-date-Smith", nil)
	l := waitLog(t, logs, 2)
	for _, secret := range []string{"9000000009", "Smith"} {
		if strings.Contains(l, secret) {
			t.Errorf("the request log holds %q: %s", secret, l)
		}
	}
	if !strings.Contains(l, `"query":"identifier=*&name=*"`) {
		t.Errorf("the request log does not name the parameters: %s", l)
	}

	ts, logs = newEdgeServer(t, server.Config{LogQueryValues: true})
	do(t, "GET", ts.URL+"/fhir/Patient?name=Smith", nil)
	if l := waitLog(t, logs, 1); !strings.Contains(l, "name=Smith") {
		t.Errorf("with LogQueryValues the log should show values: %s", l)
	}
}

// TestCORS: preflights on every route from an allowed origin, the headers a
// browser needs on the answers, refusal for other origins, and the
// CapabilityStatement saying so.
func TestCORS(t *testing.T) {
	const origin = "https://mdt.example.nhs.uk"
	ts, _ := newEdgeServer(t, server.Config{CORSOrigins: []string{origin}})
	for _, path := range []string{"/fhir/metadata", "/fhir/Patient", "/fhir/Patient/x", "/fhir", "/fhir/Patient/x/$everything", "/fhir/Patient/_search"} {
		r := do(t, "OPTIONS", ts.URL+path, nil, "Origin", origin, "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "authorization, content-type, if-match")
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "PUT") ||
			!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "If-Match") {
			t.Errorf("preflight %s: %d %v", path, r.status, r.header)
		}
		if r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight %s allows credentials", path)
		}
	}
	r := do(t, "GET", ts.URL+"/fhir/metadata", nil, "Origin", origin)
	if r.header.Get("Access-Control-Allow-Origin") != origin || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Errorf("GET with Origin: %v", r.header)
	}
	if sec := r.json(t)["rest"].([]any)[0].(map[string]any)["security"].(map[string]any); sec["cors"] != true {
		t.Errorf("CapabilityStatement security.cors = %v, want true", sec["cors"])
	}
	r = do(t, "OPTIONS", ts.URL+"/fhir/Patient", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
	if r.status != http.StatusForbidden || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from an unlisted origin: %d %v", r.status, r.header)
	}
	if r := do(t, "GET", ts.URL+"/fhir/metadata", nil, "Origin", "https://evil.example"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("GET from an unlisted origin got Access-Control-Allow-Origin")
	}
	if r := do(t, "OPTIONS", ts.URL+"/fhir/metadata", nil); r.status != http.StatusNoContent || !strings.Contains(r.header.Get("Allow"), "GET") {
		t.Errorf("OPTIONS /fhir/metadata: %d %v", r.status, r.header)
	}

	off, _ := newEdgeServer(t, server.Config{})
	r = do(t, "GET", off.URL+"/fhir/metadata", nil, "Origin", origin)
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS off but Access-Control-Allow-Origin sent")
	}
	if sec := r.json(t)["rest"].([]any)[0].(map[string]any)["security"].(map[string]any); sec["cors"] != false {
		t.Errorf("CORS off: CapabilityStatement security.cors = %v", sec["cors"])
	}
}

// TestGzip: a large response is compressed for a client that accepts gzip,
// keeps its ETag, and a conditional read with that ETag still answers 304.
func TestGzip(t *testing.T) {
	ts, _ := newEdgeServer(t, server.Config{})
	req, _ := http.NewRequest("GET", ts.URL+"/fhir/metadata", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req) // no transparent decompression
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("metadata with Accept-Encoding: gzip: %v", resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.Contains(plain, []byte(`"CapabilityStatement"`)) {
		t.Fatalf("gunzipped body: %v %.100s", err, plain)
	}
	if len(raw)*3 > len(plain) {
		t.Errorf("gzip saved little: %d → %d bytes", len(plain), len(raw))
	}
	if r := do(t, "GET", ts.URL+"/fhir/metadata", nil, "Accept-Encoding", "identity"); r.header.Get("Content-Encoding") != "" {
		t.Errorf("identity asked, got %q", r.header.Get("Content-Encoding"))
	}

	big := `{"resourceType":"Patient","name":[{"family":"` + strings.Repeat("Long", 500) + `"}]}`
	created := do(t, "POST", ts.URL+"/fhir/Patient", []byte(big))
	if created.status != 201 {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	loc := created.header.Get("Location")
	id := strings.Split(strings.TrimPrefix(loc, ts.URL+"/fhir/Patient/"), "/")[0]
	r := do(t, "GET", ts.URL+"/fhir/Patient/"+id, nil, "Accept-Encoding", "gzip")
	etag := r.header.Get("ETag")
	if r.header.Get("Content-Encoding") != "gzip" || etag == "" {
		t.Fatalf("read: encoding %q etag %q", r.header.Get("Content-Encoding"), etag)
	}
	if r := do(t, "GET", ts.URL+"/fhir/Patient/"+id, nil, "Accept-Encoding", "gzip", "If-None-Match", etag); r.status != http.StatusNotModified {
		t.Errorf("If-None-Match with the gzipped reply's ETag: %d", r.status)
	}
}
