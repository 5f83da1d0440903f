package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"crs/server"
)

// browserPage is a page on another origin whose script calls crs with an
// Authorization header (so the browser sends a CORS preflight first) and
// writes what happened into the page.
const browserPage = `<!doctype html><html><body>pending<script>
fetch(%q, {headers: {"Authorization": "Bearer not-checked-in-development-mode", "Prefer": "handling=strict"}})
  .then(r => r.json().then(j => { document.body.textContent = "OK " + r.status + " " + j.resourceType + " cors=" + j.rest[0].security.cors + " requestid=" + (r.headers.get("X-Request-Id") !== null); }))
  .catch(e => { document.body.textContent = "BLOCKED " + e; });
</script></body></html>`

// TestCORSFromARealBrowser loads a page from one origin in headless Chromium
// that calls crs on another: allowed, the call succeeds after the preflight;
// not listed, the browser blocks it.
func TestCORSFromARealBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (make test installs it)")
	}
	var target atomic.Value // the crs URL the page calls
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, browserPage, target.Load().(string)+"/fhir/metadata")
	}))
	defer page.Close()
	run := func(origins []string) string {
		crs, _ := newEdgeServer(t, server.Config{CORSOrigins: origins})
		target.Store(crs.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--dump-dom", page.URL).Output()
		if err != nil {
			t.Fatalf("chromium: %v", err)
		}
		return string(out)
	}
	if dom := run([]string{page.URL}); !strings.Contains(dom, "OK 200 CapabilityStatement cors=true requestid=true") {
		t.Errorf("allowed origin: the page says %q", dom)
	}
	if dom := run([]string{"https://somewhere-else.example"}); !strings.Contains(dom, "BLOCKED") {
		t.Errorf("unlisted origin: the page says %q", dom)
	}
}
