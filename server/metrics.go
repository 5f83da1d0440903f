package server

import (
	"strings"

	"github.com/gin-gonic/gin"

	"crs/fhir"
)

// RequestMetrics observes answered requests (implemented by *metrics.Metrics).
type RequestMetrics interface {
	// RequestStarted is called when a request arrives; the function it returns
	// when the request has been answered.
	RequestStarted() func(interaction, resourceType string, status int)
}

// measure reports every request to the metrics with its interaction (as the
// audit names it), its resource type (empty at system level or for a type
// this server does not serve, so that the labels stay bounded) and its status.
func (s *Server) measure(c *gin.Context) {
	done := s.metrics.RequestStarted()
	c.Next()
	interaction, rt := s.metricLabels(c)
	done(interaction, rt, c.Writer.Status())
}

// metricLabels names a request's interaction (from the one route table) and
// resource type.
func (s *Server) metricLabels(c *gin.Context) (interaction, resourceType string) {
	urlPath := c.Request.URL.Path
	switch urlPath {
	case "/healthz", "/readyz", "/metrics":
		return strings.TrimPrefix(urlPath, "/"), ""
	}
	if urlPath != "/fhir" && !strings.HasPrefix(urlPath, "/fhir/") {
		return "other", ""
	}
	path := strings.Trim(strings.TrimPrefix(urlPath, "/fhir"), "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	if len(seg) > 0 && fhir.Served(seg[0]) {
		resourceType = seg[0]
	}
	return s.routeOf(c).interaction, resourceType
}
