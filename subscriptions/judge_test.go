package subscriptions_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"crs/auth"
	"crs/fhir/engine"
	"crs/fhir/store/mongo"
	"crs/fhir/store/mongo/mongotest"
	"crs/subscriptions"
)

// TestJudgementAgreesWithPolicy: an unfiltered subscriber hears of a
// CarePlan written exactly when its access policy lets it read the plan as
// the transaction left it: its person referred to it, to another provider,
// reassigned to it (or away from it) in the same transaction as the plan,
// with no referral at all; and a council's grant (its local authority's
// people). The events are recorded in the write's transaction, so they are
// counted as soon as it returns. On SQLite (whose denormalised performer
// keys the policy's chain reads) and on FerretDB (which answers through the
// chain).
func TestJudgementAgreesWithPolicy(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		judgementTable(t, newEnv(t, subscriptions.Config{AllowLoopback: true}))
	})
	t.Run("ferretdb", func(t *testing.T) {
		if testing.Short() {
			t.Skip("FerretDB: not in -short")
		}
		st, err := mongo.Open(context.Background(), mongotest.URI(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		judgementTable(t, newEnvOn(t, subscriptions.Config{AllowLoopback: true}, st, engine.EnforceDeclared))
	})
}

func judgementTable(t *testing.T, e *env) {
	admin := e.as(e.admin)
	carol := `{"resourceType":"Patient","id":"carol","extension":[{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority",
"valueCoding":{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":"E10000032"}}],"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000025"}],"name":[{"family":"Brown","given":["Carol"]}],"gender":"female","birthDate":"1940-01-01"}`
	if _, err := e.eng.Update(admin, "Patient", "carol", []byte(carol), 0); err != nil {
		t.Fatal(err)
	}
	council := &auth.Principal{ClientID: "council-la", Org: "XYZ12", LocalAuthority: "E10000031", Roles: []string{"council"}, Scopes: auth.ParseScopes("system/*.cruds")}
	org := `{"resourceType":"Organization","id":"council","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"XYZ12"}],"name":"Warwickshire County Council","active":true}`
	if _, err := e.eng.Update(admin, "Organization", "council", []byte(org), 0); err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t)
	subscribers := []struct {
		name string
		p    *auth.Principal
		id   string
	}{
		{name: "provider VN2B3", p: e.other},
		{name: "provider VN1A2", p: e.provider},
		{name: "council XYZ12", p: council},
	}
	for i := range subscribers {
		s := &subscribers[i]
		s.id = e.subscribe(t, s.p, subscriptionJSON(s.p.Org, "careplan-changed", rcv.URL, "", nil))
		waitFor(t, s.name+" active", func() bool { st, _ := e.status(t, s.p, s.id); return st == "active" })
	}
	ref, err := e.eng.Read(admin, "ServiceRequest", "alice-ref")
	if err != nil {
		t.Fatal(err)
	}
	referral := func(performer string) string {
		return string(bytes.Replace(ref.Body, []byte(`"Organization/agency"`), []byte(`"Organization/`+performer+`"`), 1))
	}
	plan := func(id, person, text string) string {
		b := carePlan(id, person, "alice-ref", text)
		return string(bytes.Replace(b, []byte(`"Organization/"`), []byte(`"Organization/trust"`), 1))
	}
	entry := func(typ, id, body string) string {
		return fmt.Sprintf(`{"resource":%s,"request":{"method":"PUT","url":"%s/%s"}}`, body, typ, id)
	}
	cases := []struct {
		name    string
		entries []string
		plan    string // the CarePlan written
		want    []bool // heard by VN2B3, VN1A2, the council
	}{
		{"Alice's plan, referred to VN1A2", []string{entry("CarePlan", "cp-alice", plan("cp-alice", "alice", "a"))}, "cp-alice", []bool{false, true, true}},
		{"Bob's plan, referred to VN2B3", []string{entry("CarePlan", "cp-bob", plan("cp-bob", "bob", "b"))}, "cp-bob", []bool{true, false, true}},
		{"Alice reassigned to VN2B3 with her plan", []string{entry("ServiceRequest", "alice-ref", referral("agency2")), entry("CarePlan", "cp-alice", plan("cp-alice", "alice", "c"))}, "cp-alice", []bool{true, false, true}},
		{"Alice's plan, then her referral back to VN1A2", []string{entry("CarePlan", "cp-alice", plan("cp-alice", "alice", "d")), entry("ServiceRequest", "alice-ref", referral("agency"))}, "cp-alice", []bool{false, true, true}},
		{"Carol's plan, no referral, another council", []string{entry("CarePlan", "cp-carol", plan("cp-carol", "carol", "e"))}, "cp-carol", []bool{false, false, false}},
	}
	for _, c := range cases {
		before := map[string]int{}
		for _, s := range subscribers {
			before[s.id] = len(recorded(t, e, s.p, s.id))
		}
		tx := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(c.entries, ",") + `]}`
		if _, err := e.eng.Bundle(admin, []byte(tx), engine.SearchOptions{}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for i, s := range subscribers {
			focus := recorded(t, e, s.p, s.id)[before[s.id]:]
			heard := len(focus) == 1 && focus[0] == "CarePlan/"+c.plan
			if len(focus) > 1 || (len(focus) == 1 && !heard) {
				t.Fatalf("%s: %s heard %v", c.name, s.name, focus)
			}
			if heard != c.want[i] {
				t.Errorf("%s: %s heard of it: %v, want %v", c.name, s.name, heard, c.want[i])
			}
			_, rerr := e.eng.Read(e.as(s.p), "CarePlan", c.plan)
			if may := rerr == nil; heard != may {
				t.Errorf("%s: %s heard of it: %v; its policy lets it read the plan: %v (%v)", c.name, s.name, heard, may, rerr)
			}
		}
	}
}

// recorded returns the focus of every event recorded for subscription id,
// in order, through $events as its owner p.
func recorded(t *testing.T, e *env, p *auth.Principal, id string) []string {
	t.Helper()
	b, err := e.subs.Events(e.as(p), id, url.Values{"content": {"id-only"}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := parseNotification(b)
	if err != nil {
		t.Fatal(err)
	}
	return n.Focus
}
