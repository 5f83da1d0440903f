package subscriptions_test

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/subscriptions"
)

// TestIdleSubscriptionsPark: subscriptions with nothing to deliver hold no
// goroutine, and each still hears, in order, the events of the writes made
// while it was parked.
func TestIdleSubscriptionsPark(t *testing.T) {
	const n = 200
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 4, MaxIdleConnsPerHost: 4}}
	e := newEnv(t, subscriptions.Config{AllowLoopback: true, Client: client})
	e.seedPlan(t)
	rcv := newReceiver(t)
	before := runtime.NumGoroutine()
	var entries []string
	for k := 0; k < n; k++ {
		body := subscriptionJSON("", "careplan-changed", rcv.URL, "id-only", nil)
		body = bytes.Replace(body, []byte(`"reason":`), []byte(fmt.Sprintf(`"id":"s%d","reason":`, k)), 1)
		entries = append(entries, `{"resource":`+string(body)+`,"request":{"method":"PUT","url":"Subscription/s`+fmt.Sprint(k)+`"}}`)
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
	if _, err := e.eng.Bundle(e.as(e.admin), []byte(tx), engine.SearchOptions{}); err != nil {
		t.Fatal(err)
	}
	active := func() bool {
		b, err := e.eng.Search(e.as(e.admin), "Subscription", []fhir.RawParam{{Name: "status", Value: "active"}, {Name: "_summary", Value: "count"}}, engine.SearchOptions{})
		return err == nil && b.Total != nil && *b.Total == n
	}
	waitFor(t, "every subscription active", active)
	parked := func() bool { return runtime.NumGoroutine() < before+n/4 }
	waitFor(t, "the idle subscriptions' goroutines to end", parked)
	for i := 1; i <= 3; i++ {
		if _, err := e.eng.Update(e.as(e.admin), "CarePlan", "cp-alice", carePlan("cp-alice", "alice", "alice-ref", fmt.Sprintf("change %d", i)), 0); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "every subscription hears the change", func() bool { return rcv.count("event-notification") >= n*i })
		waitFor(t, "the goroutines to park again", parked)
	}
	// each subscription heard events 1, 2 and 3, once each
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	heard := map[int]int{}
	for _, x := range rcv.got {
		if x.Type == "event-notification" {
			for _, num := range x.Numbers {
				heard[num]++
			}
		}
	}
	if len(heard) != 3 || heard[1] != n || heard[2] != n || heard[3] != n {
		t.Fatalf("event numbers heard (number: subscriptions): %v, want 1, 2 and 3 by %d each", heard, n)
	}
}
