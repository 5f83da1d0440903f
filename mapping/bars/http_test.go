package bars

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"crs/auth"
	"crs/fhir/engine"
	"crs/server"
)

// trustToken verifies any token as the trust's BaRS client.
type trustToken struct{}

func (trustToken) Verify(context.Context, string) (*auth.Principal, error) { return trust(), nil }
func (trustToken) Endpoints() map[string]any                               { return map[string]any{} }

func post2(t *testing.T, url, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer test")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestOverHTTP: POST /fhir/$process-message answers the response message with
// the request and correlation ids echoed, the same answer to a resend, a
// response message with fatal-error for a refused event, an OperationOutcome
// for a body that is no message; the CapabilityStatement lists the operation
// and the messaging event.
func TestOverHTTP(t *testing.T) {
	r, env := newReceiver(t)
	ts := httptest.NewServer(server.New(server.Config{Engine: env.Engine, Verifier: trustToken{}, Messages: r,
		Software: engine.Software{Name: "crs", Version: "test"}}))
	defer ts.Close()
	url := ts.URL + "/fhir/$process-message"
	data, err := os.ReadFile("testdata/new.json")
	if err != nil {
		t.Fatal(err)
	}
	status, h, body := post2(t, url, string(data), "X-Request-Id", "req-1", "X-Correlation-Id", "corr-1")
	if status != 200 || h.Get("X-Request-Id") != "req-1" || h.Get("X-Correlation-Id") != "corr-1" ||
		!strings.Contains(body, `"type":"message"`) || !strings.Contains(body, `"code":"ok"`) {
		t.Fatalf("%d %v\n%s", status, h, body)
	}
	status2, _, body2 := post2(t, url, string(data))
	if status2 != 200 || body2 != body {
		t.Errorf("resend: %d\n%s\nwant\n%s", status2, body2, body)
	}
	bad, err := os.ReadFile("testdata/bad-event.json")
	if err != nil {
		t.Fatal(err)
	}
	status, h, body = post2(t, url, string(bad), "X-Correlation-Id", "corr-2")
	if status != 400 || h.Get("X-Correlation-Id") != "corr-2" || !strings.Contains(body, `"code":"fatal-error"`) ||
		!strings.Contains(body, `"resourceType":"OperationOutcome"`) || !strings.Contains(body, "booking-request") {
		t.Errorf("other event: %d\n%s", status, body)
	}
	status, _, body = post2(t, url, `{"resourceType":"Parameters"}`)
	if status != 400 || !strings.HasPrefix(body, `{"resourceType":"OperationOutcome"`) {
		t.Errorf("not a message: %d %s", status, body)
	}
	resp, err := http.Get(ts.URL + "/fhir/metadata")
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"name":"process-message"`, `"messaging":[`, `"definition":"` + Definition + `"`, `"mode":"receiver"`,
		`"address":"` + env.Engine.Base() + `/$process-message"`} {
		if !bytes.Contains(cs, []byte(want)) {
			t.Errorf("CapabilityStatement lacks %s", want)
		}
	}
}
