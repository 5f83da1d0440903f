package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// hook is a rest-hook receiver on 127.0.0.1 that can be made to fail.
type hook struct {
	mu     sync.Mutex
	fail   bool
	bodies []string
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h.bodies = append(h.bodies, string(body))
}

// got counts the notifications received that contain s.
func (h *hook) got(s string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, b := range h.bodies {
		if strings.Contains(b, s) {
			n++
		}
	}
	return n
}

func (h *hook) setFail(f bool) {
	h.mu.Lock()
	h.fail = f
	h.mu.Unlock()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func send(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const subscriptionCarePlan = `{"resourceType":"CarePlan","id":"cp-alice",
"extension":[{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-CallsPerDay","valueInteger":CALLS},
{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-CareCallPattern","valueCoding":{"system":"https://community-recovery.example.org/fhir/CodeSystem/crs-care-call-pattern","code":"single"}}],
"status":"active","intent":"plan","subject":{"reference":"Patient/alice"},"basedOn":[{"reference":"ServiceRequest/alice-ref"}],
"period":{"start":"2026-11-21","end":"2027-01-02"},"author":{"reference":"Organization/agency"}}`

// TestSubscriptionOverHTTP: a DSCR subscribes over HTTP; the
// CapabilityStatement lists the topics; a plan change inside a transaction
// reaches the receiver; an event recorded while the receiver is down and the
// server then restarts is delivered after the restart, and $events returns
// every event; a bad Subscription is a 400 saying where.
func TestSubscriptionOverHTTP(t *testing.T) {
	db := filepath.Join(t.TempDir(), "crs.db")
	start := func() (*Main, string) {
		m := &Main{Config: Config{Addr: "127.0.0.1:0", Store: "sqlite:" + db, MaxBodyBytes: 1 << 20, MaxDepth: 64, DefaultCount: 20, MaxCount: 100},
			Log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
		if err := m.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return m, "http://" + m.Addr() + "/fhir"
	}
	m, base := start()
	defer func() { m.Close() }()
	h := &hook{}
	rcv := httptest.NewServer(h)
	defer rcv.Close()

	if code, cs := getJSON(t, base+"/metadata"); code != 200 || !strings.Contains(mustJSON(cs), "capabilitystatement-subscriptiontopic-canonical") ||
		!strings.Contains(mustJSON(cs), "SubscriptionTopic/careplan-changed") || !strings.Contains(mustJSON(cs), `"name":"events"`) {
		t.Fatalf("metadata does not list the topics and operations: %d", code)
	}
	fixtures, err := os.ReadFile("testdata/subscription-fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := send(t, "POST", base, string(fixtures)); code != 200 {
		t.Fatalf("fixtures: %d %s", code, body)
	}
	sub := `{"resourceType":"Subscription","status":"requested","reason":"DSCR","criteria":"https://community-recovery.example.org/fhir/SubscriptionTopic/TOPIC",
"channel":{"type":"rest-hook","endpoint":"` + rcv.URL + `","payload":"application/fhir+json"}}`
	code, body := send(t, "POST", base+"/Subscription", strings.Replace(sub, "TOPIC", "tea-time", 1))
	if code != 400 || !strings.Contains(body, "Subscription.criteria") || !strings.Contains(body, "OperationOutcome") {
		t.Fatalf("unknown topic: %d %s", code, body)
	}
	code, body = send(t, "POST", base+"/Subscription", strings.Replace(sub, "TOPIC", "careplan-changed", 1))
	if code != 201 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(body), &created)
	waitUntil(t, "status active", func() bool {
		_, st := getJSON(t, base+"/Subscription/"+created.ID+"/$status")
		return strings.Contains(mustJSON(st), `"valueCode":"active"`)
	})
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + strings.Replace(subscriptionCarePlan, "CALLS", "4", 1) +
		`,"request":{"method":"PUT","url":"CarePlan/cp-alice"}}]}`
	if code, body := send(t, "POST", base, tx); code != 200 {
		t.Fatalf("transaction: %d %s", code, body)
	}
	waitUntil(t, "event 1", func() bool { return h.got(`/CarePlan/cp-alice"`) == 1 })

	// The receiver goes down; a change is recorded; the server restarts.
	h.setFail(true)
	if code, body := send(t, "PUT", base+"/CarePlan/cp-alice", strings.Replace(subscriptionCarePlan, "CALLS", "3", 1)); code != 200 {
		t.Fatalf("update: %d %s", code, body)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	h.setFail(false)
	m, base = start()
	waitUntil(t, "event 2 after the restart", func() bool { return h.got(`"event-number","valueString":"2"`) == 1 })
	code, events := getJSON(t, base+"/Subscription/"+created.ID+"/$events?eventsSinceNumber=1")
	if s := mustJSON(events); code != 200 || !strings.Contains(s, `"query-event"`) || !strings.Contains(s, `"valueString":"1"`) || !strings.Contains(s, `"valueString":"2"`) {
		t.Fatalf("$events: %d %s", code, s)
	}
	if code, _ := getJSON(t, base+"/Subscription/"+created.ID+"/$events?eventsSinceNumber=-1"); code != 400 {
		t.Fatalf("$events with a negative number: %d", code)
	}

	// crs import, run while the server is stopped, records the events of the
	// plans it writes; the server delivers them when it starts again.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run([]string{"import", "careplans", "--store", "sqlite:" + db, "--org", "VN1A2", "../../subscriptions/testdata/careplans-sample.csv"}, &out, &errOut); err != nil {
		t.Fatalf("crs import careplans: %v\n%s", err, errOut.String())
	}
	m, base = start()
	waitUntil(t, "event 3, the imported plan", func() bool { return h.got(`"event-number","valueString":"3"`) == 1 })
}

func mustJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return b.String()
}
