package subscriptions_test

import (
	"bytes"
	"testing"
	"time"

	"crs/auth"
	"crs/subscriptions"
)

// TestCouncilGrant: a council user subscribes to careplan-changed and hears
// of the plans of the people its local authority is responsible for, not
// of others'; it makes a Group of its people (managed by the council) that
// another council may not read.
func TestCouncilGrant(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	e.seedPlan(t)
	admin := e.as(e.admin)
	council := &auth.Principal{ClientID: "council-la", Org: "XYZ12", LocalAuthority: "E10000031", Roles: []string{"council"}, Scopes: auth.ParseScopes("system/*.cruds")}
	otherCouncil := &auth.Principal{ClientID: "council-other", Org: "XYZ99", LocalAuthority: "E10000032", Roles: []string{"council"}, Scopes: auth.ParseScopes("system/*.cruds")}
	// Bob moves to another local authority.
	bob, err := e.eng.Read(admin, "Patient", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Update(admin, "Patient", "bob", bytes.Replace(bob.Body, []byte("E10000031"), []byte("E10000032"), 1), 0); err != nil {
		t.Fatal(err)
	}
	org := `{"resourceType":"Organization","id":"council","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"XYZ12"}],"name":"Warwickshire County Council","active":true}`
	if _, err := e.eng.Update(admin, "Organization", "council", []byte(org), 0); err != nil {
		t.Fatal(err)
	}

	rcv := newReceiver(t)
	id := e.subscribe(t, council, subscriptionJSON("XYZ12", "careplan-changed", rcv.URL, "", nil))
	waitFor(t, "status active", func() bool { s, _ := e.status(t, council, id); return s == "active" })
	if _, err := e.subs.Status(e.as(otherCouncil), id); err == nil {
		t.Fatal("another council read the subscription's status")
	}
	if _, err := e.eng.Update(admin, "CarePlan", "cp-bob", carePlan("cp-bob", "bob", "bob-ref", "Four calls a day"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Update(admin, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "Three calls a day"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Alice's plan", func() bool { return len(rcv.events(t)) >= 1 })
	time.Sleep(200 * time.Millisecond)
	if got := rcv.events(t); len(got) != 1 || got[0] != "CarePlan/cp-alice" {
		t.Fatalf("the council heard of %v; want only CarePlan/cp-alice", got)
	}

	group := `{"resourceType":"Group","type":"person","actual":true,"name":"Warwickshire people on the pathway",
"managingEntity":{"reference":"Organization/council"},"member":[{"entity":{"reference":"Patient/alice"}}]}`
	res, err := e.eng.Create(e.as(council), "Group", []byte(group), "")
	if err != nil {
		t.Fatalf("the council cannot make a Group of its people: %v", err)
	}
	if _, err := e.eng.Read(e.as(council), "Group", res.Version.ID); err != nil {
		t.Fatalf("the council cannot read its Group: %v", err)
	}
	if _, err := e.eng.Read(e.as(otherCouncil), "Group", res.Version.ID); err == nil {
		t.Fatal("another council read the Group")
	}
}
