package subscriptions_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"crs/subscriptions"
)

// TestPruning: delivered events older than the retention are removed but
// the last delivered one; $events answers the events it still has and says
// which were removed; numbering goes on after them.
func TestPruning(t *testing.T) {
	var shift atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	e := newEnv(t, subscriptions.Config{AllowLoopback: true, Retention: time.Hour, PruneEvery: time.Hour, Now: now})
	e.seedPlan(t)
	rcv := newReceiver(t)
	id := e.subscribe(t, e.provider, subscriptionJSON("VN1A2", "careplan-changed", rcv.URL, "", nil))
	waitFor(t, "status active", func() bool { s, _ := e.status(t, e.provider, id); return s == "active" })
	ctx := e.as(e.provider)
	for i := 1; i <= 5; i++ {
		if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", fmt.Sprintf("change %d", i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "five events", func() bool { return len(rcv.events(t)) == 5 })
	if n, err := e.subs.Prune(context.Background()); err != nil || n != 0 {
		t.Fatalf("pruned %d events inside the retention (%v)", n, err)
	}
	shift.Store(int64(2 * time.Hour))
	removed := 0
	waitFor(t, "events 1 to 4 pruned", func() bool { // the delivered count is saved just after the post
		n, err := e.subs.Prune(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		removed += n
		return removed == 4
	})
	b, err := e.subs.Events(ctx, id, url.Values{"eventsSinceNumber": {"2"}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := parseNotification(b)
	if err != nil || fmt.Sprint(n.Numbers) != "[5]" || n.Total != 5 {
		t.Fatalf("$events after pruning: %+v %v", n, err)
	}
	if !strings.Contains(string(b), `"name":"error"`) || !strings.Contains(string(b), "events 2 to 4 were removed") {
		t.Fatalf("$events does not say events 2 to 4 were removed:\n%s", b)
	}
	if _, err := e.eng.Update(ctx, "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", "change 6"), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "event 6", func() bool { return len(rcv.events(t)) == 6 })
	if _, total := e.status(t, e.provider, id); total != 6 {
		t.Fatalf("$status counts %d events after pruning, want 6", total)
	}
	if n, err := e.subs.Prune(context.Background()); err != nil || n > 1 {
		t.Fatalf("a second prune removed %d (%v): at most event 5, never the last delivered", n, err)
	}
}
