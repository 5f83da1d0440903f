package bars

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"crs/auth"
	"crs/fhir"
	"crs/mapping/mappingtest"
	"crs/profiles"
)

// trust is the referring trust's BaRS client: roles as its ADT feed's, so
// that it matches the people the feed wrote and records its Provenance.
func trust() *auth.Principal {
	return &auth.Principal{ClientID: "bars-RR8", Org: "RR8", Roles: []string{"acute-adt", "acute-trust"}, Scopes: auth.ParseScopes("system/*.cruds")}
}

func newReceiver(t testing.TB) (*Receiver, *mappingtest.Env) {
	t.Helper()
	env := mappingtest.New(t, "testdata/fixtures.json")
	return &Receiver{Engine: env.Engine, Base: profiles.DefaultCanonicalBase}, env
}

func post(t *testing.T, r *Receiver, name string) Reply {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Process(auth.WithPrincipal(context.Background(), trust()), data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rep
}

func ok(t *testing.T, r *Receiver, name string) Reply {
	t.Helper()
	rep := post(t, r, name)
	if rep.Code != OK || rep.Status != 200 {
		t.Fatalf("%s: %d %s %v\n%s", name, rep.Status, rep.Code, rep.Err, mappingtest.JSON(rep.Bundle))
	}
	return rep
}

// header is the response's MessageHeader.
func header(t *testing.T, b fhir.Object) map[string]any {
	t.Helper()
	e := asList(b["entry"])
	if b["type"] != "message" || len(e) == 0 {
		t.Fatalf("not a message: %s", mappingtest.JSON(b))
	}
	return asMap(asMap(e[0])["resource"])
}

func one(t *testing.T, env *mappingtest.Env, rt, query string) map[string]any {
	t.Helper()
	got := env.Search(t, rt, query)
	if len(got) != 1 {
		t.Fatalf("%s?%s: %d matches, want 1", rt, query, len(got))
	}
	return got[0]
}

func has(t *testing.T, what string, v any, wants ...string) {
	t.Helper()
	s := mappingtest.JSON(v)
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %s: %s", what, w, s)
		}
	}
}

const referralQuery = "identifier=https://rr8.example.nhs.uk/Id/referral|REF-0001"

// TestNewUpdateRevoke: a new referral is stored as the CRS Referral with its
// Patient and Encounter and a Provenance; the same message again is answered
// the same and stores nothing; an update changes it (keeping what it does not
// send); an update with status revoked cancels it.
func TestNewUpdateRevoke(t *testing.T) {
	r, env := newReceiver(t)
	rep := ok(t, r, "new.json")
	h := header(t, rep.Bundle)
	has(t, "response header", h, `"identifier":"a0c5e7d2-1f4b-4e8a-9c3d-000000000001"`, `"code":"ok"`, `"code":"servicerequest-response"`,
		`"endpoint":"https://rr8.example.nhs.uk/bars"`, `"reference":"ServiceRequest/`)
	sr := one(t, env, "ServiceRequest", referralQuery)
	has(t, "referral", sr, `"intent":"plan"`, `"code":"892601000000108"`, `"requester":{"display":"Dr Anita Patel","reference":"Organization/trust"}`,
		`"reference":"Organization/agency"`, `CRS-Referral`, `"valueDateTime":"2026-12-01T12:00:00Z"`, `"status":"active"`)
	if ref := asMap(asList(h["focus"])[0])["reference"]; ref != "ServiceRequest/"+sr["id"].(string) {
		t.Errorf("focus %v, want ServiceRequest/%v", ref, sr["id"])
	}
	pat := one(t, env, "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919")
	has(t, "patient", pat, `CRS-Patient`, `"family":"JONES"`)
	enc := one(t, env, "Encounter", "identifier="+profiles.DefaultCanonicalBase+"/Id/hospital-visit-number/RR8|V2001")
	has(t, "encounter", enc, `"reference":"Patient/`+pat["id"].(string)+`"`, `"reference":"Organization/trust"`)
	has(t, "referral", sr, `"reference":"Patient/`+pat["id"].(string)+`"`, `"reference":"Encounter/`+enc["id"].(string)+`"`)
	prov := one(t, env, "Provenance", "entity:identifier="+profiles.DefaultCanonicalBase+"/Id/bars-message|a0c5e7d2-1f4b-4e8a-9c3d-000000000001")
	has(t, "provenance", prov, `"reference":"ServiceRequest/`+sr["id"].(string)+`"`, `"reference":"Patient/`+pat["id"].(string)+`"`, `"reference":"Organization/trust"`)

	versions := map[string]int{}
	for _, rt := range []string{"ServiceRequest", "Patient", "Encounter", "Provenance"} {
		versions[rt] = env.Versions(t, rt)
	}
	again := ok(t, r, "new.json")
	if !again.Duplicate || mappingtest.JSON(again.Bundle) != mappingtest.JSON(rep.Bundle) {
		t.Errorf("resend: duplicate %v, answer\n%s\nwant\n%s", again.Duplicate, mappingtest.JSON(again.Bundle), mappingtest.JSON(rep.Bundle))
	}
	for rt, n := range versions {
		if got := env.Versions(t, rt); got != n {
			t.Errorf("resend stored %d versions of %s", got-n, rt)
		}
	}

	ok(t, r, "update.json")
	sr = one(t, env, "ServiceRequest", referralQuery)
	has(t, "updated referral", sr, `"code":"double"`, `"valueDateTime":"2026-12-01T12:00:00Z"`, `"versionId":"2"`)
	ok(t, r, "update-no-encounter-identifier.json")
	sr = one(t, env, "ServiceRequest", referralQuery)
	has(t, "updated referral", sr, `key safe`, `"reference":"Encounter/`+enc["id"].(string)+`"`)
	if n := len(env.Search(t, "Encounter", "subject=Patient/"+pat["id"].(string))); n != 1 {
		t.Errorf("an update whose Encounter has no identifier made %d Encounters, want the referral's one", n)
	}
	ok(t, r, "revoke.json")
	sr = one(t, env, "ServiceRequest", referralQuery)
	has(t, "revoked referral", sr, `"status":"revoked"`, `"versionId":"4"`)
	if n := len(env.Search(t, "Patient", "identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919")); n != 1 {
		t.Errorf("%d Patients", n)
	}
	if n := env.Versions(t, "Encounter"); n != 1 {
		t.Errorf("%d Encounter versions, want 1 (found again, not rewritten)", n)
	}
}

// TestRefused: each bad message is answered with fatal-error, the status of
// its error and an OperationOutcome saying where; nothing is stored.
func TestRefused(t *testing.T) {
	r, env := newReceiver(t)
	for _, tc := range []struct {
		file   string
		status int
		where  string
	}{
		{"bad-event.json", 400, "Bundle.entry[0].resource.eventCoding"},
		{"bad-nhs-number.json", 400, "Bundle.entry[2].resource.identifier"},
		{"bad-profile.json", 422, `"expression":["Bundle.entry[1].resource.extension"]`},
		{"bad-unknown-referral.json", 404, "Bundle.entry[1].resource.identifier"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rep := post(t, r, tc.file)
			h := header(t, rep.Bundle)
			if rep.Status != tc.status || rep.Code != FatalError || asMap(h["response"])["code"] != FatalError {
				t.Fatalf("%d %s, want %d fatal-error: %s", rep.Status, rep.Code, tc.status, mappingtest.JSON(rep.Bundle))
			}
			e := asList(rep.Bundle["entry"])
			if len(e) != 2 {
				t.Fatalf("no OperationOutcome: %s", mappingtest.JSON(rep.Bundle))
			}
			oo := asMap(asMap(e[1])["resource"])
			if oo["resourceType"] != "OperationOutcome" || asMap(asMap(h["response"])["details"])["reference"] != asMap(e[1])["fullUrl"] {
				t.Fatalf("details do not name the outcome: %s", mappingtest.JSON(rep.Bundle))
			}
			has(t, "outcome", oo, tc.where)
		})
	}
	for _, rt := range []string{"ServiceRequest", "Patient", "Encounter", "Provenance"} {
		if n := env.Versions(t, rt); n != 0 {
			t.Errorf("%d versions of %s stored by refused messages", n, rt)
		}
	}
}

// TestNotAMessage: a body that names no message is an error, not a response.
func TestNotAMessage(t *testing.T) {
	r, _ := newReceiver(t)
	for name, body := range map[string]string{
		"not json":     `{"resourceType":`,
		"not a bundle": `{"resourceType":"Patient"}`,
		"transaction":  `{"resourceType":"Bundle","type":"transaction","entry":[]}`,
		"no header":    `{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"Patient"}}]}`,
		"no header id": `{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"MessageHeader"}}]}`,
	} {
		_, err := r.Process(auth.WithPrincipal(context.Background(), trust()), []byte(body))
		if fe := fhir.AsError(err); err == nil || fe.Kind != fhir.Invalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}

// TestOtherCaller: a caller whose policy does not let it write referrals is
// refused, and nothing is stored.
func TestOtherCaller(t *testing.T) {
	r, env := newReceiver(t)
	data, err := os.ReadFile("testdata/new.json")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Process(auth.WithPrincipal(context.Background(), mappingtest.Principal("care-provider", "VN1A2", "")), data)
	if err != nil || rep.Code != FatalError || rep.Status != 403 {
		t.Fatalf("%v %d %s", err, rep.Status, rep.Code)
	}
	if n := env.Versions(t, "ServiceRequest"); n != 0 {
		t.Errorf("%d referrals stored", n)
	}
	var b map[string]any
	if err := json.Unmarshal([]byte(mappingtest.JSON(rep.Bundle)), &b); err != nil {
		t.Fatal(err)
	}
}

// FuzzProcess feeds arbitrary bodies to the receiver: every one is answered
// with a response message or a client error — never a panic, never an
// internal error — and a refused message stores nothing.
func FuzzProcess(f *testing.F) {
	for _, name := range []string{"new.json", "update.json", "bad-event.json", "bad-profile.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"MessageHeader","id":"x","eventCoding":{"system":"https://fhir.nhs.uk/CodeSystem/message-events-bars","code":"servicerequest-request"},"reason":{"coding":[{"system":"https://fhir.nhs.uk/CodeSystem/message-reason-bars","code":"new"}]},"focus":[{"reference":"ServiceRequest/1"}]}},{"resource":{"resourceType":"ServiceRequest","id":"1"}}]}`))
	r, env := newReceiver(f)
	ctx := auth.WithPrincipal(context.Background(), trust())
	f.Fuzz(func(t *testing.T, body []byte) {
		before := env.Versions(t, "ServiceRequest")
		rep, err := r.Process(ctx, body)
		if err != nil {
			if fhir.KindOf(err) == fhir.Internal {
				t.Fatalf("internal error: %v", err)
			}
			return
		}
		if rep.Bundle == nil || (rep.Code == OK) != (rep.Err == nil) {
			t.Fatalf("reply %d %s %v", rep.Status, rep.Code, rep.Err)
		}
		if rep.Err != nil && fhir.KindOf(rep.Err) == fhir.Internal {
			t.Fatalf("internal error: %v", rep.Err)
		}
		if rep.Err != nil && env.Versions(t, "ServiceRequest") != before {
			t.Fatalf("a refused message stored a referral")
		}
	})
}
