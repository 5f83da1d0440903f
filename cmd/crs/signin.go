package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"crs/auth/signin"
	"crs/server"
)

// SignInConfig is the browser sign-in of the MDT pages (with --oidc-issuer).
type SignInConfig struct {
	ClientID     string        // crs's web client at the issuer; empty: no browser sign-in
	ClientSecret string        // client_secret_basic
	ClientKey    string        // PEM file of the private key for private_key_jwt
	RedirectURL  string        // default <base host>/mdt/callback
	Scopes       string        // asked for beyond openid
	Lifetime     time.Duration // of a session
}

// signInFlags registers the sign-in flags.
func signInFlags(fs *flag.FlagSet, c *SignInConfig, ev *envReader) {
	fs.StringVar(&c.ClientID, "oidc-client-id", ev.str("CRS_OIDC_CLIENT_ID", ""), "with --oidc-issuer: crs's web client id, to sign people in to the pages (authorization code + PKCE); none: the pages take bearer tokens only (CRS_OIDC_CLIENT_ID)")
	fs.StringVar(&c.ClientSecret, "oidc-client-secret", ev.str("CRS_OIDC_CLIENT_SECRET", ""), "the web client's secret; prefer the environment variable (CRS_OIDC_CLIENT_SECRET)")
	fs.StringVar(&c.ClientKey, "oidc-client-key", ev.str("CRS_OIDC_CLIENT_KEY", ""), "PEM file of the web client's private key, for private_key_jwt instead of a secret (CRS_OIDC_CLIENT_KEY)")
	fs.StringVar(&c.RedirectURL, "oidc-redirect-url", ev.str("CRS_OIDC_REDIRECT_URL", ""), "the sign-in redirect URL registered at the issuer; default <base URL's origin>/mdt/callback (CRS_OIDC_REDIRECT_URL)")
	fs.StringVar(&c.Scopes, "oidc-scopes", ev.str("CRS_OIDC_SCOPES", "user/*.rs"), "scopes the pages ask for beyond openid (CRS_OIDC_SCOPES)")
	fs.DurationVar(&c.Lifetime, "session-lifetime", ev.duration("CRS_SESSION_LIFETIME", signin.DefaultLifetime), "how long a page sign-in lasts (CRS_SESSION_LIFETIME)")
}

// checkSignIn checks the sign-in flags together.
func checkSignIn(cfg Config) error {
	c := cfg.SignIn
	if c.ClientID == "" {
		if c.ClientSecret != "" || c.ClientKey != "" || c.RedirectURL != "" {
			return errors.New("--oidc-client-secret, --oidc-client-key and --oidc-redirect-url need --oidc-client-id")
		}
		return nil
	}
	if cfg.OIDCIssuer == "" {
		return errors.New("--oidc-client-id needs --oidc-issuer")
	}
	if (c.ClientSecret == "") == (c.ClientKey == "") {
		return errors.New("--oidc-client-id needs exactly one of --oidc-client-secret (CRS_OIDC_CLIENT_SECRET) and --oidc-client-key")
	}
	if c.Lifetime <= 0 {
		return fmt.Errorf("--session-lifetime (CRS_SESSION_LIFETIME) must be a positive duration such as 8h, not %s", c.Lifetime)
	}
	return nil
}

// pageSignIn returns the browser sign-in for the pages, or nil when none is
// configured; tokens verifies the access tokens the issuer hands out.
func pageSignIn(ctx context.Context, c SignInConfig, issuer, base string, tokens signin.TokenVerifier) (server.PageSignIn, error) {
	if c.ClientID == "" {
		return nil, nil
	}
	redirect := c.RedirectURL
	if redirect == "" {
		u, err := url.Parse(base)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("no --oidc-redirect-url, and the base URL %q has no host", base)
		}
		redirect = u.Scheme + "://" + u.Host + "/mdt/callback"
	}
	if u, err := url.Parse(redirect); err != nil || u.Path != "/mdt/callback" {
		return nil, fmt.Errorf("--oidc-redirect-url %q must end in the path /mdt/callback, where crs receives the sign-in", redirect)
	}
	var key crypto.Signer
	if c.ClientKey != "" {
		k, err := readSigner(c.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("--oidc-client-key: %w", err)
		}
		key = k
	}
	s, err := signin.New(ctx, signin.Config{Issuer: issuer, ClientID: c.ClientID, ClientSecret: c.ClientSecret, ClientKey: key,
		RedirectURL: redirect, Scopes: strings.Fields(c.Scopes), Lifetime: c.Lifetime, Tokens: tokens})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// readSigner reads an RSA or EC private key from a PEM file (PKCS#8, PKCS#1
// or SEC 1).
func readSigner(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block in the file")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("the key cannot sign")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("not a PKCS#8, PKCS#1 or EC private key")
}
