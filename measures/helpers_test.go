package measures

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir/engine"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/profiles"
)

// testNow is "today" of the test regions.
var testNow = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

// newEngine returns an engine as crs serve builds it (strict profiles, audit,
// the pathway's search parameters and the Measures installed) on a fresh
// SQLite store, with the embedded access policy when policy is set.
func newEngine(tb testing.TB, policy bool) *engine.Engine {
	tb.Helper()
	return newEngineAt(tb, filepath.Join(tb.TempDir(), "crs.db"), policy)
}

// newEngineAt is newEngine on the SQLite database at path (created when
// missing).
func newEngineAt(tb testing.TB, path string, policy bool) *engine.Engine {
	tb.Helper()
	st, err := sqlite.Open(path, sqlite.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	v, err := validate.New()
	if err != nil {
		tb.Fatal(err)
	}
	prof, err := profiles.Load("")
	if err != nil {
		tb.Fatal(err)
	}
	params, err := prof.SearchRegistry()
	if err != nil {
		tb.Fatal(err)
	}
	var access engine.Access
	if policy {
		p, err := auth.LoadPolicy("", params)
		if err != nil {
			tb.Fatal(err)
		}
		access = p
	}
	withM, err := WithMeasures(prof)
	if err != nil {
		tb.Fatal(err)
	}
	eng := engine.New(engine.Config{Store: st, Validator: v, Elements: v, Base: "http://crs.test/fhir",
		Params: params, Profiles: withM, Access: access, Audit: true, Now: func() time.Time { return testNow },
		// No query time budget: these tests check what is counted, and under
		// -race on a loaded machine a bulk load can pass the 5 s default.
		QueryTimeout: -1})
	if err := eng.InstallConformance(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return eng
}

// devCtx is the development-mode caller.
func devCtx() context.Context {
	return auth.WithPrincipal(context.Background(), &auth.Principal{Anonymous: true})
}

// adminCtx is an administrator: every interaction on every type.
func adminCtx() context.Context {
	return auth.WithPrincipal(context.Background(), &auth.Principal{Subject: "admin", Roles: []string{"admin"}, Scopes: auth.ParseScopes("system/*.cruds")})
}

// loadDemo loads a demo region of n episodes into eng.
func loadDemo(tb testing.TB, eng *engine.Engine, n int) *Demo {
	tb.Helper()
	d := NewDemo(DemoOptions{Seed: 1, Now: testNow, Episodes: n})
	st, err := d.Load(adminCtx(), eng, false)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("demo: %d episodes in %d bundles, %d resources, %v", n, st.Bundles, st.Resources, st.Took)
	return d
}
