package audit_test

import (
	"reflect"
	"testing"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/fhir"
	"crs/fhir/search"
)

// checkIndex compares the search values Index computes from r's record with
// what fhir/search extraction gives for the rendered AuditEvent under the
// same id and meta (lastUpdated the recorded instant, as the engine stores
// it): the values a search of AuditEvents finds, less _lastUpdated's, which
// must be the date values (the engine reads _lastUpdated from them).
func checkIndex(t testing.TB, r audit.Record) {
	const id = "ae-1"
	lastUpdated := r.Recorded.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	got, ok := audit.Render(r).Index(id, lastUpdated)
	if !ok {
		t.Fatalf("Index refused a rendered record %+v", r)
	}
	ev := audit.Event(r)
	ev["id"] = id
	ev["meta"] = map[string]any{"versionId": "1", "lastUpdated": lastUpdated}
	all, err := search.Default().Extract("AuditEvent", ev)
	if err != nil {
		t.Fatal(err)
	}
	var want, lu, date []fhir.IndexValue
	for _, v := range all {
		switch v.Param {
		case "_lastUpdated":
			v.Param = "date"
			lu = append(lu, v)
			continue
		case "date":
			date = append(date, v)
		}
		want = append(want, v)
	}
	if len(lu) == 0 || !reflect.DeepEqual(lu, date) {
		t.Fatalf("the _lastUpdated values %+v are not the date values %+v", lu, date)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("search values differ for %+v", r)
		for i := 0; i < max(len(got), len(want)); i++ {
			var g, w fhir.IndexValue
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("  [%d]\n   got %+v\n  want %+v", i, g, w)
			}
		}
		t.FailNow()
	}
}

// TestIndexIsExtraction: for every shape of event the engine records —
// reads, searches, writes, refusals, failures, logins and logouts,
// operations, anonymous and unauthenticated callers, proxies, odd strings and
// references — the search values computed straight from the record are, value
// for value and in order, those fhir/search extracts from the rendered
// AuditEvent; and the embedded AuditEvent parameters are the ones Index knows
// (a changed definition fails here, and the engine falls back to extraction).
func TestIndexIsExtraction(t *testing.T) {
	if !audit.IndexFits(search.Default().Params("AuditEvent")) {
		t.Fatalf("the embedded AuditEvent search parameters are not audit.IndexedParams: update Rendered.Index and IndexedParams together")
	}
	at := time.Date(2026, 11, 29, 12, 0, 0, 123456789, time.UTC)
	who := &auth.Principal{Issuer: "https://idp.example", Subject: "u1", ClientID: "c1", Org: "RX1", JTI: "j1", Roles: []string{"clinician", "admin", "Clinician", ""}}
	same := &auth.Principal{Issuer: "https://idp.example", Subject: "svc", ClientID: "svc"}
	odd := "quote \" back \\ nl \n tab \t ctl \x01 html <&> sep \u2028 É 😀 bad \xff"
	records := []audit.Record{
		// reads and vreads
		{Interaction: "read", Action: "R", Entities: []string{"Patient/p1/_history/2"}, Patient: "Patient/p1", RequestID: "req-1", Remote: "10.0.0.1", Peer: "127.0.0.1", Forwarded: "10.0.0.1", Server: "http://x/fhir", Who: who, Recorded: at},
		{Interaction: "read", Action: "R", Entities: []string{"Patient/p1"}, Patient: "Patient/p1", Remote: "10.0.0.1", Peer: "10.0.0.1", Server: "http://x/fhir", Who: who, Recorded: at},
		{Interaction: "vread", Action: "R", Entities: []string{"ServiceRequest/s1/_history/3"}, Patient: "Patient/p9", RequestID: "r", Server: "http://x/fhir", Who: same, Recorded: at},
		// searches and history
		{Interaction: "search-type", Action: "E", Query: "name=a&b=\"c\"\n", Entities: []string{"Encounter/e/_history/1", "Patient/p", "Encounter/e/_history/1"}, Patient: "Patient/p", Server: "http://x/fhir", Who: &auth.Principal{Anonymous: true}, Recorded: at},
		{Interaction: "search-type", Action: "E", Query: "status=active", Server: "http://x/fhir", Who: who, Recorded: at},
		{Interaction: "history-instance", Action: "R", Entities: []string{"Patient/p/_history/1", "Patient/p/_history/2"}, Patient: "Patient/p", Who: who, Recorded: at},
		// writes
		{Interaction: "create", Action: "C", Entities: []string{"Observation/o/_history/1"}, Who: &auth.Principal{Issuer: "i", Subject: "s", Org: "ORG"}, Recorded: at.In(time.FixedZone("x", 3600))},
		{Interaction: "transaction", Action: "E", Entities: []string{"Patient/p/_history/1", "Encounter/e/_history/1", "ServiceRequest/s/_history/1"}, Patient: "Patient/p", RequestID: "tx-1", Remote: "10.2.3.4", Server: "http://x/fhir", Who: who, Recorded: at},
		{Interaction: "delete", Action: "D", Entities: []string{"Encounter/e/_history/4"}, Who: &auth.Principal{Issuer: "", Subject: "", ClientID: ""}, Recorded: at},
		// refusals and failures
		{Interaction: "update", Action: "U", Outcome: fhir.Errorf(fhir.Forbidden, "", "not yours"), Entities: []string{"Patient/p2"}, Recorded: at},
		{Interaction: "read", Action: "R", Outcome: fhir.Errorf(fhir.Unavailable, "", ""), Recorded: at},
		{Interaction: "transaction", Action: "E", Outcome: fhir.Errorf(fhir.Invalid, "Bundle.entry[3]", "bad %s", odd), Remote: "::1", Forwarded: "1.2.3.4, 5.6.7.8", Server: "http://x/fhir", Recorded: at},
		{Interaction: "read", Action: "R", Outcome: fhir.Errorf(fhir.Unauthorized, "", "no token"), Remote: "10.0.0.9", Server: "http://x/fhir", Recorded: at},
		// operations
		{Interaction: "operation", Action: "E", Entities: []string{"Patient/p/$everything"}, Patient: "Patient/p", Who: who, Recorded: at},
		{Interaction: "operation", Action: "E", Query: "_type=Patient", Server: "http://x/fhir", Who: who, Recorded: at},
		// logins and logouts
		{Kind: audit.KindLogin, Interaction: audit.KindLogin, Action: "E", Server: "http://x/fhir", Who: who, Recorded: at},
		{Kind: audit.KindLogout, Interaction: audit.KindLogout, Action: "E", Outcome: fhir.Errorf(fhir.Unauthorized, "", "refused"), Recorded: at},
		// references of every form
		{Interaction: "read", Action: "R", Entities: []string{"http://other/fhir/Patient/p3", "#c1", "urn:uuid:1", "Patient/p4", "patient/x", "Patient/bad id", "Patient/p5/_history/x", ""}, Patient: "http://other/fhir/Patient/p3", Recorded: at},
		{Interaction: "read", Action: "R", Patient: "#contained", Entities: []string{"#contained"}, RequestID: "#x", Recorded: at},
		{Interaction: "create", Action: "C", Who: &auth.Principal{Subject: odd, Roles: []string{odd, ""}, JTI: odd, ClientID: odd}, RequestID: odd, Remote: odd, Peer: odd + "x", Forwarded: odd, Server: odd, Query: odd, Patient: odd, Entities: []string{odd, odd}, Recorded: at},
		{},
	}
	for _, r := range records {
		checkIndex(t, r)
	}
}

// TestIndexFitsOnlyTheKnownParameters: a registry with an AuditEvent
// parameter added (or one changed) does not fit, so its values are
// extracted instead of computed.
func TestIndexFitsOnlyTheKnownParameters(t *testing.T) {
	reg, err := search.New()
	if err != nil {
		t.Fatal(err)
	}
	if !audit.IndexFits(reg.Params("AuditEvent")) {
		t.Fatal("a fresh registry does not fit")
	}
	if err := reg.Add(map[string]any{"resourceType": "SearchParameter", "url": "http://example.org/sp/ae-desc", "code": "outcome-desc",
		"type": "string", "base": []any{"AuditEvent"}, "expression": "AuditEvent.outcomeDesc"}); err != nil {
		t.Fatal(err)
	}
	if audit.IndexFits(reg.Params("AuditEvent")) {
		t.Fatal("a registry with an added AuditEvent parameter fits")
	}
	changed := make([]*fhir.SearchParam, len(audit.IndexedParams))
	for i := range audit.IndexedParams {
		p := audit.IndexedParams[i]
		changed[i] = &p
	}
	changed[7].Expression = "AuditEvent.agent.network.address | AuditEvent.source.observer.display"
	if audit.IndexFits(changed) {
		t.Fatal("a changed expression fits")
	}
	if audit.IndexFits(changed[:len(changed)-1]) {
		t.Fatal("a missing parameter fits")
	}
}

// FuzzIndex: any strings in a record's fields give the same search values
// straight from the record as by extraction from the rendered event.
func FuzzIndex(f *testing.F) {
	f.Add("read", "R", "Patient/p", "Patient/p/_history/1", "q=1", "req", "10.0.0.1", "http://x/fhir", "iss", "sub", "cid", "ORG", "jti", "role", "", uint8(2))
	f.Add("login", "E", "", "", "", "", "", "", "", "", "", "", "", "", "denied \u2028", uint8(7))
	f.Add("read", "R", "http://a/Patient/1", "#c", "", "", "::1", "", "", "x", "x", "", "", "Ünïcode  role", "", uint8(3))
	f.Fuzz(func(t *testing.T, interaction, action, patient, entity, query, reqID, remote, server, iss, sub, cid, org, jti, role, fail string, flags uint8) {
		r := audit.Record{Interaction: interaction, Action: action, Patient: patient, Query: query, RequestID: reqID,
			Remote: remote, Server: server, Recorded: time.Unix(int64(flags)*1e6, 0)}
		if entity != "" {
			r.Entities = []string{entity, patient, entity}
		}
		switch flags % 4 {
		case 1:
			r.Who = &auth.Principal{Anonymous: true}
		case 2, 3:
			r.Who = &auth.Principal{Issuer: iss, Subject: sub, ClientID: cid, Org: org, JTI: jti}
			if flags%4 == 3 {
				r.Who.Roles = []string{role, role, sub}
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
		checkIndex(t, r)
	})
}

// TestIndexRefusesAnotherLastUpdated: Index leaves out _lastUpdated only
// because it is the recorded instant; asked for another one, it refuses (the
// engine then extracts every value, _lastUpdated's included).
func TestIndexRefusesAnotherLastUpdated(t *testing.T) {
	r := audit.Record{Interaction: "read", Action: "R", Recorded: time.Date(2026, 11, 29, 12, 0, 0, 123e6, time.UTC)}
	if _, ok := audit.Render(r).Index("ae-1", "2026-11-29T12:00:00.123Z"); !ok {
		t.Fatal("Index refused the recorded instant as lastUpdated")
	}
	if _, ok := audit.Render(r).Index("ae-1", "2026-11-29T12:00:00.124Z"); ok {
		t.Fatal("Index computed the values of an event whose lastUpdated is not its recorded instant")
	}
}
