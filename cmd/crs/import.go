package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/engine"
	"crs/fhir/validate"
	"crs/mapping"
	"crs/mapping/careplans"
	"crs/mapping/cld"
	"crs/mapping/therapy"
	"crs/mapping/visits"
	"crs/profiles"
	"crs/server"
)

const importUsage = `Usage: crs import <source> [flags] FILE…

Sources:
  cld        a council's Adult Social Care Client Level Data return (CSV)
  visits     a care provider's call monitoring / rostering export (CSV; --columns
             maps another system's column names)
  therapy    a therapy service's screening outcomes and goals (CSV)
  careplans  a care provider's care plans (PRSB Personalised Care and Support Plan: CSV,
             or a .json file: plans laid out as the PCSP, or the system's own FHIR
             CarePlan or Bundle)
  hl7v2      an acute trust's HL7 v2 ADT messages (crs import hl7v2 -h)

The import goes through the engine as the importing organisation (--org, --role,
--la), so the access policy and the audit trail apply as to any client. Rows held
for review whose Task a person has since completed (naming the Patient) are
imported again first.

Flags:
`

// importConfig is the configuration of crs import.
type importConfig struct {
	Source        string
	Store         string
	CanonicalBase string
	Policy        string
	Org, Role, LA string
	LACode        string
	Encoding      string
	Report        string
	DryRun        bool
	Batch         int
	Columns       string
	Enforcement   string
	Server        string // --server: a running crs instead of a store
	TokenURL      string
	ClientID      string
	KeyFile       string
	KeyID         string
	Scope         string
	FHIR          bool // careplans: the file is JSON (FHIR, or plans laid out as the PCSP), not CSV
	Files         []string
}

func parseImportFlags(args []string, stderr io.Writer) (importConfig, error) {
	var cfg importConfig
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, importUsage)
		return cfg, errors.New("crs import needs a source: cld, visits, therapy or careplans")
	}
	cfg.Source = args[0]
	fs := flag.NewFlagSet("import "+cfg.Source, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, importUsage); fs.PrintDefaults() }
	fs.StringVar(&cfg.Store, "store", env("CRS_STORE", "sqlite:./data/crs.db"), "store to import into, as for serve (CRS_STORE)")
	fs.StringVar(&cfg.CanonicalBase, "canonical-base", env("CRS_CANONICAL_BASE", ""), "base of the pathway's canonical URLs, as for serve (CRS_CANONICAL_BASE)")
	fs.StringVar(&cfg.Policy, "policy", env("CRS_POLICY", ""), "access policy file; default the embedded policy (CRS_POLICY)")
	fs.StringVar(&cfg.Enforcement, "profile-enforcement", env("CRS_PROFILE_ENFORCEMENT", string(engine.EnforceStrict)), "strict or declared, as for serve")
	fs.StringVar(&cfg.Org, "org", "", "ODS code of the importing organisation (recorded as an Organization)")
	fs.StringVar(&cfg.Role, "role", "", "access-policy role of the importing organisation (default: council for cld)")
	fs.StringVar(&cfg.LA, "la", "", "the council's local authority as the access policy knows it ({la}: its ONS/GSS code; default --la-code)")
	fs.StringVar(&cfg.LACode, "la-code", "", "the council's ONS code (e.g. E10000031): rows for another local authority are rejected")
	fs.StringVar(&cfg.Encoding, "encoding", "utf-8", "character encoding of the files: utf-8 or windows-1252")
	fs.StringVar(&cfg.Report, "report", "", "write every rejected, held or skipped row (line, field, outcome, reason) as CSV to this file; default standard error")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "validate and map, store nothing")
	fs.StringVar(&cfg.Server, "server", env("CRS_IMPORT_SERVER", ""), "import into a running crs at this FHIR base URL (instead of --store) (CRS_IMPORT_SERVER)")
	fs.StringVar(&cfg.TokenURL, "token-url", env("CRS_IMPORT_TOKEN_URL", ""), "--server: the OpenID provider's token endpoint (client_credentials with private_key_jwt)")
	fs.StringVar(&cfg.ClientID, "client-id", env("CRS_IMPORT_CLIENT_ID", ""), "--server: this importer's client id at the provider")
	fs.StringVar(&cfg.KeyFile, "key", env("CRS_IMPORT_KEY", ""), "--server: the client's private key (PEM or JWK) that signs its assertions")
	fs.StringVar(&cfg.KeyID, "key-id", env("CRS_IMPORT_KEY_ID", ""), "--server: the key's kid, when the provider needs one (a JWK's own kid otherwise)")
	fs.StringVar(&cfg.Scope, "scope", "system/*.cruds", "--server: the scopes to ask for")
	fs.IntVar(&cfg.Batch, "batch", 0, "rows per transaction (default 200 for cld, 500 for visits)")
	fs.StringVar(&cfg.Columns, "columns", "", "visits: a JSON column map (field → the system's column name) for another system's export")
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, err
	}
	cfg.Files = fs.Args()
	switch cfg.Source {
	case "cld":
		if cfg.Role == "" {
			cfg.Role = "council"
		}
		if cfg.LACode == "" {
			return cfg, errors.New("crs import cld needs --la-code, the council's ONS code (e.g. E10000031)")
		}
		if cfg.LA == "" {
			cfg.LA = cfg.LACode
		}
	case "visits":
		if cfg.Role == "" {
			cfg.Role = "care-provider"
		}
	case "therapy":
		if cfg.Role == "" {
			cfg.Role = "therapy-service"
		}
	case "careplans":
		if cfg.Role == "" {
			cfg.Role = "care-provider"
		}
	default:
		return cfg, fmt.Errorf("unknown import source %q: cld, visits, therapy or careplans", cfg.Source)
	}
	if cfg.Org == "" {
		return cfg, errors.New("crs import needs --org, the ODS code of the importing organisation")
	}
	if len(cfg.Files) == 0 {
		return cfg, errors.New("crs import needs at least one FILE")
	}
	return cfg, nil
}

// importCommand runs "crs import <source> FILE…".
func importCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "hl7v2" {
		return importHL7v2(args[1:], stdout, stderr)
	}
	cfg, err := parseImportFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	prof, params, err := loadProfiles(cfg.CanonicalBase)
	if err != nil {
		return err
	}
	var door mapping.Door
	if cfg.Server != "" {
		hd := &mapping.HTTPDoor{Base: cfg.Server, Client: &http.Client{Timeout: 10 * time.Minute}}
		if cfg.TokenURL != "" {
			if cfg.ClientID == "" || cfg.KeyFile == "" {
				return errors.New("--token-url needs --client-id and --key")
			}
			key, kid, err := mapping.ReadKey(cfg.KeyFile)
			if err != nil {
				return err
			}
			if cfg.KeyID != "" {
				kid = cfg.KeyID
			}
			hd.Token = &mapping.ClientCredentials{TokenURL: cfg.TokenURL, ClientID: cfg.ClientID, Key: key, KeyID: kid, Scope: cfg.Scope, Resource: strings.TrimRight(cfg.Server, "/")}
		}
		door = hd
	} else {
		st, err := openStore(cfg.Store)
		if err != nil {
			return err
		}
		defer st.Close()
		v, err := validate.New()
		if err != nil {
			return fmt.Errorf("compile validator: %w", err)
		}
		policy, err := auth.LoadPolicy(cfg.Policy, params)
		if err != nil {
			return err
		}
		eng, err := recordEvents(ctx, engine.Config{Store: st, Validator: v, Elements: v, Base: "urn:crs-import", Params: params, Profiles: prof,
			Enforcement: engine.Enforcement(cfg.Enforcement), Access: policy, Audit: true})
		if err != nil {
			return err
		}
		if err := eng.InstallConformance(ctx); err != nil {
			return fmt.Errorf("install the pathway's conformance resources: %w", err)
		}
		principal := &auth.Principal{ClientID: "crs-import", Subject: "crs import " + cfg.Source, Org: cfg.Org, Roles: []string{cfg.Role},
			LocalAuthority: cfg.LA, Scopes: auth.ParseScopes("system/*.cruds")}
		door = &mapping.EngineDoor{Engine: eng, Principal: principal}
	}
	org, err := mapping.FindOrganization(ctx, door, cfg.Org)
	if err != nil {
		return err
	}
	reportTo := stderr
	if cfg.Report != "" {
		f, err := os.Create(cfg.Report)
		if err != nil {
			return err
		}
		defer f.Close()
		reportTo = f
	}
	rep := mapping.NewReport(reportTo)
	runID := fhir.NewUUID()
	// Rows held for review that a person has since resolved go first.
	resolveRun := &mapping.Run{ID: runID, Source: cfg.Source, File: "held-for-review Tasks", Org: org, ODS: cfg.Org, Time: time.Now(),
		Base: prof.CanonicalBase(), Profiles: prof}
	if err := resolveHeld(ctx, door, resolveRun, cfg, rep); err != nil {
		return err
	}
	for _, name := range cfg.Files {
		run := &mapping.Run{ID: runID, Source: cfg.Source, File: filepath.Base(name), Org: org, ODS: cfg.Org, Time: time.Now(),
			Base: prof.CanonicalBase(), Profiles: prof}
		if err := importFile(ctx, door, run, cfg, name, rep, stderr); err != nil {
			_ = rep.Flush()
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := rep.Flush(); err != nil {
		return err
	}
	prefix := ""
	if cfg.DryRun {
		prefix = "dry run, nothing stored: "
	}
	fmt.Fprintf(stdout, "%s%s\n", prefix, rep.Summary)
	return nil
}

// importFile imports one file, with a progress bar on a terminal and a log
// line per batch otherwise.
func importFile(ctx context.Context, door mapping.Door, run *mapping.Run, cfg importConfig, name string, rep *mapping.Report, stderr io.Writer) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	cr := &countingReader{r: f}
	cfg.FHIR = cfg.Source == "careplans" && strings.HasSuffix(strings.ToLower(name), ".json")
	start := time.Now()
	startRows := rep.Rows
	var bar *progressbar.ProgressBar
	if out, ok := stderr.(*os.File); ok && term.IsTerminal(int(out.Fd())) && cfg.Report != "" {
		bar = progressbar.NewOptions64(info.Size(), progressbar.OptionSetWriter(stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetDescription(filepath.Base(name)))
	}
	progress := func(rows int) {
		n := rows - startRows
		rate := float64(n) / time.Since(start).Seconds()
		if bar != nil {
			bar.Describe(fmt.Sprintf("%s: %d rows, %.0f rows/s", filepath.Base(name), n, rate))
			_ = bar.Set64(cr.n.Load())
			return
		}
		fmt.Fprintf(stderr, "crs import %s: %s: %d rows (%d of %d bytes), %.0f rows/s\n", cfg.Source, name, n, cr.n.Load(), info.Size(), rate)
	}
	err = runSource(ctx, door, run, cfg, cr, rep, progress)
	if bar != nil {
		_ = bar.Finish()
		fmt.Fprintln(stderr)
	}
	return err
}

// countingReader counts the bytes read, for the progress bar.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// runSource imports one file of cfg.Source read from r.
// resolveHeld re-processes the source's rows held for review that a person
// has resolved since (completed Tasks naming the Patient), before the files.
func resolveHeld(ctx context.Context, door mapping.Door, run *mapping.Run, cfg importConfig, rep *mapping.Report) error {
	switch cfg.Source {
	case "visits":
		var data []byte
		if cfg.Columns != "" {
			var err error
			if data, err = os.ReadFile(cfg.Columns); err != nil {
				return err
			}
		}
		cols, err := visits.ParseColumnMap(data)
		if err != nil {
			return err
		}
		return visits.Resolve(ctx, door, run, visits.Options{Columns: cols, BatchRows: cfg.Batch, DryRun: cfg.DryRun}, rep)
	case "therapy":
		return therapy.Resolve(ctx, door, run, therapy.Options{BatchRows: cfg.Batch, DryRun: cfg.DryRun}, rep)
	case "careplans":
		return careplans.Resolve(ctx, door, run, careplans.Options{DryRun: cfg.DryRun}, rep)
	}
	return cld.Resolve(ctx, door, run, cld.Options{LACode: cfg.LACode, BatchRows: cfg.Batch, DryRun: cfg.DryRun}, rep)
}

func runSource(ctx context.Context, door mapping.Door, run *mapping.Run, cfg importConfig, r io.Reader, rep *mapping.Report, progress func(int)) error {
	var err error
	switch cfg.Source {
	case "visits":
		var data []byte
		if cfg.Columns != "" {
			if data, err = os.ReadFile(cfg.Columns); err != nil {
				return err
			}
		}
		cols, cerr := visits.ParseColumnMap(data)
		if cerr != nil {
			return cerr
		}
		opt := visits.Options{Columns: cols, BatchRows: cfg.Batch, DryRun: cfg.DryRun, Encoding: mapping.Encoding(cfg.Encoding), Progress: progress}
		err = visits.Import(ctx, door, run, r, opt, rep)
	case "therapy":
		opt := therapy.Options{BatchRows: cfg.Batch, DryRun: cfg.DryRun, Encoding: mapping.Encoding(cfg.Encoding), Progress: progress}
		err = therapy.Import(ctx, door, run, r, opt, rep)
	case "careplans":
		opt := careplans.Options{DryRun: cfg.DryRun, Encoding: mapping.Encoding(cfg.Encoding), Progress: progress}
		if cfg.FHIR {
			err = careplans.ImportJSON(ctx, door, run, r, opt, rep)
		} else {
			err = careplans.Import(ctx, door, run, r, opt, rep)
		}
	default:
		opt := cld.Options{LACode: cfg.LACode, BatchRows: cfg.Batch, DryRun: cfg.DryRun,
			Encoding: mapping.Encoding(cfg.Encoding), Progress: progress}
		err = cld.Import(ctx, door, run, r, opt, rep)
	}
	return err
}

// importFunc serves POST /fhir/$import-<source>: the file is imported as the
// caller (the principal the HTTP layer put in ctx), exactly as crs import
// would as that organisation. Query: la-code (cld), encoding, dry-run.
func importFunc(eng *engine.Engine, prof *profiles.Set) server.ImportFunc {
	return func(ctx context.Context, source, mediaType string, body io.Reader, q url.Values) (fhir.Object, error) {
		switch source {
		case "cld", "visits", "therapy", "careplans":
		default:
			return nil, fhir.Errorf(fhir.NotSupported, "", "there is no importer for %q: $import-cld, $import-visits, $import-therapy or $import-careplans", source)
		}
		cfg := importConfig{Source: source, LACode: q.Get("la-code"), Encoding: q.Get("encoding"), DryRun: q.Get("dry-run") == "true", Org: q.Get("org"),
			FHIR: mediaType != "text/csv"}
		if cfg.FHIR && source != "careplans" {
			return nil, fhir.Errorf(fhir.UnsupportedMedia, "", "$import-%s takes text/csv; only $import-careplans also takes JSON (a FHIR CarePlan or Bundle, or care plans as the README describes)", source)
		}
		if cfg.Encoding == "" {
			cfg.Encoding = string(mapping.UTF8)
		}
		if p := auth.PrincipalFrom(ctx); p != nil && !p.Anonymous {
			cfg.Org, cfg.LA = p.Org, p.LocalAuthority // the token says who imports, not the query
		}
		if cfg.Org == "" {
			return nil, fhir.Errorf(fhir.Invalid, "org", "the importing organisation is not known: the token carries no ODS code")
		}
		if source == "cld" && cfg.LACode == "" {
			cfg.LACode = cfg.LA // the council's token names its local authority
		}
		if source == "cld" && cfg.LACode == "" {
			return nil, fhir.Errorf(fhir.Invalid, "la-code", "$import-cld needs la-code, the council's ONS code (e.g. E10000031)")
		}
		door := &mapping.EngineDoor{Engine: eng} // the caller's principal is already in ctx
		org, err := mapping.FindOrganization(ctx, door, cfg.Org)
		if err != nil {
			return nil, fhir.Errorf(fhir.Invalid, "org", "%v", err)
		}
		var report strings.Builder
		rep := mapping.NewReport(&report)
		run := &mapping.Run{ID: fhir.NewUUID(), Source: source, File: "$import-" + source + " " + time.Now().UTC().Format(time.RFC3339), Org: org, ODS: cfg.Org,
			Time: time.Now(), Base: prof.CanonicalBase(), Profiles: prof}
		if err := resolveHeld(ctx, door, run, cfg, rep); err != nil {
			return nil, err
		}
		if err := runSource(ctx, door, run, cfg, body, rep, nil); err != nil {
			if fe, ok := err.(*fhir.Error); ok {
				return nil, fe
			}
			return nil, fhir.Errorf(fhir.Invalid, "", "%v", err)
		}
		if err := rep.Flush(); err != nil {
			return nil, fhir.InternalError("import", err)
		}
		sum := rep.Summary
		param := func(name string, n int) any { return map[string]any{"name": name, "valueInteger": n} }
		return fhir.Object{"resourceType": "Parameters", "parameter": []any{
			map[string]any{"name": "run", "valueString": run.ID},
			param("rows", sum.Rows), param("created", sum.Created), param("updated", sum.Updated), param("unchanged", sum.Unchanged),
			param("held", sum.Held), param("rejected", sum.Rejected), param("skipped", sum.Skipped),
			map[string]any{"name": "report", "valueString": report.String()},
		}}, nil
	}
}
