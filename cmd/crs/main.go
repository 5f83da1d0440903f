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
	"strings"
	"syscall"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/mongo"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/measures"
	"crs/profiles"
	"crs/server"
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
		cfg, err := parseServeFlags(args[1:], stderr)
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
	case "version":
		fmt.Fprintln(stdout, "crs", version)
		return nil
	case "audit":
		return auditCommand(args[1:], stdout, stderr)
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
  crs version         print the version

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
	DemoIfEmpty        bool   // load the demo region before serving when the store is empty
}

// parseServeFlags reads flags, with CRS_* environment variables as defaults.
func parseServeFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.Addr, "addr", env("CRS_ADDR", "127.0.0.1:8080"), "listen address (CRS_ADDR)")
	fs.StringVar(&cfg.Store, "store", env("CRS_STORE", "sqlite:./data/crs.db"), "store: sqlite:<path> or mongodb://host[:port]/database?options (CRS_STORE)")
	fs.StringVar(&cfg.BaseURL, "base-url", env("CRS_BASE_URL", ""), "advertised base URL; default http://<addr>/fhir (CRS_BASE_URL)")
	fs.IntVar(&cfg.MaxBodyBytes, "max-body-bytes", envInt("CRS_MAX_BODY_BYTES", fhir.DefaultLimits.MaxBytes), "largest request body (CRS_MAX_BODY_BYTES)")
	fs.IntVar(&cfg.MaxDepth, "max-depth", envInt("CRS_MAX_DEPTH", fhir.DefaultLimits.MaxDepth), "deepest JSON nesting accepted (CRS_MAX_DEPTH)")
	fs.IntVar(&cfg.DefaultCount, "default-count", envInt("CRS_DEFAULT_COUNT", 20), "page size when _count is absent (CRS_DEFAULT_COUNT)")
	fs.IntVar(&cfg.MaxCount, "max-count", envInt("CRS_MAX_COUNT", 500), "largest page size (CRS_MAX_COUNT)")
	fs.IntVar(&cfg.TotalLimit, "total-limit", envInt("CRS_TOTAL_LIMIT", engine.DefaultTotalLimit), "without _total, Bundle.total is counted only up to this many matches; -1: always (CRS_TOTAL_LIMIT)")
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
	fs.BoolVar(&cfg.InsecureNoAuth, "insecure-no-auth", env("CRS_INSECURE_NO_AUTH", "") == "true", "serve without authentication on a non-loopback address (CRS_INSECURE_NO_AUTH=true)")
	fs.BoolVar(&cfg.DemoIfEmpty, "demo-if-empty", env("CRS_DEMO_IF_EMPTY", "") == "true", "load the synthetic demo region first when the store holds no pathway data (CRS_DEMO_IF_EMPTY=true)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch engine.Enforcement(cfg.ProfileEnforcement) {
	case engine.EnforceStrict, engine.EnforceDeclared:
	default:
		return cfg, fmt.Errorf("--profile-enforcement must be strict or declared, not %q", cfg.ProfileEnforcement)
	}
	return cfg, nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err == nil {
			return n
		}
	}
	return def
}

// Main is a running server: its store, engine and HTTP listener.
type Main struct {
	Config Config
	Log    *slog.Logger

	store    store.Store
	http     *http.Server
	listener net.Listener
	done     chan error
}

// Addr returns the address the server listens on (useful with port 0).
func (m *Main) Addr() string { return m.listener.Addr().String() }

// Start opens the store, builds the engine and starts serving in the background.
func (m *Main) Start(ctx context.Context) error {
	st, err := openStoreLog(m.Config.Store, m.Log)
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
	} else {
		m.Log.Warn("DEVELOPMENT MODE: no --oidc-issuer, so there is no authentication and no access policy; every caller is anonymous and may do everything. Never use this with real data.", "addr", ln.Addr().String())
	}
	withMeasures, err := measures.WithMeasures(prof)
	if err != nil {
		ln.Close()
		st.Close()
		return err
	}
	eng := engine.New(engine.Config{
		Store: st, Validator: v, Elements: v, Base: base,
		Limits:       fhir.Limits{MaxBytes: m.Config.MaxBodyBytes, MaxDepth: m.Config.MaxDepth},
		DefaultCount: m.Config.DefaultCount, MaxCount: m.Config.MaxCount, TotalLimit: m.Config.TotalLimit,
		Params: params, Profiles: withMeasures, Enforcement: engine.Enforcement(m.Config.ProfileEnforcement),
		Access: access, Audit: true,
	})
	if err := eng.InstallConformance(ctx); err != nil {
		ln.Close()
		st.Close()
		return fmt.Errorf("install the pathway's conformance resources: %w", err)
	}
	if m.Config.DemoIfEmpty {
		if err := loadDemoIfEmpty(ctx, st, v, prof, params, m.Log); err != nil {
			ln.Close()
			st.Close()
			return err
		}
	}
	svc, err := measures.NewService(eng, prof.CanonicalBase(), nil)
	if err != nil {
		ln.Close()
		st.Close()
		return err
	}
	h := server.New(server.Config{
		Engine: eng, Logger: m.Log, MaxBodyBytes: int64(m.Config.MaxBodyBytes),
		Software: engine.Software{Name: "crs", Version: version}, Verifier: verifier, Measures: svc,
	})
	m.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	m.done = make(chan error, 1)
	go func() { m.done <- m.http.Serve(ln) }()
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
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
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
	params, err := search.New()
	if err != nil {
		return nil, nil, err
	}
	for _, sp := range prof.SearchParameters() {
		if err := params.Add(sp); err != nil {
			return nil, nil, fmt.Errorf("search parameter %v: %w", sp["url"], err)
		}
	}
	return prof, params, nil
}

// openStore opens the store named by a --store value.
func openStore(spec string) (store.Store, error) {
	return openStoreLog(spec, slog.Default())
}

func openStoreLog(spec string, log *slog.Logger) (store.Store, error) {
	switch {
	case strings.HasPrefix(spec, "sqlite:"):
		path := strings.TrimPrefix(spec, "sqlite:")
		if path == "" {
			return nil, errors.New("--store sqlite: needs a file path, e.g. sqlite:./data/crs.db")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		return sqlite.Open(path, sqlite.Options{})
	case strings.HasPrefix(spec, "mongodb://"), strings.HasPrefix(spec, "mongodb+srv://"):
		return mongo.Open(context.Background(), spec, log)
	}
	return nil, fmt.Errorf("unknown --store %q: use sqlite:<path> or mongodb://host[:port]/database", spec)
}
