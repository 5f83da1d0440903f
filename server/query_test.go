package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"crs/fhir/engine"
	"crs/profiles"
)

// TestRefusedNotIgnored checks requests that were answered as if nothing were
// wrong: conditional writes without criteria, a Bundle whose entry is not an
// array, a fullUrl that is not the urn:uuid: it claims to be, a bad escape in
// $expand's filter.
func TestRefusedNotIgnored(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	if r := do(t, http.MethodPost, base+"/Patient", []byte(`{"resourceType":"Patient","gender":"male"}`)); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	bundle := func(entries string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":` + entries + `}`)
	}
	for _, c := range []struct {
		name, method, path string
		body               []byte
		want               string
	}{
		{"conditional delete with _count only", http.MethodDelete, "/RelatedPerson?_count=1", nil, "search criterion"},
		{"conditional delete with _sort only", http.MethodDelete, "/Patient?_sort=_id", nil, "search criterion"},
		{"conditional delete with _elements only", http.MethodDelete, "/Patient?_elements=id", nil, "search criterion"},
		{"conditional update with _count only", http.MethodPut, "/CareTeam?_count=1", []byte(`{"resourceType":"CareTeam"}`), "search criterion"},
		{"conditional update of a Patient with _count only", http.MethodPut, "/Patient?_count=1", []byte(`{"resourceType":"Patient","gender":"female"}`), "search criterion"},
		{"create with If-None-Exist of _count only", http.MethodPost, "/Patient", []byte(`{"resourceType":"Patient"}`), "search criterion"},
		{"Bundle.entry an object", http.MethodPost, "", bundle(`{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}}`), "Bundle.entry must be an array"},
		{"fullUrl urn:uuid:xyz", http.MethodPost, "", bundle(`[{"fullUrl":"urn:uuid:xyz","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}}]`), "is not a urn:uuid: with a UUID"},
		{"fullUrl urn:oid:x", http.MethodPost, "", bundle(`[{"fullUrl":"urn:oid:x","request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}}]`), "is not a urn:oid:"},
	} {
		var headers []string
		if strings.HasPrefix(c.name, "create with If-None-Exist") {
			headers = []string{"If-None-Exist", "_count=1"}
		}
		r := do(t, c.method, base+c.path, c.body, headers...)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s: %d %s, want 400 saying %q", c.name, r.status, r.body, c.want)
		}
	}
	// Nothing was deleted, overwritten or created.
	r := do(t, http.MethodGet, base+"/Patient?_total=accurate", nil)
	if !strings.Contains(string(r.body), `"total":1,`) || !strings.Contains(string(r.body), `"gender":"male"`) {
		t.Errorf("the store changed: %s", r.body)
	}
}

// TestExpandBadEscape checks that a bad escape in $expand's query is a 400,
// not an expansion without the filter.
func TestExpandBadEscape(t *testing.T) {
	ts := newProfiledServer(t, engine.EnforceStrict)
	vs := url.QueryEscape(profiles.DefaultCanonicalBase + "/ValueSet/crs-visit-type")
	if r := do(t, http.MethodGet, ts.URL+"/fhir/ValueSet/$expand?url="+vs+"&filter=review", nil); r.status != http.StatusOK {
		t.Fatalf("$expand: %d %s", r.status, r.body)
	}
	r := do(t, http.MethodGet, ts.URL+"/fhir/ValueSet/$expand?url="+vs+"&filter=%zz", nil)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `malformed value of query parameter \"filter\"`) {
		t.Errorf("$expand?filter=%%zz: %d %s", r.status, r.body)
	}
}

// TestBigQueries checks, over HTTP, that queries at the default limits are
// answered and queries past them are a 400 naming the limit: never a 500.
func TestBigQueries(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	list := func(format string, n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(format, i)
		}
		return strings.Join(items, ",")
	}
	for _, c := range []struct {
		name, query string
		status      int
	}{
		{"1,000 _id values", "_id=" + list("p%d", 1000), 200},
		{"1,001 _id values", "_id=" + list("p%d", 1001), 400},
		{"500 name values", "name=" + list("n%d", 500), 200},
		{"20 repetitions", strings.Repeat("birthdate=gt2000&", 19) + "birthdate=gt2001", 200},
		{"21 repetitions", strings.ReplaceAll(list("birthdate=gt20%02d", 21), ",", "&"), 400},
		{"1,000 identical repetitions", strings.Repeat("name=x&", 1000), 200},
		{"1,000 identical includes", strings.Repeat("_include=Patient:organization&", 1000), 200},
	} {
		r := do(t, http.MethodGet, base+"/Patient?"+c.query, nil)
		if r.status != c.status {
			t.Errorf("%s: %d %.300s", c.name, r.status, r.body)
		}
		if c.status == 400 && !strings.Contains(string(r.body), "limit") {
			t.Errorf("%s: the outcome does not name the limit: %s", c.name, r.body)
		}
	}
}

// TestAllowMatchesRoutes sends every method to every kind of path: wherever
// one is answered 405, the Allow header lists exactly the methods that are
// not.
func TestAllowMatchesRoutes(t *testing.T) {
	ts := newServer(t)
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	checked := 0
	for _, path := range []string{
		"", "/metadata", "/_history", "/Patient", "/AuditEvent", "/Patient/_search", "/Patient/_history", "/Patient/_nonsense",
		"/Patient/p1", "/AuditEvent/a1", "/Patient/p1/_history", "/Patient/p1/_history/1", "/AuditEvent/a1/_history/1",
		"/Patient/p1/$everything", "/Patient/p1/Goal", "/ValueSet/$expand", "/ValueSet/v1/$expand", "/Patient/$validate",
	} {
		allow, routed := "", map[string]bool{}
		for _, m := range methods {
			var headers []string
			if m == http.MethodPatch {
				headers = []string{"Content-Type", "application/json-patch+json"}
			}
			r := do(t, m, ts.URL+"/fhir"+path, []byte(`[]`), headers...)
			if r.status == http.StatusMethodNotAllowed {
				if allow = r.header.Get("Allow"); allow == "" {
					t.Errorf("%s %s: 405 without Allow", m, path)
				}
			} else {
				routed[m] = true
			}
		}
		if allow == "" {
			continue
		}
		checked++
		for _, m := range methods {
			if listed := strings.Contains(", "+allow+",", ", "+m+","); listed != routed[m] {
				t.Errorf("%s: Allow %q, but %s is routed: %v", path, allow, m, routed[m])
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d paths answered 405 to some method", checked)
	}
}
