// Package signin signs people in to crs's pages through the region's OpenID
// Connect provider: the authorization code flow with PKCE (golang.org/x/oauth2,
// ID token verified with go-oidc). The login's state, nonce and PKCE verifier
// travel in a short-lived encrypted cookie; a signed-in person holds a
// server-side session named by a random HttpOnly cookie. The session's caller is
// the principal the API would make of the access token the provider issued for
// crs (auth.Verifier: the same claims, roles and scopes), so the pages show what
// that role may see through the API and no more.
package signin

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"crs/auth"
)

// TokenVerifier turns an access token into the API's caller (implemented by
// *auth.Verifier).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*auth.Principal, error)
}

// Config says how crs signs people in.
type Config struct {
	Issuer   string // the OpenID Connect issuer (discovered)
	ClientID string // crs's client at the issuer (a confidential web application)
	// ClientSecret authenticates crs at the token endpoint (client_secret_basic);
	// or ClientKey signs a client assertion (private_key_jwt, RS384 for RSA keys,
	// ES256/ES384 for P-256/P-384 keys, kid = the key's RFC 7638 thumbprint).
	// Exactly one of them.
	ClientSecret string
	ClientKey    crypto.Signer
	// RedirectURL is where the provider sends the browser back, registered at
	// the issuer: https://<host>/mdt/callback (http only on a loopback host).
	RedirectURL string
	// Scopes asked for beyond openid (the SMART scopes of the pages' reads).
	Scopes []string
	// Lifetime is how long a session lasts from sign-in.
	Lifetime time.Duration
	// Tokens verifies the access token into the caller.
	Tokens TokenVerifier
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// DefaultLifetime is a session's length when none is configured: a working day.
const DefaultLifetime = 8 * time.Hour

// loginTTL is how long a started sign-in may take at the provider.
const loginTTL = 10 * time.Minute

// maxSessions bounds the sessions held; past it, sign-in is refused until
// sessions expire or sign out.
const maxSessions = 100000

// Cookie names.
const (
	SessionCookie = "crs_session"
	loginCookie   = "crs_signin"
)

// Errors of a request's session.
var (
	// ErrNoSession: the request carries no session cookie.
	ErrNoSession = errors.New("not signed in")
	// ErrSessionEnded: the cookie names no live session (expired, signed
	// out, forged, or from before a restart).
	ErrSessionEnded = errors.New("the session has ended or is not valid")
)

// SignIn is the browser sign-in of one server.
type SignIn struct {
	cfg      Config
	oauth    oauth2.Config
	idTokens *oidc.IDTokenVerifier
	endURL   string // the provider's end_session_endpoint, if any
	tokenURL string
	secure   bool // cookies are Secure (the redirect URL is not on a loopback host)
	callback string
	aead     cipher.AEAD
	signer   jose.Signer
	now      func() time.Time

	mu       sync.Mutex
	sessions map[[32]byte]*session
}

type session struct {
	p       *auth.Principal
	idToken string
	expires time.Time
}

// login is what the login cookie carries between the redirect to the
// provider and the callback.
type login struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Next     string `json:"t"`
	Expires  int64  `json:"e"`
}

// New discovers the issuer and returns the sign-in for cfg.
func New(ctx context.Context, cfg Config) (*SignIn, error) {
	if cfg.ClientID == "" {
		return nil, errors.New("sign-in needs a client id")
	}
	if (cfg.ClientSecret == "") == (cfg.ClientKey == nil) {
		return nil, errors.New("sign-in needs exactly one of a client secret and a client key")
	}
	if cfg.Tokens == nil {
		return nil, errors.New("sign-in needs the access token verifier")
	}
	ru, err := url.Parse(cfg.RedirectURL)
	if err != nil || !ru.IsAbs() || ru.Host == "" {
		return nil, fmt.Errorf("the sign-in redirect URL %q is not an absolute URL", cfg.RedirectURL)
	}
	loopback := isLoopback(ru.Hostname())
	if ru.Scheme != "https" && !(ru.Scheme == "http" && loopback) {
		return nil, fmt.Errorf("the sign-in redirect URL %q must be https (http only on a loopback host)", cfg.RedirectURL)
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("OpenID Connect discovery at %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = provider.Claims(&meta)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &SignIn{
		cfg: cfg, endURL: meta.EndSession, tokenURL: provider.Endpoint().TokenURL, secure: !loopback, callback: ru.Path, aead: aead,
		now: cfg.Now, sessions: map[[32]byte]*session{},
		idTokens: provider.Verifier(&oidc.Config{ClientID: cfg.ClientID, Now: cfg.Now}),
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: provider.Endpoint(), RedirectURL: cfg.RedirectURL,
			Scopes: append([]string{oidc.ScopeOpenID}, cfg.Scopes...),
		},
	}
	if s.callback == "" {
		s.callback = "/"
	}
	if cfg.ClientKey != nil {
		s.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		if s.signer, err = assertionSigner(cfg.ClientKey); err != nil {
			return nil, err
		}
	} else {
		s.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	return s, nil
}

// CallbackPath is the path of the redirect URL, which the server routes to
// Callback.
func (s *SignIn) CallbackPath() string { return s.callback }

// Start sends the browser to the provider's sign-in, to come back to next (a
// path on this server) once signed in.
func (s *SignIn) Start(w http.ResponseWriter, r *http.Request, next string) {
	l := login{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(), Next: safeNext(next), Expires: s.now().Add(loginTTL).Unix()}
	plain, _ := json.Marshal(l)
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := s.aead.Seal(nonce, nonce, plain, []byte(loginCookie))
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: base64.RawURLEncoding.EncodeToString(sealed), Path: s.callback,
		MaxAge: int(loginTTL / time.Second), HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, s.oauth.AuthCodeURL(l.State, oidc.Nonce(l.Nonce), oauth2.S256ChallengeOption(l.Verifier)), http.StatusFound)
}

// Callback completes a sign-in: it checks the state against the login
// cookie, exchanges the code with the PKCE verifier, verifies the ID token
// and its nonce, verifies the access token as the API would, and starts a
// session. It returns the path to go back to and who signed in. Its errors
// are safe to show.
func (s *SignIn) Callback(w http.ResponseWriter, r *http.Request) (string, *auth.Principal, error) {
	l, err := s.readLogin(r)
	// The login cookie is used once, whatever happens.
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: s.callback, MaxAge: -1, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	if err != nil {
		return "", nil, err
	}
	q := r.URL.Query()
	if q.Get("state") == "" || q.Get("state") != l.State {
		return "", nil, errors.New("the sign-in's state does not match: start again")
	}
	if e := q.Get("error"); e != "" {
		return "", nil, fmt.Errorf("the identity provider did not sign you in (%s)", e)
	}
	code := q.Get("code")
	if code == "" {
		return "", nil, errors.New("the identity provider sent no authorization code")
	}
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(l.Verifier)}
	if s.signer != nil {
		assertion, err := s.assertion()
		if err != nil {
			return "", nil, fmt.Errorf("the client assertion could not be made: %w", err)
		}
		opts = append(opts, oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
			oauth2.SetAuthURLParam("client_assertion", assertion))
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	tok, err := s.oauth.Exchange(ctx, code, opts...)
	if err != nil {
		return "", nil, errors.New("the identity provider refused the authorization code")
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return "", nil, errors.New("the identity provider sent no ID token")
	}
	id, err := s.idTokens.Verify(ctx, rawID)
	if err != nil {
		return "", nil, fmt.Errorf("the ID token is not valid: %v", err)
	}
	if id.Nonce != l.Nonce {
		return "", nil, errors.New("the ID token's nonce does not match: start again")
	}
	p, err := s.cfg.Tokens.Verify(ctx, tok.AccessToken)
	if err != nil {
		return "", nil, fmt.Errorf("the access token the identity provider issued is not valid for this server: %v", err)
	}
	if p.Subject != id.Subject {
		return "", nil, errors.New("the access token and the ID token name different people")
	}
	sid := random()
	s.mu.Lock()
	now := s.now()
	if len(s.sessions) >= maxSessions {
		for k, v := range s.sessions {
			if !now.Before(v.expires) {
				delete(s.sessions, k)
			}
		}
	}
	full := len(s.sessions) >= maxSessions
	if !full {
		s.sessions[sha256.Sum256([]byte(sid))] = &session{p: p, idToken: rawID, expires: now.Add(s.cfg.Lifetime)}
	}
	s.mu.Unlock()
	if full {
		return "", nil, errors.New("too many people are signed in: try again later")
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: sid, Path: "/", MaxAge: int(s.cfg.Lifetime / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	return l.Next, p, nil
}

// Principal returns the signed-in caller of r: ErrNoSession without a session
// cookie, ErrSessionEnded when it names no live session.
func (s *SignIn) Principal(r *http.Request) (*auth.Principal, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return nil, ErrNoSession
	}
	key := sha256.Sum256([]byte(c.Value))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[key]
	if sess == nil {
		return nil, ErrSessionEnded
	}
	if !s.now().Before(sess.expires) {
		delete(s.sessions, key)
		return nil, ErrSessionEnded
	}
	return sess.p, nil
}

// SignOut ends r's session and clears its cookie. It returns the provider's
// end-session URL for the person's provider session ("" when the provider has
// none or there was no session).
func (s *SignIn) SignOut(w http.ResponseWriter, r *http.Request) string {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return ""
	}
	key := sha256.Sum256([]byte(c.Value))
	s.mu.Lock()
	sess := s.sessions[key]
	delete(s.sessions, key)
	s.mu.Unlock()
	if sess == nil || s.endURL == "" {
		return ""
	}
	v := url.Values{"id_token_hint": {sess.idToken}, "client_id": {s.cfg.ClientID}}
	return s.endURL + "?" + v.Encode()
}

// ClearSession removes a session cookie that names no live session.
func (s *SignIn) ClearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

func (s *SignIn) readLogin(r *http.Request) (login, error) {
	var l login
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return l, errors.New("this sign-in was not started here, or took too long: start again")
	}
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	n := s.aead.NonceSize()
	if err != nil || len(sealed) < n {
		return l, errors.New("the sign-in cookie is not valid: start again")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(loginCookie))
	if err != nil || json.Unmarshal(plain, &l) != nil {
		return l, errors.New("the sign-in cookie is not valid: start again")
	}
	if s.now().Unix() > l.Expires {
		return l, errors.New("the sign-in took too long: start again")
	}
	return l, nil
}

// assertion is a private_key_jwt client assertion for the token endpoint.
func (s *SignIn) assertion() (string, error) {
	now := s.now()
	return jwt.Signed(s.signer).Claims(jwt.Claims{
		Issuer: s.cfg.ClientID, Subject: s.cfg.ClientID, Audience: jwt.Audience{s.tokenURL}, ID: random(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(2 * time.Minute)),
	}).Serialize()
}

// assertionSigner signs client assertions with key: RS384 for RSA, ES256 or
// ES384 for P-256 or P-384; kid is the key's thumbprint.
func assertionSigner(key crypto.Signer) (jose.Signer, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *rsa.PrivateKey:
		alg = jose.RS384
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		default:
			return nil, errors.New("the client key's curve is not P-256 or P-384")
		}
	default:
		return nil, errors.New("the client key is not an RSA or EC key")
	}
	kid, err := KeyID(key)
	if err != nil {
		return nil, err
	}
	return jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
}

// KeyID is the kid crs puts on its client assertions: the RFC 7638 SHA-256
// thumbprint of the public key, base64url. Register the public key under it.
func KeyID(key crypto.Signer) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// safeNext keeps next only when it is a path on this server.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/"
	}
	return next
}

func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type sessionKey struct{}

// WithSession marks ctx as a request of a signed-in browser session (the pages
// then offer to sign out).
func WithSession(ctx context.Context) context.Context {
	return context.WithValue(ctx, sessionKey{}, true)
}

// InSession reports whether ctx is a request of a signed-in browser session.
func InSession(ctx context.Context) bool {
	v, _ := ctx.Value(sessionKey{}).(bool)
	return v
}
