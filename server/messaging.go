package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"crs/fhir"
)

// Messages is the messaging door (implemented by *bars.Receiver): it applies
// a FHIR message Bundle as the caller in ctx, through the engine, and answers
// the response message. A nil body with an error: there is no message to
// respond to (the error is rendered as an OperationOutcome); a body with an
// error: the response message reports it (the error is logged).
type Messages interface {
	ProcessMessage(ctx context.Context, body []byte) (status int, response fhir.Object, err error)
	// Messaging is the CapabilityStatement's messaging entry for endpoint.
	Messaging(endpoint string) map[string]any
}

// maxCorrelationID bounds the X-Correlation-Id echoed back.
const maxCorrelationID = 200

// processMessage answers POST /fhir/$process-message: the body is the
// message Bundle; X-Correlation-Id is echoed (X-Request-Id always is).
func (s *Server) processMessage(c *gin.Context) reply {
	var h http.Header
	if id := c.GetHeader("X-Correlation-Id"); id != "" && len(id) <= maxCorrelationID {
		h = http.Header{"X-Correlation-Id": []string{id}}
	}
	body, err := s.readBody(c, fhirJSONTypes)
	if err != nil {
		return reply{err: err, header: h}
	}
	status, out, err := s.messages.ProcessMessage(c.Request.Context(), body)
	if out == nil {
		if err == nil {
			err = fhir.InternalError("process-message", errNoResponse)
		}
		return reply{err: err, header: h}
	}
	if err != nil {
		e := fhir.AsError(err)
		if e.Kind == fhir.Internal {
			s.log.Error("internal error", "request_id", c.GetString("request_id"), "error", err.Error())
		} else {
			c.Set("error", s.logError(e))
		}
	}
	return reply{status: status, body: out, header: h}
}

var errNoResponse = errors.New("the messaging door answered nothing")

// withMessaging advertises $process-message and the messages it takes in the
// CapabilityStatement when they are served.
func (s *Server) withMessaging(cs map[string]any) map[string]any {
	if s.messages == nil {
		return cs
	}
	rest, _ := cs["rest"].([]any)
	if len(rest) == 0 {
		return cs
	}
	r, _ := rest[0].(map[string]any)
	if r == nil {
		return cs
	}
	r["operation"] = append(anySlice(r["operation"]), map[string]any{"name": "process-message", "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"})
	impl, _ := cs["implementation"].(map[string]any)
	base, _ := impl["url"].(string)
	cs["messaging"] = []any{s.messages.Messaging(base + "/$process-message")}
	return cs
}
