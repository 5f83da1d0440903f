package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestReadHonoursItsParameters: read and vread apply _summary and _elements
// like search, and refuse what they do not understand (lenient: ignore).
func TestReadHonoursItsParameters(t *testing.T) {
	ts := newServer(t)
	base := ts.URL + "/fhir"
	goal := `{"resourceType":"Goal","id":"g1","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">tea</div>"},` +
		`"lifecycleStatus":"active","description":{"text":"Make my own cup of tea"},"subject":{"reference":"Patient/p1"},"note":[{"text":"likes it strong"}]}`
	if r := do(t, "PUT", base+"/Goal/g1", []byte(goal)); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	for _, path := range []string{"/Goal/g1", "/Goal/g1/_history/1"} {
		for _, tc := range []struct {
			query      string
			status     int
			has, hasnt []string
		}{
			{"", 200, []string{`"note"`, `"text"`}, []string{"SUBSETTED"}},
			{"?_summary=true", 200, []string{`"lifecycleStatus"`, "SUBSETTED"}, []string{`"note"`, `"div"`}},
			{"?_summary=data", 200, []string{`"note"`, "SUBSETTED"}, []string{`"div"`}},
			{"?_summary=false", 200, []string{`"note"`}, []string{"SUBSETTED"}},
			{"?_elements=note", 200, []string{`"note"`, "SUBSETTED"}, []string{`"lifecycleStatus"`}},
			{"?_summary=bogus", 400, []string{"_summary"}, nil},
			{"?_summary=count", 400, []string{"_summary"}, nil},
			{"?foo=bar", 400, []string{"foo"}, nil},
			{"?_format=json&_pretty=true", 200, []string{`"note"`}, nil},
		} {
			r := do(t, "GET", base+path+tc.query, nil)
			if r.status != tc.status {
				t.Errorf("GET %s%s: %d %s, want %d", path, tc.query, r.status, r.body, tc.status)
				continue
			}
			for _, s := range tc.has {
				if !strings.Contains(string(r.body), s) {
					t.Errorf("GET %s%s lacks %s: %s", path, tc.query, s, r.body)
				}
			}
			for _, s := range tc.hasnt {
				if strings.Contains(string(r.body), s) {
					t.Errorf("GET %s%s has %s: %s", path, tc.query, s, r.body)
				}
			}
		}
		if r := do(t, "GET", base+path+"?foo=bar", nil, "Prefer", "handling=lenient"); r.status != 200 || !strings.Contains(string(r.body), `"note"`) {
			t.Errorf("lenient GET %s?foo=bar: %d %s", path, r.status, r.body)
		}
	}
}
