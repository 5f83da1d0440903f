package server_test

import (
	"strings"
	"testing"

	"crs/server"
)

// TestEverythingLeavesOutTheAuditTrail: a person's $everything is their record,
// not the log of who looked at it; _type=AuditEvent asks for that explicitly.
func TestEverythingLeavesOutTheAuditTrail(t *testing.T) {
	ts, _ := newEdgeServer(t, server.Config{})
	base := ts.URL + "/fhir"
	if r := do(t, "PUT", base+"/Patient/p1", []byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"Audit"}]}`)); r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	for i := 0; i < 3; i++ {
		do(t, "GET", base+"/Patient/p1", nil)
	}
	types := func(query string) []string {
		b := do(t, "GET", base+"/Patient/p1/$everything"+query, nil).json(t)
		var out []string
		for _, e := range b["entry"].([]any) {
			out = append(out, e.(map[string]any)["resource"].(map[string]any)["resourceType"].(string))
		}
		return out
	}
	if got := types(""); strings.Contains(strings.Join(got, " "), "AuditEvent") || len(got) != 1 {
		t.Errorf("$everything: %v, want the Patient only", got)
	}
	got := types("?_type=AuditEvent")
	if len(got) < 4 || got[1] != "AuditEvent" {
		t.Errorf("$everything?_type=AuditEvent: %v, want the Patient and its AuditEvents", got)
	}
}
