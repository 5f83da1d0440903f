package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"crs/auth/oidctest"
)

// region is crs with authentication against a real OpenID provider.
type region struct {
	base   string
	idp    *oidctest.Provider
	main   *Main
	tokens map[string]string
}

const ods = "https://fhir.nhs.uk/Id/ods-organization-code"

func startRegion(t *testing.T) *region {
	t.Helper()
	// The audience is the base URL, so crs's port is chosen first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr + "/fhir"
	all := "system/*.cruds"
	clients := []*oidctest.Client{
		{ID: "acute-rkb", Scope: all, Claims: map[string]any{"crs_role": "acute-trust", "crs_org": "RKB"}},
		{ID: "acute-rrk", Scope: all, Claims: map[string]any{"crs_role": "acute-trust", "crs_org": "RRK"}},
		{ID: "provider-p1", Scope: all, Claims: map[string]any{"crs_role": "care-provider", "crs_org": "P1"}},
		{ID: "provider-p2", Scope: all, Claims: map[string]any{"crs_role": "care-provider", "crs_org": "P2"}},
		{ID: "therapy-t1", Scope: all, Claims: map[string]any{"crs_role": "therapy-service", "crs_org": "T1"}},
		{ID: "council-w", Scope: all, Claims: map[string]any{"crs_role": "council", "crs_la": "E10000031"}},
		{ID: "council-c", Scope: all, Claims: map[string]any{"crs_role": "council", "crs_la": "E08000026"}},
		{ID: "auditor", Scope: all, Claims: map[string]any{"crs_role": "auditor"}},
		{ID: "admin", Scope: all, Claims: map[string]any{"crs_role": "admin"}},
		{ID: "reader", Scope: "system/*.rs", Claims: map[string]any{"crs_role": "admin"}},
		// SMART patient/ scopes: bounded to the token's patient (launch context).
		{ID: "app-pat-a", Scope: "patient/*.rs", Claims: map[string]any{"crs_role": "auditor", "patient": "pat-a"}},
		{ID: "app-no-patient", Scope: "patient/*.rs", Claims: map[string]any{"crs_role": "auditor"}},
	}
	idp := oidctest.Start(t, base, clients)
	m := &Main{
		Config: Config{Addr: addr, Store: "sqlite:" + filepath.Join(t.TempDir(), "crs.db"), MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100,
			ProfileEnforcement: "declared", OIDCIssuer: idp.Issuer, ClaimOrg: "crs_org", ClaimRole: "crs_role", ClaimLA: "crs_la", ClaimPatient: "patient"},
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	r := &region{base: base, idp: idp, main: m, tokens: map[string]string{}}
	for _, c := range clients {
		r.tokens[c.ID] = idp.Token(t, c.ID, c.Scope)
	}
	return r
}

func (r *region) do(t *testing.T, who, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
		if method == http.MethodPatch {
			req.Header.Set("Content-Type", "application/json-patch+json")
		}
	}
	if who != "" {
		tok, ok := r.tokens[who]
		if !ok {
			tok = who // a raw token
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTokensFromARealProvider(t *testing.T) {
	r := startRegion(t)
	if status, body := r.do(t, "", "GET", "/Patient", ""); status != 401 || !strings.Contains(body, "Bearer") {
		t.Fatalf("no token: %d %s", status, body)
	}
	if status, body := r.do(t, "admin", "GET", "/Patient", ""); status != 200 {
		t.Fatalf("admin: %d %s", status, body)
	}
	if status, body := r.do(t, "", "GET", "/metadata", ""); status != 200 {
		t.Fatalf("metadata: %d %s", status, body)
	}
	if status, body := r.do(t, "", "GET", "/.well-known/smart-configuration", ""); status != 200 || !strings.Contains(body, "token_endpoint") {
		t.Fatalf("smart-configuration: %d %s", status, body)
	}
}
