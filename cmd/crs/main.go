// Command crs is the Community Recovery shared record: a FHIR R4 server.
//
//	crs serve --addr 127.0.0.1:8080 --store sqlite:./data/crs.db
//
// Every flag has an environment equivalent: --base-url is CRS_BASE_URL, and so on.
// cmd/crs is the only place that wires concrete implementations together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"crs/audit"
	"crs/auth"
	"crs/export"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/mongo"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/mapping/bars"
	"crs/mapping/mllp"
	"crs/measures"
	"crs/metrics"
	"crs/profiles"
	"crs/server"
	"crs/subscriptions"
)

// version is the software version reported in the CapabilityStatement.
var version = "0.1.0-dev"

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "crs:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch args[0] {
	case "serve":
		out := stderr
		if slices.ContainsFunc(args[1:], func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
			out = stdout // usage asked for is the answer, not an error
		}
		cfg, err := parseServeFlags(args[1:], out)
		if errors.Is(err, flag.ErrHelp) {
			return nil // usage printed; asking for help is not a failure
		}
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		m := &Main{Config: cfg, Log: slog.New(slog.NewJSONHandler(stderr, nil))}
		if err := m.Start(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return m.Close()
	case "version", "--version", "-version", "-v":
		printVersion(stdout)
		return nil
	case "audit":
		return auditCommand(args[1:], stdout, stderr)
	case "backup":
		return backupCommand(args[1:], stdout, stderr)
	case "import":
		return importCommand(args[1:], stdout, stderr)
	case "demo":
		return demoCommand(args[1:], stdout, stderr)
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

const usage = `crs — the Community Recovery shared record (FHIR R4 server)

Usage:
  crs serve [flags]   serve the FHIR API under http://<addr>/fhir
  crs audit verify [--store …]
                      check the audit trail's hash chain; names the first break
  crs demo [--store …] [--seed n] [--force]
                      load the synthetic demo region (refuses a store with data)
  crs import <source> [flags] FILE…
                      bring partner records (cld, visits, therapy, careplans, hl7v2) into the record
  crs backup --store sqlite:<path> <file>
                      copy a SQLite store, consistent while it serves
  crs version         print the version and commit (also crs --version)

Run 'crs serve -h' for the flags; each has a CRS_* environment equivalent.
`

// Config is the configuration of a running server.
type Config struct {
	Addr         string // listen address, host:port
	Store        string // sqlite:<path> or mongodb://host/db
	BaseURL      string // advertised base; http://<addr>/fhir when empty
	MaxBodyBytes int
	MaxDepth     int
	DefaultCount int
	MaxCount     int
	TotalLimit   int
	QueryTimeout time.Duration // a search's store work past this stops with 400 too-costly; negative: none
	QueryPlans   bool          // the X-Query-Plan debug header on search responses
	AuditQueue   int           // AuditEvents waiting for their commit before requests are refused
	// SQLiteMmapMiB is how many MiB of the database file each SQLite read
	// connection maps (0: the store's default, -1: none); SQLiteReadConns how many read connections
	// the store keeps (0: 2×GOMAXPROCS, at least 4). Their product bounds the
	// mapped file pages the resident set can count.
	SQLiteMmapMiB   int
	SQLiteReadConns int
	// SQLitePageSize is the page size, in bytes, of an SQLite database the
	// server creates (0: the store's default); an existing one keeps its own.
	SQLitePageSize int
	// ProfileEnforcement is strict (every write of a profiled type must conform
	// to the pathway profile) or declared (only claimed profiles are checked).
	ProfileEnforcement string
	CanonicalBase      string // base of the pathway's canonical URLs
	OIDCIssuer         string // OpenID Connect issuer; empty: development mode
	OIDCAudience       string // the audience tokens must carry; the base URL when empty
	ClaimOrg           string // token claim with the caller's ODS code
	ClaimRole          string // token claim with the caller's role(s)
	ClaimLA            string // token claim with the caller's local authority
	ClaimPatient       string // token claim with the SMART launch context's patient id
	Policy             string // access policy file; the embedded default when empty
	InsecureNoAuth     bool   // allow development mode on a non-loopback address
	// MetricsAddr, when set, serves /metrics on a listener of its own (to any
	// caller that reaches it) instead of on Addr (loopback callers only).
	MetricsAddr  string
	MetricsToken string // also admits scrapers presenting it as a bearer token

	// QueryLimits bound a search's size (--max-param-repeats, --max-or-values …).
	QueryLimits search.Limits
	// MaxConditionalDelete is how many resources one conditional delete may delete.
	MaxConditionalDelete int
	TrustedProxies       string // comma-separated addresses or CIDR ranges whose X-Forwarded-For is believed
	CORSOrigins          string // comma-separated browser origins allowed to call the API
	LogQueryValues       bool   // log query values in full (debugging; loopback only)
	DemoIfEmpty          bool   // load the demo region before serving when the store is empty
	// ExportDir holds the Bulk Data $export jobs and their NDJSON files;
	// default <sqlite path>.exports, or ./data/exports for MongoDB.
	ExportDir string
	// ExportExpiry is how long a finished export's files are kept.
	ExportExpiry time.Duration
	// ExportMaxFileBytes is the size at which an export's NDJSON file is split.
	ExportMaxFileBytes int

	// MLLPAddr, when set, serves HL7 v2 ADT over MLLP there (off by default).
	MLLPAddr                string
	HL7v2Facilities         string // FACILITY=ODS,… accepted sending facilities (MSH-4)
	SubscriptionHosts       string // ODS=host1,host2;… endpoint hosts per organisation for Subscriptions
	HL7v2DischargeReadyDate string // the A03 field holding the Discharge Ready Date (PV2-9)

	// SubscriptionRetention is how long delivered subscription events are
	// kept for $events (--subscription-retention).
	SubscriptionRetention time.Duration

	// unaudited turns the audit trail off: for the same-run baseline of
	// BenchmarkHTTPAudit only (no flag sets it; crs serve always audits).
	unaudited bool
	// SignIn is the browser sign-in of the MDT pages (--oidc-client-id …).
	SignIn SignInConfig
}

// maxQueryValues bounds --max-query-values: past it, a query could bind more
// variables than one SQLite statement takes.
const maxQueryValues = 5000

// parseServeFlags reads flags, with CRS_* environment variables as defaults.
// The defaults themselves live with what they configure (fhir.DefaultLimits,
// fhir.DefaultPageSize, engine.DefaultTotalLimit …), written once. A CRS_*
// value that is not of its flag's kind or range stops the start, naming the
// variable.
func parseServeFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: crs serve [flags]\n\nServes the FHIR API under http://<addr>/fhir. Each flag has a CRS_* environment equivalent.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var cfg Config
	var ev envReader
	env, envInt := ev.str, ev.int
	fs.StringVar(&cfg.Addr, "addr", env("CRS_ADDR", "127.0.0.1:8080"), "listen address (CRS_ADDR)")
	fs.StringVar(&cfg.Store, "store", env("CRS_STORE", "sqlite:./data/crs.db"), "store: sqlite:<path> or mongodb://host[:port]/database?options (CRS_STORE)")
	fs.StringVar(&cfg.BaseURL, "base-url", env("CRS_BASE_URL", ""), "advertised base URL; default http://<addr>/fhir (CRS_BASE_URL)")
	fs.IntVar(&cfg.MaxBodyBytes, "max-body-bytes", envInt("CRS_MAX_BODY_BYTES", fhir.DefaultLimits.MaxBytes), "largest request body (CRS_MAX_BODY_BYTES)")
	fs.IntVar(&cfg.MaxDepth, "max-depth", envInt("CRS_MAX_DEPTH", fhir.DefaultLimits.MaxDepth), "deepest JSON nesting accepted (CRS_MAX_DEPTH)")
	fs.IntVar(&cfg.DefaultCount, "default-count", envInt("CRS_DEFAULT_COUNT", fhir.DefaultPageSize), "page size when _count is absent (CRS_DEFAULT_COUNT)")
	fs.IntVar(&cfg.MaxCount, "max-count", envInt("CRS_MAX_COUNT", fhir.MaxPageSize), "largest page size (CRS_MAX_COUNT)")
	fs.IntVar(&cfg.TotalLimit, "total-limit", envInt("CRS_TOTAL_LIMIT", engine.DefaultTotalLimit), "without _total, Bundle.total is counted only up to this many matches; -1: always (CRS_TOTAL_LIMIT)")
	fs.DurationVar(&cfg.QueryTimeout, "query-timeout", ev.duration("CRS_QUERY_TIMEOUT", engine.DefaultQueryTimeout), "a search still working in the store after this long stops with 400 too-costly; -1s: no bound (CRS_QUERY_TIMEOUT)")
	fs.BoolVar(&cfg.QueryPlans, "query-plan-header", ev.bool("CRS_QUERY_PLAN_HEADER", false), "say in an X-Query-Plan header how the store found each search page, for debugging slow queries; its row counts ignore access rules (CRS_QUERY_PLAN_HEADER=true)")
	fs.IntVar(&cfg.SQLiteMmapMiB, "sqlite-mmap-mib", envInt("CRS_SQLITE_MMAP_MIB", sqlite.DefaultMmapBytes>>20), "MiB of the database file each SQLite read connection maps (mapped pages count in the resident set once per connection); -1: none, every page read with a copy (CRS_SQLITE_MMAP_MIB)")
	fs.IntVar(&cfg.SQLitePageSize, "sqlite-page-size", envInt("CRS_SQLITE_PAGE_SIZE", sqlite.DefaultPageSize), "page size in bytes of a NEW SQLite database, a power of two from 512 to 65536 (every commit writes each page it changes whole to the WAL); an existing database keeps its own (CRS_SQLITE_PAGE_SIZE)")
	fs.IntVar(&cfg.SQLiteReadConns, "sqlite-read-conns", envInt("CRS_SQLITE_READ_CONNS", 0), "SQLite read connections; 0: 2×GOMAXPROCS, at least 4 (CRS_SQLITE_READ_CONNS)")
	fs.IntVar(&cfg.AuditQueue, "audit-queue", envInt("CRS_AUDIT_QUEUE", engine.DefaultAuditQueue), "AuditEvents that may wait for their durable commit before requests are refused with 503 (CRS_AUDIT_QUEUE)")
	fs.StringVar(&cfg.ProfileEnforcement, "profile-enforcement", env("CRS_PROFILE_ENFORCEMENT", string(engine.EnforceStrict)),
		"strict: writes of the pathway's types must conform to its profiles; declared: only claimed profiles are checked (CRS_PROFILE_ENFORCEMENT)")
	fs.StringVar(&cfg.CanonicalBase, "canonical-base", env("CRS_CANONICAL_BASE", profiles.DefaultCanonicalBase),
		"base of the pathway profiles' canonical URLs (CRS_CANONICAL_BASE)")
	fs.StringVar(&cfg.OIDCIssuer, "oidc-issuer", env("CRS_OIDC_ISSUER", ""), "OpenID Connect issuer whose access tokens are accepted; none: development mode, loopback only (CRS_OIDC_ISSUER)")
	fs.StringVar(&cfg.OIDCAudience, "oidc-audience", env("CRS_OIDC_AUDIENCE", ""), "audience access tokens must carry; default the base URL (CRS_OIDC_AUDIENCE)")
	fs.StringVar(&cfg.ClaimOrg, "claim-org", env("CRS_CLAIM_ORG", auth.DefaultClaimNames.Org), "token claim holding the caller's ODS code (CRS_CLAIM_ORG)")
	fs.StringVar(&cfg.ClaimRole, "claim-role", env("CRS_CLAIM_ROLE", auth.DefaultClaimNames.Role), "token claim holding the caller's role(s) (CRS_CLAIM_ROLE)")
	fs.StringVar(&cfg.ClaimLA, "claim-la", env("CRS_CLAIM_LA", auth.DefaultClaimNames.LocalAuthority), "token claim holding the caller's local authority (CRS_CLAIM_LA)")
	fs.StringVar(&cfg.ClaimPatient, "claim-patient", env("CRS_CLAIM_PATIENT", auth.DefaultClaimNames.Patient), "token claim holding the patient id that bounds patient/ scopes (CRS_CLAIM_PATIENT)")
	fs.StringVar(&cfg.Policy, "policy", env("CRS_POLICY", ""), "access policy file (JSON); default the embedded policy (CRS_POLICY)")
	fs.BoolVar(&cfg.InsecureNoAuth, "insecure-no-auth", ev.bool("CRS_INSECURE_NO_AUTH", false), "serve without authentication on a non-loopback address (CRS_INSECURE_NO_AUTH=true)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", env("CRS_METRICS_ADDR", ""),
		"serve /metrics on this address, to any caller that reaches it; default: on --addr, to loopback callers only (CRS_METRICS_ADDR)")
	fs.StringVar(&cfg.MetricsToken, "metrics-token", env("CRS_METRICS_TOKEN", ""),
		"bearer token that admits non-loopback scrapers to /metrics; prefer the environment variable (CRS_METRICS_TOKEN)")
	ql, dl := &cfg.QueryLimits, search.DefaultLimits
	fs.IntVar(&ql.MaxRepeats, "max-param-repeats", ev.int("CRS_MAX_PARAM_REPEATS", dl.MaxRepeats), "times one search parameter may repeat in a query (CRS_MAX_PARAM_REPEATS)")
	fs.IntVar(&ql.MaxParams, "max-params", ev.int("CRS_MAX_PARAMS", dl.MaxParams), "search parameters (ANDed) in one query (CRS_MAX_PARAMS)")
	fs.IntVar(&ql.MaxOr, "max-or-values", ev.int("CRS_MAX_OR_VALUES", dl.MaxOr), "comma-separated values in one search parameter (CRS_MAX_OR_VALUES)")
	fs.IntVar(&ql.MaxValues, "max-query-values", ev.int("CRS_MAX_QUERY_VALUES", dl.MaxValues), "search values in one query, all parameters together (CRS_MAX_QUERY_VALUES)")
	fs.IntVar(&ql.MaxIncludes, "max-includes", ev.int("CRS_MAX_INCLUDES", dl.MaxIncludes), "_include and _revinclude parameters in one query (CRS_MAX_INCLUDES)")
	fs.IntVar(&ql.MaxChain, "max-chain", ev.int("CRS_MAX_CHAIN", dl.MaxChain), "links in a chained or _has search parameter (CRS_MAX_CHAIN)")
	fs.IntVar(&ql.MaxChained, "max-chained-params", ev.int("CRS_MAX_CHAINED_PARAMS", dl.MaxChained), "chained and _has parameters in one query (CRS_MAX_CHAINED_PARAMS)")
	fs.IntVar(&ql.MaxSort, "max-sort-keys", ev.int("CRS_MAX_SORT_KEYS", dl.MaxSort), "keys of _sort (CRS_MAX_SORT_KEYS)")
	fs.IntVar(&cfg.MaxConditionalDelete, "max-conditional-delete", ev.int("CRS_MAX_CONDITIONAL_DELETE", engine.DefaultMaxConditionalDelete),
		"resources one conditional delete may delete; more matches are refused with 412 (CRS_MAX_CONDITIONAL_DELETE)")
	fs.StringVar(&cfg.TrustedProxies, "trusted-proxies", env("CRS_TRUSTED_PROXIES", ""), "comma-separated addresses or CIDR ranges of the reverse proxies whose X-Forwarded-For is believed; default none (CRS_TRUSTED_PROXIES)")
	fs.StringVar(&cfg.CORSOrigins, "cors-origins", env("CRS_CORS_ORIGINS", ""), "comma-separated browser origins allowed to call the API, e.g. https://mdt.example.nhs.uk; default none: CORS off (CRS_CORS_ORIGINS)")
	fs.StringVar(&cfg.ExportDir, "export-dir", env("CRS_EXPORT_DIR", ""), "directory of the $export jobs and files; default <sqlite path>.exports, or ./data/exports (CRS_EXPORT_DIR)")
	fs.DurationVar(&cfg.ExportExpiry, "export-expiry", ev.duration("CRS_EXPORT_EXPIRY", export.DefaultExpiry), "how long a finished $export's files are kept, e.g. 30m or 2h (CRS_EXPORT_EXPIRY)")
	fs.IntVar(&cfg.ExportMaxFileBytes, "export-max-file-bytes", envInt("CRS_EXPORT_MAX_FILE_BYTES", export.DefaultMaxFileBytes), "size at which an $export NDJSON file is split (CRS_EXPORT_MAX_FILE_BYTES)")
	fs.StringVar(&cfg.MLLPAddr, "mllp-addr", env("CRS_MLLP_ADDR", ""), "serve HL7 v2 ADT over MLLP on this address, e.g. 127.0.0.1:2575; default off (CRS_MLLP_ADDR)")
	fs.DurationVar(&cfg.SubscriptionRetention, "subscription-retention", ev.duration("CRS_SUBSCRIPTION_RETENTION", subscriptions.DefaultRetention), "how long a subscription's delivered events are kept for $events before they are pruned, e.g. 720h; -1s: forever (CRS_SUBSCRIPTION_RETENTION)")
	fs.StringVar(&cfg.SubscriptionHosts, "subscription-hosts", env("CRS_SUBSCRIPTION_HOSTS", ""), "endpoint hosts each organisation's Subscriptions may deliver to: ODS=host1,host2;ODS2=host3 (CRS_SUBSCRIPTION_HOSTS); loopback is allowed only in development mode")
	fs.StringVar(&cfg.HL7v2Facilities, "hl7v2-facilities", env("CRS_HL7V2_FACILITIES", ""), "--mllp-addr: sending facilities (MSH-4) accepted, with their trust's ODS code: FACILITY=ODS,… (CRS_HL7V2_FACILITIES)")
	fs.StringVar(&cfg.HL7v2DischargeReadyDate, "hl7v2-discharge-ready-date", env("CRS_HL7V2_DISCHARGE_READY_DATE", "PV2-9"), "--mllp-addr: the A03 field holding the Discharge Ready Date, e.g. PV2-9 or ZU1-5 (CRS_HL7V2_DISCHARGE_READY_DATE)")
	fs.BoolVar(&cfg.LogQueryValues, "log-query-values", ev.bool("CRS_LOG_QUERY_VALUES", false), "log query values and error details in full, for debugging on a loopback address only; default: parameter names only (CRS_LOG_QUERY_VALUES=true)")
	fs.BoolVar(&cfg.DemoIfEmpty, "demo-if-empty", ev.bool("CRS_DEMO_IF_EMPTY", false), "load the synthetic demo region first when the store holds no pathway data (CRS_DEMO_IF_EMPTY=true)")
	signInFlags(fs, &cfg.SignIn, &ev)
	if ev.err != nil {
		return cfg, ev.err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if err := checkEdge(cfg); err != nil {
		return cfg, err
	}
	if err := checkSignIn(cfg); err != nil {
		return cfg, err
	}
	if cfg.ExportExpiry <= 0 {
		return cfg, fmt.Errorf("--export-expiry (CRS_EXPORT_EXPIRY) must be a positive duration such as 30m or 2h, not %s", cfg.ExportExpiry)
	}
	for name, v := range map[string]int{"max-param-repeats": ql.MaxRepeats, "max-params": ql.MaxParams, "max-or-values": ql.MaxOr, "max-query-values": ql.MaxValues,
		"max-includes": ql.MaxIncludes, "max-chain": ql.MaxChain, "max-chained-params": ql.MaxChained, "max-sort-keys": ql.MaxSort,
		"max-conditional-delete": cfg.MaxConditionalDelete} {
		if v < 1 {
			return cfg, fmt.Errorf("--%s must be at least 1, not %d", name, v)
		}
	}
	if ql.MaxValues > maxQueryValues {
		// Each value binds up to five SQL variables; SQLite takes 32,766.
		return cfg, fmt.Errorf("--max-query-values must be at most %d, not %d", maxQueryValues, ql.MaxValues)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch engine.Enforcement(cfg.ProfileEnforcement) {
	case engine.EnforceStrict, engine.EnforceDeclared:
	default:
		return cfg, fmt.Errorf("--profile-enforcement (CRS_PROFILE_ENFORCEMENT) must be strict or declared, not %q", cfg.ProfileEnforcement)
	}
	for _, c := range []struct {
		flag, env string
		v, min    int
	}{
		{"max-body-bytes", "CRS_MAX_BODY_BYTES", cfg.MaxBodyBytes, 1},
		{"max-depth", "CRS_MAX_DEPTH", cfg.MaxDepth, 1},
		{"default-count", "CRS_DEFAULT_COUNT", cfg.DefaultCount, 1},
		{"max-count", "CRS_MAX_COUNT", cfg.MaxCount, 1},
		{"total-limit", "CRS_TOTAL_LIMIT", cfg.TotalLimit, -1},
		{"audit-queue", "CRS_AUDIT_QUEUE", cfg.AuditQueue, 1},
		{"sqlite-mmap-mib", "CRS_SQLITE_MMAP_MIB", cfg.SQLiteMmapMiB, -1},
		{"sqlite-read-conns", "CRS_SQLITE_READ_CONNS", cfg.SQLiteReadConns, 0},
		{"sqlite-page-size", "CRS_SQLITE_PAGE_SIZE", cfg.SQLitePageSize, 512},
		{"export-max-file-bytes", "CRS_EXPORT_MAX_FILE_BYTES", cfg.ExportMaxFileBytes, 1},
	} {
		if c.v < c.min {
			return cfg, fmt.Errorf("--%s (%s) must be at least %d, not %d", c.flag, c.env, c.min, c.v)
		}
	}
	if cfg.ExportExpiry <= 0 {
		return cfg, fmt.Errorf("--export-expiry (CRS_EXPORT_EXPIRY) must be a positive duration, not %s", cfg.ExportExpiry)
	}
	return cfg, nil
}

// env reads a CRS_* variable outside the serve flags (crs audit verify).
func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// envReader reads CRS_* variables as flag defaults and keeps the first
// malformed one, so that a bad value stops the start instead of being
// silently replaced by the default.
type envReader struct{ err error }

func (r *envReader) str(name, def string) string { return env(name, def) }

func (r *envReader) int(name string, def int) int {
	return envParse(r, name, def, strconv.Atoi, "a whole number")
}

func (r *envReader) bool(name string, def bool) bool {
	return envParse(r, name, def, strconv.ParseBool, "true or false")
}

func (r *envReader) duration(name string, def time.Duration) time.Duration {
	return envParse(r, name, def, time.ParseDuration, "a duration (such as 5s)")
}

// envParse reads variable name with parse, or gives def when it is unset; a
// value parse refuses is kept as r's error (saying it is not what), and def
// is returned.
func envParse[T any](r *envReader, name string, def T, parse func(string) (T, error), what string) T {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	x, err := parse(strings.TrimSpace(v))
	if err != nil {
		r.fail(fmt.Errorf("%s=%q is not %s", name, v, what))
		return def
	}
	return x
}

func (r *envReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// Main is a running server: its store, engine and HTTP listener.
type Main struct {
	Config Config
	Log    *slog.Logger

	store    store.Store
	journal  *audit.Journal
	engine   *engine.Engine
	exports  *export.Manager
	subs     *subscriptions.Manager
	lock     *storeLock
	http     *http.Server
	listener net.Listener
	done     chan error

	metricsHTTP     *http.Server // nil unless Config.MetricsAddr is set
	metricsListener net.Listener
	metricsDone     chan error

	mllp         *mllp.Server // nil unless Config.MLLPAddr is set
	mllpListener net.Listener
	mllpDone     chan error
}

// MetricsAddr returns the address of the metrics listener, or "" when /metrics
// is served on Addr.
func (m *Main) MetricsAddr() string {
	if m.metricsListener == nil {
		return ""
	}
	return m.metricsListener.Addr().String()
}

// Addr returns the address the server listens on (useful with port 0).
func (m *Main) Addr() string { return m.listener.Addr().String() }

// Start opens the store, builds the engine and starts serving in the background.
func (m *Main) Start(ctx context.Context) error {
	if path, ok := strings.CutPrefix(m.Config.Store, "sqlite:"); ok && path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		lock, err := lockStore(path)
		if err != nil {
			return err
		}
		m.lock = lock
	}
	if err := m.start(ctx); err != nil {
		m.lock.release()
		m.lock = nil
		return err
	}
	return nil
}

func (m *Main) start(ctx context.Context) error {
	met := metrics.New()
	st, err := openStoreLog(m.Config.Store, m.Log, m.Config.sqliteOptions(met.ObserveCommit))
	if err != nil {
		return err
	}
	m.store = st
	v, err := validate.New()
	if err != nil {
		st.Close()
		return fmt.Errorf("compile validator: %w", err)
	}
	prof, params, err := loadProfiles(m.Config.CanonicalBase)
	if err != nil {
		st.Close()
		return err
	}
	if m.Config.OIDCIssuer == "" && !isLoopback(m.Config.Addr) && !m.Config.InsecureNoAuth {
		st.Close()
		return fmt.Errorf("refusing to serve %s without authentication: give --oidc-issuer (or --insecure-no-auth to accept the risk)", m.Config.Addr)
	}
	if m.Config.OIDCIssuer == "" && m.Config.TrustedProxies != "" && !m.Config.InsecureNoAuth {
		st.Close()
		return fmt.Errorf("refusing --trusted-proxies without authentication: behind a proxy, give --oidc-issuer")
	}
	if m.Config.LogQueryValues && !isLoopback(m.Config.Addr) {
		st.Close()
		return fmt.Errorf("refusing --log-query-values on %s: query values carry NHS numbers and names; use it on a loopback address only", m.Config.Addr)
	}
	ln, err := net.Listen("tcp", m.Config.Addr)
	if err != nil {
		st.Close()
		return err
	}
	m.listener = ln
	base := m.Config.BaseURL
	if base == "" {
		base = "http://" + ln.Addr().String() + "/fhir"
	}
	var verifier server.TokenVerifier
	var access engine.Access
	var pageSignIns server.PageSignIn
	if m.Config.OIDCIssuer != "" {
		aud := m.Config.OIDCAudience
		if aud == "" {
			aud = base
		}
		v, err := auth.NewVerifier(ctx, m.Config.OIDCIssuer, aud, auth.ClaimNames{Org: m.Config.ClaimOrg, Role: m.Config.ClaimRole, LocalAuthority: m.Config.ClaimLA, Patient: m.Config.ClaimPatient})
		if err != nil {
			ln.Close()
			st.Close()
			return err
		}
		policy, err := auth.LoadPolicy(m.Config.Policy, params)
		if err != nil {
			ln.Close()
			st.Close()
			return err
		}
		verifier, access = v, policy
		if pageSignIns, err = pageSignIn(ctx, m.Config.SignIn, m.Config.OIDCIssuer, base, v); err != nil {
			ln.Close()
			st.Close()
			return err
		}
	} else {
		m.Log.Warn("DEVELOPMENT MODE: no --oidc-issuer, so there is no authentication and no access policy; every caller is anonymous and may do everything. Never use this with real data.", "addr", ln.Addr().String())
	}
	withMeasures, err := measures.WithMeasures(prof)
	if err != nil {
		ln.Close()
		st.Close()
		return err
	}
	journal, err := openJournal(m.Config.Store, journalBound*m.Config.AuditQueue)
	if err != nil {
		ln.Close()
		st.Close()
		return err
	}
	m.journal = journal
	subs, err := newSubscriptions(m.Config)
	if err != nil {
		ln.Close()
		if journal != nil {
			journal.Close()
		}
		st.Close()
		return err
	}
	eng := engine.New(engine.Config{
		Outbox: subs,
		Store:  st, Validator: v, Elements: v, Base: base,
		Limits:       fhir.Limits{MaxBytes: m.Config.MaxBodyBytes, MaxDepth: m.Config.MaxDepth},
		DefaultCount: m.Config.DefaultCount, MaxCount: m.Config.MaxCount, TotalLimit: m.Config.TotalLimit, AuditQueue: m.Config.AuditQueue,
		Params: params, Profiles: withMeasures, Enforcement: engine.Enforcement(m.Config.ProfileEnforcement),
		Access: access, Audit: !m.Config.unaudited, AuditJournal: journal, QueryLimits: m.Config.QueryLimits, MaxConditionalDelete: m.Config.MaxConditionalDelete,
		QueryTimeout: m.Config.QueryTimeout, ExplainPlans: m.Config.QueryPlans,
	})
	m.engine = eng
	met.AuditQueueDepth(func() float64 { return float64(eng.AuditQueueDepth()) })
	if err := eng.InstallConformance(ctx); err != nil {
		ln.Close()
		eng.Close()
		if journal != nil {
			journal.Close()
		}
		st.Close()
		return fmt.Errorf("install the pathway's conformance resources: %w", err)
	}
	if err := subs.Start(ctx, eng); err != nil {
		ln.Close()
		eng.Close()
		if journal != nil {
			journal.Close()
		}
		st.Close()
		return fmt.Errorf("start the subscriptions: %w", err)
	}
	m.subs = subs
	if err := m.startMLLP(eng, prof); err != nil {
		ln.Close()
		eng.Close()
		if journal != nil {
			journal.Close()
		}
		st.Close()
		return err
	}
	exports, err := export.New(export.Config{Engine: eng, Dir: exportDir(m.Config), Base: base, Expiry: m.Config.ExportExpiry,
		MaxFileBytes: int64(m.Config.ExportMaxFileBytes), Logger: m.Log})
	if err != nil {
		_ = m.closeMLLP()
		ln.Close()
		eng.Close()
		if journal != nil {
			journal.Close()
		}
		st.Close()
		return err
	}
	m.exports = exports
	guard := metrics.Guard{Token: m.Config.MetricsToken}
	var metricsOnMain http.Handler
	if m.Config.MetricsAddr == "" {
		metricsOnMain = met.Handler(guard)
	} else {
		mln, err := net.Listen("tcp", m.Config.MetricsAddr)
		if err != nil {
			ln.Close()
			st.Close()
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		guard.AnyAddress = true
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", met.Handler(guard))
		m.metricsListener = mln
		m.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		m.metricsDone = make(chan error, 1)
		go func() { m.metricsDone <- m.metricsHTTP.Serve(mln) }()
	}
	if m.Config.DemoIfEmpty {
		if err := loadDemoIfEmpty(ctx, st, v, prof, params, m.Log); err != nil {
			ln.Close()
			eng.Close()
			st.Close()
			return err
		}
	}
	svc, err := measures.NewService(eng, prof.CanonicalBase(), nil)
	if err != nil {
		ln.Close()
		eng.Close()
		st.Close()
		return err
	}
	h := server.New(server.Config{
		Engine: eng, Logger: m.Log, MaxBodyBytes: int64(m.Config.MaxBodyBytes),
		Software: engine.Software{Name: "crs", Version: version}, Verifier: verifier,
		Metrics: met, MetricsHandler: metricsOnMain,
		TrustedProxies: splitList(m.Config.TrustedProxies), CORSOrigins: splitList(m.Config.CORSOrigins),
		RefuseForwarded: m.Config.OIDCIssuer == "" && !m.Config.InsecureNoAuth, LogQueryValues: m.Config.LogQueryValues,
		Import: importFunc(eng, prof), Measures: svc, Export: exports, Subscriptions: subs, SignIn: pageSignIns,
		Messages: &bars.Receiver{Engine: eng, Base: prof.CanonicalBase()},
	})
	m.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	m.done = make(chan error, 1)
	go func() { m.done <- m.http.Serve(server.Listener(ln)) }()
	m.Log.Info("serving", "addr", ln.Addr().String(), "base", base, "store", m.Config.Store,
		"profile_enforcement", m.Config.ProfileEnforcement, "canonical_base", prof.CanonicalBase())
	return nil
}

// Close stops accepting requests, lets those in flight finish (up to 20 s) and
// closes the store.
func (m *Main) Close() error {
	var errs []error
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.http.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		if err := <-m.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if m.metricsHTTP != nil {
		if err := m.metricsHTTP.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := <-m.metricsDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if m.exports != nil {
		m.exports.Close() // running jobs stop here and resume at the next start
	}
	errs = append(errs, m.closeMLLP())
	if m.subs != nil {
		errs = append(errs, m.subs.Close()) // undelivered events stay in the outbox for the next start
	}
	if m.engine != nil {
		errs = append(errs, m.engine.Close())
	}
	if m.journal != nil {
		errs = append(errs, m.journal.Close())
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	errs = append(errs, m.lock.release())
	m.Log.Info("stopped")
	return errors.Join(errs...)
}

// isLoopback reports whether a listen address is on the loopback interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadProfiles compiles the pathway profiles under a canonical base and the
// search parameters: R4's and the pathway's own.
func loadProfiles(base string) (*profiles.Set, *search.Registry, error) {
	prof, err := profiles.Load(base)
	if err != nil {
		return nil, nil, fmt.Errorf("load the pathway profiles: %w", err)
	}
	params, err := prof.SearchRegistry()
	if err != nil {
		return nil, nil, err
	}
	return prof, params, nil
}

// openStore opens the store named by a --store value.
// journalBound is how many times --audit-queue AuditEvents the journal holds
// (waiting for their fsync or their materialisation, which waits while the
// journal is busy) before requests are refused.
const journalBound = 8

// exportDir is where $export jobs live: the configured directory, or beside
// the SQLite database.
func exportDir(cfg Config) string {
	if cfg.ExportDir != "" {
		return cfg.ExportDir
	}
	if path, ok := strings.CutPrefix(cfg.Store, "sqlite:"); ok {
		return path + ".exports"
	}
	return filepath.Join("data", "exports")
}

// openJournal opens the audit journal of a SQLite store: the file beside the
// database, <path>.audit-journal. A MongoDB store has none (several crs
// instances share it; their AuditEvents are group-committed to it directly).
func openJournal(spec string, max int) (*audit.Journal, error) {
	path, ok := strings.CutPrefix(spec, "sqlite:")
	if !ok {
		return nil, nil
	}
	j, _, err := audit.OpenJournal(path+".audit-journal", max)
	if err != nil {
		return nil, fmt.Errorf("open the audit journal: %w", err)
	}
	return j, nil
}

// sqliteOptions are the SQLite store's options of the configuration; a zero
// Config (as tests make) keeps the store's defaults.
func (c Config) sqliteOptions(onCommit func(int, time.Duration, error)) sqlite.Options {
	opt := sqlite.Options{OnCommit: onCommit, ReadConns: c.SQLiteReadConns, PageSize: c.SQLitePageSize}
	switch {
	case c.SQLiteMmapMiB > 0:
		opt.MmapBytes = int64(c.SQLiteMmapMiB) << 20
	case c.SQLiteMmapMiB < 0:
		opt.MmapBytes = -1
	}
	return opt
}

func openStore(spec string) (store.Store, error) {
	return openStoreLog(spec, slog.Default(), sqlite.Options{})
}

// openStoreLog opens the store named by a --store value, logging to log; opt
// tunes an SQLite store.
func openStoreLog(spec string, log *slog.Logger, opt sqlite.Options) (store.Store, error) {
	switch {
	case strings.HasPrefix(spec, "sqlite:"):
		path := strings.TrimPrefix(spec, "sqlite:")
		if path == "" {
			return nil, errors.New("--store sqlite: needs a file path, e.g. sqlite:./data/crs.db")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		return sqlite.Open(path, opt)
	case strings.HasPrefix(spec, "mongodb://"), strings.HasPrefix(spec, "mongodb+srv://"):
		return mongo.Open(context.Background(), spec, log)
	}
	return nil, fmt.Errorf("unknown --store %q: use sqlite:<path> or mongodb://host[:port]/database", spec)
}
