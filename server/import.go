package server

import (
	"context"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"

	"crs/fhir"
)

// MaxImportBytes bounds the body of POST /fhir/$import-<source>; the file is
// streamed into the importer, so memory does not grow with it.
const MaxImportBytes = 2 << 30

// ImportFunc imports a partner file of source (cld, visits, therapy,
// careplans) in media type (text/csv, or application/fhir+json for a FHIR
// care plan) read from body, as the caller in ctx, with the query's options,
// and returns the outcome (a Parameters resource). A file-level problem is a
// *fhir.Error.
type ImportFunc func(ctx context.Context, source, mediaType string, body io.Reader, query url.Values) (fhir.Object, error)

// importOp answers POST /fhir/$import-<source> with a CSV body (text/csv) or
// a FHIR one (application/fhir+json).
func (s *Server) importOp(c *gin.Context, source string) reply {
	ct := c.GetHeader("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "text/csv" && mt != "application/fhir+json" && mt != "application/json") {
		return fail(fhir.Errorf(fhir.UnsupportedMedia, "", "Content-Type %q is not supported here: send the file as text/csv (or a FHIR care plan as application/fhir+json)", ct))
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, MaxImportBytes)
	out, err := s.importer(c.Request.Context(), source, mt, body, c.Request.URL.Query())
	if err != nil {
		return fail(err)
	}
	return reply{status: http.StatusOK, body: out}
}
