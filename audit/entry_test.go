package audit_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
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
		{Kind: audit.KindLogin, Interaction: audit.KindLogin, Action: "E", Server: "http://x/fhir", Who: who, Recorded: at},
		{Kind: audit.KindLogout, Interaction: audit.KindLogout, Action: "E", Outcome: fhir.Errorf(fhir.Unauthorized, "", "refused"), Recorded: at},
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

// TestLoginEvent: a sign-in or sign-out renders as a BALP user-authentication
// event, not a RESTful one (TestEntryRendersItsRecord takes both through the
// journal).
func TestLoginEvent(t *testing.T) {
	for _, c := range []struct{ kind, code, display string }{
		{audit.KindLogin, "110122", "Login"},
		{audit.KindLogout, "110123", "Logout"},
	} {
		r := audit.Record{Kind: c.kind, Interaction: c.kind, Action: "E", Server: "http://test/fhir", Recorded: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
			Who: &auth.Principal{Issuer: "https://idp", Subject: "nurse", ClientID: "mdt-page"}}
		b, err := json.Marshal(audit.Event(r))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`"code":"110114"`, `"code":"` + c.code + `"`, `"display":"` + c.display + `"`, `"action":"E"`, `"value":"nurse"`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s event lacks %s: %s", c.kind, want, b)
			}
		}
		if strings.Contains(string(b), "restful-interaction") {
			t.Errorf("%s event is typed as a RESTful interaction: %s", c.kind, b)
		}
	}
}
