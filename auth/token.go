// Package auth is access to the shared record: bearer tokens from the region's
// OpenID Connect provider (verified with go-oidc), SMART v2 scopes, the access
// policy (data: per role, per type and permission, the search conditions that
// bound which records) and the audit trail's BALP events and hash chain.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"crs/fhir"
)

// ClaimNames say which token claims carry the caller's organisation (ODS code),
// role(s), local authority and SMART patient launch context.
type ClaimNames struct {
	Org, Role, LocalAuthority, Patient string
}

// DefaultClaimNames are the claim names used when none are configured.
var DefaultClaimNames = ClaimNames{Org: "crs_org", Role: "crs_role", LocalAuthority: "crs_la", Patient: "patient"}

// Principal is the verified caller of a request.
type Principal struct {
	Issuer, Subject, ClientID string
	Org                       string   // ODS code
	Roles                     []string // policy roles
	LocalAuthority            string
	Patient                   string // the SMART launch context's patient id: patient/ scopes are bounded to it
	JTI                       string
	Scopes                    []Scope
	Anonymous                 bool // development mode: no token, no policy
}

type principalKey struct{}

// WithPrincipal returns ctx carrying the caller.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller carried by ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Leeway is the clock skew allowed on exp and nbf.
const Leeway = 30 * time.Second

// Verifier verifies bearer access tokens: a JWT signed by the issuer (keys from
// its JWKS, fetched by discovery, cached and refreshed on an unknown kid),
// asymmetric algorithms only, iss and aud exact, exp and nbf with Leeway.
type Verifier struct {
	issuer   string
	verifier *oidc.IDTokenVerifier
	claims   ClaimNames
	now      func() time.Time
	provider *oidc.Provider

	mu    sync.Mutex
	cache map[[32]byte]verified // tokens verified already, until they expire
}

// verified is a token that passed verification, and when it stops being valid.
type verified struct {
	p   *Principal
	exp time.Time
}

// maxCached bounds the verified-token cache; it is emptied when full.
const maxCached = 10000

// NewVerifier discovers the issuer and prepares verification for tokens whose
// audience includes audience.
func NewVerifier(ctx context.Context, issuer, audience string, claims ClaimNames) (*Verifier, error) {
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("OpenID Connect discovery at %s: %w", issuer, err)
	}
	v := &Verifier{issuer: issuer, claims: claims, now: time.Now, provider: provider, cache: map[[32]byte]verified{}}
	v.verifier = provider.Verifier(&oidc.Config{
		ClientID:             audience,
		SupportedSigningAlgs: []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA},
		SkipExpiryCheck:      true, // checked below, with a small leeway on both exp and nbf
	})
	return v, nil
}

// Endpoints returns the issuer's discovery document fields crs advertises.
func (v *Verifier) Endpoints() map[string]any {
	var m map[string]any
	_ = v.provider.Claims(&m)
	return m
}

// Issuer is the verified issuer URL.
func (v *Verifier) Issuer() string { return v.issuer }

// ErrNoToken is returned when a request carries no bearer token.
var ErrNoToken = errors.New("no bearer token")

// Verify checks a raw access token and returns the caller it names. A token
// verified before is answered from a cache until its exp (signature checks
// are the costly part; a JWT cannot change without changing its bytes).
func (v *Verifier) Verify(ctx context.Context, raw string) (*Principal, error) {
	key := sha256.Sum256([]byte(raw))
	v.mu.Lock()
	hit, ok := v.cache[key]
	v.mu.Unlock()
	if ok && v.now().Before(hit.exp) {
		return hit.p, nil
	}
	p, exp, err := v.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.cache) >= maxCached {
		clear(v.cache)
	}
	v.cache[key] = verified{p: p, exp: exp}
	v.mu.Unlock()
	return p, nil
}

func (v *Verifier) verify(ctx context.Context, raw string) (*Principal, time.Time, error) {
	tok, err := v.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, time.Time{}, err
	}
	var c map[string]any
	if err := tok.Claims(&c); err != nil {
		return nil, time.Time{}, err
	}
	now := v.now()
	exp, hasExp := number(c["exp"])
	if !hasExp {
		return nil, time.Time{}, errors.New("the token has no exp")
	}
	if now.After(time.Unix(exp, 0).Add(Leeway)) {
		return nil, time.Time{}, fmt.Errorf("the token expired at %s", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	if nbf, ok := number(c["nbf"]); ok && now.Add(Leeway).Before(time.Unix(nbf, 0)) {
		return nil, time.Time{}, fmt.Errorf("the token is not valid before %s", time.Unix(nbf, 0).UTC().Format(time.RFC3339))
	}
	p := &Principal{Issuer: tok.Issuer, Subject: tok.Subject}
	p.ClientID, _ = c["client_id"].(string)
	if p.ClientID == "" {
		p.ClientID, _ = c["azp"].(string)
	}
	if p.ClientID == "" {
		p.ClientID = tok.Subject
	}
	p.JTI, _ = c["jti"].(string)
	p.Org, _ = c[v.claims.Org].(string)
	p.LocalAuthority, _ = c[v.claims.LocalAuthority].(string)
	if v.claims.Patient != "" {
		p.Patient, _ = c[v.claims.Patient].(string)
	}
	switch r := c[v.claims.Role].(type) {
	case string:
		p.Roles = strings.Fields(r)
	case []any:
		for _, x := range r {
			if s, ok := x.(string); ok {
				p.Roles = append(p.Roles, s)
			}
		}
	}
	scope, _ := c["scope"].(string)
	if scope == "" {
		if list, ok := c["scp"].([]any); ok {
			var parts []string
			for _, x := range list {
				if s, ok := x.(string); ok {
					parts = append(parts, s)
				}
			}
			scope = strings.Join(parts, " ")
		}
	}
	p.Scopes = ParseScopes(scope)
	valid := time.Unix(exp, 0).Add(Leeway)
	if nbf, ok := number(c["nbf"]); ok && now.Add(Leeway).Before(time.Unix(nbf, 0)) {
		valid = now // not cached: it is refused above anyway
	}
	return p, valid, nil
}

func number(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		return int64(n), true
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

// LoginError is the error of a missing or bad token (HTTP 401).
func LoginError(format string, args ...any) *fhir.Error {
	return fhir.Errorf(fhir.Unauthorized, "", format, args...)
}
