package server

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"crs/fhir"
)

// This file holds what happens at the edge of the HTTP server, before and after
// the FHIR handlers: which proxies are believed, CORS, what the request log may
// say, and response compression.

// forwardedHeaders are the headers a reverse proxy adds about the original client.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip"}

// trustProxies makes the router believe forwarded headers only from the given
// proxies (addresses or CIDR ranges); none by default, so a client cannot
// choose the address the log and the audit trail record.
func trustProxies(r *gin.Engine, proxies []string) error {
	r.ForwardedByClientIP = len(proxies) > 0
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	return r.SetTrustedProxies(proxies)
}

// forwardedChain is the X-Forwarded-For (or Forwarded) header as received, for
// the audit trail beside the peer address.
func forwardedChain(r *http.Request) string {
	v := strings.Join(r.Header.Values("X-Forwarded-For"), ", ")
	if v == "" {
		v = strings.Join(r.Header.Values("Forwarded"), ", ")
	}
	if len(v) > 512 {
		v = v[:512]
	}
	return v
}

// refuseProxied answers 403 to a request that came through a proxy: development
// mode (no authentication) is for loopback, and a forwarded header says the
// caller is somewhere else.
func (s *Server) refuseProxied(c *gin.Context) {
	if !s.refuseForwarded {
		return
	}
	for _, h := range forwardedHeaders {
		if c.GetHeader(h) != "" {
			c.Abort()
			s.render(c, fail(fhir.Errorf(fhir.Forbidden, "",
				"this server runs without authentication (development mode) and refuses requests through a proxy (%s header present): configure --oidc-issuer", h)))
			return
		}
	}
}

// CORS: the allowed methods, the request headers a browser may send, and the
// response headers its script may read.
const (
	corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
	corsHeaders = "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, If-Modified-Since, X-Request-Id"
	corsExpose  = "ETag, Location, Content-Location, Last-Modified, X-Request-Id, X-Warning, Link"
)

// cors answers preflights for every route and marks responses readable by the
// allowed origins. Tokens travel in the Authorization header, not cookies, so
// credentials are not allowed and no origin is ever answered with "*" plus
// credentials. A request without Origin is not a CORS request and is untouched.
// An OPTIONS request that is not a preflight is answered with the methods.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	preflight := c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != ""
	allowed := origin != "" && s.originAllowed(origin)
	if origin != "" {
		c.Writer.Header().Add("Vary", "Origin")
	}
	if allowed {
		h := c.Writer.Header()
		if slices.Contains(s.corsOrigins, "*") {
			h.Set("Access-Control-Allow-Origin", "*")
		} else {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		h.Set("Access-Control-Expose-Headers", corsExpose)
	}
	switch {
	case preflight && !allowed:
		c.Abort()
		s.render(c, fail(fhir.Errorf(fhir.Forbidden, "", "cross-origin requests from %q are not allowed: the server's --cors-origins does not list it", origin)))
	case preflight:
		h := c.Writer.Header()
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", "600")
		c.AbortWithStatus(http.StatusNoContent)
	case c.Request.Method == http.MethodOptions:
		c.Writer.Header().Set("Allow", corsMethods)
		c.AbortWithStatus(http.StatusNoContent)
	}
}

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.corsOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// withCORS makes the CapabilityStatement say whether CORS is on.
func (s *Server) withCORS(cs map[string]any) map[string]any {
	if rest, ok := cs["rest"].([]any); ok && len(rest) > 0 {
		if r, ok := rest[0].(map[string]any); ok {
			if sec, ok := r["security"].(map[string]any); ok {
				sec["cors"] = len(s.corsOrigins) > 0
			}
		}
	}
	return cs
}

// logQuery is the query string as the request log may show it: parameter names
// with their values redacted, so no NHS number, name or date of birth reaches
// the log (unless the operator turned values on for debugging on loopback).
func (s *Server) logQuery(raw string) string {
	if raw == "" || s.logQueryValues {
		return raw
	}
	var parts []string
	for _, kv := range strings.Split(raw, "&") {
		if kv == "" {
			continue
		}
		name, _, _ := strings.Cut(kv, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if len(name) > 80 {
			name = name[:80]
		}
		parts = append(parts, url.QueryEscape(name)+"=*")
	}
	return strings.Join(parts, "&")
}

// logError is what the request log says about an error: its kind and where
// (FHIRPath), the diagnostics only when values may be logged (they can quote
// the values sent).
func (s *Server) logError(e *fhir.Error) string {
	if s.logQueryValues {
		return e.Error()
	}
	var where []string
	for _, is := range e.Issues {
		if is.Expression != "" {
			where = append(where, is.Expression)
		}
	}
	msg := e.Kind.String()
	if e.Op != "" {
		msg = e.Op + ": " + msg
	}
	if len(where) > 0 {
		msg += " at " + strings.Join(where, ", ")
	}
	return msg
}

// gzipMin is the smallest body worth compressing (about one TCP segment).
const gzipMin = 1400

// compress gzips a response body when the client accepts gzip and the body is
// large. The ETag stays as it is: crs's ETags are weak (W/"n"), which by RFC 9110
// compare equal across content codings, so If-None-Match keeps working.
func compress(c *gin.Context, data []byte) []byte {
	if len(data) < gzipMin {
		return data
	}
	c.Writer.Header().Add("Vary", "Accept-Encoding")
	if !acceptsGzip(c.GetHeader("Accept-Encoding")) {
		return data
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := zw.Write(data); err != nil || zw.Close() != nil {
		return data
	}
	c.Writer.Header().Set("Content-Encoding", "gzip")
	return buf.Bytes()
}

// acceptsGzip reads an Accept-Encoding header: gzip (or *) with a q above 0.
func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "*" {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "q") {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
		}
		return q > 0
	}
	return false
}
