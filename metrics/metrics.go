// Package metrics is the Prometheus instrumentation of crs: requests by FHIR
// interaction, resource type and status, their latency, the store's commits
// (latency and batch size), the audit queue's depth, and the Go runtime and
// process collectors. It owns its registry (not the global one) and the handler
// that serves it, with the rule of who may scrape (Guard).
package metrics

import (
	"crypto/subtle"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds crs's collectors and the registry they are served from.
type Metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	commitTime   prometheus.Histogram
	commitBatch  prometheus.Histogram
	commitFailed prometheus.Counter
}

// latencyBuckets span a cached read (well under a millisecond) to a slow
// transaction or search (seconds).
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// New returns the collectors, registered with the Go runtime and process
// collectors in a registry of their own.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crs_http_requests_total",
			Help: "HTTP requests answered, by FHIR interaction, resource type (empty: system level or not a served type) and status code.",
		}, []string{"interaction", "type", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "crs_http_request_duration_seconds",
			Help:    "Time from receiving a request's headers to writing its answer, by FHIR interaction and resource type.",
			Buckets: latencyBuckets,
		}, []string{"interaction", "type"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crs_http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crs_store_commit_duration_seconds",
			Help:    "Time the store's writer takes to make one batch durable (SQLite: the COMMIT, with its fsync).",
			Buckets: latencyBuckets,
		}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "crs_store_commit_batch_size",
			Help:    "Write calls made durable by one store commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
		commitFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crs_store_commit_failures_total",
			Help: "Store commits that failed (every write call of the batch was answered with an error).",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.inFlight, m.commitTime, m.commitBatch, m.commitFailed,
	)
	return m
}

// Registry returns the registry the collectors are served from, for a
// component that registers collectors of its own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RequestStarted counts a request in flight; call the function it returns
// with the request's interaction, type and status when it has been answered.
func (m *Metrics) RequestStarted() func(interaction, resourceType string, status int) {
	start := time.Now()
	m.inFlight.Inc()
	return func(interaction, resourceType string, status int) {
		m.inFlight.Dec()
		m.requests.WithLabelValues(interaction, resourceType, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(interaction, resourceType).Observe(time.Since(start).Seconds())
	}
}

// ObserveCommit records one store commit of writes write calls that took d;
// err is its failure, if any.
func (m *Metrics) ObserveCommit(writes int, d time.Duration, err error) {
	if err != nil {
		m.commitFailed.Inc()
		return
	}
	m.commitTime.Observe(d.Seconds())
	m.commitBatch.Observe(float64(writes))
}

// AuditQueueDepth publishes depth (how many AuditEvents wait to be made
// durable) as the gauge crs_audit_queue_depth. Without a call, the gauge is
// not exported.
func (m *Metrics) AuditQueueDepth(depth func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crs_audit_queue_depth",
		Help: "AuditEvents waiting to be made durable.",
	}, depth))
}

// Guard says who may scrape the metrics. The zero value admits loopback
// callers only: a request whose peer address is a loopback address and that
// carries no Forwarded or X-Forwarded-For header (a reverse proxy on the same
// host would otherwise make every remote caller look local).
type Guard struct {
	// Token, when set, also admits any caller presenting
	// "Authorization: Bearer <Token>" (Prometheus: authorization.credentials_file).
	Token string
	// AnyAddress admits every caller, for a listener only the monitoring
	// network can reach (crs serve --metrics-addr). With Token set, callers
	// other than loopback ones still need the token.
	AnyAddress bool
}

// Handler serves the metrics in the Prometheus text format to the callers g
// admits (loopback callers always need no token), and 403 to the others.
func (m *Metrics) Handler(g Guard) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.admits(r) {
			http.Error(w, "metrics are served to loopback callers only (see docs/security.md)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (g Guard) admits(r *http.Request) bool {
	switch {
	case isLoopback(r):
		return true
	case g.Token != "":
		got := []byte(r.Header.Get("Authorization"))
		return subtle.ConstantTimeCompare(got, []byte("Bearer "+g.Token)) == 1
	default:
		return g.AnyAddress
	}
}

// isLoopback reports whether r comes from a loopback peer, not through a proxy.
func isLoopback(r *http.Request) bool {
	if r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-For") != "" {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
