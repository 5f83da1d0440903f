package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// BenchmarkHTTPAudit is issue 10's speed targets over HTTP: reads by id,
// creates and acute-referral transactions from 8 parallel clients against a
// crs on a durable SQLite store, each with every interaction audited (as crs
// serve runs) and, as the same-run baseline, with the audit trail off. The
// clients share the process (and the 2 cores) with the server, as
// tools/httpload does. make bench prints the ratios.
func BenchmarkHTTPAudit(b *testing.B) {
	sr, err := os.ReadFile("../../testdata/r4/examples/ServiceRequest-di.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"read", "create", "transaction"} {
		for _, audit := range []string{"unaudited", "audited"} {
			b.Run(mode+"/"+audit, func(b *testing.B) {
				base := startBenchServer(b, audit == "unaudited")
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
				url := base + "/ServiceRequest"
				if mode == "read" {
					loc := benchCreate(b, client, url, sr)
					url = base + "/ServiceRequest/" + strings.Split(strings.TrimPrefix(loc, base+"/ServiceRequest/"), "/")[0]
				}
				var n atomic.Int64
				b.SetParallelism(4) // 8 clients on 2 cores
				b.ResetTimer()
				cpu0 := benchCPU(b)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						var err error
						switch mode {
						case "read":
							err = benchDo(client, "GET", url, nil, http.StatusOK)
						case "create":
							err = benchDo(client, "POST", url, sr, http.StatusCreated)
						default:
							err = benchDo(client, "POST", base, acuteReferral(fmt.Sprintf("9%09d", n.Add(1))), http.StatusOK)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(benchCPU(b)-cpu0)/1e3/float64(b.N), "cpu-us/op") // server and clients
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				// cpu-us/op stops with the last answer, while AuditEvents
				// still wait in the journal to be stored (the materialiser
				// yields to a burst): a search of AuditEvents waits until
				// every one is, so cpu-us/op-all is the whole CPU an audited
				// interaction costs (the same as cpu-us/op unaudited).
				if err := benchDo(client, "GET", base+"/AuditEvent?_count=1", nil, http.StatusOK); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(benchCPU(b)-cpu0)/1e3/float64(b.N), "cpu-us/op-all")
			})
		}
	}
}

// startBenchServer starts crs on a loopback port and a new SQLite store, in
// development mode, with ServiceRequest examples accepted as they are.
func startBenchServer(b *testing.B, unaudited bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := Config{Addr: addr, Store: "sqlite:" + filepath.Join(b.TempDir(), "crs.db"), MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100,
		AuditQueue: 8192, ProfileEnforcement: "declared", ClaimOrg: "crs_org", ClaimRole: "crs_role", ClaimLA: "crs_la", unaudited: unaudited}
	m := &Main{Config: cfg, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return "http://" + addr + "/fhir"
}

// benchCreate creates a resource and returns its Location.
func benchCreate(b *testing.B, c *http.Client, url string, body []byte) string {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("create: status %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// benchDo sends one request and wants status.
func benchDo(c *http.Client, method, url string, body []byte, status int) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Prefer", "return=minimal")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		return fmt.Errorf("%s %s: status %d", method, url, resp.StatusCode)
	}
	return nil
}

// acuteReferral is an acute trust's discharge referral as tools/httpload
// sends it: a conditional create of the Patient by NHS number, its Encounter
// and the ServiceRequest, linked by urn:uuid references, in one transaction.
func acuteReferral(nhs string) []byte {
	return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"` + nhs + `"}],"name":[{"family":"Acute"}]},
  "request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=https://fhir.nhs.uk/Id/nhs-number|` + nhs + `"}},
 {"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"},"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"}},"request":{"method":"POST","url":"Encounter"}},
 {"resource":{"resourceType":"ServiceRequest","status":"active","intent":"plan","subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"},"encounter":{"reference":"urn:uuid:22222222-2222-4222-8222-222222222222"},"authoredOn":"2026-11-20T10:00:00Z"},"request":{"method":"POST","url":"ServiceRequest"}}]}`)
}

// benchCPU is the process's user+system CPU time so far, in nanoseconds.
func benchCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
