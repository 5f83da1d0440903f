package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"crs/audit"
	"crs/auth"
	"crs/auth/signin"
	"crs/fhir"
)

// PageSignIn is the browser sign-in of the MDT pages (implemented by
// *signin.SignIn).
type PageSignIn interface {
	Start(w http.ResponseWriter, r *http.Request, next string)
	Callback(w http.ResponseWriter, r *http.Request) (string, *auth.Principal, error)
	Principal(r *http.Request) (*auth.Principal, error)
	SignOut(w http.ResponseWriter, r *http.Request) string
	ClearSession(w http.ResponseWriter)
	CallbackPath() string
}

// signInPath starts a sign-in; signOutPath (POST) ends one.
const (
	signInPath  = "/mdt/signin"
	signOutPath = "/mdt/signout"
)

// signedInPage serves a page request under the browser sign-in: the sign-in
// and sign-out steps themselves, or the page as the session's caller. A
// request without a session is sent to sign in; one whose session has ended
// (expired, signed out, forged) is refused with a page that offers to sign in.
func (s *Server) signedInPage(c *gin.Context, ctx context.Context) {
	w, r := c.Writer, c.Request
	path := r.URL.Path
	switch {
	case path == signInPath && r.Method == http.MethodGet:
		s.signin.Start(w, r, r.URL.Query().Get("next"))
		return
	case path == s.signin.CallbackPath() && r.Method == http.MethodGet:
		next, p, err := s.signin.Callback(w, r)
		if err != nil {
			s.log.Warn("sign-in refused", "request_id", c.GetString("request_id"), "error", err.Error())
			if s.auditSignIn(c, ctx, audit.KindLogin, nil, fhir.Errorf(fhir.Unauthorized, "", "sign-in refused: %v", err)) {
				s.measures.Unauthenticated(w, r, "You are not signed in: "+err.Error()+".", signInPath)
			}
			return
		}
		if !s.auditSignIn(c, ctx, audit.KindLogin, p, nil) {
			// not recorded, so not signed in: the session just made is ended
			s.signin.SignOut(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	case path == signOutPath && r.Method == http.MethodPost:
		p, err := s.signin.Principal(r)
		end := s.signin.SignOut(w, r)
		if err == nil && !s.auditSignIn(c, ctx, audit.KindLogout, p, nil) {
			return
		}
		s.measures.SignedOut(w, r, end)
		return
	}
	p, err := s.signin.Principal(r)
	switch {
	case errors.Is(err, signin.ErrNoSession) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, signInPath+"?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusFound)
		return
	case err != nil:
		s.signin.ClearSession(w)
		s.measures.Unauthenticated(w, r, "Your session has ended or is not valid: sign in again.", signInPath)
		return
	}
	s.measures.ServeHTTP(w, r.WithContext(signin.WithSession(auth.WithPrincipal(ctx, p))))
}

// auditSignIn records a sign-in (refused when outcome is set) or a sign-out
// of p through the engine, as every door's events are. When it cannot be
// recorded it answers 503 itself and reports false.
func (s *Server) auditSignIn(c *gin.Context, ctx context.Context, kind string, p *auth.Principal, outcome *fhir.Error) bool {
	if p != nil {
		ctx = auth.WithPrincipal(ctx, p)
	}
	rec := audit.Record{Kind: kind, Interaction: kind, Action: "E", Outcome: outcome}
	if err := s.engine.Audit(ctx, rec); err != nil {
		s.log.Error("audit", "request_id", c.GetString("request_id"), "error", err.Error())
		c.Header("Cache-Control", "no-store")
		c.String(http.StatusServiceUnavailable, "The sign-in could not be recorded in the audit trail, so it did not happen. Try again later.")
		return false
	}
	return true
}
