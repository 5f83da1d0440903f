package server

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/store"
)

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// route is what a request under /fhir asks for, read from its method and path
// once: the handler to run and the interaction it is, so that a request that
// never reaches the engine (no valid token, a bad Accept header) is still
// recorded under the interaction it attempted.
type route struct {
	interaction string // restful-interaction code, for the audit trail
	action      string // BALP action: C, R, U, D or E
	typ, id     string // the resource named by the path, if any
	handle      func() reply
}

// routeOf is the one route table of the FHIR API.
func (s *Server) routeOf(c *gin.Context) route {
	path := strings.Trim(strings.TrimPrefix(c.Request.URL.Path, "/fhir"), "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	m := c.Request.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	r := func(interaction, action string, h func() reply) route {
		return route{interaction: interaction, action: action, handle: h}
	}
	bad := func(interaction, action string, err error) route {
		return r(interaction, action, func() reply { return fail(err) })
	}
	if out, ok := s.exportRoute(c, seg, m); ok {
		return out
	}
	if out, ok := s.subscriptionRoute(c, seg, m); ok {
		return out
	}
	switch {
	case len(seg) == 0 && m == http.MethodPost:
		return r("transaction", "E", func() reply { return s.system(c) })
	case len(seg) == 0:
		return bad("search-system", "E", fhir.Errorf(fhir.NotSupported, "", "system-level search is not supported: search one resource type, e.g. /fhir/Patient?name=..."))
	case len(seg) == 2 && seg[0] == ".well-known" && seg[1] == "smart-configuration" && m == http.MethodGet:
		return r("capabilities", "R", func() reply { return s.smartConfiguration(c) })
	case len(seg) == 1 && seg[0] == "metadata" && m == http.MethodGet:
		return r("capabilities", "R", func() reply {
			cs, err := s.engine.Capabilities(c.Request.Context(), s.sw)
			if err != nil {
				return fail(err)
			}
			return reply{status: http.StatusOK, body: s.withMessaging(s.withExport(s.withCORS(cs)))}
		})
	case len(seg) == 1 && seg[0] == "_history" && m == http.MethodGet:
		return r("history-system", "R", func() reply { return s.history(c, "", "") })
	case len(seg) == 1 && seg[0] == "$process-message" && m == http.MethodPost && s.messages != nil:
		return r("operation", "E", func() reply { return s.processMessage(c) })
	case len(seg) == 1 && strings.HasPrefix(seg[0], "$import-") && m == http.MethodPost && s.importer != nil:
		return r("operation", "E", func() reply { return s.importOp(c, strings.TrimPrefix(seg[0], "$import-")) })
	case len(seg) == 1 && strings.HasPrefix(seg[0], "$"):
		return bad("operation", "E", fhir.Errorf(fhir.NotSupported, "", "operation %q is not supported", seg[0]))
	}
	rt := seg[0]
	if !fhir.Served(rt) {
		return bad("operation", "E", fhir.Errorf(fhir.NotSupportedType, "", "resource type %q is not supported by this server", rt))
	}
	var out route
	switch {
	case len(seg) == 1:
		switch m {
		case http.MethodGet:
			out = r("search-type", "E", func() reply { return s.search(c, rt, c.Request.URL.RawQuery) })
		case http.MethodPost:
			out = r("create", "C", func() reply { return s.create(c, rt) })
		case http.MethodPut:
			out = r("update", "U", func() reply { return s.conditionalUpdate(c, rt) })
		case http.MethodDelete:
			out = r("delete", "D", func() reply { return s.conditionalDelete(c, rt) })
		}
	case len(seg) == 2 && seg[1] == "_search" && m == http.MethodPost:
		out = r("search-type", "E", func() reply { return s.postSearch(c, rt) })
	case len(seg) == 2 && seg[1] == "_history" && m == http.MethodGet:
		out = r("history-type", "R", func() reply { return s.history(c, rt, "") })
	case len(seg) == 2 && seg[1] == "$validate" && m == http.MethodPost:
		out = r("operation", "E", func() reply { return s.validate(c, rt, "") })
	case len(seg) == 2 && seg[1] == "$expand" && rt == "ValueSet" && (m == http.MethodGet || m == http.MethodPost):
		out = r("operation", "E", func() reply { return s.expand(c, "") })
	case len(seg) == 2 && seg[1] == "$translate" && rt == "ConceptMap" && (m == http.MethodGet || m == http.MethodPost):
		out = r("operation", "E", func() reply { return s.translate(c, "") })
	case len(seg) == 2 && strings.HasPrefix(seg[1], "$"):
		out = bad("operation", "E", fhir.Errorf(fhir.NotSupported, "", "operation %q is not supported on %s", seg[1], rt))
	case len(seg) == 2 && !strings.HasPrefix(seg[1], "_"): // _search, _history: not ids
		id := seg[1]
		switch m {
		case http.MethodGet:
			out = r("read", "R", func() reply { return s.read(c, rt, id) })
		case http.MethodPut:
			out = r("update", "U", func() reply { return s.update(c, rt, id) })
		case http.MethodDelete:
			out = r("delete", "D", func() reply { return s.delete(c, rt, id) })
		case http.MethodPatch:
			out = r("patch", "U", func() reply { return s.patch(c, rt, id) })
		}
		out.id = id
	case len(seg) == 3 && seg[2] == "_history" && m == http.MethodGet:
		out = r("history-instance", "R", func() reply { return s.history(c, rt, seg[1]) })
		out.id = seg[1]
	case len(seg) == 4 && seg[2] == "_history" && m == http.MethodGet:
		out = r("vread", "R", func() reply {
			v, err := s.engine.VRead(c.Request.Context(), rt, seg[1], seg[3])
			return s.shapeRead(c, resourceReply(http.StatusOK, v, err))
		})
		out.id = seg[1]
	case len(seg) == 3 && seg[2] == "$everything" && (m == http.MethodGet || m == http.MethodPost):
		out = r("operation", "E", func() reply {
			params, err := engine.ParseQueryString(withoutFormat(c.Request.URL.RawQuery))
			if err != nil {
				return fail(err)
			}
			b, err := s.engine.Everything(c.Request.Context(), rt, seg[1], params)
			if err != nil {
				return fail(err)
			}
			return reply{status: http.StatusOK, body: b}
		})
		out.id = seg[1]
	case len(seg) == 3 && seg[2] == "$validate" && m == http.MethodPost:
		out = r("operation", "E", func() reply { return s.validate(c, rt, seg[1]) })
		out.id = seg[1]
	case len(seg) == 3 && seg[2] == "$expand" && rt == "ValueSet" && (m == http.MethodGet || m == http.MethodPost):
		out = r("operation", "E", func() reply { return s.expand(c, seg[1]) })
		out.id = seg[1]
	case len(seg) == 3 && seg[2] == "$translate" && rt == "ConceptMap" && (m == http.MethodGet || m == http.MethodPost):
		out = r("operation", "E", func() reply { return s.translate(c, seg[1]) })
		out.id = seg[1]
	case len(seg) == 3 && rt == "Measure" && seg[2] == "$evaluate-measure" && (m == http.MethodGet || m == http.MethodPost):
		out = r("operation", "E", func() reply { return s.evaluateMeasure(c, seg[1]) })
		out.id = seg[1]
	case len(seg) == 3 && strings.HasPrefix(seg[2], "$"):
		out = bad("operation", "E", fhir.Errorf(fhir.NotSupported, "", "operation %q is not supported on %s", seg[2], rt))
	case len(seg) == 3 && fhir.Served(seg[2]) && m == http.MethodGet:
		out = r("search-type", "E", func() reply {
			params, err := engine.ParseQueryString(withoutFormat(c.Request.URL.RawQuery))
			if err != nil {
				return fail(err)
			}
			b, err := s.engine.SearchCompartment(c.Request.Context(), rt, seg[1], seg[2], params, engine.SearchOptions{Lenient: lenient(c)})
			if err != nil {
				return fail(err)
			}
			return reply{status: http.StatusOK, body: b}
		})
		out.id = seg[1]
	}
	if out.handle == nil {
		if allowFor(c.Request.URL.Path) == "" {
			return bad("operation", "E", fhir.Errorf(fhir.NotFound, "", "no such path %q", c.Request.URL.Path))
		}
		return bad("operation", "E", fhir.Errorf(fhir.MethodNotAllowed, "", "%s %s is not a supported FHIR interaction", c.Request.Method, c.Request.URL.Path))
	}
	out.typ = rt
	return out
}

// system answers a transaction or batch posted to the base URL.
func (s *Server) system(c *gin.Context) reply {
	body, err := s.readBody(c, fhirJSONTypes)
	if err != nil {
		return fail(err)
	}
	b, err := s.engine.Bundle(c.Request.Context(), body, engine.SearchOptions{Lenient: lenient(c), Minimal: preferReturn(c) == "minimal"})
	if err != nil {
		return fail(err)
	}
	return reply{status: http.StatusOK, body: b}
}

// resourceReply renders a stored version, or the error with the version's ETag
// (a Gone read still says which version deleted it).
func resourceReply(status int, v store.Version, err error) reply {
	if err != nil {
		r := fail(err)
		if v.VersionID > 0 {
			r.version = &v
		}
		return r
	}
	return reply{status: status, body: v.Body, version: &v}
}

func (s *Server) read(c *gin.Context, rt, id string) reply {
	v, err := s.engine.Read(c.Request.Context(), rt, id)
	if err != nil {
		return resourceReply(0, v, err)
	}
	if inm := c.GetHeader("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			if n, err := engine.ParseETag(tag); err == nil && n == v.VersionID {
				return reply{status: http.StatusNotModified, version: &v}
			}
		}
	} else if ims := c.GetHeader("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !v.LastUpdated.Truncate(time.Second).After(t) {
			return reply{status: http.StatusNotModified, version: &v}
		}
	}
	return s.shapeRead(c, resourceReply(http.StatusOK, v, nil))
}

// shapeRead applies _summary and _elements to a read's reply, and refuses
// parameters a read does not take (as search does).
func (s *Server) shapeRead(c *gin.Context, r reply) reply {
	if r.err != nil || r.version == nil {
		return r
	}
	params, err := engine.ParseQueryString(withoutFormat(c.Request.URL.RawQuery))
	if err != nil {
		return fail(err)
	}
	body, err := s.engine.ShapeRead(*r.version, params, lenient(c))
	if err != nil {
		return fail(err)
	}
	r.body = body
	return r
}

func ifMatch(c *gin.Context) (int, error) {
	return engine.ParseETag(c.GetHeader("If-Match"))
}

// writeReply renders a write result per the Prefer header.
func (s *Server) writeReply(c *gin.Context, res engine.Result, err error, okStatus int) reply {
	if err != nil {
		return fail(err)
	}
	status := okStatus
	if res.Created {
		status = http.StatusCreated
	}
	v := res.Version
	r := reply{status: status, version: &v}
	if res.Created {
		r.location = s.engine.Base() + "/" + v.Type + "/" + v.ID + "/_history/" + strconv.Itoa(v.VersionID)
	}
	pref := preferReturn(c)
	if pref != "OperationOutcome" {
		setWarnings(c, res.Issues) // the body stays the resource, whatever the warnings
	}
	switch pref {
	case "minimal":
	case "OperationOutcome":
		issues := res.Issues
		if len(issues) == 0 {
			issues = []fhir.Issue{{Severity: fhir.SeverityInformation, Code: "informational",
				Diagnostics: "stored " + v.Type + "/" + v.ID + " version " + strconv.Itoa(v.VersionID)}}
		}
		r.body = fhir.Outcome(issues)
	default:
		r.body = v.Body
	}
	return r
}

// preferReturn reads the return preference of the Prefer header.
func preferReturn(c *gin.Context) string {
	for _, p := range preferences(c) {
		if v, ok := strings.CutPrefix(p, "return="); ok {
			return v
		}
	}
	return "representation"
}

func preferences(c *gin.Context) []string {
	var out []string
	for _, h := range c.Request.Header.Values("Prefer") {
		for _, p := range strings.FieldsFunc(h, func(r rune) bool { return r == ',' || r == ';' }) {
			out = append(out, strings.TrimSpace(p))
		}
	}
	return out
}

func lenient(c *gin.Context) bool {
	for _, p := range preferences(c) {
		if p == "handling=lenient" {
			return true
		}
	}
	return false
}

func (s *Server) create(c *gin.Context, rt string) reply {
	body, err := s.readBody(c, fhirJSONTypes)
	if err != nil {
		return fail(err)
	}
	res, err := s.engine.Create(c.Request.Context(), rt, body, c.GetHeader("If-None-Exist"))
	return s.writeReply(c, res, err, http.StatusOK)
}

func (s *Server) update(c *gin.Context, rt, id string) reply {
	im, err := ifMatch(c)
	if err != nil {
		return fail(err)
	}
	body, err := s.readBody(c, fhirJSONTypes)
	if err != nil {
		return fail(err)
	}
	res, err := s.engine.Update(c.Request.Context(), rt, id, body, im)
	return s.writeReply(c, res, err, http.StatusOK)
}

func (s *Server) patch(c *gin.Context, rt, id string) reply {
	im, err := ifMatch(c)
	if err != nil {
		return fail(err)
	}
	body, err := s.readBody(c, jsonPatchTypes)
	if err != nil {
		return fail(err)
	}
	res, err := s.engine.Patch(c.Request.Context(), rt, id, body, im)
	return s.writeReply(c, res, err, http.StatusOK)
}

func (s *Server) conditionalUpdate(c *gin.Context, rt string) reply {
	im, err := ifMatch(c)
	if err != nil {
		return fail(err)
	}
	body, err := s.readBody(c, fhirJSONTypes)
	if err != nil {
		return fail(err)
	}
	res, err := s.engine.ConditionalUpdate(c.Request.Context(), rt, withoutFormat(c.Request.URL.RawQuery), body, im)
	return s.writeReply(c, res, err, http.StatusOK)
}

func (s *Server) delete(c *gin.Context, rt, id string) reply {
	im, err := ifMatch(c)
	if err != nil {
		return fail(err)
	}
	ctx := c.Request.Context()
	switch v, ok := c.GetQuery("_cascade"); {
	case ok && v == "delete":
		ctx = engine.WithCascadeDelete(ctx)
	case ok:
		return fail(fhir.Errorf(fhir.Invalid, "_cascade", "_cascade takes the value delete, not %q", v))
	}
	res, err := s.engine.Delete(ctx, rt, id, im)
	return s.deleteReply(res, err)
}

func (s *Server) conditionalDelete(c *gin.Context, rt string) reply {
	im, err := ifMatch(c)
	if err != nil {
		return fail(err)
	}
	res, err := s.engine.ConditionalDelete(c.Request.Context(), rt, withoutFormat(c.Request.URL.RawQuery), im)
	return s.deleteReply(res, err)
}

func (s *Server) deleteReply(res engine.Result, err error) reply {
	if err != nil {
		return fail(err)
	}
	r := reply{status: http.StatusNoContent}
	if res.Version.VersionID > 0 {
		v := res.Version
		r.version = &v
	}
	return r
}

// withoutFormat drops the parameters the HTTP layer owns (_format, _pretty) from
// a raw query string.
func withoutFormat(raw string) string {
	var keep []string
	for _, part := range strings.Split(raw, "&") {
		name, _, _ := strings.Cut(part, "=")
		if part == "" || name == "_format" || name == "_pretty" {
			continue
		}
		keep = append(keep, part)
	}
	return strings.Join(keep, "&")
}

func (s *Server) search(c *gin.Context, rt, rawQuery string) reply {
	params, err := engine.ParseQueryString(withoutFormat(rawQuery))
	if err != nil {
		return fail(err)
	}
	b, err := s.engine.Search(c.Request.Context(), rt, params, engine.SearchOptions{Lenient: lenient(c)})
	if err != nil {
		return fail(err)
	}
	return reply{status: http.StatusOK, body: b}
}

// postSearch runs a search given as an application/x-www-form-urlencoded body,
// together with any parameters in the URL.
func (s *Server) postSearch(c *gin.Context, rt string) reply {
	mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return fail(fhir.Errorf(fhir.UnsupportedMedia, "", "POST _search takes an application/x-www-form-urlencoded body"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.maxBody))
	if err != nil {
		return fail(fhir.Errorf(fhir.TooLarge, "", "request body exceeds the limit of %d bytes", s.maxBody))
	}
	q := withoutFormat(c.Request.URL.RawQuery)
	if b := withoutFormat(strings.TrimSpace(string(body))); b != "" {
		if q != "" {
			q += "&"
		}
		q += b
	}
	return s.search(c, rt, q)
}

func (s *Server) history(c *gin.Context, rt, id string) reply {
	params, err := engine.ParseQueryString(withoutFormat(c.Request.URL.RawQuery))
	if err != nil {
		return fail(err)
	}
	b, err := s.engine.History(c.Request.Context(), rt, id, params)
	if err != nil {
		return fail(err)
	}
	return reply{status: http.StatusOK, body: b}
}
