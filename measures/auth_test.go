package measures

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"crs/auth"
	"crs/server"
)

// tokens is a TokenVerifier for tests: a fixed token per principal.
type tokens map[string]*auth.Principal

func (t tokens) Verify(_ context.Context, raw string) (*auth.Principal, error) {
	if p, ok := t[raw]; ok {
		return p, nil
	}
	return nil, errors.New("unknown token")
}

func (t tokens) Endpoints() map[string]any { return map[string]any{} }

// TestPagesWithAuthentication: with an issuer configured, the page needs a
// caller (a readable 401 page otherwise), and a care provider's caseload
// shows its own people only.
func TestPagesWithAuthentication(t *testing.T) {
	eng := small(t)
	svc, err := NewService(eng, "", func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	provider := &auth.Principal{Subject: "greenway", Org: "VDEM7", Roles: []string{"care-provider"}, Scopes: auth.ParseScopes("system/*.rs")}
	srv := httptest.NewServer(server.New(server.Config{Engine: eng, Measures: svc, Verifier: tokens{"greenway": provider}}))
	defer srv.Close()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/", ""); code != 401 || !strings.Contains(body, "Sign-in needed") {
		t.Errorf("no caller: %d %s", code, body)
	}
	if code, _ := get("/", "forged"); code != 401 {
		t.Errorf("a bad token: %d", code)
	}
	code, body := get("/", "greenway")
	if code != 200 {
		t.Fatalf("provider: %d %s", code, body)
	}
	cl, err := NewCaseloads(eng, "", func() time.Time { return testNow }).Caseload(adminCtx(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	own, others := 0, 0
	for _, r := range cl.Rows {
		shown := strings.Contains(body, `data-referral="`+r.Referral.ID+`"`)
		switch {
		case r.Referral.Provider == "demo-prov-greenway" && shown:
			own++
		case r.Referral.Provider != "demo-prov-greenway" && shown:
			others++
		}
	}
	if own == 0 || others > 0 {
		t.Errorf("the provider's page shows %d of its people and %d of other providers'", own, others)
	}
	// Another provider's person and a referral that does not exist get the
	// same refusal (the engine's rule for a caller whose reads are bounded).
	hidden, hiddenBody := get("/mdt/timeline/"+otherReferral(t, cl, "demo-prov-greenway"), "greenway")
	missing, missingBody := get("/mdt/timeline/no-such-referral", "greenway")
	if hidden != 403 || missing != hidden || hiddenBody != missingBody {
		t.Errorf("another provider's person: %d, a missing one: %d\n%s\n%s", hidden, missing, hiddenBody, missingBody)
	}
}

func otherReferral(t *testing.T, cl *Caseload, provider string) string {
	for _, r := range cl.Rows {
		if r.Referral.Provider != provider {
			return r.Referral.ID
		}
	}
	t.Fatal("no other provider's referral")
	return ""
}
