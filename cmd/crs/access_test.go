package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// seed writes two of everything as admin: the "a" records (Warwickshire,
// referred by trust RKB to provider P1 and therapy T1) and the "b" records
// (Coventry, referred by trust RRK to provider P2).
func (r *region) seed(t *testing.T) {
	t.Helper()
	put := func(res string) {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(res), &m); err != nil {
			t.Fatalf("%v: %s", err, res)
		}
		if status, body := r.do(t, "admin", "PUT", fmt.Sprintf("/%s/%s", m["resourceType"], m["id"]), res); status != 201 {
			t.Fatalf("seed %s: %d %s", res, status, body)
		}
	}
	for _, o := range [][2]string{{"org-rkb", "RKB"}, {"org-rrk", "RRK"}, {"org-p1", "P1"}, {"org-p2", "P2"}, {"org-t1", "T1"}} {
		put(fmt.Sprintf(`{"resourceType":"Organization","id":%q,"identifier":[{"system":%q,"value":%q}],"name":%q}`, o[0], ods, o[1], o[1]))
	}
	for _, x := range []struct{ k, nhs, state, la, trust, provider, performers string }{
		{"a", "9000000009", "Warwickshire", "E10000031", "org-rkb", "org-p1", `[{"reference":"Organization/org-p1"},{"reference":"Organization/org-t1"}]`},
		{"b", "9449305552", "Coventry", "E08000026", "org-rrk", "org-p2", `[{"reference":"Organization/org-p2"}]`},
	} {
		put(fmt.Sprintf(`{"resourceType":"Patient","id":"pat-%s","extension":[%s],"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":%q}],"name":[{"family":"Family%s"}],"address":[{"state":%q}]}`, x.k, responsibleLA(x.la), x.nhs, x.k, x.state))
		put(fmt.Sprintf(`{"resourceType":"Encounter","id":"enc-%s","status":"finished","class":{"code":"IMP"},"subject":{"reference":"Patient/pat-%s"}}`, x.k, x.k))
		put(fmt.Sprintf(`{"resourceType":"ServiceRequest","id":"sr-%s","status":"active","intent":"plan","subject":{"reference":"Patient/pat-%s"},"encounter":{"reference":"Encounter/enc-%s"},"requester":{"reference":"Organization/%s"},"performer":%s}`, x.k, x.k, x.k, x.trust, x.performers))
		put(fmt.Sprintf(`{"resourceType":"EpisodeOfCare","id":"ep-%s","status":"active","patient":{"reference":"Patient/pat-%s"},"managingOrganization":{"reference":"Organization/%s"},"referralRequest":[{"reference":"ServiceRequest/sr-%s"}]}`, x.k, x.k, x.provider, x.k))
		put(fmt.Sprintf(`{"resourceType":"CarePlan","id":"cp-%s","status":"active","intent":"plan","subject":{"reference":"Patient/pat-%s"},"author":{"reference":"Organization/%s"}}`, x.k, x.k, x.provider))
		put(fmt.Sprintf(`{"resourceType":"Goal","id":"goal-%s","lifecycleStatus":"active","description":{"text":"tea"},"subject":{"reference":"Patient/pat-%s"}}`, x.k, x.k))
	}
}

// responsibleLA is the Patient extension naming the local authority
// responsible for the person (ONS/GSS code), which bounds councils.
func responsibleLA(code string) string {
	return `{"url":"https://community-recovery.example.org/fhir/StructureDefinition/Extension-CRS-ResponsibleLocalAuthority",` +
		`"valueCoding":{"system":"http://statistics.data.gov.uk/id/statistical-geography","code":"` + code + `"}}`
}

// record returns the id of the seeded record of a type for side k.
func record(typ, k string) string {
	return map[string]string{"Patient": "pat-", "ServiceRequest": "sr-", "EpisodeOfCare": "ep-", "CarePlan": "cp-", "Goal": "goal-", "Encounter": "enc-"}[typ] + k
}

// newRecord is a new resource of typ about side k (for create).
func newRecord(typ, k string) string {
	org := map[string]string{"a": "org-rkb", "b": "org-rrk"}[k]
	prov := map[string]string{"a": "org-p1", "b": "org-p2"}[k]
	switch typ {
	case "Patient":
		return `{"resourceType":"Patient","extension":[` + responsibleLA("E10000031") + `],"name":[{"family":"New"}],"address":[{"state":"Warwickshire"}]}`
	case "ServiceRequest":
		return fmt.Sprintf(`{"resourceType":"ServiceRequest","status":"draft","intent":"plan","subject":{"reference":"Patient/pat-%s"},"requester":{"reference":"Organization/%s"},"performer":[{"reference":"Organization/%s"}]}`, k, org, prov)
	case "EpisodeOfCare":
		return fmt.Sprintf(`{"resourceType":"EpisodeOfCare","status":"planned","patient":{"reference":"Patient/pat-%s"},"managingOrganization":{"reference":"Organization/%s"}}`, k, prov)
	case "CarePlan":
		return fmt.Sprintf(`{"resourceType":"CarePlan","status":"draft","intent":"plan","subject":{"reference":"Patient/pat-%s"},"author":{"reference":"Organization/%s"}}`, k, prov)
	case "Goal":
		return fmt.Sprintf(`{"resourceType":"Goal","lifecycleStatus":"proposed","description":{"text":"walk"},"subject":{"reference":"Patient/pat-%s"}}`, k)
	case "Encounter":
		return fmt.Sprintf(`{"resourceType":"Encounter","status":"planned","class":{"code":"HH"},"subject":{"reference":"Patient/pat-%s"}}`, k)
	}
	return ""
}

// allowed is the policy the matrix expects, written out independently of
// auth/policy.json: may role use interaction on the own ("a") or other ("b")
// record of typ?
func allowed(role, typ, interaction string, own bool) bool {
	read := interaction == "read" || interaction == "search" || interaction == "vread" || interaction == "history"
	switch role {
	case "auditor":
		return read
	case "acute-rkb":
		switch {
		case read:
			return own && typ != "CarePlan" && typ != "Goal"
		case interaction == "create":
			return typ == "Patient" || typ == "Encounter" || (typ == "ServiceRequest" && own)
		case interaction == "update":
			return own && typ == "ServiceRequest"
		}
	case "provider-p1":
		switch {
		case read:
			return own
		case interaction == "create":
			return own && (typ == "CarePlan" || typ == "Encounter" || typ == "Goal")
		case interaction == "update":
			// its visit import links its client references to its people;
			// its care plans carry the person's goals
			return own && (typ == "CarePlan" || typ == "Encounter" || typ == "Patient" || typ == "Goal")
		}
	case "therapy-t1":
		switch {
		case read:
			return own
		case interaction == "create":
			return own && (typ == "Goal" || typ == "Encounter")
		case interaction == "update":
			return own && (typ == "Goal" || typ == "Encounter" || typ == "ServiceRequest" || typ == "Patient")
		}
	case "council-w":
		switch {
		case read:
			return own
		case interaction == "create" && typ == "Patient":
			return true // the new Patient's address is in Warwickshire, whichever side
		case interaction == "create", interaction == "update":
			// its residents' episodes, and their Patients (its CLD import)
			return own && (typ == "EpisodeOfCare" || typ == "Patient")
		}
	}
	return false
}

// TestAccessMatrix: role × type × interaction × own/other record, against the
// real provider's tokens. A refused case must be 403 (or a search without the
// record); an allowed one must succeed. No response of a refused case may carry
// the record.
func TestAccessMatrix(t *testing.T) {
	r := startRegion(t)
	r.seed(t)
	roles := []string{"acute-rkb", "provider-p1", "therapy-t1", "council-w", "auditor"}
	types := []string{"Patient", "ServiceRequest", "EpisodeOfCare", "CarePlan", "Goal", "Encounter"}
	interactions := []string{"read", "search", "vread", "history", "update", "create"}
	cases, leaks := 0, 0
	for _, role := range roles {
		for _, typ := range types {
			for _, in := range interactions {
				for _, k := range []string{"a", "b"} {
					own := k == "a"
					want := allowed(role, typ, in, own)
					id := record(typ, k)
					var status int
					var body string
					switch in {
					case "read":
						status, body = r.do(t, role, "GET", "/"+typ+"/"+id, "")
					case "search":
						status, body = r.do(t, role, "GET", "/"+typ+"?_id="+id, "")
					case "vread":
						status, body = r.do(t, role, "GET", "/"+typ+"/"+id+"/_history/1", "")
					case "history":
						status, body = r.do(t, role, "GET", "/"+typ+"/"+id+"/_history", "")
					case "update":
						_, cur := r.do(t, "admin", "GET", "/"+typ+"/"+id, "")
						status, body = r.do(t, role, "PUT", "/"+typ+"/"+id, cur)
					case "create":
						status, body = r.do(t, role, "POST", "/"+typ, newRecord(typ, k))
					}
					cases++
					got := status < 300
					if in == "search" && status == 200 {
						got = strings.Contains(body, `"total":1`)
					}
					if got != want {
						t.Errorf("%s %s %s %s record: status %d, allowed %v, want %v: %.300s", role, in, typ, k, status, got, want, body)
					}
					if !want && status >= 400 && status != 403 && status != 401 {
						t.Errorf("%s %s %s %s record: refused with %d, want 403", role, in, typ, k, status)
					}
					if !want && in != "create" && strings.Contains(body, `"id":"`+id+`"`) {
						leaks++
						t.Errorf("LEAK: %s %s %s %s: %.300s", role, in, typ, k, body)
					}
				}
			}
		}
	}
	if cases < 300 {
		t.Errorf("only %d cases", cases)
	}
	t.Logf("%d access cases, %d leaks", cases, leaks)
}

// TestAttacks: bad tokens are 401 and bounded callers learn nothing of other
// records through includes, chains, _has, history, $everything or bundles;
// every refusal is audited.
func TestAttacks(t *testing.T) {
	r := startRegion(t)
	r.seed(t)
	now := time.Now()
	claims := func(mod func(map[string]any)) map[string]any {
		c := map[string]any{"iss": r.idp.Issuer, "aud": r.base, "sub": "admin", "client_id": "admin", "scope": "system/*.cruds",
			"crs_role": "admin", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "attack"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(&r.idp.SigningKey.PublicKey)
	valid := r.idp.Sign(t, claims(nil), r.idp.SigningKey, jose.RS256, r.idp.KeyID)
	if status, body := r.do(t, valid, "GET", "/Patient", ""); status != 200 {
		t.Fatalf("a well-made token must work: %d %s", status, body)
	}
	parts := strings.Split(valid, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"sub":"admin"`, `"sub":"root!"`, 1))) + "." + parts[2]
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	none := header + "." + parts[1] + "."
	bad := map[string]string{
		"expired":                   r.idp.Sign(t, claims(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Minute).Unix() }), r.idp.SigningKey, jose.RS256, r.idp.KeyID),
		"not yet valid":             r.idp.Sign(t, claims(func(c map[string]any) { c["nbf"] = now.Add(10 * time.Minute).Unix() }), r.idp.SigningKey, jose.RS256, r.idp.KeyID),
		"wrong issuer":              r.idp.Sign(t, claims(func(c map[string]any) { c["iss"] = "http://127.0.0.1:1/evil" }), r.idp.SigningKey, jose.RS256, r.idp.KeyID),
		"wrong audience":            r.idp.Sign(t, claims(func(c map[string]any) { c["aud"] = "https://other.example/fhir" }), r.idp.SigningKey, jose.RS256, r.idp.KeyID),
		"alg none":                  none,
		"HS256 with the public key": r.idp.Sign(t, claims(nil), pubDER, jose.HS256, r.idp.KeyID),
		"unknown kid":               r.idp.Sign(t, claims(nil), other, jose.RS256, "not-a-key"),
		"wrong key":                 r.idp.Sign(t, claims(nil), other, jose.RS256, r.idp.KeyID),
		"tampered":                  tampered,
		"garbage":                   "not.a.token",
	}
	refusals := 0
	for name, tok := range bad {
		status, body := r.do(t, tok, "GET", "/Patient", "")
		if status != 401 || !strings.Contains(body, "OperationOutcome") {
			t.Errorf("%s: %d %s", name, status, body)
		}
		refusals++
	}
	// A token in the query string is refused even when valid.
	if status, _ := r.do(t, "", "GET", "/Patient?access_token="+r.tokens["admin"], ""); status != 401 {
		t.Errorf("token in the query: %d", status)
	}
	refusals++
	// Scope escalation: a read-only token cannot create, even for an admin role.
	if status, body := r.do(t, "reader", "POST", "/Goal", newRecord("Goal", "a")); status != 403 {
		t.Errorf("scope escalation: %d %s", status, body)
	}
	refusals++
	// Bounded callers: nothing of the b records through any path.
	for _, c := range []struct {
		who, method, path, body string
		status                  int
	}{
		{"provider-p1", "GET", "/Organization?_revinclude=ServiceRequest:performer", "", 200},
		{"provider-p1", "GET", "/ServiceRequest?_include=ServiceRequest:subject&_include=ServiceRequest:encounter", "", 200},
		{"provider-p1", "GET", "/Goal?subject:Patient.address-state=Coventry", "", 200},
		{"provider-p1", "GET", "/ServiceRequest?subject.identifier=9449305552", "", 200},
		{"provider-p1", "GET", "/Patient?_has:Goal:subject:lifecycle-status=active", "", 200},
		{"provider-p1", "GET", "/Patient?_has:ServiceRequest:subject:requester.identifier=RRK", "", 200},
		{"provider-p1", "GET", "/Patient/pat-a/$everything", "", 200},
		{"provider-p1", "GET", "/EpisodeOfCare/ep-b/$everything", "", 403},
		{"provider-p1", "GET", "/CarePlan/cp-b/_history", "", 403},
		{"provider-p1", "GET", "/CarePlan/_history", "", 403},
		{"provider-p1", "GET", "/_history", "", 403},
		{"provider-p1", "GET", "/Patient/pat-b/CarePlan", "", 200},
		{"provider-p1", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"CarePlan/cp-b"}}]}`, 403},
		{"provider-p1", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"CarePlan","id":"cp-b","status":"revoked","intent":"plan","subject":{"reference":"Patient/pat-b"}},"request":{"method":"PUT","url":"CarePlan/cp-b"}}]}`, 403},
		{"provider-p1", "POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Goal?_id=goal-b"}}]}`, 200},
		{"provider-p1", "DELETE", "/CarePlan?_id=cp-b", "", 403},
		{"provider-p1", "PATCH", "/CarePlan/cp-b", `[{"op":"replace","path":"/status","value":"revoked"}]`, 403},
		{"acute-rrk", "POST", "/ServiceRequest", newRecord("ServiceRequest", "a"), 403},
		{"council-c", "GET", "/Goal", "", 200},
		{"council-c", "GET", "/EpisodeOfCare?patient.address-state=Warwickshire", "", 200},
		// Through a type it may not search (a council has no Groups): refused
		// when named, nothing from it when the chain may reach several types.
		{"council-c", "GET", "/Goal?subject.identifier=9449305552", "", 200},
		{"council-c", "GET", "/Goal?subject:Group.identifier=9449305552", "", 403},
	} {
		status, body := r.do(t, c.who, c.method, c.path, c.body)
		if status != c.status {
			t.Errorf("%s %s %s: %d, want %d: %.300s", c.who, c.method, c.path, status, c.status, body)
		}
		for _, id := range []string{"pat-b", "sr-b", "ep-b", "cp-b", "goal-b", "enc-b"} {
			if c.who == "council-c" {
				id = strings.Replace(id, "-b", "-a", 1)
			}
			if strings.Contains(body, `"id":"`+id+`"`) || strings.Contains(body, `/`+id+`/_history`) {
				t.Errorf("LEAK of %s: %s %s %s: %.400s", id, c.who, c.method, c.path, body)
			}
		}
		if status >= 400 {
			refusals++
		}
	}
	// The conditional delete above matched nothing the caller may see: cp-b is intact.
	if status, _ := r.do(t, "admin", "GET", "/CarePlan/cp-b", ""); status != 200 {
		t.Errorf("cp-b was deleted through a hidden condition: %d", status)
	}
	// A conditional create against a hidden record does not reveal it: it creates.
	req, _ := http.NewRequest("POST", r.base+"/Patient", strings.NewReader(`{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}]}`))
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Authorization", "Bearer "+r.tokens["acute-rrk"])
	req.Header.Set("If-None-Exist", "identifier=https://fhir.nhs.uk/Id/nhs-number|9000000009")
	req.Header.Set("Prefer", "return=representation")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || strings.Contains(resp.Header.Get("Location"), "pat-a") {
		t.Errorf("conditional create against a hidden record: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var body string
	// Every refusal is in the audit trail, as a failure.
	_, body = r.do(t, "auditor", "GET", "/AuditEvent?outcome=4&_count=1", "")
	var b struct{ Total int }
	_ = json.Unmarshal([]byte(body), &b)
	if b.Total < refusals {
		t.Errorf("%d refusals, %d failures audited", refusals, b.Total)
	}
}

// TestPatientScopes checks SMART patient/ scopes against the real provider: a
// token whose role may read everything, but whose scopes are patient/*.rs for
// pat-a, sees pat-a's records and nothing else, by any route; a patient/ token
// without a patient sees nothing.
func TestPatientScopes(t *testing.T) {
	r := startRegion(t)
	r.seed(t)
	for _, c := range []struct {
		who, method, path, body string
		status                  int
		has, hasNot             string
	}{
		{"app-pat-a", "GET", "/Patient/pat-a", "", 200, `"pat-a"`, ""},
		{"app-pat-a", "GET", "/Patient/pat-b", "", 403, "", ""},
		{"app-pat-a", "GET", "/CarePlan", "", 200, "cp-a", "cp-b"},
		{"app-pat-a", "GET", "/CarePlan/cp-b", "", 403, "", ""},
		{"app-pat-a", "GET", "/ServiceRequest?subject=Patient/pat-b", "", 200, `"total":0`, "sr-b"},
		{"app-pat-a", "GET", "/Patient?_revinclude=Goal:subject", "", 200, "goal-a", "goal-b"},
		{"app-pat-a", "GET", "/Goal?subject:Patient.address-state=Coventry", "", 200, `"total":0`, "goal-b"},
		{"app-pat-a", "GET", "/Goal?subject:Patient.address-state=Warwickshire", "", 200, "goal-a", "goal-b"},
		{"app-pat-a", "GET", "/Patient?_has:CarePlan:subject:status=active", "", 200, "pat-a", "pat-b"},
		{"app-pat-a", "GET", "/EpisodeOfCare/ep-a/$everything", "", 200, `"id":"sr-a"`, `"resourceType":"Organization"`},
		{"app-pat-a", "GET", "/EpisodeOfCare/ep-b/$everything", "", 403, "", ""},
		{"app-pat-a", "GET", "/Patient/pat-b/CarePlan", "", 200, `"total":0`, "cp-b"},
		{"app-pat-a", "GET", "/CarePlan/cp-a/_history", "", 200, "cp-a", ""},
		{"app-pat-a", "GET", "/CarePlan/_history", "", 403, "", ""},
		{"app-pat-a", "GET", "/Organization/org-p1", "", 403, "", ""},
		{"app-pat-a", "POST", "/Goal", newRecord("Goal", "a"), 403, "", ""},
		{"app-no-patient", "GET", "/CarePlan", "", 403, "patient", ""},
		{"app-no-patient", "GET", "/Patient/pat-a", "", 403, "", ""},
	} {
		status, body := r.do(t, c.who, c.method, c.path, c.body)
		if status != c.status || (c.has != "" && !strings.Contains(body, c.has)) || (c.hasNot != "" && strings.Contains(body, c.hasNot)) {
			t.Errorf("%s %s %s: %d %s; want %d with %q and without %q", c.who, c.method, c.path, status, body, c.status, c.has, c.hasNot)
		}
		if status >= 400 && !strings.Contains(body, "OperationOutcome") {
			t.Errorf("%s %s %s: %d without an OperationOutcome", c.who, c.method, c.path, status)
		}
	}
}
