package server

import (
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"crs/export"
	"crs/fhir"
)

// Exporter runs Bulk Data $export jobs (implemented by *export.Manager).
type Exporter interface {
	Kickoff(ctx context.Context, req export.Request) (statusURL string, err error)
	Status(ctx context.Context, id string) (export.Status, error)
	Cancel(ctx context.Context, id string) error
	File(ctx context.Context, id, name string) (path string, err error)
}

// exportRoute returns the route of a $export path (kick-off at system,
// Patient or Group level, the status URL, a file), or false.
func (s *Server) exportRoute(c *gin.Context, seg []string, m string) (route, bool) {
	r := func(action string, h func() reply) (route, bool) {
		return route{interaction: "operation", action: action, handle: h}, true
	}
	if s.exporter == nil {
		return route{}, false
	}
	kick := m == http.MethodGet || m == http.MethodPost
	switch {
	case len(seg) == 1 && seg[0] == "$export" && kick:
		return r("E", func() reply { return s.exportKickoff(c, export.LevelSystem, "") })
	case len(seg) == 2 && seg[0] == "Patient" && seg[1] == "$export" && kick:
		return r("E", func() reply { return s.exportKickoff(c, export.LevelPatient, "") })
	case len(seg) == 3 && seg[0] == "Group" && seg[2] == "$export" && kick:
		out, ok := r("E", func() reply { return s.exportKickoff(c, export.LevelGroup, seg[1]) })
		out.typ, out.id = "Group", seg[1]
		return out, ok
	case len(seg) == 2 && seg[0] == "$export-status" && m == http.MethodGet:
		return r("R", func() reply { return s.exportStatus(c, seg[1]) })
	case len(seg) == 2 && seg[0] == "$export-status" && m == http.MethodDelete:
		return r("D", func() reply {
			if err := s.exporter.Cancel(c.Request.Context(), seg[1]); err != nil {
				return fail(err)
			}
			return reply{status: http.StatusAccepted}
		})
	case len(seg) == 3 && seg[0] == "$export-file" && m == http.MethodGet:
		return r("R", func() reply {
			path, err := s.exporter.File(c.Request.Context(), seg[1], seg[2])
			if err != nil {
				return fail(err)
			}
			return reply{status: http.StatusOK, file: path}
		})
	}
	return route{}, false
}

// exportKickoff starts an export: Prefer: respond-async is required, the
// parameters come from the query (GET) or a Parameters body (POST).
func (s *Server) exportKickoff(c *gin.Context, level, groupID string) reply {
	async := false
	for _, h := range c.Request.Header.Values("Prefer") {
		for _, p := range strings.Split(h, ",") {
			async = async || strings.EqualFold(strings.TrimSpace(p), "respond-async")
		}
	}
	if !async {
		return fail(fhir.Errorf(fhir.Invalid, "", "$export runs asynchronously: send the header Prefer: respond-async"))
	}
	if level == "group" && !fhir.ValidID(groupID) {
		return fail(fhir.Errorf(fhir.Invalid, "", "invalid Group id %q", groupID))
	}
	q, err := queryValues(c.Request.URL.RawQuery)
	if err != nil {
		return fail(err)
	}
	if c.Request.Method == http.MethodPost {
		body, err := s.readBody(c, fhirJSONTypes)
		if err != nil {
			return fail(err)
		}
		pq, err := export.ParametersValues(body)
		if err != nil {
			return fail(err)
		}
		for k, vs := range pq {
			q[k] = append(q[k], vs...)
		}
	}
	reqURL := s.engine.Base() + strings.TrimPrefix(c.Request.URL.Path, "/fhir")
	if raw := q.Encode(); raw != "" {
		reqURL += "?" + raw
	}
	req, err := export.ParseRequest(level, groupID, reqURL, q, time.Now())
	if err != nil {
		return fail(err)
	}
	status, err := s.exporter.Kickoff(c.Request.Context(), req)
	if err != nil {
		if fhir.AsError(err).Kind == fhir.TooManyRequests {
			return reply{err: err, header: http.Header{"Retry-After": {"10"}}}
		}
		return fail(err)
	}
	oo := fhir.Outcome([]fhir.Issue{{Severity: fhir.SeverityInformation, Code: "informational", Diagnostics: "export started: poll " + status}})
	return reply{status: http.StatusAccepted, body: oo, header: http.Header{"Content-Location": {status}}}
}

// exportStatus answers the status URL: 202 with X-Progress and Retry-After
// while the job runs, 200 with the manifest and Expires when it is done.
func (s *Server) exportStatus(c *gin.Context, id string) reply {
	st, err := s.exporter.Status(c.Request.Context(), id)
	if err != nil {
		return fail(err)
	}
	if st.Running {
		return reply{status: http.StatusAccepted, header: http.Header{"X-Progress": {st.Progress}, "Retry-After": {"1"}}}
	}
	return reply{status: http.StatusOK, body: st.Manifest, header: http.Header{"Expires": {st.Expires.UTC().Format(http.TimeFormat)}}}
}

// serveFile writes an export file as application/fhir+ndjson.
func serveFile(c *gin.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w := c.Writer
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	if c.Request.Method == http.MethodHead {
		return nil
	}
	_, err = io.Copy(w, f)
	return err
}

// withExport advertises Bulk Data $export in the CapabilityStatement when it
// is served: the IG's CapabilityStatement instantiated, the system-level
// operation, and the operation on Patient and Group.
func (s *Server) withExport(cs map[string]any) map[string]any {
	if s.exporter == nil {
		return cs
	}
	cs["instantiates"] = append(anySlice(cs["instantiates"]), "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data")
	rest, _ := cs["rest"].([]any)
	if len(rest) == 0 {
		return cs
	}
	r, _ := rest[0].(map[string]any)
	if r == nil {
		return cs
	}
	r["operation"] = append(anySlice(r["operation"]), map[string]any{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"})
	if doc, ok := r["documentation"].(string); ok {
		r["documentation"] = doc + " Bulk Data $export (IG 2.0: system, Patient and Group level; GET and POST; application/fhir+ndjson; " +
			"_since, _type, _typeFilter, _elements, patient); the caller's access policy bounds every export."
	}
	res, _ := r["resource"].([]any)
	for _, x := range res {
		rm, _ := x.(map[string]any)
		switch rm["type"] {
		case "Patient":
			rm["operation"] = append(anySlice(rm["operation"]), map[string]any{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"})
		case "Group":
			rm["operation"] = append(anySlice(rm["operation"]), map[string]any{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"})
		}
	}
	return cs
}

func anySlice(v any) []any {
	s, _ := v.([]any)
	return s
}
