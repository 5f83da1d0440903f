package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"

	"crs/fhir"
	"crs/fhir/engine"
)

// validate answers $validate at type or instance level: the body is the
// resource or a Parameters resource; mode and profile may also be query
// parameters. The answer is an OperationOutcome with what was found.
func (s *Server) validate(c *gin.Context, rt, id string) reply {
	q := c.Request.URL.Query()
	req := engine.ValidateRequest{Type: rt, ID: id, Mode: q.Get("mode"), Profile: q.Get("profile")}
	if c.Request.ContentLength != 0 {
		body, err := s.readBody(c, fhirJSONTypes)
		if err != nil {
			return fail(err)
		}
		req.Body = body
	}
	oo, err := s.engine.Validate(c.Request.Context(), req)
	if err != nil {
		return fail(err)
	}
	return reply{status: http.StatusOK, body: oo}
}

// expand answers ValueSet $expand with url, filter, offset and count from the
// query or from a Parameters body.
func (s *Server) expand(c *gin.Context, id string) reply {
	return s.terminology(c, func(ctx context.Context, q url.Values) (fhir.Object, error) { return s.engine.Expand(ctx, id, q) })
}

// translate answers ConceptMap $translate with url, system, code, coding,
// source, target and targetsystem from the query or from a Parameters body.
func (s *Server) translate(c *gin.Context, id string) reply {
	return s.terminology(c, func(ctx context.Context, q url.Values) (fhir.Object, error) { return s.engine.Translate(ctx, id, q) })
}

// terminology answers an operation whose inputs are the query (GET) or a
// Parameters body (POST): one engine call.
func (s *Server) terminology(c *gin.Context, call func(context.Context, url.Values) (fhir.Object, error)) reply {
	q, err := queryValues(c.Request.URL.RawQuery)
	if err != nil {
		return fail(err)
	}
	if c.Request.Method == http.MethodPost {
		body, err := s.readBody(c, fhirJSONTypes)
		if err != nil {
			return fail(err)
		}
		if q, err = parametersQuery(body); err != nil {
			return fail(err)
		}
	}
	out, err := call(c.Request.Context(), q)
	if err != nil {
		return fail(err)
	}
	return reply{status: http.StatusOK, body: out}
}

// parametersQuery reads the primitive parameters of a Parameters resource as
// query values.
func parametersQuery(body []byte) (url.Values, error) {
	obj, err := fhir.Parse(body, fhir.DefaultLimits)
	if err != nil {
		return nil, err
	}
	if fhir.ResourceType(obj) != "Parameters" {
		return nil, fhir.Errorf(fhir.Invalid, "resourceType", "the body of this operation is a Parameters resource, not %q", fhir.ResourceType(obj))
	}
	out := url.Values{}
	params, _ := obj["parameter"].([]any)
	for i, p := range params {
		pm, _ := p.(map[string]any)
		name, _ := pm["name"].(string)
		found := false
		for k, v := range pm {
			if len(k) > 5 && k[:5] == "value" {
				if coding, ok := v.(map[string]any); ok && k == "valueCoding" {
					sys, _ := coding["system"].(string)
					code, _ := coding["code"].(string)
					v = code
					if sys != "" {
						v = sys + "|" + code
					}
				}
				out.Add(name, fmt.Sprint(v))
				found = true
			}
		}
		if !found {
			return nil, fhir.Errorf(fhir.Invalid, "Parameters.parameter["+strconv.Itoa(i)+"]", "parameter %q has no value", name)
		}
	}
	return out, nil
}

// queryValues parses a query string strictly (a bad escape such as %zz is a
// 400, never a parameter silently dropped), less _format and _pretty.
func queryValues(rawQuery string) (url.Values, error) {
	params, err := engine.ParseQueryString(withoutFormat(rawQuery))
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range params {
		q.Add(p.Name, p.Value)
	}
	return q, nil
}
