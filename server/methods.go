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

// allowFor lists the methods dispatch routes on path (a path under /fhir),
// for the Allow header every 405 must carry (RFC 9110 §15.5.6): a method
// not listed is answered 405 there. Writes are listed only on types that
// allow them. TestAllowMatchesRoutes checks it against dispatch.
func allowFor(path string) string {
	path = strings.Trim(strings.TrimPrefix(path, "/fhir"), "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	read := "GET, HEAD"
	writable := len(seg) > 0 && fhir.Allows(seg[0], fhir.Create)
	switch {
	case len(seg) == 0:
		return "GET, HEAD, POST"
	case len(seg) == 1 && writable:
		return "GET, HEAD, POST, PUT, DELETE"
	case len(seg) == 2 && seg[1] == "_search":
		return "POST"
	case len(seg) == 2 && seg[1] == "$validate", len(seg) == 3 && seg[2] == "$validate":
		return "POST"
	case len(seg) == 2 && seg[1] == "$expand", len(seg) == 3 && seg[2] == "$expand", len(seg) == 3 && seg[2] == "$everything":
		return "GET, HEAD, POST"
	case len(seg) == 2 && strings.HasPrefix(seg[1], "_") && seg[1] != "_history":
		return "" // no such path
	case len(seg) == 2 && seg[1] != "_history" && writable:
		return "GET, HEAD, PUT, DELETE, PATCH"
	}
	return read
}
