package server

import (
	"context"
	"net/http"
	"sort"

	"github.com/gin-gonic/gin"

	"crs/fhir"
	"crs/fhir/engine"
)

// Measures is the measures door (implemented by *measures.Service): it answers
// Measure/{id}/$evaluate-measure and serves the MDT pages, reading through the
// engine as the caller in the request's context.
type Measures interface {
	EvaluateMeasure(ctx context.Context, id string, params []fhir.RawParam) (map[string]any, error)
	ServeHTTP(w http.ResponseWriter, r *http.Request)
	Unauthenticated(w http.ResponseWriter, r *http.Request, why, signIn string)
	SignedOut(w http.ResponseWriter, r *http.Request, provider string)
}

// evaluateMeasure answers Measure/{id}/$evaluate-measure: GET with the
// parameters in the query, or POST with a Parameters body.
func (s *Server) evaluateMeasure(c *gin.Context, id string) reply {
	if s.measures == nil {
		return fail(fhir.Errorf(fhir.NotSupported, "", "operation $evaluate-measure is not supported"))
	}
	params, err := engine.ParseQueryString(c.Request.URL.RawQuery)
	if err != nil {
		return fail(err)
	}
	if c.Request.Method == http.MethodPost {
		body, err := s.readBody(c, fhirJSONTypes)
		if err != nil {
			return fail(err)
		}
		q, err := parametersQuery(body)
		if err != nil {
			return fail(err)
		}
		names := make([]string, 0, len(q))
		for name := range q {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			for _, v := range q[name] {
				params = append(params, fhir.RawParam{Name: name, Value: v})
			}
		}
	}
	rep, err := s.measures.EvaluateMeasure(c.Request.Context(), id, params)
	if err != nil {
		return fail(err)
	}
	return reply{status: http.StatusOK, body: rep}
}

// page serves the MDT pages: the caller is authenticated as for the API (in
// development mode, anonymous on loopback), or by the browser sign-in's
// session when one is configured and the request has no bearer token; the
// measures door does the rest, audit included.
func (s *Server) page(c *gin.Context) {
	ctx := engine.WithRequest(c.Request.Context(), engine.RequestInfo{ID: c.GetString("request_id"), Remote: c.ClientIP()})
	if s.signin != nil && c.GetHeader("Authorization") == "" {
		s.signedInPage(c, ctx)
		return
	}
	ctx, err := s.authenticate(c, ctx)
	if err == nil && s.verifier != nil && c.GetHeader("Authorization") == "" {
		err = fhir.Errorf(fhir.Unauthorized, "", "sign-in needed")
	}
	if err != nil {
		s.measures.Unauthenticated(c.Writer, c.Request, "This server needs a signed-in user, and browser sign-in is not configured (--oidc-client-id): send an Authorization: Bearer header, or use the FHIR API.", "")
		return
	}
	s.measures.ServeHTTP(c.Writer, c.Request.WithContext(ctx))
}
