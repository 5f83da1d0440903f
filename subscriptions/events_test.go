package subscriptions_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"crs/fhir/engine"
	"crs/fhir/store"
	"crs/subscriptions"
)

// TestLegacyEventsKept: events recorded before the one-record-per-event
// layout (versions of CrsSubscriptionEvent/{subscription}) keep their
// numbers: they are delivered and served by $events, and the next event
// follows them.
func TestLegacyEventsKept(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	e.seedPlan(t)
	ctx := e.as(e.admin)
	const id = "sub-legacy"
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	err := e.eng.OutboxWrite(context.Background(), func(tx engine.OutboxTx) error {
		for n := 1; n <= 2; n++ {
			body := fmt.Sprintf(`{"topic":%q,"focus":"CarePlan/cp-alice","version":1,"interaction":"update","time":%q}`,
				topicBase+"careplan-changed", at.Format(time.RFC3339Nano))
			if err := tx.Put(context.Background(), store.Version{Type: "CrsSubscriptionEvent", ID: id, VersionID: n, LastUpdated: at, Method: "PUT", Body: []byte(body)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t)
	body := strings.Replace(string(subscriptionJSON("", "careplan-changed", rcv.URL, "", nil)), `{"channel"`, `{"id":"`+id+`","channel"`, 1)
	if _, err := e.eng.Update(ctx, "Subscription", id, []byte(body), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the two legacy events", func() bool { return len(rcv.events(t)) == 2 })
	if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "after the upgrade"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "event 3", func() bool { return len(rcv.events(t)) == 3 })
	if _, total := e.status(t, e.admin, id); total != 3 {
		t.Fatalf("$status counts %d events, want 3", total)
	}
	b, err := e.subs.Events(ctx, id, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := parseNotification(b)
	if err != nil || fmt.Sprint(n.Numbers) != "[1 2 3]" || strings.Join(n.Focus, " ") != "CarePlan/cp-alice CarePlan/cp-alice CarePlan/cp-alice" {
		t.Fatalf("$events: %+v %v", n, err)
	}
}

// TestEventNumbersUnderConcurrentWrites: many writers at once (the store
// commits them in groups, some of which fail and run again) give one
// subscription events numbered 1..n without a gap or a repeat, one per
// write.
func TestEventNumbersUnderConcurrentWrites(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	rcv := newReceiver(t)
	id := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", rcv.URL, "", nil))
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.provider, id); return s == "active" })
	ctx := e.as(e.admin)
	const writers, each = 8, 10
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func(w int) {
			pid := fmt.Sprintf("cp-c%d", w)
			for i := 0; i < each; i++ {
				if _, err := e.eng.Update(ctx, "CarePlan", pid, carePlan(pid, "alice", "alice-ref", fmt.Sprintf("change %d", i)), 0); err != nil {
					errs <- err
					return
				}
				// every third writer also sends a transaction that fails
				if w%3 == 0 {
					bad := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(carePlan(pid, "alice", "alice-ref", "never")) +
						`,"request":{"method":"PUT","url":"CarePlan/` + pid + `"}},{"resource":{"resourceType":"Goal","lifecycleStatus":"nonsense"},"request":{"method":"POST","url":"Goal"}}]}`
					if _, err := e.eng.Bundle(ctx, []byte(bad), engine.SearchOptions{}); err == nil {
						errs <- fmt.Errorf("a bad transaction was accepted")
						return
					}
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < writers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every event", func() bool { return len(rcv.events(t)) >= writers*each }) // events() fails on a gap or a changed number
	if got := len(rcv.events(t)); got != writers*each {
		t.Fatalf("%d events for %d writes", got, writers*each)
	}
	if _, total := e.status(t, e.provider, id); total != writers*each {
		t.Fatalf("$status counts %d events, want %d", total, writers*each)
	}
}

// TestSharedJudgement: subscriptions with the same topic, filter and owner
// organisation and roles are judged once per write, and each still hears
// of it (two DSCR clients of VN1A2, one of them filtered on another
// person); another provider's subscriptions hear nothing of Alice.
func TestSharedJudgement(t *testing.T) {
	e := newEnv(t, subscriptions.Config{AllowLoopback: true})
	e.seedPlan(t)
	a1, a2, af, b1 := newReceiver(t), newReceiver(t), newReceiver(t), newReceiver(t)
	p2 := principal("care-provider", "VN1A2")
	p2.ClientID = "another-dscr"
	ids := []string{
		e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", a1.URL, "", nil)),
		e.subscribe(t, p2, subscriptionJSON("VN1A2", "careplan-changed", a2.URL, "", nil)),
		e.subscribe(t, p2, subscriptionJSON("VN1A2", "careplan-changed", af.URL, "", nil, "CarePlan?subject=Patient/bob")),
		e.subscribe(t, e.other, subscriptionJSON("VN2B3", "careplan-changed", b1.URL, "", nil)),
	}
	for _, id := range ids {
		waitFor(t, "status active", func() bool { s, _ := e.status(t, e.admin, id); return s == "active" })
	}
	if _, err := e.eng.Update(e.as(e.admin), "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "shared"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both VN1A2 clients hear", func() bool { return len(a1.events(t)) == 1 && len(a2.events(t)) == 1 })
	time.Sleep(200 * time.Millisecond)
	if n := len(af.events(t)); n != 0 {
		t.Fatalf("a subscription filtered on Bob heard %d events of Alice's plan", n)
	}
	if n := len(b1.events(t)); n != 0 {
		t.Fatalf("VN2B3 heard %d events of Alice's plan", n)
	}
}
