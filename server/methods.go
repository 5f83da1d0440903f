package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"crs/fhir"
)

// servedMethods are the methods some route of the server answers. OPTIONS is
// among them: CORS preflights are answered by their own handler.
var servedMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// allowHeader is the Allow header of a 405 for a method no route serves.
var allowHeader = strings.Join(servedMethods, ", ")

// knownMethod answers 405 Method Not Allowed, with an Allow header and an
// OperationOutcome, to a request whose method no route serves (PROPFIND,
// TRACE, a lower-case "get": methods are case-sensitive), before routing,
// authentication or content negotiation. Every other request goes on.
func (s *Server) knownMethod(c *gin.Context) {
	for _, m := range servedMethods {
		if c.Request.Method == m {
			c.Next()
			return
		}
	}
	c.Abort()
	c.Header("Allow", allowHeader)
	s.render(c, fail(fhir.Errorf(fhir.MethodNotAllowed, "", "the method %q is not supported by this server: it answers %s", c.Request.Method, allowHeader)))
}
