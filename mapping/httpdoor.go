package mapping

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"crs/fhir"
)

// HTTPDoor is a Door into a running crs over HTTP, with a bearer token from
// Token (nil: no token, a development-mode server).
type HTTPDoor struct {
	Base   string // the server's FHIR base, e.g. https://crs.example.org/fhir
	Client *http.Client
	Token  *ClientCredentials
}

func (d *HTTPDoor) do(ctx context.Context, method, u string, body []byte, header map[string]string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if d.Token != nil {
		tok, err := d.Token.AccessToken(ctx)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	client := d.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		return nil, outcomeError(resp.StatusCode, data)
	}
	return data, nil
}

// outcomeError turns an error answer (an OperationOutcome) into a *fhir.Error.
func outcomeError(status int, data []byte) error {
	kind := fhir.Invalid
	switch {
	case status == http.StatusUnauthorized:
		kind = fhir.Unauthorized
	case status == http.StatusForbidden:
		kind = fhir.Forbidden
	case status == http.StatusNotFound:
		kind = fhir.NotFound
	case status == http.StatusConflict:
		kind = fhir.Conflict
	case status == http.StatusPreconditionFailed:
		kind = fhir.PreconditionFailed
	case status == http.StatusUnprocessableEntity:
		kind = fhir.Unprocessable
	case status >= 500:
		kind = fhir.Unavailable
	}
	var oo struct {
		Issue []struct {
			Diagnostics string   `json:"diagnostics"`
			Expression  []string `json:"expression"`
		} `json:"issue"`
	}
	_ = json.Unmarshal(data, &oo)
	var parts []string
	for _, is := range oo.Issue {
		parts = append(parts, is.Diagnostics)
	}
	if len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("the server answered %d", status))
	}
	return fhir.Errorf(kind, "", "%s", strings.Join(parts, "; "))
}

// Search implements Door.
func (d *HTTPDoor) Search(ctx context.Context, rt, query string) ([]Current, error) {
	// POST _search: an OR-list of a batch's identifiers is longer than some
	// proxies let a URL be.
	data, err := d.do(ctx, http.MethodPost, strings.TrimRight(d.Base, "/")+"/"+rt+"/_search", []byte(query),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if err != nil {
		return nil, err
	}
	var b struct {
		Link []struct {
			Relation string `json:"relation"`
		} `json:"link"`
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
			Search   *struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("search %s: %v", rt, err)
	}
	for _, l := range b.Link {
		if l.Relation == "next" {
			return nil, fmt.Errorf("search %s?%s matched more than one page: too many candidates to match safely", rt, query)
		}
	}
	var out []Current
	for _, e := range b.Entry {
		if e.Search != nil && e.Search.Mode != "match" {
			continue
		}
		c, err := currentOf(e.Resource)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Transaction implements Door.
func (d *HTTPDoor) Transaction(ctx context.Context, entries []Entry) ([]EntryResult, error) {
	body, err := TransactionBundle(entries)
	if err != nil {
		return nil, err
	}
	data, err := d.do(ctx, http.MethodPost, strings.TrimRight(d.Base, "/"), body, map[string]string{"Prefer": "return=minimal"})
	if err != nil {
		return nil, err
	}
	var b struct {
		Entry []struct {
			Response *struct {
				Status   string `json:"status"`
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("transaction response: %v", err)
	}
	out := make([]EntryResult, len(b.Entry))
	for i, e := range b.Entry {
		if e.Response != nil {
			out[i] = EntryResult{Status: e.Response.Status, Location: e.Response.Location}
		}
	}
	return out, nil
}

// ClientCredentials obtains access tokens as a SMART backend service:
// client_credentials with a private_key_jwt client assertion (RS384 or
// ES384), cached until shortly before they expire.
type ClientCredentials struct {
	TokenURL string
	ClientID string
	Key      crypto.Signer // *rsa.PrivateKey or *ecdsa.PrivateKey
	KeyID    string        // the kid of the key, when the provider needs one
	Scope    string
	Resource string // the audience asked for (the FHIR server), optional
	Client   *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

// AccessToken returns a valid access token, fetching a new one when needed.
func (c *ClientCredentials) AccessToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.expires) {
		return c.token, nil
	}
	alg := jose.RS384
	if _, ok := c.Key.(*ecdsa.PrivateKey); ok {
		alg = jose.ES384
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: c.Key, KeyID: c.KeyID}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	now := time.Now()
	assertion, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: c.ClientID, Subject: c.ClientID, Audience: jwt.Audience{c.TokenURL}, ID: hex.EncodeToString(jti),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)),
	}).Serialize()
	if err != nil {
		return "", err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
		"scope":                 {c.Scope},
	}
	if c.Resource != "" {
		form.Set("resource", c.Resource)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
	if out.AccessToken == "" {
		return "", fmt.Errorf("token from %s refused: %d %s %s", c.TokenURL, resp.StatusCode, out.Error, out.Description)
	}
	life := time.Duration(out.ExpiresIn) * time.Second
	if life <= 0 {
		life = 5 * time.Minute
	}
	c.token, c.expires = out.AccessToken, now.Add(life*9/10)
	return c.token, nil
}

// ReadKey reads a private key for client assertions: PEM (PKCS #8, PKCS #1 or
// SEC 1) or a JWK.
func ReadKey(path string) (crypto.Signer, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	if block, _ := pem.Decode(data); block != nil {
		if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, "", nil
			}
		}
		if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return k, "", nil
		}
		if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return k, "", nil
		}
		return nil, "", fmt.Errorf("%s: not an RSA or EC private key", path)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		return nil, "", fmt.Errorf("%s: neither PEM nor a JWK: %v", path, err)
	}
	switch k := jwk.Key.(type) {
	case *rsa.PrivateKey:
		return k, jwk.KeyID, nil
	case *ecdsa.PrivateKey:
		return k, jwk.KeyID, nil
	}
	return nil, "", errors.New(path + ": the JWK is not a private RSA or EC key")
}
