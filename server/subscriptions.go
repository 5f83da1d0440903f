package server

import (
	"context"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"
)

// Subscriptions answers Subscription $status and $events (implemented by
// *subscriptions.Manager); both read through the engine as the caller.
type Subscriptions interface {
	Status(ctx context.Context, id string) ([]byte, error)
	StatusAll(ctx context.Context, q url.Values) ([]byte, error)
	Events(ctx context.Context, id string, q url.Values) ([]byte, error)
}

// subscriptionRoute returns the route of Subscription/$status,
// Subscription/{id}/$status or $events (GET, or POST with no body), or false.
func (s *Server) subscriptionRoute(c *gin.Context, seg []string, m string) (route, bool) {
	if s.subscriptions != nil && len(seg) == 2 && seg[0] == "Subscription" && seg[1] == "$status" && m == http.MethodGet {
		h := func() reply {
			q, err := queryValues(c.Request.URL.RawQuery)
			if err != nil {
				return fail(err)
			}
			b, err := s.subscriptions.StatusAll(c.Request.Context(), q)
			if err != nil {
				return fail(err)
			}
			return reply{status: http.StatusOK, body: b}
		}
		return route{interaction: "operation", action: "E", handle: h, typ: "Subscription"}, true
	}
	if s.subscriptions == nil || len(seg) != 3 || seg[0] != "Subscription" || (m != http.MethodGet && m != http.MethodPost) {
		return route{}, false
	}
	var h func() reply
	switch seg[2] {
	case "$status":
		h = func() reply {
			b, err := s.subscriptions.Status(c.Request.Context(), seg[1])
			if err != nil {
				return fail(err)
			}
			return reply{status: http.StatusOK, body: b}
		}
	case "$events":
		h = func() reply {
			q, err := queryValues(c.Request.URL.RawQuery)
			if err != nil {
				return fail(err)
			}
			if m == http.MethodPost && c.Request.ContentLength != 0 {
				body, err := s.readBody(c, fhirJSONTypes)
				if err != nil {
					return fail(err)
				}
				if q, err = parametersQuery(body); err != nil {
					return fail(err)
				}
			}
			b, err := s.subscriptions.Events(c.Request.Context(), seg[1], q)
			if err != nil {
				return fail(err)
			}
			return reply{status: http.StatusOK, body: b}
		}
	default:
		return route{}, false
	}
	return route{interaction: "operation", action: "E", handle: h, typ: "Subscription", id: seg[1]}, true
}
