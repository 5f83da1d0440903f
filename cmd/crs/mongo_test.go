package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"crs/fhir/store/mongo/mongotest"
)

// TestServeOnMongoDB: crs serves the API on the MongoDB backend (FerretDB here):
// an acute referral transaction, a failed one that leaves nothing, a chained
// search, readiness and the audit trail.
func TestServeOnMongoDB(t *testing.T) {
	m := &Main{
		Config: Config{Addr: "127.0.0.1:0", Store: mongotest.URI(t), MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100, ProfileEnforcement: "declared", QueryTimeout: -1},
		Log:    slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.Addr() + "/fhir"
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:6a5b4c3d-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009"}},
	 {"resource":{"resourceType":"ServiceRequest","status":"active","intent":"plan","subject":{"reference":"urn:uuid:6a5b4c3d-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"ServiceRequest"}}]}`
	if status, body := postBody(t, base, tx); status != 200 {
		t.Fatalf("transaction: %d %s", status, body)
	}
	bad := strings.Replace(tx, `"intent":"plan"`, `"intent":"bogus"`, 1)
	if status, _ := postBody(t, base, bad); status != 400 {
		t.Fatalf("bad transaction: %d", status)
	}
	resp, err := http.Get(base + "/ServiceRequest?subject.identifier=9000000009")
	if err != nil {
		t.Fatal(err)
	}
	var b struct{ Total int }
	_ = json.NewDecoder(resp.Body).Decode(&b)
	resp.Body.Close()
	if b.Total != 1 {
		t.Fatalf("chained search on MongoDB: %d", b.Total)
	}
	resp, err = http.Get("http://" + m.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz: %d", resp.StatusCode)
	}
	if n, err := VerifyAuditTrail(context.Background(), m.store); err != nil || n != 3 {
		t.Fatalf("audit trail on MongoDB: %d %v", n, err)
	}
}

func postBody(t testing.TB, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/fhir+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
