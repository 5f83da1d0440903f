// Package server is the HTTP binding of crs: routes, content negotiation,
// preconditions and the one place where engine results and errors become HTTP
// responses. Handlers decode the request, make one engine call and return what
// to render; they hold no FHIR logic of their own.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
)

// Config configures the HTTP handler.
type Config struct {
	Engine       *engine.Engine
	Logger       *slog.Logger
	MaxBodyBytes int64           // largest request body accepted
	Software     engine.Software // name and version for the CapabilityStatement
	// Verifier checks bearer tokens; nil is development mode: no
	// authentication, every caller anonymous (cmd/crs allows it on loopback only).
	Verifier TokenVerifier
	// Metrics, when set, observes every request (by interaction, type, status).
	Metrics RequestMetrics
	// MetricsHandler, when set, is served at /metrics (outside /fhir, without
	// FHIR authentication: it applies its own rule of who may scrape).
	MetricsHandler http.Handler
	// TrustedProxies are the addresses or CIDR ranges whose X-Forwarded-For is
	// believed; none: the peer address is the client.
	TrustedProxies []string
	// RefuseForwarded answers 403 to any request with a forwarded header
	// (development mode must not be reached through a proxy).
	RefuseForwarded bool
	// CORSOrigins are the browser origins allowed to call the API ("*": any);
	// none: CORS off.
	CORSOrigins []string
	// LogQueryValues logs query values and error diagnostics in full (debugging
	// on loopback only); otherwise the log shows parameter names only.
	LogQueryValues bool
	// Import runs POST /fhir/$import-<source> (partner files pushed by their
	// systems); nil: the operation is not served.
	Import ImportFunc
	// Measures answers $evaluate-measure and serves the MDT pages at / and
	// /mdt/; nil: neither is served.
	Measures Measures
	// Export runs Bulk Data $export (kick-off, status, files); nil: not served.
	Export Exporter
	// Messages answers POST /fhir/$process-message (BaRS referrals); nil: not
	// served.
	Messages Messages

	// Subscriptions answers Subscription $status and $events; nil: not served.
	Subscriptions Subscriptions

	// SignIn signs people in to the MDT pages through the OpenID provider
	// (implemented by *signin.SignIn); nil: the pages take bearer tokens only
	// (or are open in development mode).
	SignIn PageSignIn
}

// Server is the HTTP handler of crs.
type Server struct {
	importer ImportFunc
	exporter Exporter
	engine   *engine.Engine
	log      *slog.Logger
	maxBody  int64
	sw       engine.Software
	router   *gin.Engine
	verifier TokenVerifier
	metrics  RequestMetrics

	refuseForwarded bool
	corsOrigins     []string
	logQueryValues  bool
	measures        Measures
	messages        Messages
	subscriptions   Subscriptions
	signin          PageSignIn
}

// New returns the HTTP handler for cfg.
func New(cfg Config) *Server {
	gin.SetMode(gin.ReleaseMode)
	s := &Server{engine: cfg.Engine, log: cfg.Logger, maxBody: cfg.MaxBodyBytes, sw: cfg.Software, verifier: cfg.Verifier, metrics: cfg.Metrics,
		refuseForwarded: cfg.RefuseForwarded, corsOrigins: cfg.CORSOrigins, logQueryValues: cfg.LogQueryValues, importer: cfg.Import, measures: cfg.Measures, exporter: cfg.Export,
		subscriptions: cfg.Subscriptions, messages: cfg.Messages, signin: cfg.SignIn}
	if s.log == nil {
		s.log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	if s.maxBody <= 0 {
		s.maxBody = int64(fhir.DefaultLimits.MaxBytes)
	}
	r := gin.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = false
	if err := trustProxies(r, cfg.TrustedProxies); err != nil {
		s.log.Error("trusted proxies not understood: trusting none", "error", err.Error())
		_ = trustProxies(r, nil)
	}
	if s.metrics != nil {
		r.Use(s.measure)
	}
	r.Use(s.requestLog, s.recoverPanic, s.cors, s.refuseProxied, s.knownMethod)
	if cfg.MetricsHandler != nil {
		r.GET("/metrics", gin.WrapH(cfg.MetricsHandler))
	}
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.ready)
	r.GET("/.well-known/smart-configuration", s.wrap(func(c *gin.Context) route {
		return route{interaction: "capabilities", action: "R", handle: func() reply { return s.smartConfiguration(c) }}
	}))
	r.Any("/fhir", s.wrap(s.routeOf))
	r.Any("/fhir/*path", s.wrap(s.routeOf))
	if s.measures != nil {
		r.GET("/", s.page)
		r.GET("/mdt/*path", s.page)
		r.POST("/mdt/signout", s.page)
	}
	r.NoRoute(s.wrap(func(c *gin.Context) route {
		return route{interaction: "operation", action: "E", handle: func() reply {
			return fail(fhir.Errorf(fhir.NotFound, "", "no such path %q: the FHIR API is under /fhir", c.Request.URL.Path))
		}}
	}))
	s.router = r
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

func (s *Server) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.engine.Ready(ctx); err != nil {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "error": fhir.AsError(err).Kind.String()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// reply is what a handler returns: a status and a body to render, or an error.
type reply struct {
	status   int
	body     any            // []byte (a stored resource), *engine.Bundle, map[string]any, or nil
	version  *store.Version // sets ETag and Last-Modified
	location string         // sets Location
	err      error
	header   http.Header // more response headers (Content-Location, X-Progress, Retry-After, Expires)
	file     string      // an export file to serve as application/fhir+ndjson instead of body
}

func fail(err error) reply { return reply{err: err} }

const fhirJSON = "application/fhir+json; charset=utf-8"

// wrap turns a route table into a gin handler: it authenticates the caller,
// negotiates the format, runs the route's handler (which calls the engine, and
// the engine polices and audits) and renders what it returns, errors included,
// in one way.
func (s *Server) wrap(routes func(c *gin.Context) route) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := engine.WithRequest(c.Request.Context(), engine.RequestInfo{ID: c.GetString("request_id"), Remote: c.ClientIP(),
			Peer: c.RemoteIP(), Forwarded: forwardedChain(c.Request)})
		ctx, authErr := s.authenticate(c, ctx)
		c.Request = c.Request.WithContext(ctx)
		rt := routes(c)
		var r reply
		switch err := negotiate(c.Request); {
		case authErr != nil:
			r = fail(authErr)
		case err != nil:
			r = fail(err)
		default:
			r = rt.handle()
		}
		s.render(c, s.auditUnseen(c, rt, r))
	}
}

func (s *Server) render(c *gin.Context, r reply) {
	w := c.Writer
	if r.version != nil {
		w.Header().Set("ETag", engine.ETag(r.version.VersionID))
		w.Header().Set("Last-Modified", r.version.LastUpdated.UTC().Format(http.TimeFormat))
	}
	if r.location != "" {
		w.Header().Set("Location", r.location)
	}
	if b, ok := r.body.(*engine.Bundle); ok && b.Plan != "" {
		w.Header().Set("X-Query-Plan", b.Plan)
	}
	for k, vs := range r.header {
		w.Header()[k] = vs
	}
	if r.file != "" && r.err == nil {
		if err := serveFile(c, r.file); err != nil {
			s.log.Error("export file not served", "request_id", c.GetString("request_id"), "error", err.Error())
		}
		return
	}
	if r.err != nil {
		e := fhir.AsError(r.err)
		if e.Kind == fhir.Internal {
			s.log.Error("internal error", "request_id", c.GetString("request_id"), "error", r.err.Error())
		} else {
			c.Set("error", s.logError(e))
		}
		if e.Kind == fhir.Unauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="crs", error="invalid_token"`)
		}
		if e.Kind == fhir.MethodNotAllowed && w.Header().Get("Allow") == "" {
			w.Header().Set("Allow", allowFor(c.Request.URL.Path))
		}
		r.status, r.body = e.Kind.Status(), fhir.Outcome(e.Issues)
	}
	if r.body == nil {
		w.WriteHeader(r.status)
		return
	}
	var data []byte
	switch b := r.body.(type) {
	case []byte:
		data = b
	default:
		var err error
		if data, err = fhir.Marshal(b); err != nil {
			s.log.Error("encode response", "request_id", c.GetString("request_id"), "error", err.Error())
			r.status, data = http.StatusInternalServerError, []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"fatal","code":"exception","diagnostics":"internal server error"}]}`)
		}
	}
	if c.Query("_pretty") == "true" {
		var buf bytes.Buffer
		if json.Indent(&buf, data, "", "  ") == nil {
			data = buf.Bytes()
		}
	}
	data = compress(c, data)
	w.Header().Set("Content-Type", fhirJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(r.status)
	if c.Request.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}

// negotiate checks _format and Accept: only JSON is served (406 otherwise).
func negotiate(r *http.Request) error {
	if f := r.URL.Query().Get("_format"); f != "" {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "json", "application/json", "application/fhir+json", "application/json+fhir":
		default:
			return fhir.Errorf(fhir.NotAcceptable, "_format", "_format %q is not supported: this server speaks application/fhir+json only", f)
		}
		return nil
	}
	accept := r.Header.Get("Accept")
	if strings.TrimSpace(accept) == "" {
		return nil
	}
	if strings.Contains(r.URL.Path, "/$export-file/") && strings.Contains(accept, "ndjson") {
		return nil // export files are NDJSON
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				continue
			}
		}
		switch mt {
		case "application/fhir+json", "application/json", "application/json+fhir", "application/*", "*/*":
			return nil
		}
	}
	return fhir.Errorf(fhir.NotAcceptable, "", "cannot answer in %q: this server speaks application/fhir+json only", accept)
}

// The request body formats accepted for resources and for JSON Patch.
var (
	fhirJSONTypes  = []string{"application/fhir+json", "application/json", "application/json+fhir"}
	jsonPatchTypes = []string{"application/json-patch+json"}
)

// readBody reads a request body of one of the given media types within the size
// limit.
func (s *Server) readBody(c *gin.Context, types []string) ([]byte, error) {
	ct := c.GetHeader("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || !slices.Contains(types, mt) {
		return nil, fhir.Errorf(fhir.UnsupportedMedia, "", "Content-Type %q is not supported here: send %s", ct, types[0])
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, fhir.Errorf(fhir.TooLarge, "", "request body exceeds the limit of %d bytes", s.maxBody)
		}
		return nil, fhir.Errorf(fhir.Invalid, "", "could not read the request body: %v", err)
	}
	return body, nil
}

// requestLog assigns the request id and writes one JSON log line per request.
func (s *Server) requestLog(c *gin.Context) {
	start := time.Now()
	id := c.GetHeader("X-Request-Id")
	if id == "" || len(id) > 200 {
		id = newRequestID()
	}
	c.Set("request_id", id)
	c.Header("X-Request-Id", id)
	c.Next()
	attrs := []any{
		"request_id", id, "method", c.Request.Method, "path", c.Request.URL.Path,
		"query", s.logQuery(c.Request.URL.RawQuery), "status", c.Writer.Status(),
		"duration_ms", float64(time.Since(start).Microseconds()) / 1000, "remote", c.ClientIP(),
	}
	if peer := c.RemoteIP(); peer != c.ClientIP() {
		attrs = append(attrs, "peer", peer)
	}
	if e := c.GetString("error"); e != "" {
		attrs = append(attrs, "error", e)
	}
	s.log.Info("request", attrs...)
}

// recoverPanic turns a panic into a logged 500 with a generic outcome.
func (s *Server) recoverPanic(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("panic", "request_id", c.GetString("request_id"), "panic", p)
			c.Abort()
			s.render(c, fail(fhir.InternalError("panic", errors.New("recovered panic"))))
		}
	}()
	c.Next()
}
