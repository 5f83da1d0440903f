package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"crs/auth"
	"crs/fhir/engine"
	"crs/fhir/validate"
	"crs/mapping/adt"
	"crs/mapping/hl7v2"
	"crs/mapping/mllp"
	"crs/profiles"
)

// parseFacilities reads "MSH4=ODS,MSH4=ODS" (the sending facilities whose
// messages are accepted, with the ODS code of their trust).
func parseFacilities(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		fac, ods, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(fac) == "" || strings.TrimSpace(ods) == "" {
			return nil, fmt.Errorf("hl7v2 facilities: %q is not FACILITY=ODS (e.g. RR801=RR8)", p)
		}
		out[strings.TrimSpace(fac)] = strings.TrimSpace(ods)
	}
	if len(out) == 0 {
		return nil, errors.New("hl7v2 facilities: none given (FACILITY=ODS,…, e.g. RR801=RR8): messages are accepted only from configured sending facilities")
	}
	return out, nil
}

// adtConfig builds the ADT importer's configuration from the flags' values.
func adtConfig(facilities, drd string, prof *profiles.Set) (adt.Config, error) {
	fac, err := parseFacilities(facilities)
	if err != nil {
		return adt.Config{}, err
	}
	path := adt.DefaultDischargeReadyDate
	if drd != "" {
		if path, err = hl7v2.ParsePath(drd); err != nil {
			return adt.Config{}, err
		}
	}
	return adt.Config{Facilities: fac, DischargeReadyDate: path, Base: prof.CanonicalBase(), Profiles: prof}, nil
}

// startMLLP starts the MLLP listener of crs serve when --mllp-addr is set.
func (m *Main) startMLLP(eng *engine.Engine, prof *profiles.Set) error {
	if m.Config.MLLPAddr == "" {
		return nil
	}
	cfg, err := adtConfig(m.Config.HL7v2Facilities, m.Config.HL7v2DischargeReadyDate, prof)
	if err != nil {
		return fmt.Errorf("--mllp-addr: %w", err)
	}
	ln, err := net.Listen("tcp", m.Config.MLLPAddr)
	if err != nil {
		return fmt.Errorf("--mllp-addr: %w", err)
	}
	if !isLoopback(m.Config.MLLPAddr) {
		m.Log.Warn("MLLP has no authentication of its own: serve it only on the trust's private network or behind a TLS tunnel; messages are accepted only from the configured sending facilities", "mllp_addr", ln.Addr().String())
	}
	im := &adt.Importer{Engine: eng, Config: cfg}
	log := m.Log
	m.mllp = &mllp.Server{Log: log, Handler: func(ctx context.Context, msg []byte) []byte {
		ack, res := im.Process(ctx, msg)
		attrs := []any{"code", res.Code, "duplicate", res.Duplicate, "written", len(res.Written)}
		if res.Err != nil {
			attrs = append(attrs, "at", res.Err.Location(), "reason", res.Err.Reason)
		}
		if res.Note != "" {
			attrs = append(attrs, "note", res.Note)
		}
		log.Info("hl7v2 message", attrs...)
		return ack
	}}
	m.mllpListener = ln
	m.mllpDone = make(chan error, 1)
	go func() { m.mllpDone <- m.mllp.Serve(ln) }()
	m.Log.Info("serving MLLP", "mllp_addr", ln.Addr().String(), "facilities", len(cfg.Facilities), "discharge_ready_date", cfg.DischargeReadyDate.String())
	return nil
}

// MLLPAddr returns the address of the MLLP listener, "" when off.
func (m *Main) MLLPAddr() string {
	if m.mllpListener == nil {
		return ""
	}
	return m.mllpListener.Addr().String()
}

// closeMLLP stops the MLLP listener (messages being applied complete).
func (m *Main) closeMLLP() error {
	if m.mllp == nil {
		return nil
	}
	err := m.mllp.Close()
	return errors.Join(err, <-m.mllpDone)
}

const hl7v2Usage = `Usage: crs import hl7v2 --facilities FACILITY=ODS[,…] [flags] FILE…

Applies files of HL7 v2 ADT messages (a bare stream of messages or FHS/BHS
batches; CR, LF or CRLF line ends) as the MLLP listener does: each message is
one transaction through the engine as its sending facility's trust (roles
acute-adt, acute-trust), with its Provenance; a control id already applied is
skipped. One line per message that is not accepted (file, message number,
control id, ACK code, where, why).

Flags:
`

// importHL7v2 runs "crs import hl7v2 FILE…".
func importHL7v2(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import hl7v2", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, hl7v2Usage); fs.PrintDefaults() }
	store := fs.String("store", env("CRS_STORE", "sqlite:./data/crs.db"), "store to import into, as for serve (CRS_STORE)")
	base := fs.String("canonical-base", env("CRS_CANONICAL_BASE", ""), "base of the pathway's canonical URLs, as for serve (CRS_CANONICAL_BASE)")
	policyFile := fs.String("policy", env("CRS_POLICY", ""), "access policy file; default the embedded policy (CRS_POLICY)")
	enforcement := fs.String("profile-enforcement", env("CRS_PROFILE_ENFORCEMENT", string(engine.EnforceStrict)), "strict or declared, as for serve")
	facilities := fs.String("facilities", env("CRS_HL7V2_FACILITIES", ""), "sending facilities (MSH-4) accepted, with their trust's ODS code: FACILITY=ODS,… (CRS_HL7V2_FACILITIES)")
	drd := fs.String("discharge-ready-date", env("CRS_HL7V2_DISCHARGE_READY_DATE", "PV2-9"), "field of an A03 holding the Discharge Ready Date (CRS_HL7V2_DISCHARGE_READY_DATE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("crs import hl7v2 needs at least one FILE")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	prof, params, err := loadProfiles(*base)
	if err != nil {
		return err
	}
	cfg, err := adtConfig(*facilities, *drd, prof)
	if err != nil {
		return fmt.Errorf("--facilities: %w", err)
	}
	st, err := openStore(*store)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := validate.New()
	if err != nil {
		return fmt.Errorf("compile validator: %w", err)
	}
	policy, err := auth.LoadPolicy(*policyFile, params)
	if err != nil {
		return err
	}
	eng, err := recordEvents(ctx, engine.Config{Store: st, Validator: v, Elements: v, Base: "urn:crs-import", Params: params, Profiles: prof,
		Enforcement: engine.Enforcement(*enforcement), Access: policy, Audit: true})
	if err != nil {
		return err
	}
	defer eng.Close()
	if err := eng.InstallConformance(ctx); err != nil {
		return fmt.Errorf("install the pathway's conformance resources: %w", err)
	}
	im := &adt.Importer{Engine: eng, Config: cfg}
	counts := map[string]int{}
	dups := 0
	for _, name := range fs.Args() {
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		msgs, err := hl7v2.SplitMessages(data)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for i, msg := range msgs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			_, res := im.Process(ctx, msg)
			counts[res.Code]++
			if res.Duplicate {
				dups++
			}
			ctl := ""
			if m, err := hl7v2.Parse(msg); err == nil {
				ctl = m.ControlID()
			}
			switch {
			case res.Err != nil:
				fmt.Fprintf(stderr, "%s message %d (control id %q): %s %s: %s\n", filepath.Base(name), i+1, ctl, res.Code, res.Err.Location(), res.Err.Reason)
			case res.Note != "":
				fmt.Fprintf(stderr, "%s message %d (control id %q): %s: %s\n", filepath.Base(name), i+1, ctl, res.Code, res.Note)
			}
		}
	}
	fmt.Fprintf(stdout, "%d messages: %d accepted (%d already applied), %d errors (AE), %d rejected (AR)\n",
		counts[hl7v2.AA]+counts[hl7v2.AE]+counts[hl7v2.AR], counts[hl7v2.AA], dups, counts[hl7v2.AE], counts[hl7v2.AR])
	if n := counts[hl7v2.AE] + counts[hl7v2.AR]; n > 0 {
		return fmt.Errorf("%d messages not applied", n)
	}
	return nil
}
