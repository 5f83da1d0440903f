package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"crs/auth"
	"crs/fhir/engine"
	"crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/validate"
	"crs/measures"
	"crs/profiles"
)

// demoCommand runs 'crs demo': it loads the synthetic demo region through the
// engine (strict profiles, audited, with Provenance) into the store, and
// refuses a store that already holds pathway data unless --force is given.
func demoCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spec := fs.String("store", env("CRS_STORE", "sqlite:./data/crs.db"), "store: sqlite:<path> or mongodb://… (CRS_STORE)")
	seed := fs.Uint64("seed", 1, "seed of the generator: the same seed and day give the same region")
	episodes := fs.Int("episodes", 1150, "episodes over the six months")
	force := fs.Bool("force", false, "load even though the store already holds pathway data (the demo's ids are fixed, so a second load writes new versions of the same resources)")
	base := fs.String("canonical-base", env("CRS_CANONICAL_BASE", profiles.DefaultCanonicalBase), "base of the pathway profiles' canonical URLs (CRS_CANONICAL_BASE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments to demo: %v", fs.Args())
	}
	st, err := openStore(*spec)
	if err != nil {
		return err
	}
	defer st.Close()
	v, err := validate.New()
	if err != nil {
		return err
	}
	prof, params, err := loadProfiles(*base)
	if err != nil {
		return err
	}
	stats, err := loadDemo(context.Background(), st, v, prof, params, measures.DemoOptions{Seed: *seed, Episodes: *episodes, Base: prof.CanonicalBase()}, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loaded the demo region (seed %d): %d episodes, %d resources in %d transactions in %v\n",
		*seed, *episodes, stats.Resources, stats.Bundles, stats.Took.Round(time.Millisecond))
	return nil
}

// loadDemo loads a demo region through an engine on st that checks the
// pathway profiles strictly and audits every write as the demo loader. The
// operator running it holds the store, so no access policy applies.
func loadDemo(ctx context.Context, st store.Store, v *validate.Validator, prof *profiles.Set, params *search.Registry, opt measures.DemoOptions, force bool) (measures.LoadStats, error) {
	withMeasures, err := measures.WithMeasures(prof)
	if err != nil {
		return measures.LoadStats{}, err
	}
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Params: params, Profiles: withMeasures,
		Enforcement: engine.EnforceStrict, Audit: true, Base: "urn:crs:demo"})
	if err := eng.InstallConformance(ctx); err != nil {
		return measures.LoadStats{}, err
	}
	ctx = auth.WithPrincipal(ctx, measures.DemoPrincipal())
	return measures.NewDemo(opt).Load(ctx, eng, force)
}

// loadDemoIfEmpty loads the demo region before serving when the store holds
// no pathway data (make run on a fresh clone), and does nothing otherwise.
func loadDemoIfEmpty(ctx context.Context, st store.Store, v *validate.Validator, prof *profiles.Set, params *search.Registry, log *slog.Logger) error {
	log.Info("loading the demo region if the store is empty")
	stats, err := loadDemo(ctx, st, v, prof, params, measures.DemoOptions{Seed: 1, Base: prof.CanonicalBase()}, false)
	switch {
	case errors.Is(err, measures.ErrNotEmpty):
		log.Info("the store holds data: no demo region loaded")
		return nil
	case err != nil:
		return fmt.Errorf("load the demo region: %w", err)
	}
	log.Info("loaded the demo region", "resources", stats.Resources, "transactions", stats.Bundles, "took_ms", stats.Took.Milliseconds())
	return nil
}
