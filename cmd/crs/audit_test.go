package main

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// TestAuditVerify: every request leaves a chained AuditEvent; crs audit verify
// passes on the trail as written and names the event edited behind its back.
func TestAuditVerify(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "crs.db")
	m := &Main{
		Config: Config{Addr: "127.0.0.1:0", Store: "sqlite:" + dbPath, MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100, ProfileEnforcement: "declared"},
		Log:    slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + m.Addr() + "/fhir"
	status, _ := post(t, base+"/Patient", `{"resourceType":"Patient","name":[{"family":"Audit"}]}`)
	if status != 201 {
		t.Fatalf("create: %d", status)
	}
	for _, p := range []string{"/Patient", "/Patient/nope", "/Goal?bogus=1", "/AuditEvent"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// AuditEvents cannot be written through the API.
	if status, _ := post(t, base+"/AuditEvent", `{"resourceType":"AuditEvent"}`); status < 400 {
		t.Fatalf("AuditEvent create: %d", status)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run([]string{"audit", "verify", "--store", "sqlite:" + dbPath}, &out, &errOut); err != nil {
		t.Fatalf("verify an intact trail: %v", err)
	}
	if !strings.Contains(out.String(), "intact: 6 AuditEvents") && !strings.Contains(out.String(), "intact: 7 AuditEvents") {
		t.Fatalf("verify: %s", out.String())
	}
	// Edit the third AuditEvent directly in the database.
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	var seq int64
	if err := db.QueryRow(`SELECT seq FROM versions WHERE type = 'AuditEvent' ORDER BY seq LIMIT 1 OFFSET 2`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE versions SET body = replace(body, '"outcome":"4"', '"outcome":"0"') WHERE seq = ?`, seq); err != nil {
		t.Fatal(err)
	}
	db.Close()
	err = run([]string{"audit", "verify", "--store", "sqlite:" + dbPath}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "event 3") || !strings.Contains(err.Error(), "changed after it was written") {
		t.Fatalf("verify a tampered trail: %v", err)
	}
}

// TestDevelopmentModeLoopbackOnly: without an issuer crs serves only on a
// loopback address, unless told to accept the risk, and says so on every start.
func TestDevelopmentModeLoopbackOnly(t *testing.T) {
	for _, c := range []struct {
		addr     string
		insecure bool
		starts   bool
	}{
		{"127.0.0.1:0", false, true},
		{"[::1]:0", false, true},
		{"0.0.0.0:0", false, false},
		{"0.0.0.0:0", true, true},
	} {
		var logs bytes.Buffer
		m := &Main{
			Config: Config{Addr: c.addr, Store: "sqlite:" + filepath.Join(t.TempDir(), "crs.db"), MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100,
				ProfileEnforcement: "strict", InsecureNoAuth: c.insecure},
			Log: slog.New(slog.NewJSONHandler(&logs, nil)),
		}
		err := m.Start(context.Background())
		if c.addr == "[::1]:0" && err != nil && strings.Contains(err.Error(), "cannot assign") {
			continue // no IPv6 loopback on this machine
		}
		if (err == nil) != c.starts {
			t.Errorf("%s insecure=%v: %v", c.addr, c.insecure, err)
		}
		if err == nil {
			if !strings.Contains(logs.String(), "DEVELOPMENT MODE") {
				t.Errorf("%s: no warning: %s", c.addr, logs.String())
			}
			m.Close()
		} else if !strings.Contains(err.Error(), "--oidc-issuer") {
			t.Errorf("%s: the refusal does not say what to do: %v", c.addr, err)
		}
	}
}

// TestMongoDBUnreachable: a clear start-up error, quickly, when the MongoDB
// server cannot be reached.
func TestMongoDBUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	m := &Main{
		Config: Config{Addr: "127.0.0.1:0", Store: "mongodb://" + addr + "/crs?serverSelectionTimeoutMS=500&connectTimeoutMS=500", MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100, ProfileEnforcement: "strict"},
		Log:    slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	err = m.Start(context.Background())
	if err == nil {
		m.Close()
		t.Fatal("started without its database")
	}
	if !strings.Contains(err.Error(), "does not answer") || !strings.Contains(err.Error(), addr) {
		t.Errorf("unclear error: %v", err)
	}
}
