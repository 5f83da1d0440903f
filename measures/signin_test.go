package measures

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"crs/auth"
	"crs/auth/oidctest"
	"crs/auth/signin"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/server"
)

// greenwayNurse is a care provider's user at the test provider: Greenway Care
// (ODS VDEM7, Organization demo-prov-greenway in the demo region).
var greenwayNurse = map[string]any{"crs_role": "care-provider", "crs_org": "VDEM7"}

// signInServer is crs serving eng's pages behind the browser sign-in of a
// real OpenID provider (web client authenticated by a secret, or by
// private_key_jwt when byKey), with a clock the test may move.
type signInServer struct {
	URL   string
	idp   *oidctest.Provider
	clock *atomic.Int64 // seconds added to the real time
}

func startSignInServer(t *testing.T, eng *engine.Engine, byKey bool) *signInServer {
	t.Helper()
	// The redirect URL is registered at the provider before crs starts, so
	// crs's address is taken first.
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	base := "http://" + srv.Listener.Addr().String()
	aud := base + "/fhir"
	web := &oidctest.WebClient{ID: "crs-pages", RedirectURL: base + "/mdt/callback", Scope: "user/*.rs"}
	var key *rsa.PrivateKey
	if byKey {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		web.Key = key
		if web.KeyID, err = signin.KeyID(key); err != nil {
			t.Fatal(err)
		}
	} else {
		web.Secret = "a-secret-for-the-test-only"
	}
	idp := oidctest.StartWith(t, aud, oidctest.Options{
		// A backend client too: the provider serves both kinds at once.
		Clients:    []*oidctest.Client{{ID: "greenway-system", Scope: "system/*.rs", Claims: greenwayNurse}},
		WebClients: []*oidctest.WebClient{web},
		Users:      map[string]map[string]any{"greenway-nurse": greenwayNurse, "no-role": {}},
	})
	ctx := context.Background()
	v, err := auth.NewVerifier(ctx, idp.Issuer, aud, auth.DefaultClaimNames)
	if err != nil {
		t.Fatal(err)
	}
	clock := new(atomic.Int64)
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load()) * time.Second) }
	cfg := signin.Config{Issuer: idp.Issuer, ClientID: web.ID, ClientSecret: web.Secret, RedirectURL: web.RedirectURL,
		Scopes: []string{"user/*.rs"}, Lifetime: time.Hour, Tokens: v, Now: now}
	if key != nil {
		cfg.ClientKey = key
	}
	si, err := signin.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(eng, "", func() time.Time { return testNow })
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = server.New(server.Config{Engine: eng, Measures: svc, Verifier: v, SignIn: si})
	srv.Start()
	return &signInServer{URL: base, idp: idp, clock: clock}
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func getWithCookie(t *testing.T, u, cookie string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: signin.SessionCookie, Value: cookie})
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// shownProviders counts the people of provider, and of the others, that a
// caseload page shows.
func shownProviders(t *testing.T, eng *engine.Engine, page, provider string) (own, others int) {
	t.Helper()
	cl, err := NewCaseloads(eng, "", func() time.Time { return testNow }).Caseload(adminCtx(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range cl.Rows {
		if !strings.Contains(page, `data-referral="`+r.Referral.ID+`"`) {
			continue
		}
		if r.Referral.Provider == provider {
			own++
		} else {
			others++
		}
	}
	return own, others
}

// TestSignInInBrowser: in headless Chromium, a care provider's user opens the
// page, is sent to the real OpenID provider, signs in (authorization code with
// PKCE) and sees its own provider's people only; the session cookie is
// HttpOnly and SameSite=Lax; signing out ends the session (its cookie is then
// refused), as does its expiry; without a session the page sends the browser
// to sign in, and a forged session cookie is refused.
func TestSignInInBrowser(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (make test installs it)")
	}
	eng := small(t)
	s := startSignInServer(t, eng, false)

	// Without a session: sent to sign in, coming back to the page asked for.
	code, h, _ := getWithCookie(t, s.URL+"/?locality=rugby", "")
	if code != http.StatusFound || h.Get("Location") != "/mdt/signin?next=%2F%3Flocality%3Drugby" {
		t.Errorf("no session: %d to %q", code, h.Get("Location"))
	}
	// A forged session: refused, nothing of the caseload shown.
	code, _, body := getWithCookie(t, s.URL+"/", "forged-session-value")
	if code != http.StatusUnauthorized || !strings.Contains(body, "session has ended or is not valid") || strings.Contains(body, "data-referral") {
		t.Errorf("forged session: %d\n%s", code, body)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	// The page sends the browser to the provider's sign-in form.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)),
	); err != nil {
		t.Fatal(err)
	}
	at, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(at, s.idp.Issuer+"/") {
		t.Fatalf("the sign-in form is at %s, not at the provider %s", at, s.idp.Issuer)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), "greenway-nurse"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#caseload")),
	); err != nil {
		t.Fatal(err)
	}
	at, err = chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if at != s.URL+"/" {
		t.Errorf("after sign-in the browser is at %s", at)
	}
	page, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	user, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#user")))
	if err != nil {
		t.Fatal(err)
	}
	if user != "greenway-nurse" {
		t.Errorf("the page says it is signed in as %q", user)
	}
	if own, others := shownProviders(t, eng, page, "demo-prov-greenway"); own == 0 || others > 0 {
		t.Errorf("the signed-in care provider sees %d of its people and %d of other providers'", own, others)
	}
	other := ""
	cl, err := NewCaseloads(eng, "", func() time.Time { return testNow }).Caseload(adminCtx(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	other = otherReferral(t, cl, "demo-prov-greenway")
	for _, r := range cl.Rows {
		if r.Referral.ID == other && strings.Contains(page, r.Name) {
			t.Errorf("another provider's person %q is on the page", r.Name)
		}
	}

	var cookies network.GetCookiesResult
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		cookies, err = cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{s.URL + "/"}})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, c := range cookies.Cookies {
		if c.Name == signin.SessionCookie {
			session = c
		}
		if c.Name == "crs_signin" {
			t.Errorf("the login cookie outlived the sign-in")
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	if !session.HTTPOnly || session.SameSite != network.CookieSameSiteLax || session.Secure || session.Path != "/" {
		t.Errorf("session cookie: HttpOnly %v, SameSite %s, Secure %v (loopback), Path %s", session.HTTPOnly, session.SameSite, session.Secure, session.Path)
	}
	// The same session from another client is the same caller.
	if code, _, body := getWithCookie(t, s.URL+"/", session.Value); code != 200 {
		t.Errorf("the session from another client: %d %s", code, body)
	} else if own, others := shownProviders(t, eng, body, "demo-prov-greenway"); own == 0 || others > 0 {
		t.Errorf("the session from another client sees %d own, %d others'", own, others)
	}

	// Sign out: the page says so, and the old cookie is refused.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form.signout button`)),
		// the signed-out page's link (h1 is on the caseload page too)
		chromedp.WaitVisible(chromedp.CSS(`a[href="/mdt/signin"]`)),
	); err != nil {
		t.Fatal(err)
	}
	h1, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	if err != nil {
		t.Fatal(err)
	}
	if h1 != "Signed out" {
		t.Errorf("after sign-out the page says %q", h1)
	}
	if got := authEvents(t, eng, "110123"); len(got) == 0 || !strings.Contains(got[len(got)-1], `"display":"Logout"`) || strings.Contains(got[len(got)-1], "unauthenticated caller") {
		t.Errorf("no logout event naming the person: %.400s", got)
	}
	if code, _, body := getWithCookie(t, s.URL+"/", session.Value); code != http.StatusUnauthorized || strings.Contains(body, "data-referral") {
		t.Errorf("a signed-out session: %d", code)
	}

	// Sign in again (the provider remembers the person), then let the
	// session expire: the page refuses it and offers to sign in.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/mdt/signin"),
		chromedp.WaitVisible(chromedp.CSS("#caseload")),
	); err != nil {
		t.Fatal(err)
	}
	s.clock.Add(int64(time.Hour/time.Second) + 1)
	if err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#signin`)),
	); err != nil {
		t.Fatal(err)
	}
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(".message")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "session has ended") {
		t.Errorf("an expired session: %q", msg)
	}
}

// TestSignInFlow drives the sign-in without a browser (a cookie jar and the
// provider's form): with private_key_jwt client authentication, a user whose
// token carries no role sees nobody, a callback whose state does not match is
// refused, and a redirect back to another site is not followed.
func TestSignInFlow(t *testing.T) {
	eng := small(t)
	s := startSignInServer(t, eng, true)

	signIn := func(login, next string) (*http.Client, int, string) {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		resp, err := c.Get(s.URL + "/mdt/signin?next=" + url.QueryEscape(next))
		if err != nil {
			t.Fatal(err)
		}
		form, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`action="([^"]+)"`).FindSubmatch(form)
		if m == nil {
			t.Fatalf("no sign-in form at the provider: %s", form)
		}
		action, _ := url.Parse(strings.ReplaceAll(string(m[1]), "&amp;", "&"))
		resp, err = c.PostForm(resp.Request.URL.ResolveReference(action).String(), url.Values{"prompt": {"login"}, "login": {login}, "password": {"x"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return c, resp.StatusCode, resp.Request.URL.String() + "\n" + string(b)
	}

	logins := authEvents(t, eng, "110122")
	c, code, body := signIn("greenway-nurse", "/?locality=rugby")
	if code != 200 || !strings.HasPrefix(body, s.URL+"/?locality=rugby\n") {
		t.Fatalf("sign-in with private_key_jwt: %d %s", code, body)
	}
	// The sign-in is in the audit trail: a BALP login event naming the person.
	if got := authEvents(t, eng, "110122"); len(got) != len(logins)+1 || !strings.Contains(got[len(got)-1], `"value":"greenway-nurse"`) || !strings.Contains(got[len(got)-1], `"outcome":"0"`) {
		t.Errorf("login events: %d before, %d after; last %.400s", len(logins), len(got), got[len(got)-1:])
	}
	if own, others := shownProviders(t, eng, body, "demo-prov-greenway"); others > 0 {
		t.Errorf("the care provider sees %d of its people and %d of other providers'", own, others)
	}
	// The session's caller is bounded like the API's: another provider's
	// person's timeline is refused.
	cl, err := NewCaseloads(eng, "", func() time.Time { return testNow }).Caseload(adminCtx(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(s.URL + "/mdt/timeline/" + otherReferral(t, cl, "demo-prov-greenway"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("another provider's timeline: %d", resp.StatusCode)
	}

	// A user with no role: signed in, but sees no one.
	_, code, body = signIn("no-role", "/")
	if code == 200 && strings.Contains(body, "data-referral") {
		t.Errorf("a user with no role sees people")
	}

	// Somewhere else to go back to: the page itself instead.
	_, code, body = signIn("greenway-nurse", "//evil.example/steal")
	if code != 200 || !strings.HasPrefix(body, s.URL+"/\n") {
		t.Errorf("next=//evil.example: %d %.200s", code, body)
	}

	// A callback whose state does not match the login cookie is refused.
	jar, _ := cookiejar.New(nil)
	c = &http.Client{Jar: jar, CheckRedirect: noRedirect.CheckRedirect}
	resp, err = c.Get(s.URL + "/mdt/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	for _, p := range []string{"state", "nonce", "code_challenge"} {
		if q.Get(p) == "" {
			t.Errorf("the authorization request has no %s", p)
		}
	}
	if q.Get("code_challenge_method") != "S256" {
		t.Errorf("code_challenge_method %q", q.Get("code_challenge_method"))
	}
	resp, err = c.Get(s.URL + "/mdt/callback?code=stolen&state=" + url.QueryEscape(q.Get("state")+"x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "state does not match") {
		t.Errorf("a callback with another state: %d %s", resp.StatusCode, b)
	}
	// A refused sign-in is recorded too, as a failed login of nobody known.
	if got := authEvents(t, eng, "110122"); !strings.Contains(got[len(got)-1], `"outcome":"4"`) || !strings.Contains(got[len(got)-1], "unauthenticated caller") {
		t.Errorf("the refused sign-in's event: %.400s", got[len(got)-1:])
	}
	for _, ck := range jar.Cookies(loc) {
		if ck.Name == signin.SessionCookie {
			t.Errorf("a refused callback made a session")
		}
	}
}

// authEvents returns the AuditEvents of user authentication with DICOM
// subtype code (110122 login, 110123 logout), oldest first, as JSON.
func authEvents(t *testing.T, eng *engine.Engine, code string) []string {
	t.Helper()
	var out []string
	err := searchAll(adminCtx(), eng, "AuditEvent", []fhir.RawParam{{Name: "subtype", Value: "http://dicom.nema.org/resources/ontology/DCM|" + code}, {Name: "_sort", Value: "date"}}, func(o map[string]any) {
		b, _ := json.Marshal(o)
		out = append(out, string(b))
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
