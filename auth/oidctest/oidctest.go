// Package oidctest starts a real OpenID Connect provider for tests: the npm
// package oidc-provider (installed by make test under auth/testdata/oidc) on
// 127.0.0.1, with one backend-service client per role. Tokens are obtained as a
// backend service would: client_credentials with a signed client assertion
// (private_key_jwt). Web clients (authorization code with PKCE) sign users in
// at the provider's development login form, where any login named in Users
// and any password are accepted. The provider stops when the test ends.
package oidctest

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Client is a registered backend service.
type Client struct {
	ID     string
	Scope  string         // the scopes it may ask for
	Claims map[string]any // extra claims in its access tokens (role, organisation …)
	key    *rsa.PrivateKey
}

// WebClient is a registered browser application: the authorization code
// flow, authenticated by Secret (client_secret_basic) or, when Secret is
// empty, by a signed assertion with Key (private_key_jwt, kid KeyID).
type WebClient struct {
	ID, Secret  string
	RedirectURL string
	Scope       string // the SMART scopes it may ask for (openid is added)
	Key         *rsa.PrivateKey
	KeyID       string
}

// Options are what the provider registers.
type Options struct {
	Clients    []*Client
	WebClients []*WebClient
	// Users are the people who may sign in, by login: the extra claims of
	// the access tokens issued for them (role, organisation …).
	Users map[string]map[string]any
}

// Provider is a running OpenID Connect provider.
type Provider struct {
	Issuer     string
	Audience   string
	SigningKey *rsa.PrivateKey // the provider's own token signing key
	KeyID      string
	clients    map[string]*Client
}

// Dir is where the provider script and its node_modules are.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "oidc")
}

// Start runs the provider for the given clients; tokens it issues carry
// audience aud.
func Start(t testing.TB, aud string, clients []*Client) *Provider {
	t.Helper()
	return StartWith(t, aud, Options{Clients: clients})
}

// StartWith runs the provider with backend clients, web clients and users.
func StartWith(t testing.TB, aud string, o Options) *Provider {
	t.Helper()
	clients := o.Clients
	dir := Dir()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		t.Fatalf("oidc-provider is not installed: run make test (it runs npm ci in %s)", dir)
	}
	signing, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{Audience: aud, SigningKey: signing, KeyID: "crs-test-signing", clients: map[string]*Client{}}
	scopes := map[string]bool{}
	var specs []any
	for _, c := range clients {
		if c.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		pub := jose.JSONWebKey{Key: &c.key.PublicKey, KeyID: c.ID + "-key", Algorithm: "RS384", Use: "sig"}
		specs = append(specs, map[string]any{"client_id": c.ID, "jwk": pub, "scope": c.Scope, "claims": c.Claims})
		for _, s := range strings.Fields(c.Scope) {
			scopes[s] = true
		}
		p.clients[c.ID] = c
	}
	var webSpecs []any
	for _, c := range o.WebClients {
		spec := map[string]any{"client_id": c.ID, "redirect_uri": c.RedirectURL, "scope": c.Scope}
		if c.Secret != "" {
			spec["client_secret"] = c.Secret
		} else {
			spec["jwk"] = jose.JSONWebKey{Key: &c.Key.PublicKey, KeyID: c.KeyID, Algorithm: "RS384", Use: "sig"}
		}
		webSpecs = append(webSpecs, spec)
		for _, s := range strings.Fields(c.Scope) {
			scopes[s] = true
		}
	}
	var scopeList []string
	for s := range scopes {
		scopeList = append(scopeList, s)
	}
	priv := jose.JSONWebKey{Key: signing, KeyID: p.KeyID, Algorithm: "RS256", Use: "sig"}
	conf := map[string]any{"audience": aud, "scopes": scopeList, "clients": specs, "signing_key": priv}
	if len(o.WebClients) > 0 {
		conf["web_clients"] = webSpecs
		conf["users"] = o.Users
	}
	cfg, _ := json.Marshal(conf)
	cfgFile := filepath.Join(t.TempDir(), "oidc.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(dir, "provider.mjs"), cfgFile)
	cmd.Dir = dir
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the OpenID provider (node): %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if port, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				lines <- port
			}
		}
	}()
	select {
	case port := <-lines:
		p.Issuer = "http://127.0.0.1:" + port
	case <-time.After(20 * time.Second):
		t.Fatal("the OpenID provider did not start within 20 s")
	}
	return p
}

// Token obtains an access token for a client by client_credentials with a
// signed client assertion.
func (p *Provider) Token(t testing.TB, clientID, scope string) string {
	t.Helper()
	tok, err := p.TryToken(clientID, scope)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TryToken is Token returning the provider's refusal as an error.
func (p *Provider) TryToken(clientID, scope string) (string, error) {
	c := p.clients[clientID]
	if c == nil {
		return "", fmt.Errorf("no client %q", clientID)
	}
	tokenURL := p.Issuer + "/token"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS384, Key: jose.JSONWebKey{Key: c.key, KeyID: c.ID + "-key"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	assertion, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: c.ID, Subject: c.ID, Audience: jwt.Audience{tokenURL}, ID: randomID(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)),
	}).Serialize()
	if err != nil {
		return "", err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
		"scope":                 {scope},
		"resource":              {p.Audience},
	}
	resp, err := http.PostForm(tokenURL, form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if out.AccessToken == "" {
		return "", fmt.Errorf("token for %s: %d %s %s", clientID, resp.StatusCode, out.Error, out.Description)
	}
	return out.AccessToken, nil
}

// ClientKey is the private key a client signs its assertions with, for tests
// of clients that obtain their own tokens (crs import --server).
func (p *Provider) ClientKey(clientID string) *rsa.PrivateKey {
	if c := p.clients[clientID]; c != nil {
		return c.key
	}
	return nil
}

// Sign makes a token with the provider's own key (or another), for attack
// tests: claims as given, header alg and kid as given.
func (p *Provider) Sign(t testing.TB, claims map[string]any, key any, alg jose.SignatureAlgorithm, kid string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}
