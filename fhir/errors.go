package fhir

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Kind classifies an error. Each kind maps to exactly one HTTP status and one
// OperationOutcome issue code, in Kind.Status and Kind.IssueCode.
type Kind int

// The error kinds. The zero value is Internal so that an unclassified error is
// never mistaken for a client's mistake in a way that leaks detail.
const (
	Internal           Kind = iota // a fault of the server; details are logged, not returned
	Invalid                        // the request or resource is malformed or breaks a rule (400)
	Unprocessable                  // well-formed but fails validation against a profile (422)
	NotFound                       // no such resource or version (404)
	Gone                           // the resource was deleted (410)
	Conflict                       // a version conflict (409)
	PreconditionFailed             // If-Match or a conditional operation failed (412)
	NotSupported                   // the type, interaction or parameter is not supported (404 for types, 400 otherwise; see NotSupportedType)
	NotSupportedType               // the resource type is not served (404)
	Unauthorized                   // no or bad credentials (401)
	Forbidden                      // authenticated but not allowed (403)
	TooLarge                       // the body exceeds the configured limit (413)
	NotAcceptable                  // the requested response format is not supported (406)
	UnsupportedMedia               // the request body format is not supported (415)
	MethodNotAllowed               // the HTTP method is not allowed on this path (405)
	Unavailable                    // the store or a dependency is unavailable (503)
	TooManyMatches                 // a conditional operation matched more than one resource (412)
	TooManyRequests                // the client already has the one job it may run (429: a second concurrent $export)
	TooCostly                      // a query ran past the server's query timeout (400, too-costly)
)

var kindInfo = map[Kind]struct {
	status int
	code   string
	name   string
}{
	Internal:           {http.StatusInternalServerError, "exception", "internal"},
	Invalid:            {http.StatusBadRequest, "invalid", "invalid"},
	Unprocessable:      {http.StatusUnprocessableEntity, "processing", "unprocessable"},
	NotFound:           {http.StatusNotFound, "not-found", "not found"},
	Gone:               {http.StatusGone, "deleted", "gone"},
	Conflict:           {http.StatusConflict, "conflict", "conflict"},
	PreconditionFailed: {http.StatusPreconditionFailed, "conflict", "precondition failed"},
	NotSupported:       {http.StatusBadRequest, "not-supported", "not supported"},
	NotSupportedType:   {http.StatusNotFound, "not-supported", "type not supported"},
	Unauthorized:       {http.StatusUnauthorized, "login", "unauthorized"},
	Forbidden:          {http.StatusForbidden, "forbidden", "forbidden"},
	TooLarge:           {http.StatusRequestEntityTooLarge, "too-costly", "too large"},
	NotAcceptable:      {http.StatusNotAcceptable, "not-supported", "not acceptable"},
	UnsupportedMedia:   {http.StatusUnsupportedMediaType, "not-supported", "unsupported media type"},
	MethodNotAllowed:   {http.StatusMethodNotAllowed, "not-supported", "method not allowed"},
	Unavailable:        {http.StatusServiceUnavailable, "transient", "unavailable"},
	TooManyMatches:     {http.StatusPreconditionFailed, "multiple-matches", "too many matches"},
	TooManyRequests:    {http.StatusTooManyRequests, "throttled", "too many requests"},
	TooCostly:          {http.StatusBadRequest, "too-costly", "too costly"},
}

// Status is the HTTP status for the kind: the one place kinds become statuses.
func (k Kind) Status() int {
	if i, ok := kindInfo[k]; ok {
		return i.status
	}
	return http.StatusInternalServerError
}

// IssueCode is the OperationOutcome issue code for the kind.
func (k Kind) IssueCode() string {
	if i, ok := kindInfo[k]; ok {
		return i.code
	}
	return "exception"
}

// String names the kind, as in logs.
func (k Kind) String() string {
	if i, ok := kindInfo[k]; ok {
		return i.name
	}
	return "internal"
}

// Severity of an OperationOutcome issue.
type Severity string

// The OperationOutcome issue severities.
const (
	SeverityFatal       Severity = "fatal"
	SeverityError       Severity = "error"
	SeverityWarning     Severity = "warning"
	SeverityInformation Severity = "information"
)

// Issue is one OperationOutcome issue: what went wrong and where.
type Issue struct {
	Severity    Severity
	Code        string // OperationOutcome issue type code, e.g. "invalid", "required", "code-invalid"
	Diagnostics string // what went wrong, for a person
	Expression  string // FHIRPath of the offending element, e.g. "ServiceRequest.status"
}

// Error is the one error type of the server. It carries a kind, the operation that
// failed, and the issues to report. Internal errors also carry the underlying cause,
// which is logged but never shown to a client.
type Error struct {
	Kind   Kind
	Op     string  // the operation, e.g. "create", "search"
	Issues []Issue // what went wrong, for the OperationOutcome
	Err    error   // underlying cause, for logs only
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	b.WriteString(e.Kind.String())
	for i, is := range e.Issues {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(is.Diagnostics)
		if is.Expression != "" {
			b.WriteString(" at ")
			b.WriteString(is.Expression)
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error of the given kind with one error-severity issue whose
// diagnostics are formatted from format and args. expr is the FHIRPath of the
// offending element, or "" when there is none.
func Errorf(kind Kind, expr, format string, args ...any) *Error {
	return &Error{Kind: kind, Issues: []Issue{{
		Severity:    SeverityError,
		Code:        kind.IssueCode(),
		Diagnostics: fmt.Sprintf(format, args...),
		Expression:  expr,
	}}}
}

// InternalError wraps err, a fault of the server, as an Internal error. The cause is
// kept for logging; clients see only a generic message.
func InternalError(op string, err error) *Error {
	return &Error{Kind: Internal, Op: op, Err: err, Issues: []Issue{{
		Severity: SeverityFatal, Code: "exception", Diagnostics: "internal server error",
	}}}
}

// IssuesError returns an error of the given kind carrying issues; nil when none of
// the issues has severity error or fatal.
func IssuesError(kind Kind, issues []Issue) *Error {
	for _, is := range issues {
		if is.Severity == SeverityError || is.Severity == SeverityFatal {
			return &Error{Kind: kind, Issues: issues}
		}
	}
	return nil
}

// KindOf returns the kind of err: its Kind if it is (or wraps) an *Error, Internal
// otherwise.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// AsError returns err as an *Error, wrapping any other error as Internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return InternalError("", err)
}

// WithOp sets the operation of err if it is an *Error without one, and returns it.
func WithOp(op string, err error) error {
	var e *Error
	if errors.As(err, &e) && e.Op == "" {
		e.Op = op
	}
	return err
}

// Outcome renders issues as an OperationOutcome resource (a JSON object tree).
func Outcome(issues []Issue) map[string]any {
	list := make([]any, 0, len(issues))
	for _, is := range issues {
		m := map[string]any{"severity": string(is.Severity), "code": is.Code}
		if m["code"] == "" {
			m["code"] = "processing"
		}
		if is.Diagnostics != "" {
			m["diagnostics"] = is.Diagnostics
		}
		if is.Expression != "" {
			m["expression"] = []any{is.Expression}
		}
		list = append(list, m)
	}
	if len(list) == 0 {
		list = append(list, map[string]any{"severity": "information", "code": "informational", "diagnostics": "ok"})
	}
	return map[string]any{"resourceType": "OperationOutcome", "issue": list}
}
