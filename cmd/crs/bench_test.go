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

	"crs/auth"
	"crs/auth/oidctest"
)

// BenchmarkTokenAndPolicy is the per-request cost of access control with a warm
// JWKS: verifying a real provider's access token and computing the policy's
// conditions for a bounded role.
func BenchmarkTokenAndPolicy(b *testing.B) {
	aud := "http://127.0.0.1:1/fhir"
	idp := oidctest.Start(b, aud, []*oidctest.Client{{ID: "provider-p1", Scope: "system/*.cruds", Claims: map[string]any{"crs_role": "care-provider", "crs_org": "P1"}}})
	tok := idp.Token(b, "provider-p1", "system/*.cruds")
	ctx := context.Background()
	v, err := auth.NewVerifier(ctx, idp.Issuer, aud, auth.DefaultClaimNames)
	if err != nil {
		b.Fatal(err)
	}
	_, params, err := loadProfiles("")
	if err != nil {
		b.Fatal(err)
	}
	policy, err := auth.LoadPolicy("", params)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := v.Verify(ctx, tok); err != nil { // warm the JWKS
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := v.Verify(ctx, tok)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := policy.Conditions(auth.WithPrincipal(ctx, p), "CarePlan", auth.Search); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/request")
}

// BenchmarkReadAuth measures reads by id over HTTP (8 parallel clients, each
// read audited durably) without authentication and with a real provider's
// token and the admin role; make bench prints the ratio.
func BenchmarkReadAuth(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			base := "http://" + addr + "/fhir"
			cfg := Config{Addr: addr, Store: "sqlite:" + filepath.Join(b.TempDir(), "crs.db"), MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100,
				ProfileEnforcement: "declared", ClaimOrg: "crs_org", ClaimRole: "crs_role", ClaimLA: "crs_la"}
			token := ""
			if mode == "on" {
				idp := oidctest.Start(b, base, []*oidctest.Client{{ID: "admin", Scope: "system/*.cruds", Claims: map[string]any{"crs_role": "admin"}}})
				cfg.OIDCIssuer = idp.Issuer
				token = idp.Token(b, "admin", "system/*.cruds")
			}
			m := &Main{Config: cfg, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
			if err := m.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			req, _ := http.NewRequest("POST", base+"/Patient", strings.NewReader(`{"resourceType":"Patient","name":[{"family":"Bench"}]}`))
			req.Header.Set("Content-Type", "application/fhir+json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != 201 {
				b.Fatalf("create: %v %v", err, resp)
			}
			loc := resp.Header.Get("Location")
			resp.Body.Close()
			url := base + "/Patient/" + strings.Split(strings.TrimPrefix(loc, base+"/Patient/"), "/")[0]
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
			b.SetParallelism(4) // 8 clients on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", url, nil)
					if token != "" {
						req.Header.Set("Authorization", "Bearer "+token)
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("read: %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
