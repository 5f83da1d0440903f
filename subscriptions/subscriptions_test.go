package subscriptions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
	"crs/fhir/store/mongo"
	"crs/fhir/store/mongo/mongotest"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/mapping"
	"crs/mapping/careplans"
	"crs/profiles"
	"crs/subscriptions"
)

const (
	topicBase = "https://community-recovery.example.org/fhir/SubscriptionTopic/"
	backport  = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	ownerExt  = "https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-SubscriptionOwner"
)

// env is an engine as cmd/crs wires it (SQLite, strict profiles, the access
// policy, audit) with the subscriptions' outbox, the fixtures stored.
type env struct {
	eng      *engine.Engine
	subs     *subscriptions.Manager
	prof     *profiles.Set
	admin    *auth.Principal
	provider *auth.Principal // care provider VN1A2: Alice's
	other    *auth.Principal // care provider VN2B3: Bob's
	path     string          // the SQLite database's file (newEnv)
}

func principal(role, org string) *auth.Principal {
	return &auth.Principal{ClientID: role + "-" + org, Org: org, Roles: []string{role}, Scopes: auth.ParseScopes("system/*.cruds")}
}

func newEnv(t testing.TB, cfg subscriptions.Config) *env {
	t.Helper()
	// CRS_BENCH_DURABLE=1 syncs every commit as crs serve does (the benchmarks'
	// durable figures); tests skip the fsync.
	durable := os.Getenv("CRS_BENCH_DURABLE") == "1"
	path := filepath.Join(t.TempDir(), "crs.db")
	st, err := sqlite.Open(path, sqlite.Options{NoSync: !durable})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, cfg, st, engine.EnforceStrict)
	e.path = path
	return e
}

// newEnvOn is newEnv on the store st.
func newEnvOn(t testing.TB, cfg subscriptions.Config, st store.Store, enf engine.Enforcement) *env {
	t.Helper()
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	prof, err := profiles.Load("")
	if err != nil {
		t.Fatal(err)
	}
	params, err := prof.SearchRegistry()
	if err != nil {
		t.Fatal(err)
	}
	policy, err := auth.LoadPolicy("", params)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.RetryBase == 0 {
		cfg.RetryBase, cfg.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	}
	mgr, err := subscriptions.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://crs.test/fhir", Params: params,
		Profiles: prof, Enforcement: enf, Access: policy, Audit: true, Outbox: mgr})
	ctx := context.Background()
	if enf == engine.EnforceStrict {
		if err := eng.InstallConformance(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{eng: eng, subs: mgr, prof: prof, admin: principal("admin", ""), provider: principal("care-provider", "VN1A2"), other: principal("care-provider", "VN2B3")}
	data, err := os.ReadFile("testdata/fixtures.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Bundle(e.as(e.admin), data, engine.SearchOptions{}); err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	if err := mgr.Start(ctx, eng); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mgr.Close()
		eng.Close()
		st.Close()
	})
	return e
}

func (e *env) as(p *auth.Principal) context.Context {
	return auth.WithPrincipal(context.Background(), p)
}

// receiver is a rest-hook endpoint on 127.0.0.1 that can fail, hang and
// recover, and keeps the notifications it accepted.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	mode    string // "ok", "fail", "hang"
	got     []notification
	release chan struct{}
	headers []http.Header
}

// notification is what a receiver was sent.
type notification struct {
	Type    string
	Status  string
	Total   int
	Numbers []int
	Focus   []string
	Entries []map[string]any
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{mode: "ok", release: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.setMode("ok")
		close(r.release)
		r.Close()
	})
	return r
}

func (r *receiver) setMode(m string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = m
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	mode := r.mode
	r.mu.Unlock()
	switch mode {
	case "fail":
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	case "hang":
		select {
		case <-r.release:
		case <-req.Context().Done():
		}
		return
	}
	body, _ := io.ReadAll(req.Body)
	n, err := parseNotification(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.got = append(r.got, n)
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func parseNotification(body []byte) (notification, error) {
	var b struct {
		ResourceType string           `json:"resourceType"`
		Type         string           `json:"type"`
		Entry        []map[string]any `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return notification{}, err
	}
	if b.ResourceType != "Bundle" || len(b.Entry) == 0 {
		return notification{}, fmt.Errorf("not a Bundle with entries: %s", body)
	}
	res, _ := b.Entry[0]["resource"].(map[string]any)
	if res["resourceType"] != "Parameters" {
		return notification{}, fmt.Errorf("first entry is not the SubscriptionStatus: %s", body)
	}
	n := notification{Entries: b.Entry[1:]}
	params, _ := res["parameter"].([]any)
	for _, p := range params {
		pm := p.(map[string]any)
		switch pm["name"] {
		case "type":
			n.Type, _ = pm["valueCode"].(string)
		case "status":
			n.Status, _ = pm["valueCode"].(string)
		case "events-since-subscription-start":
			fmt.Sscan(pm["valueString"].(string), &n.Total)
		case "notification-event":
			for _, part := range pm["part"].([]any) {
				pp := part.(map[string]any)
				switch pp["name"] {
				case "event-number":
					var k int
					fmt.Sscan(pp["valueString"].(string), &k)
					n.Numbers = append(n.Numbers, k)
				case "focus":
					ref := pp["valueReference"].(map[string]any)["reference"].(string)
					n.Focus = append(n.Focus, strings.TrimPrefix(ref, "http://crs.test/fhir/"))
				}
			}
		}
	}
	if (n.Type == "event-notification" || n.Type == "query-event") && b.Type != "history" {
		return notification{}, fmt.Errorf("a %s Bundle is of type %q, not history", n.Type, b.Type)
	}
	return n, nil
}

// events returns the focus of every event notified so far, in order, and
// checks the event numbers run 1, 2, 3, … without a gap (a number may come
// again: at-least-once).
func (r *receiver) events(t testing.TB) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, n := range r.got {
		if n.Type != "event-notification" {
			continue
		}
		for i, k := range n.Numbers {
			switch {
			case k == len(out)+1:
				out = append(out, n.Focus[i])
			case k <= len(out):
				if out[k-1] != n.Focus[i] {
					t.Fatalf("event %d came again about %s, first about %s", k, n.Focus[i], out[k-1])
				}
			default:
				t.Fatalf("event %d came after event %d", k, len(out))
			}
		}
	}
	return out
}

func (r *receiver) count(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.got {
		if x.Type == typ {
			n++
		}
	}
	return n
}

// waitFor polls cond for up to 30 s, less and less often.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 30*time.Second, what, cond)
}

// waitWithin polls cond for up to d, less and less often.
func waitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for pause := 5 * time.Millisecond; !cond(); pause = min(2*pause, 200*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pause) // $status is audited: polling writes AuditEvents
	}
}

// subscriptionJSON is a Subscription of org to topic at endpoint.
func subscriptionJSON(org, topic, endpoint, payload string, extra map[string]any, filters ...string) []byte {
	ch := map[string]any{"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
	if payload != "" {
		ch["_payload"] = map[string]any{"extension": []any{map[string]any{"url": backport + "backport-payload-content", "valueCode": payload}}}
	}
	for k, v := range extra {
		ch[k] = v
	}
	s := map[string]any{
		"resourceType": "Subscription",
		"status":       "requested",
		"reason":       "the DSCR hears about plan changes",
		"criteria":     topicBase + topic,
		"channel":      ch,
	}
	if org != "" {
		s["extension"] = []any{map[string]any{"url": ownerExt, "valueIdentifier": map[string]any{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": org}}}
	}
	var fx []any
	for _, f := range filters {
		fx = append(fx, map[string]any{"url": backport + "backport-filter-criteria", "valueString": f})
	}
	if fx != nil {
		s["_criteria"] = map[string]any{"extension": fx}
	}
	b, _ := json.Marshal(s)
	return b
}

// seedPlan stores Alice's plan cp-alice as an administrator (the provider,
// bounded, may not create one under an id of its choosing).
func (e *env) seedPlan(t testing.TB) {
	t.Helper()
	if _, err := e.eng.Update(e.as(e.admin), "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "first draft"), 0); err != nil {
		t.Fatal(err)
	}
}

func (e *env) subscribe(t testing.TB, p *auth.Principal, body []byte) string {
	t.Helper()
	res, err := e.eng.Create(e.as(p), "Subscription", body, "")
	if err != nil {
		t.Fatalf("create Subscription: %v", err)
	}
	return res.Version.ID
}

// status returns the Subscription's status and event count from $status.
func (e *env) status(t testing.TB, p *auth.Principal, id string) (string, int) {
	t.Helper()
	b, err := e.subs.Status(e.as(p), id)
	if err != nil {
		t.Fatalf("$status: %v", err)
	}
	var bundle struct {
		Type  string           `json:"type"`
		Entry []map[string]any `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil || bundle.Type != "searchset" || len(bundle.Entry) != 1 {
		t.Fatalf("$status answered %s", b)
	}
	raw, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "history", "entry": bundle.Entry})
	n, err := parseNotification(raw)
	if err != nil || n.Type != "query-status" {
		t.Fatalf("$status answered %s (%v)", b, err)
	}
	return n.Status, n.Total
}

func carePlan(id, patient, ref, description string) []byte {
	return []byte(fmt.Sprintf(`{"resourceType":"CarePlan","id":%q,
"extension":[{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-CallsPerDay","valueInteger":4},
{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-CareCallPattern","valueCoding":{"system":"https://community-recovery.example.org/fhir/CodeSystem/crs-care-call-pattern","code":"single"}}],
"status":"active","intent":"plan","subject":{"reference":"Patient/%s"},"basedOn":[{"reference":"ServiceRequest/%s"}],
"period":{"start":"2026-11-21","end":"2027-01-02"},"author":{"reference":"Organization/%s"},"description":%q}`, id, patient, ref, map[string]string{"alice": "agency", "bob": "agency2"}[patient], description))
}

// TestPlanChangesNotify: a DSCR subscribed to careplan-changed hears, in
// order and numbered, about a plan created and changed through the API,
// changed inside a transaction Bundle and written by an import; it hears
// nothing about another provider's person; a failed transaction records
// no event.
func TestPlanChangesNotify(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	e.seedPlan(t)
	rcv := newReceiver(t)
	id := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", rcv.URL+"/hook", "", nil))
	waitFor(t, "the handshake", func() bool { return rcv.count("handshake") == 1 })
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.provider, id); return s == "active" })

	ctx := e.as(e.provider)
	if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "Four calls a day"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "Three calls a day"), 0); err != nil {
		t.Fatal(err)
	}
	// Bob is VN2B3's: his plan (written by an administrator) is not heard of by VN1A2.
	if _, err := e.eng.Update(e.as(e.admin), "CarePlan", "cp-bob", carePlan("cp-bob", "bob", "bob-ref", "Four calls a day"), 0); err != nil {
		t.Fatal(err)
	}
	tx := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":%s,"request":{"method":"PUT","url":"CarePlan/cp-alice"}}]}`,
		carePlan("cp-alice", "alice", "alice-ref", "Two calls a day"))
	if _, err := e.eng.Bundle(ctx, []byte(tx), engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	// A transaction that fails records nothing.
	bad := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":%s,"request":{"method":"PUT","url":"CarePlan/cp-alice"}},
{"resource":{"resourceType":"Goal","lifecycleStatus":"nonsense","description":{"text":"x"},"subject":{"reference":"Patient/alice"}},"request":{"method":"POST","url":"Goal"}}]}`,
		carePlan("cp-alice", "alice", "alice-ref", "One call a day"))
	if _, err := e.eng.Bundle(ctx, []byte(bad), engine.SearchOptions{}); err == nil {
		t.Fatal("a transaction with an invalid Goal was accepted")
	}
	// An import of the provider's care plans.
	data, err := os.ReadFile("testdata/careplans-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	door := &mapping.EngineDoor{Engine: e.eng, Principal: e.provider}
	org, err := mapping.FindOrganization(ctx, door, "VN1A2")
	if err != nil {
		t.Fatal(err)
	}
	run := &mapping.Run{ID: "run-1", Source: "careplans", File: "careplans-sample.csv", Org: org, ODS: "VN1A2",
		Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Base: profiles.DefaultCanonicalBase, Profiles: e.prof}
	var out bytes.Buffer
	rep := mapping.NewReport(&out)
	if err := careplans.Import(ctx, door, run, bytes.NewReader(data), careplans.Options{}, rep); err != nil {
		t.Fatal(err, out.String())
	}
	_ = rep.Flush()
	if rep.Summary.Created+rep.Summary.Updated == 0 {
		t.Fatalf("the import wrote no plan: %s", out.String())
	}

	waitFor(t, "four events", func() bool { return len(rcv.events(t)) >= 4 })
	got := rcv.events(t)
	want := []string{"CarePlan/cp-alice", "CarePlan/cp-alice", "CarePlan/cp-alice"}
	if len(got) != 4 || strings.Join(got[:3], " ") != strings.Join(want, " ") || !strings.HasPrefix(got[3], "CarePlan/") || got[3] == "CarePlan/cp-alice" {
		t.Fatalf("events %v; want %v then the imported plan", got, want)
	}
	if _, total := e.status(t, e.provider, id); total != 4 {
		t.Fatalf("$status counts %d events, want 4", total)
	}
	// Another provider cannot see the subscription.
	if _, err := e.subs.Status(e.as(e.other), id); err == nil {
		t.Fatal("VN2B3 read VN1A2's subscription status")
	}
	// The outbox's records are not resources: system history leaves them out.
	h, err := e.eng.History(e.as(e.admin), "", "", []fhir.RawParam{{Name: "_count", Value: "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range h.Entry {
		if strings.Contains(ent.FullURL, "/Crs") {
			t.Fatalf("system history shows %s", ent.FullURL)
		}
	}
}

// TestBadSubscriptions: each mistake is refused with a 4xx saying where.
func TestBadSubscriptions(t *testing.T) {
	e := newEnv(t, subscriptions.Config{Hosts: map[string][]string{"VN1A2": {"dscr.example.org"}}})
	ok := "https://dscr.example.org/hook"
	for _, c := range []struct {
		name string
		body []byte
		kind fhir.Kind
		at   string
	}{
		{"unknown topic", subscriptionJSON("VN1A2", "lunch-served", ok, "", nil), fhir.Invalid, "Subscription.criteria"},
		{"http endpoint", subscriptionJSON("VN1A2", "careplan-changed", "http://dscr.example.org/hook", "", nil), fhir.Invalid, "Subscription.channel.endpoint"},
		{"loopback outside development", subscriptionJSON("VN1A2", "careplan-changed", "http://127.0.0.1:9/hook", "", nil), fhir.Invalid, "Subscription.channel.endpoint"},
		{"host not allowed", subscriptionJSON("VN1A2", "careplan-changed", "https://elsewhere.example.com/hook", "", nil), fhir.Invalid, "Subscription.channel.endpoint"},
		{"filter not allowed", subscriptionJSON("VN1A2", "careplan-changed", ok, "", nil, "CarePlan?date=2026"), fhir.Invalid, "Subscription.criteria.extension"},
		{"filter on another type", subscriptionJSON("VN1A2", "careplan-changed", ok, "", nil, "Goal?subject=Patient/alice"), fhir.Invalid, "Subscription.criteria.extension"},
		{"bad payload", subscriptionJSON("VN1A2", "careplan-changed", ok, "everything", nil), fhir.Invalid, "Subscription.channel.payload"},
		{"bad heartbeat", subscriptionJSON("VN1A2", "careplan-changed", ok, "", map[string]any{"extension": []any{map[string]any{"url": backport + "backport-heartbeat-period", "valueUnsignedInt": 0}}}), fhir.Invalid, "Subscription.channel.extension"},
		{"another organisation's", subscriptionJSON("VN2B3", "careplan-changed", ok, "", nil), fhir.Forbidden, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.eng.Create(e.as(e.provider), "Subscription", c.body, "")
			if fhir.KindOf(err) != c.kind {
				t.Fatalf("got %v, want kind %v", err, c.kind)
			}
			if c.at != "" && !strings.Contains(err.Error(), c.at) {
				t.Fatalf("%v does not say where (%s)", err, c.at)
			}
		})
	}
	// The allowed host is accepted.
	e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", ok, "", nil, "CarePlan?subject=Patient/alice"))
}

// TestOutageAndCatchUp: a receiver that fails makes the subscription go to
// error (visible in $status) while events queue; $events gives them to a
// client catching up; when the receiver recovers every event arrives in
// order and the status is active again. One that keeps failing goes off.
func TestOutageAndCatchUp(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true, ErrorAfter: 2, OffAfter: 1000})
	e.seedPlan(t)
	rcv := newReceiver(t)
	id := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", rcv.URL, "", nil))
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.provider, id); return s == "active" })
	rcv.setMode("fail")
	ctx := e.as(e.provider)
	for i := 1; i <= 5; i++ {
		if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", fmt.Sprintf("change %d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "status error", func() bool { s, _ := e.status(t, e.provider, id); return s == "error" })
	if n := len(rcv.events(t)); n != 0 {
		t.Fatalf("%d events delivered to a failing receiver", n)
	}
	// Catch up through $events.
	b, err := e.subs.Events(ctx, id, url.Values{"eventsSinceNumber": {"2"}, "eventsUntilNumber": {"4"}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := parseNotification(b)
	if err != nil || n.Type != "query-event" || n.Total != 5 || fmt.Sprint(n.Numbers) != "[2 3 4]" || len(n.Entries) != 3 {
		t.Fatalf("$events 2..4: %+v %v\n%s", n, err, b)
	}
	if _, err := e.subs.Events(ctx, id, url.Values{"eventsSinceNumber": {"x"}}); fhir.KindOf(err) != fhir.Invalid {
		t.Fatalf("$events?eventsSinceNumber=x: %v", err)
	}
	rcv.setMode("ok")
	waitFor(t, "five events", func() bool { return len(rcv.events(t)) == 5 })
	waitFor(t, "status active again", func() bool { s, _ := e.status(t, e.provider, id); return s == "active" })
}

// TestGoesOff: a subscription whose receiver keeps failing goes off and
// stops.
func TestGoesOff(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true, ErrorAfter: 1, OffAfter: 3})
	rcv := newReceiver(t)
	rcv.setMode("fail")
	id := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", rcv.URL, "", nil))
	waitFor(t, "status off", func() bool {
		v, err := e.eng.Read(e.as(e.provider), "Subscription", id)
		return err == nil && bytes.Contains(v.Body, []byte(`"status":"off"`)) && bytes.Contains(v.Body, []byte(`"error"`))
	})
}

// TestEndTurnsItOff: a Subscription with an end hears about changes before
// it, then goes off by itself, and a change after the end records no event.
func TestEndTurnsItOff(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	e.seedPlan(t)
	rcv := newReceiver(t)
	body := subscriptionJSON("VN1A2", "careplan-changed", rcv.URL+"/hook", "", nil)
	end := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339Nano)
	body = bytes.Replace(body, []byte(`"resourceType":"Subscription",`), []byte(`"resourceType":"Subscription","end":"`+end+`",`), 1)
	id := e.subscribe(t, e.provider, body)
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.provider, id); return s == "active" })
	if _, err := e.eng.Update(e.as(e.provider), "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "Three calls a day"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event before the end", func() bool { return len(rcv.events(t)) == 1 })
	waitFor(t, "status off after the end", func() bool {
		v, err := e.eng.Read(e.as(e.provider), "Subscription", id)
		return err == nil && bytes.Contains(v.Body, []byte(`"status":"off"`)) && bytes.Contains(v.Body, []byte(`Subscription.end`))
	})
	if _, err := e.eng.Update(e.as(e.provider), "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "Two calls a day"), 0); err != nil {
		t.Fatal(err)
	}
	if _, total := e.status(t, e.provider, id); total != 1 {
		t.Fatalf("$status counts %d events after the end, want 1", total)
	}
	bad := bytes.Replace(body, []byte(end), []byte("2026-11-29T12:00:00"), 1)
	if _, err := e.eng.Create(e.as(e.provider), "Subscription", bad, ""); fhir.KindOf(err) != fhir.Invalid {
		t.Fatalf("an end without a time zone: %v", err)
	}
}

// TestStatusOfAll: Subscription/$status at type level reports each
// Subscription the caller may read, by id and status on request, and none of
// another organisation's.
func TestStatusOfAll(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	rcv := newReceiver(t)
	a := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", rcv.URL+"/a", "", nil))
	b := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "goal-changed", rcv.URL+"/b", "", nil))
	theirs := e.subscribe(t, e.other, subscriptionJSON("VN2B3", "careplan-changed", rcv.URL+"/c", "", nil))
	waitFor(t, "both active", func() bool {
		sa, _ := e.status(t, e.provider, a)
		sb, _ := e.status(t, e.provider, b)
		return sa == "active" && sb == "active"
	})
	all := func(q url.Values) []string {
		t.Helper()
		body, err := e.subs.StatusAll(e.as(e.provider), q)
		if err != nil {
			t.Fatalf("$status %v: %v", q, err)
		}
		var bundle struct {
			Type  string           `json:"type"`
			Total int              `json:"total"`
			Entry []map[string]any `json:"entry"`
		}
		if err := json.Unmarshal(body, &bundle); err != nil || bundle.Type != "searchset" || bundle.Total != len(bundle.Entry) {
			t.Fatalf("$status answered %s", body)
		}
		var ids []string
		for _, ent := range bundle.Entry {
			raw, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "history", "entry": []any{ent}})
			n, err := parseNotification(raw)
			if err != nil || n.Type != "query-status" || n.Status != "active" {
				t.Fatalf("$status entry %s (%v)", raw, err)
			}
			ref := statusRef(ent, "subscription")
			ids = append(ids, ref[strings.LastIndex(ref, "/")+1:])
		}
		sort.Strings(ids)
		return ids
	}
	want := []string{a, b}
	sort.Strings(want)
	if got := all(nil); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("all: %v, want %v (not %s)", got, want, theirs)
	}
	if got := all(url.Values{"id": {b, theirs}}); strings.Join(got, ",") != b {
		t.Errorf("by id: %v, want [%s]", got, b)
	}
	if got := all(url.Values{"status": {"off,error"}}); len(got) != 0 {
		t.Errorf("status off or error: %v, want none", got)
	}
	if body, err := e.subs.StatusAll(e.as(e.provider), url.Values{"status": {"off"}}); err != nil || strings.Contains(string(body), "[]") {
		t.Errorf("an empty answer has an empty array (not FHIR JSON): %s %v", body, err)
	}
	if _, err := e.subs.StatusAll(e.as(e.provider), url.Values{"bogus": {"1"}}); fhir.KindOf(err) != fhir.Invalid {
		t.Errorf("an unknown parameter: %v", err)
	}
}

// statusRef returns the valueReference.reference of the SubscriptionStatus
// parameter name in a $status entry.
func statusRef(entry map[string]any, name string) string {
	res, _ := entry["resource"].(map[string]any)
	params, _ := res["parameter"].([]any)
	for _, p := range params {
		pm, _ := p.(map[string]any)
		if pm["name"] == name {
			ref, _ := pm["valueReference"].(map[string]any)
			s, _ := ref["reference"].(string)
			return s
		}
	}
	return ""
}

// TestHangingReceiver: a receiver that hangs holds up neither writes nor
// another subscription; its posts time out and are retried.
func TestHangingReceiver(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true, OffAfter: 1000})
	e.seedPlan(t)
	slow, fast := newReceiver(t), newReceiver(t)
	timeout := map[string]any{"extension": []any{map[string]any{"url": backport + "backport-timeout", "valueUnsignedInt": 1}}}
	slowID := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", slow.URL, "", timeout))
	fastID := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", fast.URL, PayloadFullForTest, nil))
	waitFor(t, "both active", func() bool {
		s1, _ := e.status(t, e.provider, slowID)
		s2, _ := e.status(t, e.provider, fastID)
		return s1 == "active" && s2 == "active"
	})
	slow.setMode("hang")
	ctx := e.as(e.provider)
	start := time.Now()
	for i := 1; i <= 3; i++ {
		if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", fmt.Sprintf("change %d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("three writes took %v with a hanging receiver", d)
	}
	waitFor(t, "the fast receiver's three events", func() bool { return len(fast.events(t)) == 3 })
	fast.mu.Lock()
	last := fast.got[len(fast.got)-1]
	fast.mu.Unlock()
	if len(last.Entries) == 0 || last.Entries[0]["resource"] == nil {
		t.Fatalf("full-resource notification without the resource: %+v", last)
	}
	slow.setMode("ok")
	waitFor(t, "the slow receiver's three events", func() bool { return len(slow.events(t)) == 3 })
}

// PayloadFullForTest is the full-resource payload code.
const PayloadFullForTest = "full-resource"

// TestHeartbeatAndFilters: an idle subscription with a heartbeat period
// hears heartbeats; a filter keeps out the plans of other people; payload
// empty carries no focus.
func TestHeartbeatAndFilters(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	rcv := newReceiver(t)
	hb := map[string]any{"extension": []any{map[string]any{"url": backport + "backport-heartbeat-period", "valueUnsignedInt": 1}}}
	id := e.subscribe(t, e.admin, subscriptionJSON("", "careplan-changed", rcv.URL, "empty", hb, "CarePlan?subject=Patient/bob"))
	waitFor(t, "two heartbeats", func() bool { return rcv.count("heartbeat") >= 2 })
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.admin, id); return s == "active" })
	if _, err := e.eng.Update(e.as(e.admin), "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "x"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Update(e.as(e.admin), "CarePlan", "cp-bob", carePlan("cp-bob", "bob", "bob-ref", "x"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one event", func() bool { return rcv.count("event-notification") == 1 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, n := range rcv.got {
		if n.Type == "event-notification" && (len(n.Focus) != 0 || len(n.Entries) != 0 || fmt.Sprint(n.Numbers) != "[1]") {
			t.Fatalf("empty payload notification: %+v", n)
		}
	}
}

// TestTopicsWithPreviousState: referral-received fires when a referral
// comes to name the subscriber as performer, not on later changes;
// episode-finished when the episode becomes finished.
func TestTopicsWithPreviousState(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	rcv := newReceiver(t)
	id := e.subscribe(t, e.other, subscriptionJSON("VN2B3", "referral-received", rcv.URL, "", nil))
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.other, id); return s == "active" })
	admin := e.as(e.admin)
	ref, err := e.eng.Read(admin, "ServiceRequest", "alice-ref")
	if err != nil {
		t.Fatal(err)
	}
	// Alice's referral goes to VN2B3, then changes again.
	moved := bytes.Replace(ref.Body, []byte(`"Organization/agency"`), []byte(`"Organization/agency2"`), 1)
	if _, err := e.eng.Update(admin, "ServiceRequest", "alice-ref", moved, 0); err != nil {
		t.Fatal(err)
	}
	again := bytes.Replace(moved, []byte(`"status":"active"`), []byte(`"status":"on-hold"`), 1)
	if _, err := e.eng.Update(admin, "ServiceRequest", "alice-ref", again, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one event", func() bool { return len(rcv.events(t)) >= 1 })
	time.Sleep(200 * time.Millisecond)
	if got := rcv.events(t); fmt.Sprint(got) != "[ServiceRequest/alice-ref]" {
		t.Fatalf("referral-received events %v", got)
	}
}

// TestOnFerretDB: the outbox is store-agnostic: on the MongoDB backend
// (FerretDB in-process, as an administrator) changes through the API and inside a transaction are
// numbered in order, delivered and listed by $events.
func TestOnFerretDB(t *testing.T) {
	st, err := mongo.Open(context.Background(), mongotest.URI(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	e := newEnvOn(t, subscriptions.Config{AllowLoopback: true}, st, engine.EnforceDeclared)
	t.Logf("env %v", time.Since(t0))
	e.seedPlan(t)
	rcv := newReceiver(t)
	id := e.subscribe(t, e.admin, subscriptionJSON("", "careplan-changed", rcv.URL, "", nil))
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.admin, id); return s == "active" })
	t.Logf("active %v", time.Since(t0))
	ctx := e.as(e.admin) // the provider's chained access rules are slow to evaluate on FerretDB
	for i := 1; i <= 2; i++ {
		if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", fmt.Sprintf("change %d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	tx := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":%s,"request":{"method":"PUT","url":"CarePlan/cp-alice"}}]}`,
		carePlan("cp-alice", "alice", "alice-ref", "change 3"))
	if _, err := e.eng.Bundle(ctx, []byte(tx), engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("written %v", time.Since(t0))
	waitFor(t, "three events", func() bool { return len(rcv.events(t)) == 3 })
	t.Logf("delivered %v", time.Since(t0))
	b, err := e.subs.Events(ctx, id, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := parseNotification(b); err != nil || fmt.Sprint(n.Numbers) != "[1 2 3]" {
		t.Fatalf("$events: %+v %v", n, err)
	}
}

// TestEpisodeFinishedAndGoals: episode-finished fires once, when the
// episode becomes finished, not on changes before or after; goal-changed
// fires on a Goal written for the subscriber's person.
func TestEpisodeFinishedAndGoals(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	episodes, goals := newReceiver(t), newReceiver(t)
	epID := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "episode-finished", episodes.URL, "", nil))
	goalID := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "goal-changed", goals.URL, "", nil, "Goal?subject=Patient/alice"))
	waitFor(t, "both active", func() bool {
		s1, _ := e.status(t, e.provider, epID)
		s2, _ := e.status(t, e.provider, goalID)
		return s1 == "active" && s2 == "active"
	})
	admin := e.as(e.admin)
	goal := `{"resourceType":"Goal","id":"goal-alice","lifecycleStatus":"active","description":{"text":"I want to make my own cup of tea"},
"subject":{"reference":"Patient/alice"},"expressedBy":{"reference":"Patient/alice"},"target":[{"dueDate":"2026-12-15"}]}`
	if _, err := e.eng.Update(admin, "Goal", "goal-alice", []byte(goal), 0); err != nil {
		t.Fatal(err)
	}
	ep, err := e.eng.Read(admin, "EpisodeOfCare", "alice-ep")
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(ep.Body, &obj); err != nil {
		t.Fatal(err)
	}
	write := func(mutate func()) {
		t.Helper()
		mutate()
		b, _ := json.Marshal(obj)
		if _, err := e.eng.Update(admin, "EpisodeOfCare", "alice-ep", b, 0); err != nil {
			t.Fatal(err)
		}
	}
	write(func() { obj["period"] = map[string]any{"start": "2026-11-20"} }) // still active
	write(func() {
		obj["status"] = "finished"
		obj["period"] = map[string]any{"start": "2026-11-20", "end": "2026-12-20"}
		obj["extension"] = append(obj["extension"].([]any), map[string]any{"url": "https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-ExitRoute",
			"valueCoding": map[string]any{"system": "https://community-recovery.example.org/fhir/CodeSystem/crs-exit-route", "code": "independent"}})
	})
	write(func() { obj["period"] = map[string]any{"start": "2026-11-20", "end": "2026-12-21"} }) // still finished
	waitFor(t, "the goal event", func() bool { return len(goals.events(t)) == 1 })
	waitFor(t, "the episode event", func() bool { return len(episodes.events(t)) >= 1 })
	time.Sleep(200 * time.Millisecond)
	if got := episodes.events(t); fmt.Sprint(got) != "[EpisodeOfCare/alice-ep]" {
		t.Fatalf("episode-finished events %v", got)
	}
	if got := goals.events(t); fmt.Sprint(got) != "[Goal/goal-alice]" {
		t.Fatalf("goal-changed events %v", got)
	}
}
