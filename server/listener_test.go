package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	"crs/server"
)

// newListenerServer serves newServer's handler on a real listener on
// 127.0.0.1, wrapped by server.Listener as cmd/crs wraps it, and returns its
// address.
func newListenerServer(t *testing.T) string {
	t.Helper()
	h := newServer(t).Config.Handler
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(server.Listener(ln)) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// raw writes request bytes to a new connection and reads the responses, one
// per expected status.
func raw(t *testing.T, addr, request string, n int) []*http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() { _, _ = io.WriteString(conn, request) }() // the server may answer before reading it all
	r := bufio.NewReader(conn)
	var out []*http.Response
	for i := 0; i < n; i++ {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("%.60q: response %d: %v", request, i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		out = append(out, resp)
	}
	return out
}

// outcome checks that resp is status with an OperationOutcome body in
// application/fhir+json whose diagnostics contain want.
func outcome(t *testing.T, name string, resp *http.Response, status int, want string) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d: %s", name, resp.StatusCode, status, body)
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("%s: Content-Type %q: %s", name, ct, body)
		return
	}
	obj, err := fhir.Parse(body, fhir.Limits{})
	if err != nil || fhir.ResourceType(obj) != "OperationOutcome" {
		t.Errorf("%s: not an OperationOutcome (%v): %s", name, err, body)
		return
	}
	if !strings.Contains(string(body), want) {
		t.Errorf("%s: outcome does not say %q: %s", name, want, body)
	}
}

// TestPreRoutingErrors sends requests that net/http refuses before any
// handler runs, over raw TCP, and checks each answer is an OperationOutcome.
func TestPreRoutingErrors(t *testing.T) {
	addr := newListenerServer(t)
	big := strings.Repeat("a", 1<<20+8192)
	for _, c := range []struct {
		name, request string
		status        int
		want          string
	}{
		{"bad request line", "GARBAGE\r\n\r\n", 400, "not well-formed"},
		{"bad request line (two parts)", "GET /fhir/metadata\r\nHost: x\r\n\r\n", 400, "malformed request line"},
		{"bad protocol version", "GET /fhir/metadata HTTP/9.Z\r\nHost: x\r\n\r\n", 400, `malformed HTTP version \"HTTP/9.Z\"`},
		{"unsupported protocol version", "GET /fhir/metadata HTTP/2.0\r\nHost: x\r\n\r\n", 505, "unsupported protocol version"},
		{"bad header syntax", "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400, "malformed header line"},
		{"bad header name", "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", 400, "invalid header name"},
		{"missing Host", "GET /fhir/metadata HTTP/1.1\r\n\r\n", 400, "Host"},
		{"oversized header", "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n", 431, "exceed"},
		{"oversized request line", "GET /fhir/Patient?name=" + big + " HTTP/1.1\r\nHost: x\r\n\r\n", 431, "exceed"},
		{"conflicting Content-Length", "POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "conflicting Content-Length"},
		{"bad Content-Length", "POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\nContent-Length: -2\r\n\r\n{}", 400, "invalid Content-Length"},
		{"bad escape in path", "GET /fhir/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "is not a valid URI"},
		{"unsupported Transfer-Encoding", "POST /fhir HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Transfer-Encoding"},
	} {
		outcome(t, c.name, raw(t, addr, c.request, 1)[0], c.status, c.want)
	}
	// A bad request after a good one on the same connection.
	rs := raw(t, addr, "GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\nGET /fhir/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 2)
	if rs[0].StatusCode != 200 {
		t.Errorf("keep-alive: first answer %d", rs[0].StatusCode)
	}
	outcome(t, "bad request after a good one", rs[1], 400, "is not a valid URI")
}

// TestUnknownMethods checks that a method no route serves is a 405 with an
// Allow header and an OperationOutcome, and that OPTIONS is left to routing.
func TestUnknownMethods(t *testing.T) {
	addr := newListenerServer(t)
	for _, m := range []string{"PROPFIND", "get", "TRACE", "BREW"} {
		resp := raw(t, addr, m+" /fhir/Patient HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0]
		outcome(t, m, resp, 405, "not supported by this server")
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "OPTIONS") {
			t.Errorf("%s: Allow %q", m, allow)
		}
	}
	resp := raw(t, addr, "OPTIONS /fhir/Patient HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0]
	if body, _ := io.ReadAll(resp.Body); strings.Contains(string(body), "not supported by this server: it answers") {
		t.Errorf("OPTIONS answered by the unknown-method check: %s", body)
	}
}

// TestListenerLeavesHandlerAnswers checks that a handler's own plain-text
// answer with Connection: close is not mistaken for net/http's refusals.
func TestListenerLeavesHandlerAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, "plain")
	})}
	go func() { _ = srv.Serve(server.Listener(ln)) }()
	t.Cleanup(func() { srv.Close() })
	resp := raw(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1)[0]
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || string(body) != "plain" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("the handler's answer was changed: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
