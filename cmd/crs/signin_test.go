package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignInFlags: the browser sign-in's flags are checked together at start.
func TestSignInFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" = accepted
	}{
		{nil, ""},
		{[]string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "crs", "--oidc-client-secret", "s"}, ""},
		{[]string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "crs", "--oidc-client-key", "k.pem"}, ""},
		{[]string{"--oidc-client-id", "crs", "--oidc-client-secret", "s"}, "--oidc-client-id needs --oidc-issuer"},
		{[]string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "crs"}, "exactly one of"},
		{[]string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "crs", "--oidc-client-secret", "s", "--oidc-client-key", "k.pem"}, "exactly one of"},
		{[]string{"--oidc-issuer", "https://idp.example", "--oidc-client-secret", "s"}, "need --oidc-client-id"},
		{[]string{"--oidc-issuer", "https://idp.example", "--oidc-client-id", "crs", "--oidc-client-secret", "s", "--session-lifetime", "0s"}, "--session-lifetime"},
	} {
		_, err := parseServeFlags(c.args, io.Discard)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// TestReadSigner: the client key is read from PKCS#8 and SEC 1 PEM files; a
// file that is not a key is refused with a reason.
func TestReadSigner(t *testing.T) {
	dir := t.TempDir()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	sec1, _ := x509.MarshalECPrivateKey(k)
	files := map[string][]byte{
		"p8.pem":   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		"sec1.pem": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		"bad.pem":  []byte("not a key"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"p8.pem", "sec1.pem"} {
		if s, err := readSigner(filepath.Join(dir, name)); err != nil || !s.Public().(*ecdsa.PublicKey).Equal(&k.PublicKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := readSigner(filepath.Join(dir, "bad.pem")); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("bad.pem: %v", err)
	}
}
