package server

import (
	"context"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"crs/audit"
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

// auditUnseen records a request the engine never saw (refused before it: no
// valid token, an unacceptable format, an unreadable body, no such path),
// under the interaction its route says it attempted. Everything the engine
// did see, it recorded itself. If the AuditEvent cannot be written, the
// request is not answered with data.
func (s *Server) auditUnseen(c *gin.Context, rt route, r reply) reply {
	ctx := c.Request.Context()
	if engine.Audited(ctx) {
		return r
	}
	rec := audit.Record{Interaction: rt.interaction, Action: rt.action}
	if r.err != nil {
		rec.Outcome = fhir.AsError(r.err)
	}
	if strings.HasPrefix(rec.Interaction, "search") || rec.Interaction == "operation" {
		rec.Query = c.Request.URL.RawQuery
	}
	if rt.typ != "" && rt.id != "" {
		rec.Entities = []string{rt.typ + "/" + rt.id}
		if rt.typ == "Patient" {
			rec.Patient = "Patient/" + rt.id
		}
	}
	if err := s.engine.Audit(ctx, rec); err != nil {
		s.log.Error("audit", "request_id", c.GetString("request_id"), "error", err.Error())
		return fail(fhir.Errorf(fhir.Unavailable, "", "the request could not be recorded in the audit trail, so it is not answered"))
	}
	return r
}
