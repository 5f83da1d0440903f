package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/server"
)

// partnerVerifier accepts any bearer token as a care provider's client, so the
// AuditEvents carry a principal like a real deployment's.
type partnerVerifier struct{}

func (partnerVerifier) Verify(ctx context.Context, raw string) (*auth.Principal, error) {
	return &auth.Principal{Issuer: "https://login.example.nhs.uk/realms/crs", Subject: "2f6c1e0a-6d0b-4c57-9d1e-6f3f0b6a8c11",
		ClientID: "care-provider-agency", Org: "AB1", Roles: []string{"care-provider"}, JTI: "b7e3c1d2-4f5a-4e6b-8c7d-9e0f1a2b3c4d"}, nil
}

func (partnerVerifier) Endpoints() map[string]any { return map[string]any{} }

// BenchmarkAuditBytes measures how much the SQLite file grows per audited
// interaction (a read of a Patient by an authenticated partner) and per
// audited write (a Goal created: the resource, its index rows and its
// AuditEvent). It reports bytes/read and bytes/write; run it with
// -benchtime=2000x.
func BenchmarkAuditBytes(b *testing.B) {
	for _, kind := range []string{"read", "write"} {
		b.Run(kind, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "crs.db")
			open := func() (*sqlite.Store, *httptest.Server) {
				st, err := sqlite.Open(path, sqlite.Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				v, err := validate.New()
				if err != nil {
					b.Fatal(err)
				}
				ts := httptest.NewUnstartedServer(nil)
				ts.Start()
				eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: ts.URL + "/fhir", Limits: fhir.Limits{MaxBytes: 1 << 20, MaxDepth: 40}, Audit: true})
				ts.Config.Handler = server.New(server.Config{Engine: eng, MaxBodyBytes: 1 << 20, Verifier: partnerVerifier{}})
				return st, ts
			}
			req := func(base, method, path, body string) {
				r, _ := http.NewRequest(method, base+path, nil)
				if body != "" {
					r, _ = http.NewRequest(method, base+path, strings.NewReader(body))
					r.Header.Set("Content-Type", "application/fhir+json")
				}
				r.Header.Set("Authorization", "Bearer x")
				resp, err := http.DefaultClient.Do(r)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					b.Fatalf("%s %s: %d", method, path, resp.StatusCode)
				}
			}
			st, ts := open()
			req(ts.URL, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"name":[{"family":"Smith","given":["Ann"]}],"birthDate":"1950-01-02"}`)
			ts.Close()
			st.Close()
			before := fileSize(b, path)
			st, ts = open()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if kind == "read" {
					req(ts.URL, "GET", "/fhir/Patient/p1", "")
				} else {
					req(ts.URL, "POST", "/fhir/Goal", fmt.Sprintf(`{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"Make my own cup of tea %d"},"subject":{"reference":"Patient/p1"},"expressedBy":{"reference":"Patient/p1"},"target":[{"dueDate":"2026-12-15"}]}`, i))
				}
			}
			b.StopTimer()
			ts.Close()
			st.Close()
			b.ReportMetric(float64(fileSize(b, path)-before)/float64(b.N), "bytes/"+kind)
		})
	}
}

// fileSize is the size of the store at path compacted (its VACUUM INTO copy):
// what the data takes, without WAL frames or free pages.
func fileSize(b *testing.B, path string) int64 {
	dst := path + fmt.Sprint(".copy", b.N, time.Now().UnixNano())
	if err := sqlite.Backup(context.Background(), path, dst); err != nil {
		b.Fatal(err)
	}
	defer os.Remove(dst)
	fi, err := os.Stat(dst)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}
