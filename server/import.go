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

// ImportFunc imports a partner file of source (cld, visits, therapy) read from
// body, as the caller in ctx, with the query's options, and returns the
// outcome (a Parameters resource). A file-level problem is a *fhir.Error.
type ImportFunc func(ctx context.Context, source string, body io.Reader, query url.Values) (fhir.Object, error)

// importOp answers POST /fhir/$import-<source> with a CSV body (text/csv).
func (s *Server) importOp(c *gin.Context, source string) reply {
	ct := c.GetHeader("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/csv" {
		return fail(fhir.Errorf(fhir.UnsupportedMedia, "", "Content-Type %q is not supported here: send the file as text/csv", ct))
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, MaxImportBytes)
	out, err := s.importer(c.Request.Context(), source, body, c.Request.URL.Query())
	if err != nil {
		return fail(err)
	}
	return reply{status: http.StatusOK, body: out}
}
