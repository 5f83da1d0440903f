package measures

import (
	"encoding/base64"
	"net/http"
	"testing"

	"crs/fhir"
)

// TestPageViewAudit: a page view is recorded by the engine's own AuditEvents,
// one per call it makes (the searches as BALP query events), and the page adds
// no "page viewed" event of its own; a request refused before any engine
// call (an unknown locality) is one AuditEvent, recorded by the page.
func TestPageViewAudit(t *testing.T) {
	eng := newEngine(t, false)
	loadDemo(t, eng, 20)
	srv := pageServer(t, eng)
	view := func(path, id string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// events returns the AuditEvents of request id: their subtypes, queries
	// and outcomes.
	events := func(id string) (subtypes, queries, outcomes []string) {
		err := searchAll(adminCtx(), eng, "AuditEvent", []fhir.RawParam{{Name: "_sort", Value: "_id"}}, func(o map[string]any) {
			mine := false
			var query string
			for _, e := range arr(o["entity"]) {
				em := mapOf(e)
				if str(mapOf(mapOf(em["what"])["identifier"])["value"]) == id {
					mine = true
				}
				if q := str(em["query"]); q != "" {
					b, _ := base64.StdEncoding.DecodeString(q)
					query = string(b)
				}
			}
			if mine {
				subtypes = append(subtypes, str(mapOf(arr(o["subtype"])[0])["code"]))
				queries = append(queries, query)
				outcomes = append(outcomes, str(o["outcome"]))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if code := view("/", "page-audit-view"); code != 200 {
		t.Fatalf("page: %d", code)
	}
	subtypes, queries, _ := events("page-audit-view")
	if len(subtypes) < 5 {
		t.Errorf("a page view left %d AuditEvents: %v", len(subtypes), subtypes)
	}
	for i, q := range queries {
		if q == "" {
			t.Errorf("the page recorded an event of its own (%s, query %q) beside the engine's", subtypes[i], q)
		}
		if subtypes[i] != "search-type" && subtypes[i] != "read" {
			t.Errorf("event %d of the page view is a %s", i, subtypes[i])
		}
	}

	if code := view("/?locality=atlantis", "page-audit-bad"); code != 400 {
		t.Fatalf("unknown locality: %d", code)
	}
	subtypes, queries, outcomes := events("page-audit-bad")
	if len(subtypes) != 1 || queries[0] != "locality=atlantis" || outcomes[0] != "4" {
		t.Errorf("a refused page: events %v %v %v", subtypes, queries, outcomes)
	}
}
