package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// scrape fetches a metrics page over HTTP and parses it as Prometheus text.
func scrape(t *testing.T, url string, header ...string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s is not Prometheus text: %v", url, err)
	}
	return resp.StatusCode, families
}

// sample returns the value of the counter, gauge or histogram count of family
// name with exactly the given labels, and whether there is one.
func sample(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		for _, l := range m.Label {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func startMain(t *testing.T, cfg Config) *Main {
	t.Helper()
	cfg.Addr, cfg.Store = "127.0.0.1:0", "sqlite:"+filepath.Join(t.TempDir(), "crs.db")
	cfg.MaxBodyBytes, cfg.MaxDepth, cfg.DefaultCount, cfg.MaxCount = 1<<20, 64, 20, 100
	m := &Main{Config: cfg, Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestMetricsScrape: /metrics on the FHIR listener, scraped over HTTP from
// loopback, counts requests by interaction, type and status, times them,
// reports the store's commits and the Go runtime; a proxied caller is refused.
func TestMetricsScrape(t *testing.T) {
	m := startMain(t, Config{})
	base := "http://" + m.Addr()
	status, id := post(t, base+"/fhir/Patient", `{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449305552"}]}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d", status)
	}
	for _, path := range []string{"/fhir/Patient/" + id, "/fhir/Patient/" + id, "/fhir/Patient/missing", "/fhir/Nonsense/1"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	code, fam := scrape(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("scrape from loopback: %d", code)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"crs_http_requests_total", map[string]string{"interaction": "create", "type": "Patient", "code": "201"}, 1},
		{"crs_http_requests_total", map[string]string{"interaction": "read", "type": "Patient", "code": "200"}, 2},
		{"crs_http_requests_total", map[string]string{"interaction": "read", "type": "Patient", "code": "404"}, 1},
		{"crs_http_requests_total", map[string]string{"interaction": "operation", "type": "", "code": "404"}, 1}, // an unserved type: named as the audit names it
		{"crs_http_request_duration_seconds", map[string]string{"interaction": "read", "type": "Patient"}, 3},
		{"crs_http_requests_in_flight", map[string]string{}, 1}, // the scrape itself
	} {
		if got, ok := sample(fam, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// The create, its AuditEvent and the conformance resources were committed.
	if n, ok := sample(fam, "crs_store_commit_duration_seconds", map[string]string{}); !ok || n < 1 {
		t.Errorf("store commits observed: %v", n)
	}
	if n, ok := sample(fam, "crs_store_commit_batch_size", map[string]string{}); !ok || n < 1 {
		t.Errorf("store batches observed: %v", n)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total"} {
		if fam[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	// The audit queue gauge reads the engine's journal backlog.
	if fam["crs_audit_queue_depth"] == nil {
		t.Error("no crs_audit_queue_depth")
	}
	// A caller through a reverse proxy is not a loopback caller.
	if code, _ := scrape(t, base+"/metrics", "X-Forwarded-For", "203.0.113.9"); code != http.StatusForbidden {
		t.Errorf("proxied scrape: %d, want 403", code)
	}
}

// TestMetricsListener: with --metrics-addr, /metrics is served there (to any
// caller; with a token, to callers presenting it) and not on the FHIR listener.
func TestMetricsListener(t *testing.T) {
	m := startMain(t, Config{MetricsAddr: "127.0.0.1:0", MetricsToken: "s3cret"})
	if m.MetricsAddr() == "" {
		t.Fatal("no metrics listener")
	}
	resp, err := http.Get("http://" + m.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the FHIR listener: %d, want 404", resp.StatusCode)
	}
	url := "http://" + m.MetricsAddr() + "/metrics"
	if code, fam := scrape(t, url); code != http.StatusOK || fam["go_goroutines"] == nil {
		t.Errorf("loopback scrape of the metrics listener: %d", code)
	}
	if code, _ := scrape(t, url, "X-Forwarded-For", "203.0.113.9"); code != http.StatusForbidden {
		t.Errorf("proxied scrape without the token: %d, want 403", code)
	}
	if code, _ := scrape(t, url, "X-Forwarded-For", "203.0.113.9", "Authorization", "Bearer s3cret"); code != http.StatusOK {
		t.Errorf("proxied scrape with the token: %d, want 200", code)
	}
	resp, err = http.Get("http://" + m.MetricsAddr() + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the metrics listener serves /fhir/metadata: %d", resp.StatusCode)
	}
}
