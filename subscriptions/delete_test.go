package subscriptions_test

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"crs/subscriptions"
)

// TestDeleteNotifies: a deleted CarePlan or Goal is an event of
// careplan-changed and goal-changed for the subscribers that could read it
// before the delete (found by an unfiltered subscription and by one
// filtered on the person), notified as a history entry with request DELETE
// and no resource, even for full-resource; another provider hears nothing.
func TestDeleteNotifies(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	plans, goals, others := newReceiver(t), newReceiver(t), newReceiver(t)
	planID := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", plans.URL, "full-resource", nil))
	goalID := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "goal-changed", goals.URL, "", nil, "Goal?subject=Patient/alice"))
	otherID := e.subscribe(t, e.other, subscriptionJSON("VN2B3", "careplan-changed", others.URL, "", nil))
	for _, id := range []string{planID, goalID, otherID} {
		waitFor(t, "active", func() bool { s, _ := e.status(t, e.admin, id); return s == "active" })
	}
	admin := e.as(e.admin)
	e.seedPlan(t)
	goal := `{"resourceType":"Goal","id":"goal-alice","lifecycleStatus":"active","description":{"text":"I want to make my own cup of tea"},
"subject":{"reference":"Patient/alice"},"expressedBy":{"reference":"Patient/alice"},"target":[{"dueDate":"2026-12-15"}]}`
	if _, err := e.eng.Update(admin, "Goal", "goal-alice", []byte(goal), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Delete(admin, "CarePlan", "cp-alice", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eng.Delete(admin, "Goal", "goal-alice", 0); err != nil {
		t.Fatal(err)
	}
	// deleting what is deleted already is no event
	if _, err := e.eng.Delete(admin, "CarePlan", "cp-alice", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two plan events", func() bool { return len(plans.events(t)) == 2 })
	waitFor(t, "two goal events", func() bool { return len(goals.events(t)) == 2 })
	time.Sleep(200 * time.Millisecond)
	if n := len(others.events(t)); n != 0 {
		t.Fatalf("VN2B3 heard %d events of Alice's plan", n)
	}
	if n := len(plans.events(t)); n != 2 {
		t.Fatalf("%d plan events, want 2 (a second delete is no event)", n)
	}
	check := func(entries []map[string]any, wantURL string) {
		t.Helper()
		last := entries[len(entries)-1]
		req, _ := last["request"].(map[string]any)
		resp, _ := last["response"].(map[string]any)
		if req["method"] != "DELETE" || req["url"] != wantURL || resp["status"] != "204" || last["resource"] != nil {
			t.Fatalf("the delete's entry is %v", last)
		}
	}
	plans.mu.Lock()
	var last []map[string]any
	for _, n := range plans.got {
		if n.Type == "event-notification" {
			last = n.Entries
		}
	}
	plans.mu.Unlock()
	check(last, "CarePlan/cp-alice")
	b, err := e.subs.Events(e.as(e.provider), goalID, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := parseNotification(b)
	if err != nil || fmt.Sprint(n.Numbers) != "[1 2]" {
		t.Fatalf("$events: %+v %v", n, err)
	}
	check(n.Entries, "Goal/goal-alice")
}
