package audit_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
)

// mapBody is the stored JSON of an AuditEvent as it was written before
// Rendered.Body: the tree with id, meta and chain, encoded by fhir.Marshal.
func mapBody(t testing.TB, r audit.Record, id, lastUpdated, previous, hash string) []byte {
	ev := audit.Event(r)
	ev["id"] = id
	ev["meta"] = map[string]any{"versionId": "1", "lastUpdated": lastUpdated}
	audit.SetChain(ev, previous, hash)
	b, err := fhir.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkRendered compares what Render writes straight from r with what the
// tree gave before: the canonical JSON (the chain hash covers it, so a byte of
// difference would break crs audit verify for events written across an
// upgrade) and the stored body, first in the chain and after another event.
func checkRendered(t testing.TB, r audit.Record) {
	x := audit.Render(r)
	want, err := audit.Canonical(audit.Event(r))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x.Canonical, want) {
		t.Fatalf("canonical JSON differs for %+v\n got %s\nwant %s", r, x.Canonical, want)
	}
	hash := audit.HashAfter("", x.Canonical)
	for _, prev := range []string{"", strings.Repeat("ab", 32)} {
		got, err := x.Body("ae-1", "2026-11-29T12:00:00.123Z", prev, hash)
		if err != nil {
			t.Fatal(err)
		}
		if w := mapBody(t, r, "ae-1", "2026-11-29T12:00:00.123Z", prev, hash); !bytes.Equal(got, w) {
			t.Fatalf("stored body differs (previous %q) for %+v\n got %s\nwant %s", prev, r, got, w)
		}
	}
}

// TestRenderedIsTheEvent: for every shape of record (kinds, outcomes,
// callers, proxies, entities, queries, awkward strings) the canonical JSON and
// the stored body written straight from the record are byte for byte those of
// the AuditEvent tree, and an old journal line's event is stored as before.
func TestRenderedIsTheEvent(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)
	who := &auth.Principal{Issuer: "https://idp.example", Subject: "u1", ClientID: "c1", Org: "RX1", JTI: "j1", Roles: []string{"clinician", "admin"}}
	odd := "quote \" back \\ nl \n tab \t ctl \x01 html <&> sep \u2028 é 😀 bad \xff"
	records := []audit.Record{
		{Interaction: "read", Action: "R", Entities: []string{"Patient/p1/_history/2"}, Patient: "Patient/p1", RequestID: "req-1", Remote: "10.0.0.1", Peer: "127.0.0.1", Forwarded: "10.0.0.1", Server: "http://x/fhir", Who: who, Recorded: at},
		{Interaction: "read", Action: "R", Entities: []string{"Patient/p1"}, Patient: "Patient/p1", Remote: "10.0.0.1", Peer: "10.0.0.1", Server: "http://x/fhir", Who: who, Recorded: at},
		{Interaction: "search-type", Action: "E", Query: "name=a&b=\"c\"\n", Entities: []string{"Encounter/e/_history/1", "Patient/p"}, Patient: "Patient/p", Server: "http://x/fhir", Who: &auth.Principal{Anonymous: true}, Recorded: at},
		{Interaction: "update", Action: "U", Outcome: fhir.Errorf(fhir.Forbidden, "", "not yours"), Entities: []string{"Patient/p2"}, Recorded: at},
		{Interaction: "read", Action: "R", Outcome: fhir.Errorf(fhir.Unavailable, "", ""), Recorded: at},
		{Interaction: "transaction", Action: "E", Outcome: fhir.Errorf(fhir.Invalid, "Bundle.entry[3]", "bad %s", odd), Remote: "::1", Forwarded: "1.2.3.4, 5.6.7.8", Server: "http://x/fhir", Recorded: at},
		{Kind: audit.KindLogin, Interaction: audit.KindLogin, Action: "E", Server: "http://x/fhir", Who: who, Recorded: at},
		{Kind: audit.KindLogout, Interaction: audit.KindLogout, Action: "E", Outcome: fhir.Errorf(fhir.Unauthorized, "", "refused"), Recorded: at},
		{Interaction: "create", Action: "C", Entities: []string{"Observation/o/_history/1"}, Who: &auth.Principal{Issuer: "i", Subject: "s", Org: "ORG"}, Recorded: at.In(time.FixedZone("x", 3600))},
		{Interaction: "create", Action: "C", Who: &auth.Principal{Subject: odd, Roles: []string{odd, ""}, JTI: odd, ClientID: odd}, RequestID: odd, Remote: odd, Peer: odd + "x", Forwarded: odd, Server: odd, Query: odd, Patient: odd, Entities: []string{odd, odd}, Recorded: at},
		{},
	}
	for _, r := range records {
		checkRendered(t, r)
	}

	// An entry of the earlier journal form holds only the canonical JSON.
	r := records[0]
	canonical, err := audit.Canonical(audit.Event(r))
	if err != nil {
		t.Fatal(err)
	}
	x, err := audit.Entry{ID: "ae-1", Recorded: at, Canonical: canonical}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x.Canonical, canonical) {
		t.Fatalf("old entry's canonical JSON changed")
	}
	got, err := x.Body("ae-1", "2026-11-29T12:00:00.123Z", "", "h")
	if err != nil {
		t.Fatal(err)
	}
	if w := mapBody(t, r, "ae-1", "2026-11-29T12:00:00.123Z", "", "h"); !bytes.Equal(got, w) {
		t.Fatalf("old entry's body differs\n got %s\nwant %s", got, w)
	}
}

// FuzzRendered: any strings in a record's fields render the same canonical
// JSON and stored body straight as through the tree.
func FuzzRendered(f *testing.F) {
	f.Add("read", "R", "Patient/p", "Patient/p/_history/1", "q=1", "req", "10.0.0.1", "127.0.0.1", "fw", "http://x/fhir", "iss", "sub", "cid", "ORG", "jti", "role", "", uint8(0))
	f.Add("login", "E", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "denied \u2028", uint8(7))
	f.Fuzz(func(t *testing.T, interaction, action, patient, entity, query, reqID, remote, peer, forwarded, server, iss, sub, cid, org, jti, role, fail string, flags uint8) {
		r := audit.Record{Interaction: interaction, Action: action, Patient: patient, Query: query, RequestID: reqID,
			Remote: remote, Peer: peer, Forwarded: forwarded, Server: server, Recorded: time.Unix(int64(flags)*1e6, 0)}
		if entity != "" {
			r.Entities = []string{entity, patient}
		}
		switch flags % 4 {
		case 1:
			r.Who = &auth.Principal{Anonymous: true}
		case 2, 3:
			r.Who = &auth.Principal{Issuer: iss, Subject: sub, ClientID: cid, Org: org, JTI: jti}
			if flags%4 == 3 {
				r.Who.Roles = []string{role, role}
			}
		}
		switch flags / 4 % 3 {
		case 1:
			r.Kind = audit.KindLogin
		case 2:
			r.Kind = audit.KindLogout
		}
		if fail != "" {
			r.Outcome = fhir.Errorf(fhir.Forbidden, "", "%s", fail)
		}
		checkRendered(t, r)
	})
}
