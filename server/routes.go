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

// dispatch routes a request under /fhir by its path segments and method.
func (s *Server) dispatch(c *gin.Context) reply {
	path := strings.Trim(strings.TrimPrefix(c.Request.URL.Path, "/fhir"), "/")
	var seg []string
	if path != "" {
		seg = strings.Split(path, "/")
	}
	m := c.Request.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	switch {
	case len(seg) == 0:
		return s.system(c, m)
	case len(seg) == 2 && seg[0] == ".well-known" && seg[1] == "smart-configuration" && m == http.MethodGet:
		return s.smartConfiguration(c)
	case len(seg) == 1 && seg[0] == "metadata" && m == http.MethodGet:
		return reply{status: http.StatusOK, body: s.engine.CapabilityStatement(s.sw)}
	case len(seg) == 1 && seg[0] == "_history" && m == http.MethodGet:
		return s.history(c, "", "")
	case len(seg) == 1 && strings.HasPrefix(seg[0], "$"):
		return fail(fhir.Errorf(fhir.NotSupported, "", "operation %q is not supported", seg[0]))
	}
	rt := seg[0]
	if !fhir.Served(rt) {
		return fail(fhir.Errorf(fhir.NotSupportedType, "", "resource type %q is not supported by this server", rt))
	}
	switch {
	case len(seg) == 1:
		switch m {
		case http.MethodGet:
			return s.search(c, rt, c.Request.URL.RawQuery)
		case http.MethodPost:
			return s.create(c, rt)
		case http.MethodPut:
			return s.conditionalUpdate(c, rt)
		case http.MethodDelete:
			return s.conditionalDelete(c, rt)
		}
	case len(seg) == 2 && seg[1] == "_search" && m == http.MethodPost:
		return s.postSearch(c, rt)
	case len(seg) == 2 && seg[1] == "_history" && m == http.MethodGet:
		return s.history(c, rt, "")
	case len(seg) == 2 && seg[1] == "$validate" && m == http.MethodPost:
		return s.validate(c, rt, "")
	case len(seg) == 2 && seg[1] == "$expand" && rt == "ValueSet" && (m == http.MethodGet || m == http.MethodPost):
		return s.expand(c, "")
	case len(seg) == 2 && strings.HasPrefix(seg[1], "$"):
		return fail(fhir.Errorf(fhir.NotSupported, "", "operation %q is not supported on %s", seg[1], rt))
	case len(seg) == 2:
		switch m {
		case http.MethodGet:
			return s.read(c, rt, seg[1])
		case http.MethodPut:
			return s.update(c, rt, seg[1])
		case http.MethodDelete:
			return s.delete(c, rt, seg[1])
		case http.MethodPatch:
			return s.patch(c, rt, seg[1])
		}
	case len(seg) == 3 && seg[2] == "_history" && m == http.MethodGet:
		return s.history(c, rt, seg[1])
	case len(seg) == 4 && seg[2] == "_history" && m == http.MethodGet:
		v, err := s.engine.VRead(c.Request.Context(), rt, seg[1], seg[3])
		return resourceReply(http.StatusOK, v, err)
	case len(seg) == 3 && seg[2] == "$everything" && (m == http.MethodGet || m == http.MethodPost):
		params, err := engine.ParseQueryString(withoutFormat(c.Request.URL.RawQuery))
		if err != nil {
			return fail(err)
		}
		b, err := s.engine.Everything(c.Request.Context(), rt, seg[1], params)
		if err != nil {
			return fail(err)
		}
		return reply{status: http.StatusOK, body: b}
	case len(seg) == 3 && seg[2] == "$validate" && m == http.MethodPost:
		return s.validate(c, rt, seg[1])
	case len(seg) == 3 && seg[2] == "$expand" && rt == "ValueSet" && (m == http.MethodGet || m == http.MethodPost):
		return s.expand(c, seg[1])
	case len(seg) == 3 && rt == "Measure" && seg[2] == "$evaluate-measure" && (m == http.MethodGet || m == http.MethodPost):
		return s.evaluateMeasure(c, seg[1])
	case len(seg) == 3 && strings.HasPrefix(seg[2], "$"):
		return fail(fhir.Errorf(fhir.NotSupported, "", "operation %q is not supported on %s", seg[2], rt))
	case len(seg) == 3 && fhir.Served(seg[2]) && m == http.MethodGet:
		params, err := engine.ParseQueryString(withoutFormat(c.Request.URL.RawQuery))
		if err != nil {
			return fail(err)
		}
		b, err := s.engine.SearchCompartment(c.Request.Context(), rt, seg[1], seg[2], params, engine.SearchOptions{Lenient: lenient(c)})
		if err != nil {
			return fail(err)
		}
		return reply{status: http.StatusOK, body: b}
	}
	return fail(fhir.Errorf(fhir.MethodNotAllowed, "", "%s %s is not a supported FHIR interaction", c.Request.Method, c.Request.URL.Path))
}

func (s *Server) system(c *gin.Context, m string) reply {
	if m == http.MethodPost {
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
	return fail(fhir.Errorf(fhir.NotSupported, "", "system-level search is not supported: search one resource type, e.g. /fhir/Patient?name=..."))
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
	return resourceReply(http.StatusOK, v, nil)
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
	if len(res.Issues) > 0 && !hasPreference(c, "return=") {
		// Warnings are reported: without an explicit preference, the reply is
		// the OperationOutcome (the resource is at Location).
		pref = "OperationOutcome"
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

// hasPreference reports whether the Prefer header has a preference starting so.
func hasPreference(c *gin.Context, prefix string) bool {
	for _, p := range preferences(c) {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
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
	res, err := s.engine.Delete(c.Request.Context(), rt, id, im)
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
