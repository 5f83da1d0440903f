package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
)

// TokenVerifier verifies bearer tokens (implemented by *auth.Verifier).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*auth.Principal, error)
	Endpoints() map[string]any
}

// authenticate attaches the caller to the request: verified from its bearer
// token, or anonymous in development mode (no verifier). The CapabilityStatement
// and the SMART configuration are public.
func (s *Server) authenticate(c *gin.Context, ctx context.Context) (context.Context, error) {
	q := c.Request.URL.Query()
	if q.Has("access_token") {
		return ctx, auth.LoginError("access tokens in the query string are refused: send them in the Authorization header")
	}
	if s.verifier == nil {
		return auth.WithPrincipal(ctx, &auth.Principal{Anonymous: true}), nil
	}
	h := c.GetHeader("Authorization")
	if h == "" && isPublic(c) {
		return ctx, nil
	}
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return ctx, auth.LoginError("this request needs an Authorization: Bearer <access token> header")
	}
	p, err := s.verifier.Verify(ctx, strings.TrimSpace(raw))
	if err != nil {
		return ctx, auth.LoginError("the access token is not valid: %v", err)
	}
	return auth.WithPrincipal(ctx, p), nil
}

func isPublic(c *gin.Context) bool {
	p := strings.TrimSuffix(c.Request.URL.Path, "/")
	return c.Request.Method == http.MethodGet && (p == "/fhir/metadata" || strings.HasSuffix(p, "/.well-known/smart-configuration"))
}

// smartConfiguration serves /.well-known/smart-configuration: where the issuer's
// endpoints are and what crs accepts (backend services with signed client
// assertions, SMART v2 and v1 scopes).
func (s *Server) smartConfiguration(c *gin.Context) reply {
	if s.verifier == nil {
		return fail(fhir.Errorf(fhir.NotFound, "", "this server runs without authentication (development mode): there is no authorization server"))
	}
	meta := s.verifier.Endpoints()
	conf := map[string]any{
		"grant_types_supported":                            []any{"client_credentials"},
		"token_endpoint_auth_methods_supported":            []any{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []any{"RS384", "ES384"},
		"scopes_supported": []any{"system/*.cruds", "system/*.rs", "system/Patient.rs", "system/ServiceRequest.crus", "system/CarePlan.crus",
			"system/Goal.crus", "system/Encounter.crus", "system/EpisodeOfCare.crus", "system/AuditEvent.rs", "user/*.rs", "patient/*.rs", "system/*.read", "system/*.write"},
		"capabilities": []any{"client-confidential-asymmetric", "permission-v2", "permission-v1", "permission-patient"},
	}
	for _, k := range []string{"issuer", "jwks_uri", "token_endpoint", "introspection_endpoint", "revocation_endpoint", "registration_endpoint"} {
		if v, ok := meta[k]; ok {
			conf[k] = v
		}
	}
	return reply{status: http.StatusOK, body: conf}
}

// auditRequest records the request's AuditEvent unless its write already did.
// If the AuditEvent cannot be written, the request is not answered with data.
func (s *Server) auditRequest(c *gin.Context, r reply) reply {
	ctx := c.Request.Context()
	if r.err == nil && engine.Audited(ctx) {
		return r
	}
	path := strings.Trim(strings.TrimPrefix(c.Request.URL.Path, "/fhir"), "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	rec := classify(c.Request.Method, seg)
	if r.err != nil {
		rec.Outcome = fhir.AsError(r.err)
	}
	if strings.HasPrefix(rec.Interaction, "search") || rec.Interaction == "operation" {
		rec.Query = c.Request.URL.RawQuery
	}
	if len(seg) >= 2 && fhir.Served(seg[0]) && !strings.HasPrefix(seg[1], "_") && !strings.HasPrefix(seg[1], "$") {
		rec.Entities = []string{seg[0] + "/" + seg[1]}
		if seg[0] == "Patient" {
			rec.Patient = "Patient/" + seg[1]
		}
	}
	if r.version != nil && r.err == nil {
		v := *r.version
		rec.Entities = []string{v.Type + "/" + v.ID + "/_history/" + strconv.Itoa(v.VersionID)}
		if rec.Patient == "" {
			rec.Patient = engine.PatientOf(v)
		}
	}
	if err := s.engine.Audit(ctx, rec); err != nil {
		s.log.Error("audit", "request_id", c.GetString("request_id"), "error", err.Error())
		return fail(fhir.Errorf(fhir.Unavailable, "", "the request could not be recorded in the audit trail, so it is not answered"))
	}
	return r
}

// classify names a request's RESTful interaction and BALP action.
func classify(method string, seg []string) auth.AuditRecord {
	rec := func(i, a string) auth.AuditRecord { return auth.AuditRecord{Interaction: i, Action: a} }
	if method == http.MethodHead {
		method = http.MethodGet
	}
	n := len(seg)
	switch {
	case n == 0 && method == http.MethodPost:
		return rec("transaction", "E")
	case n == 0:
		return rec("search-system", "E")
	case n == 1 && seg[0] == "metadata":
		return rec("capabilities", "R")
	case n == 1 && seg[0] == "_history":
		return rec("history-system", "R")
	case strings.HasPrefix(seg[n-1], "$"):
		return rec("operation", "E")
	case n == 1:
		switch method {
		case http.MethodGet:
			return rec("search-type", "E")
		case http.MethodPost:
			return rec("create", "C")
		case http.MethodPut:
			return rec("update", "U")
		case http.MethodDelete:
			return rec("delete", "D")
		}
	case n == 2 && seg[1] == "_search":
		return rec("search-type", "E")
	case n == 2 && seg[1] == "_history":
		return rec("history-type", "R")
	case n == 2:
		switch method {
		case http.MethodGet:
			return rec("read", "R")
		case http.MethodPut:
			return rec("update", "U")
		case http.MethodPatch:
			return rec("patch", "U")
		case http.MethodDelete:
			return rec("delete", "D")
		}
	case n == 3 && seg[2] == "_history":
		return rec("history-instance", "R")
	case n == 4 && seg[2] == "_history":
		return rec("vread", "R")
	case n == 3:
		return rec("search-type", "E")
	}
	return rec("operation", "E")
}
