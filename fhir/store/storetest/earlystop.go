package storetest

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"crs/fhir/store"
)

// earlyRequest is one ServiceRequest of testEarlyStop's data, as the test's
// own model of the expected order sees it.
type earlyRequest struct {
	id        string
	status    string
	performer string
	lo, hi    time.Time // authoredOn's range; zero when it has none
	deleted   bool
}

// earlyData writes 40 ServiceRequests whose authoredOn values tie, vary in
// precision (a date spans a day, a dateTime an instant) or are missing, some
// of them deleted, in creation (row id) order, and returns the model.
func earlyData(t *testing.T, s store.Store) []earlyRequest {
	t.Helper()
	var out []earlyRequest
	for i := 0; i < 40; i++ {
		r := earlyRequest{id: fmt.Sprintf("sr%02d", i), status: "active", performer: fmt.Sprintf("o%d", i%4)}
		if i%3 == 0 {
			r.status = "completed"
		}
		authored := ""
		day := time.Date(2026, 5, 1+(i*7)%13, 0, 0, 0, 0, time.UTC)
		switch {
		case i%10 == 9:
			// no authoredOn: sorts last both ways
		case i%8 == 4:
			authored = `,"authoredOn":"` + day.Format("2006-01-02") + `"`
			r.lo, r.hi = day, day.Add(24*time.Hour-time.Millisecond)
		default:
			at := day.Add(time.Duration(i%3) * time.Hour)
			authored = `,"authoredOn":"` + at.Format(time.RFC3339) + `"`
			r.lo, r.hi = at, at.Add(999*time.Millisecond)
		}
		put(t, s, 1, fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"%s","status":"%s","intent":"plan","subject":{"reference":"Patient/p"},"performer":[{"reference":"Organization/%s"}]%s}`,
			r.id, r.status, r.performer, authored))
		out = append(out, r)
	}
	for i := range out {
		if i%11 == 5 {
			del(t, s, "ServiceRequest", out[i].id, 2)
			out[i].deleted = true
		}
	}
	return out
}

// expectedOrder is the order a query must give: the live requests that keep
// passes, by key (missing keys last), ties in creation order.
func expectedOrder(reqs []earlyRequest, keep func(earlyRequest) bool, key func(earlyRequest) (int64, bool), descending bool) string {
	var live []int
	for i, r := range reqs {
		if !r.deleted && keep(r) {
			live = append(live, i)
		}
	}
	sort.SliceStable(live, func(a, b int) bool {
		ka, okA := key(reqs[live[a]])
		kb, okB := key(reqs[live[b]])
		switch {
		case okA != okB:
			return okA
		case !okA || ka == kb:
			return false
		case descending:
			return ka > kb
		}
		return ka < kb
	})
	ids := make([]string, len(live))
	for i, n := range live {
		ids[i] = reqs[n].id
	}
	return strings.Join(ids, " ")
}

// testEarlyStop checks the pages of the shapes a backend may serve by walking
// an index in the requested order and stopping at _count + 1 (SQLite's walk
// plans) against the order the model gives, at every page size: a single
// sort key ascending and descending (served by the key's index, with values of
// different precision, ties, missing values and deleted resources), a token
// sort, no sort (row order), and a query whose only parameter is a negation.
func testEarlyStop(t *testing.T, s store.Store) {
	reqs := earlyData(t, s)
	active := func(r earlyRequest) bool { return r.status == "active" }
	o1 := func(r earlyRequest) bool { return r.status == "active" && r.performer == "o1" }
	all := func(earlyRequest) bool { return true }
	lo := func(r earlyRequest) (int64, bool) { return r.lo.UnixMilli(), !r.lo.IsZero() }
	hi := func(r earlyRequest) (int64, bool) { return r.hi.UnixMilli(), !r.hi.IsZero() }
	none := func(earlyRequest) (int64, bool) { return 0, false }
	status := func(r earlyRequest) (int64, bool) {
		if r.status == "active" {
			return 0, true
		}
		return 1, true
	}
	// _sort=status,-authored as one ascending number: the status, then the
	// latest end descending, missing ends last within their status.
	statusThenLatest := func(r earlyRequest) (int64, bool) {
		st, _ := status(r)
		if r.hi.IsZero() {
			return st<<50 + 1<<49 + 1, true
		}
		return st<<50 + 1<<49 - r.hi.UnixMilli(), true
	}
	cases := []struct {
		qs   string
		want string
	}{
		{"status=active&_sort=-authored", expectedOrder(reqs, active, hi, true)},
		{"status=active&_sort=authored", expectedOrder(reqs, active, lo, false)},
		{"status=active&performer=Organization/o1&_sort=-authored", expectedOrder(reqs, o1, hi, true)},
		{"_sort=-authored", expectedOrder(reqs, all, hi, true)},
		{"_sort=authored", expectedOrder(reqs, all, lo, false)},
		{"performer=Organization/o1,Organization/o2,Organization/o3,Organization/o0&_sort=status", expectedOrder(reqs, all, status, false)},
		{"_sort=status,-authored", expectedOrder(reqs, all, statusThenLatest, false)},
		{"performer=Organization/o1,Organization/o2&_sort=status,-authored", expectedOrder(reqs, func(r earlyRequest) bool { return r.performer == "o1" || r.performer == "o2" }, statusThenLatest, false)},
		{"status=active", expectedOrder(reqs, active, none, false)},
		{"status:not=completed", expectedOrder(reqs, active, none, false)},
		{"status=active&performer=Organization/o1", expectedOrder(reqs, o1, none, false)},
	}
	for _, c := range cases {
		for _, n := range []int{1, 2, 3, 7, 1000} {
			qs := fmt.Sprintf("%s&_count=%d", c.qs, n)
			if got := pagedOrder(t, s, "ServiceRequest", qs); got != c.want {
				t.Errorf("ServiceRequest?%s:\n got %s\nwant %s", qs, got, c.want)
			}
		}
	}
}

// pagedOrder returns the ids of all matches in the order the store gives them,
// failing when the pages do not end (a cursor that does not advance).
func pagedOrder(t *testing.T, s store.Store, rt, qs string) string {
	t.Helper()
	q := query(t, rt, qs)
	var out []string
	for pages := 0; pages < 100; pages++ {
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range res.Matches {
			out = append(out, v.ID)
		}
		if res.Next == "" {
			return strings.Join(out, " ")
		}
		q.Cursor = res.Next
	}
	t.Fatalf("%s?%s: still paging after 100 pages: %v", rt, qs, out[:min(len(out), 20)])
	return ""
}
