package audit_test

import (
	"path/filepath"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
)

// TestEntryRendersItsRecord: a journal entry keeps a compact record, and the
// AuditEvent it renders after a trip through the file (a restart) has the
// canonical content of the event rendered straight from the record, for
// successes and failures, known, anonymous and unknown callers.
func TestEntryRendersItsRecord(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)
	who := &auth.Principal{Issuer: "https://idp.example", Subject: "u1", ClientID: "c1", Org: "RX1", JTI: "j1", Roles: []string{"clinician", "admin"}, Scopes: []auth.Scope{{}}}
	records := []audit.Record{
		{Interaction: "read", Action: "R", Entities: []string{"Patient/p1/_history/2"}, Patient: "Patient/p1", RequestID: "req-1", Remote: "10.0.0.1", Peer: "127.0.0.1", Forwarded: "10.0.0.1", Server: "http://x/fhir", Who: who, Recorded: at},
		{Interaction: "search-type", Action: "E", Query: "name=a&b=\"c\"\n", Server: "http://x/fhir", Who: &auth.Principal{Anonymous: true}, Recorded: at},
		{Interaction: "update", Action: "U", Outcome: fhir.Errorf(fhir.Forbidden, "", "not yours"), Entities: []string{"Patient/p2"}, Recorded: at},
		{Interaction: "read", Action: "R", Outcome: fhir.Errorf(fhir.Unavailable, "", ""), Recorded: at},
	}
	path := filepath.Join(t.TempDir(), "j")
	j, _, err := audit.OpenJournal(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, r := range records {
		c, err := audit.Canonical(audit.Event(r))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(c))
		e := audit.NewEntry(string(rune('a'+i)), r)
		if _, got, err := e.Event(); err != nil || string(got) != want[i] {
			t.Fatalf("record %d before the journal: %v\n got %s\nwant %s", i, err, got, want[i])
		}
		if err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	j, n, err := audit.OpenJournal(path, 0)
	if err != nil || n != len(records) {
		t.Fatalf("reopen: %d entries, %v", n, err)
	}
	defer j.Close()
	for i, e := range j.Take(n) {
		ev, got, err := e.Event()
		if err != nil || string(got) != want[i] {
			t.Fatalf("record %d after the journal: %v\n got %s\nwant %s", i, err, got, want[i])
		}
		if ev["resourceType"] != "AuditEvent" || !e.Recorded.Equal(at) {
			t.Fatalf("record %d: %v recorded %v", i, ev["resourceType"], e.Recorded)
		}
	}
}
