package server

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"crs/fhir"
)

// Listener wraps l so that the errors net/http answers by itself, before any
// handler runs — a malformed request line, bad header syntax, headers or a
// request line too large, conflicting Content-Length headers, a bad escape
// such as %zz in the path, an unsupported Transfer-Encoding — reach the
// client as a FHIR OperationOutcome (application/fhir+json) with the same
// status, rather than as plain text.
//
// net/http writes each of those answers with one write straight to the
// connection, as "HTTP/1.1 <status>" followed by exactly the header block
// plainErrorHeaders; a response from a handler never has it (net/http adds a
// Date header after Content-Type and Connection, and crs's handlers set
// X-Request-Id before them). The wrapped connection recognises that write
// and sends the outcome in its place.
func Listener(l net.Listener) net.Listener { return outcomeListener{l} }

type outcomeListener struct{ net.Listener }

func (l outcomeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &outcomeConn{Conn: c}, nil
}

// plainErrorHeaders are the headers net/http gives the answers it writes
// itself (net/http/server.go, conn.serve).
const plainErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// headKeep bounds the bytes of a request an outcomeConn keeps to say what is
// wrong with it: the request line and the headers, the body's start.
const headKeep = 8 << 10

// outcomeConn replaces net/http's own plain-text error answers. It keeps the
// first bytes read since its last write (the start of the request being
// read), since net/http's answer to most malformed requests is a bare "400
// Bad Request" that does not say what was wrong.
type outcomeConn struct {
	net.Conn
	mu   sync.Mutex
	head []byte // read since the last write
	prev []byte // read before the last write, for pipelined requests
}

// Read reads from the connection, keeping the start of the request.
func (c *outcomeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if keep := headKeep - len(c.head); keep > 0 {
			c.head = append(c.head, p[:min(n, keep)]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

// Write sends p, or the OperationOutcome in its place when p is one of
// net/http's own error answers. A write ends the request read so far.
func (c *outcomeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	head := c.head
	if len(head) == 0 && len(c.prev) > 0 {
		// Read with the request before: a client that pipelines sends the
		// next request before the answer to the last one.
		if _, next, ok := bytes.Cut(c.prev, []byte("\r\n\r\n")); ok {
			head = next
		}
	}
	if len(c.head) > 0 {
		c.prev = c.head
	}
	c.head = nil
	c.mu.Unlock()
	if out, ok := outcomeAnswer(p, head); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection when the underlying one can, as
// net/http does after answering a request whose headers were too large.
func (c *outcomeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// outcomeAnswer turns one of net/http's own plain-text error answers into the
// same status with an OperationOutcome body, saying what is wrong with the
// request whose start is head; ok is false for anything else.
func outcomeAnswer(p, head []byte) ([]byte, bool) {
	const proto = "HTTP/1.1 "
	if !bytes.HasPrefix(p, []byte(proto)) {
		return nil, false
	}
	i := bytes.Index(p, []byte(plainErrorHeaders))
	if i < len(proto)+3 || bytes.Contains(p[:i], []byte("\r\n")) {
		return nil, false
	}
	code, err := strconv.Atoi(string(p[len(proto) : len(proto)+3]))
	if err != nil || code < 400 || code > 599 {
		return nil, false
	}
	// The body repeats the status line: "400 Bad Request[: what]".
	text := strings.TrimSpace(string(p[i+len(plainErrorHeaders):]))
	text = strings.TrimPrefix(strings.TrimPrefix(text, strconv.Itoa(code)+" "+http.StatusText(code)), ":")
	if text = strings.TrimSpace(text); text == "" {
		text = diagnose(head)
	}
	issue, diagnostics := "invalid", "the request is not well-formed HTTP/1.1: "+text
	switch code {
	case http.StatusRequestHeaderFieldsTooLarge:
		issue, diagnostics = "too-long", "the request line or headers exceed the server's limit"
	case http.StatusNotImplemented:
		issue, diagnostics = "not-supported", "the request uses a Transfer-Encoding this server does not support (only chunked)"
	}
	body, err := fhir.Marshal(fhir.Outcome([]fhir.Issue{{Severity: "error", Code: issue, Diagnostics: diagnostics}}))
	if err != nil {
		return nil, false
	}
	var b bytes.Buffer
	b.WriteString(proto + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
	b.WriteString("Content-Type: " + fhirJSON + "\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	b.WriteString("Connection: close\r\n\r\n")
	b.Write(body)
	return b.Bytes(), true
}

// diagnose says what net/http found wrong in a request it refused with a
// bare 400, from the request's start: its request line, its header lines and
// its Content-Length headers, in that order.
func diagnose(head []byte) string {
	const unknown = "malformed request line or header"
	h := string(head)
	if end := strings.Index(h, "\r\n\r\n"); end >= 0 {
		h = h[:end]
	}
	lines := strings.Split(h, "\r\n")
	quote := func(s string) string {
		if len(s) > 100 {
			s = s[:100] + "…"
		}
		return strconv.Quote(s)
	}
	parts := strings.Split(lines[0], " ")
	if len(parts) != 3 || parts[0] == "" {
		return "malformed request line " + quote(lines[0]) + ": expected METHOD target HTTP/1.1"
	}
	if _, _, ok := http.ParseHTTPVersion(parts[2]); !ok {
		return "malformed HTTP version " + quote(parts[2])
	}
	if parts[1] != "*" {
		if _, err := url.ParseRequestURI(parts[1]); err != nil {
			return "the request target " + quote(parts[1]) + " is not a valid URI (a bad %-escape?)"
		}
	}
	var lengths []string
	for _, line := range lines[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return "malformed header line " + quote(line) + ": expected Name: value"
		}
		if name == "" || strings.ContainsAny(name, " \t\"(),/;<=>?@[\\]{}") {
			return "invalid header name " + quote(name)
		}
		if strings.EqualFold(name, "Content-Length") {
			lengths = append(lengths, strings.TrimSpace(value))
		}
	}
	for _, l := range lengths {
		if n, err := strconv.ParseUint(l, 10, 63); err != nil || fmt.Sprint(n) != l {
			return "invalid Content-Length " + quote(l)
		}
		if l != lengths[0] {
			return "conflicting Content-Length headers " + quote(lengths[0]) + " and " + quote(l)
		}
	}
	return unknown
}
