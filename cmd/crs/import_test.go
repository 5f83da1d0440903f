package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"crs/auth/oidctest"
)

// TestImportCommand: crs import cld brings the sample into a store (the
// fixtures posted first through serve), prints the summary and writes the
// report; a second run changes nothing; a dry run stores nothing; a wrong
// file is an error naming the columns.
func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	storeSpec := "sqlite:" + filepath.Join(dir, "crs.db")
	m := &Main{Config: Config{Addr: "127.0.0.1:0", Store: storeSpec, MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100, ProfileEnforcement: "strict"},
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	fixtures, err := os.ReadFile("../../mapping/cld/testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	if status, body := postBody(t, "http://"+m.Addr()+"/fhir", string(fixtures)); status != 200 {
		t.Fatalf("fixtures: %d %s", status, body)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	sample := "../../mapping/cld/testdata/cld-sample.csv"
	report := filepath.Join(dir, "report.csv")
	args := []string{"import", "cld", "--store", storeSpec, "--org", "WCC01", "--la-code", "E10000031", "--report", report}
	for i, want := range []string{
		"6 rows: 2 resources created, 1 updated, 0 unchanged; 1 rows held for review, 0 rejected, 3 skipped",
		"6 rows: 0 resources created, 0 updated, 3 unchanged; 1 rows held for review, 0 rejected, 3 skipped",
	} {
		var out, errOut bytes.Buffer
		if err := run(append(args, sample), &out, &errOut); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, errOut.String())
		}
		if got := strings.TrimSpace(out.String()); got != want {
			t.Fatalf("run %d: %q, want %q", i, got, want)
		}
		rep, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(rep), "9,,held,") || !strings.Contains(errOut.String(), "rows/s") {
			t.Fatalf("report %d: %s\nlog: %s", i, rep, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	dry := append(append([]string{"import", "cld", "--dry-run"}, args[2:]...), sample)
	if err := run(dry, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "dry run, nothing stored:") {
		t.Fatalf("dry run: %v %q", err, out.String())
	}
	// The care provider's visits onto the episode the council's import made.
	out.Reset()
	vargs := []string{"import", "visits", "--store", storeSpec, "--org", "VN1A2", "--report", report, "../../mapping/visits/testdata/visits-sample.csv"}
	if err := run(vargs, &out, &errOut); err != nil {
		t.Fatalf("visits: %v\n%s", err, errOut.String())
	}
	if got, want := strings.TrimSpace(out.String()), "5 rows: 3 resources created, 1 updated, 0 unchanged; 1 rows held for review, 1 rejected, 0 skipped"; got != want {
		rep, _ := os.ReadFile(report)
		t.Fatalf("visits: %q, want %q\n%s", got, want, rep)
	}
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("LA_Code,NHS_Number,Shoe_Size\nE10000031,9000000009,9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(append(args, bad), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "missing column(s) LA_Person_Unique_Identifier") || !strings.Contains(err.Error(), "unknown column(s) Shoe_Size") {
		t.Fatalf("wrong columns: %v", err)
	}
}

// TestImportOperation: POST /fhir/$import-cld with the file as text/csv
// imports it as the caller and answers with the summary and the report; a
// second post creates nothing; a wrong file is a 400 OperationOutcome.
func TestImportOperation(t *testing.T) {
	m := &Main{Config: Config{Addr: "127.0.0.1:0", Store: "sqlite:" + filepath.Join(t.TempDir(), "crs.db"), MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100, ProfileEnforcement: "strict"},
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.Addr() + "/fhir"
	fixtures, err := os.ReadFile("../../mapping/cld/testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	if status, body := postBody(t, base, string(fixtures)); status != 200 {
		t.Fatalf("fixtures: %d %s", status, body)
	}
	sample, err := os.ReadFile("../../mapping/cld/testdata/cld-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	post := func(query string, body []byte) (int, string) {
		resp, err := http.Post(base+"/$import-cld?"+query, "text/csv", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i, want := range []string{`{"name":"created","valueInteger":2}`, `{"name":"unchanged","valueInteger":3}`} {
		status, body := post("la-code=E10000031&org=WCC01", sample)
		if status != 200 || !strings.Contains(body, want) || !strings.Contains(body, `"resourceType":"Parameters"`) || !strings.Contains(body, "9,,held,") {
			t.Fatalf("post %d: %d %s", i, status, body)
		}
	}
	if status, body := post("la-code=E10000031&org=WCC01", []byte("Colour\nred\n")); status != 400 || !strings.Contains(body, "OperationOutcome") || !strings.Contains(body, "missing column(s)") {
		t.Fatalf("wrong columns: %d %s", status, body)
	}
	if status, body := post("org=WCC01", sample); status != 400 || !strings.Contains(body, "la-code") {
		t.Fatalf("no la-code: %d %s", status, body)
	}
	if status, body := post("", []byte("x")); status != 400 {
		t.Fatalf("no org: %d %s", status, body)
	}
	// A record system's own FHIR CarePlan, pushed as FHIR.
	foreign, err := os.ReadFile("../../mapping/careplans/testdata/careplan-foreign.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(base+"/$import-careplans?org=VN1A2", "application/fhir+json", bytes.NewReader(foreign))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `{"name":"created","valueInteger":1}`) {
		t.Fatalf("$import-careplans (FHIR): %d %s", resp.StatusCode, b)
	}
	resp, err = http.Post(base+"/$import-cld?org=WCC01&la-code=E10000031", "application/fhir+json", bytes.NewReader(foreign))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 415 {
		t.Fatalf("$import-cld with FHIR: %d", resp.StatusCode)
	}
	resp, err = http.Post(base+"/$import-hl7", "text/csv", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("$import-hl7: %d", resp.StatusCode)
	}
}

// TestImportOverHTTP: crs import --server posts the batches to a running crs
// with a bearer token it obtains itself from the real OpenID provider
// (client_credentials, private_key_jwt, its key from a file): the council's
// token, so the server polices and audits the import as the council.
func TestImportOverHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	base := "http://" + addr + "/fhir"
	all := "system/*.cruds"
	idp := oidctest.Start(t, base, []*oidctest.Client{
		{ID: "wcc-import", Scope: all, Claims: map[string]any{"crs_role": "council", "crs_org": "WCC01", "crs_la": "E10000031"}},
		{ID: "admin", Scope: all, Claims: map[string]any{"crs_role": "admin"}},
	})
	m := &Main{
		Config: Config{Addr: addr, Store: "sqlite:" + filepath.Join(t.TempDir(), "crs.db"), MaxBodyBytes: 4 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 500,
			ProfileEnforcement: "strict", OIDCIssuer: idp.Issuer, ClaimOrg: "crs_org", ClaimRole: "crs_role", ClaimLA: "crs_la", ClaimPatient: "patient"},
		Log: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fixtures, err := os.ReadFile("../../mapping/cld/testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", base, bytes.NewReader(fixtures))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+idp.Token(t, "admin", all))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("fixtures: %d", resp.StatusCode)
	}
	keyFile := filepath.Join(t.TempDir(), "wcc-import.pem")
	der, err := x509.MarshalPKCS8PrivateKey(idp.ClientKey("wcc-import"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"import", "cld", "--server", base, "--token-url", idp.Issuer + "/token", "--client-id", "wcc-import", "--key", keyFile, "--key-id", "wcc-import-key",
		"--org", "WCC01", "--la-code", "E10000031", "--report", filepath.Join(t.TempDir(), "report.csv"), "../../mapping/cld/testdata/cld-sample.csv"}
	for i, want := range []string{
		"6 rows: 2 resources created, 1 updated, 0 unchanged; 1 rows held for review, 0 rejected, 3 skipped",
		"6 rows: 0 resources created, 0 updated, 3 unchanged; 1 rows held for review, 0 rejected, 3 skipped",
	} {
		var out, errOut bytes.Buffer
		if err := run(args, &out, &errOut); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, errOut.String())
		}
		if got := strings.TrimSpace(out.String()); got != want {
			t.Fatalf("run %d: %q, want %q", i, got, want)
		}
	}
	// A key the provider does not know gets no token, and the import says so.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ = x509.MarshalPKCS8PrivateKey(other)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	var out, errOut bytes.Buffer
	if err := run(args, &out, &errOut); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("a wrong key: %v", err)
	}
}
