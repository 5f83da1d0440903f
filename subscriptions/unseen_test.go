package subscriptions_test

import (
	"fmt"
	"testing"

	"crs/subscriptions"
)

// TestFilteredSubscriptionsInteraction: a write no subscription is a
// candidate for is not read before it is put (Before marks it unseen); a
// write a filtered subscription is a candidate for is, so that its event
// says whether the write created the resource or updated it.
func TestFilteredSubscriptionsInteraction(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	rcv := newReceiver(t)
	id := e.subscribe(t, e.admin, subscriptionJSON("", "careplan-changed", rcv.URL, "", nil, "CarePlan?subject=Patient/bob"))
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.admin, id); return s == "active" })
	ctx := e.as(e.admin)
	for i, w := range []struct{ id, patient, ref string }{
		{"cp-alice2", "alice", "alice-ref"}, // unseen: created
		{"cp-bob2", "bob", "bob-ref"},       // created
		{"cp-alice2", "alice", "alice-ref"}, // unseen: updated
		{"cp-bob2", "bob", "bob-ref"},       // updated
	} {
		if _, err := e.eng.Update(ctx, "CarePlan", w.id, carePlan(w.id, w.patient, w.ref, fmt.Sprintf("change %d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two events", func() bool { return len(rcv.events(t)) >= 2 })
	if got := fmt.Sprint(rcv.events(t)); got != "[CarePlan/cp-bob2 CarePlan/cp-bob2]" {
		t.Fatalf("events %s, want cp-bob2's two", got)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var methods []any
	for _, n := range rcv.got {
		if n.Type != "event-notification" {
			continue
		}
		for _, entry := range n.Entries {
			req, _ := entry["request"].(map[string]any)
			methods = append(methods, req["method"])
		}
	}
	if fmt.Sprint(methods) != "[POST PUT]" {
		t.Fatalf("the events' requests %v, want [POST PUT] (created, then updated)", methods)
	}
}
