package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestGuard: who may scrape, by peer address, proxy headers and token.
func TestGuard(t *testing.T) {
	for _, c := range []struct {
		name   string
		guard  Guard
		remote string
		header []string
		want   int
	}{
		{"loopback v4", Guard{}, "127.0.0.1:5000", nil, 200},
		{"loopback v6", Guard{}, "[::1]:5000", nil, 200},
		{"remote", Guard{}, "192.0.2.7:5000", nil, 403},
		{"loopback through a proxy", Guard{}, "127.0.0.1:5000", []string{"X-Forwarded-For", "192.0.2.7"}, 403},
		{"loopback through a Forwarded proxy", Guard{}, "127.0.0.1:5000", []string{"Forwarded", "for=192.0.2.7"}, 403},
		{"remote with the token", Guard{Token: "t0k"}, "192.0.2.7:5000", []string{"Authorization", "Bearer t0k"}, 200},
		{"remote with another token", Guard{Token: "t0k"}, "192.0.2.7:5000", []string{"Authorization", "Bearer t0"}, 403},
		{"remote without the token", Guard{Token: "t0k"}, "192.0.2.7:5000", nil, 403},
		{"loopback needs no token", Guard{Token: "t0k"}, "127.0.0.1:5000", nil, 200},
		{"metrics listener", Guard{AnyAddress: true}, "192.0.2.7:5000", nil, 200},
		{"metrics listener with a token", Guard{AnyAddress: true, Token: "t0k"}, "192.0.2.7:5000", nil, 403},
		{"no peer address", Guard{}, "pipe", nil, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			r.RemoteAddr = c.remote
			for i := 0; i+1 < len(c.header); i += 2 {
				r.Header.Set(c.header[i], c.header[i+1])
			}
			w := httptest.NewRecorder()
			New().Handler(c.guard).ServeHTTP(w, r)
			if w.Code != c.want {
				t.Fatalf("%d, want %d", w.Code, c.want)
			}
		})
	}
}

// TestObservations: requests, commits and the audit queue gauge appear in the
// exposition with their labels.
func TestObservations(t *testing.T) {
	m := New()
	done := m.RequestStarted()
	done("search-type", "Goal", 200)
	m.ObserveCommit(3, 2*time.Millisecond, nil)
	m.ObserveCommit(2, time.Millisecond, errors.New("disk full"))
	depth := 7.0
	m.AuditQueueDepth(func() float64 { return depth })
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	r.RemoteAddr = "127.0.0.1:1"
	w := httptest.NewRecorder()
	m.Handler(Guard{}).ServeHTTP(w, r)
	body, _ := io.ReadAll(w.Body)
	for _, want := range []string{
		`crs_http_requests_total{code="200",interaction="search-type",type="Goal"} 1`,
		`crs_http_request_duration_seconds_count{interaction="search-type",type="Goal"} 1`,
		`crs_http_requests_in_flight 0`,
		`crs_store_commit_batch_size_sum 3`,
		`crs_store_commit_duration_seconds_count 1`,
		`crs_store_commit_failures_total 1`,
		`crs_audit_queue_depth 7`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
}
