package engine

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"crs/auth"
	"crs/fhir"
	"crs/fhir/store"
	"crs/fhir/store/sqlite"
	"crs/fhir/validate"
	"crs/profiles"
)

// TestInBoundsAsWritten: an ADT feed's Encounter, bounded by the trust's
// "service-provider:Organization.identifier=…|{org}", is cleared from its own
// search values and its Organization only where the search mayWrite makes
// finds it: the shortcut and the search must agree on every case (in bounds,
// out of bounds, a target deleted, missing or written in the same
// transaction), and the shortcut never says "allowed" alone.
func TestInBoundsAsWritten(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "crs.db"), sqlite.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	prof, err := profiles.Load("")
	if err != nil {
		t.Fatal(err)
	}
	params, err := prof.SearchRegistry()
	if err != nil {
		t.Fatal(err)
	}
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	seed := New(Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", Params: params})
	policy, err := auth.LoadPolicy("", params)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Store: st, Validator: v, Elements: v, Base: "http://test/fhir", Params: params, Access: policy})
	ctx := auth.WithPrincipal(context.Background(), &auth.Principal{ClientID: "adt-RXX", Org: "RXX",
		Roles: []string{"acute-adt", "acute-trust"}, Scopes: auth.ParseScopes("system/*.cruds")})
	const ods = "https://fhir.nhs.uk/Id/ods-organization-code"
	org := func(id, system, value string) string {
		return `{"resourceType":"Organization","id":"` + id + `","identifier":[{"system":"` + system + `","value":"` + value + `"}]}`
	}
	bg := context.Background()
	for _, res := range []string{
		org("ours", ods, "RXX"),
		org("theirs", ods, "RYY"),
		org("other-system", "https://example.org/codes", "RXX"),
		org("gone", ods, "RXX"),
		`{"resourceType":"Organization","id":"two","identifier":[{"system":"https://example.org/codes","value":"A"},{"system":"` + ods + `","value":"RXX"}]}`,
		`{"resourceType":"Patient","id":"p1"}`,
	} {
		obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := seed.Update(bg, fhir.ResourceType(obj), fhir.ID(obj), []byte(res), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := seed.Delete(bg, "Organization", "gone", 0); err != nil {
		t.Fatal(err)
	}
	conds, err := e.conditions(ctx, "Encounter", fhir.PermCreate)
	if err != nil || len(conds) == 0 || !plainChain(conds[0]) {
		t.Fatalf("the trust's Encounter create conditions are not a plain chain: %v %+v", err, conds)
	}
	encounter := func(provider string) string {
		sp := ""
		if provider != "" {
			sp = `,"serviceProvider":{"reference":"` + provider + `"}`
		}
		return `{"resourceType":"Encounter","status":"in-progress","class":{"code":"IMP"},"subject":{"reference":"Patient/p1"}` + sp + `}`
	}
	errRollback := errors.New("rolled back")
	for name, tc := range map[string]struct {
		written  string // an Organization written first in the same transaction
		provider string
		want     bool
	}{
		"our organisation":                     {provider: "Organization/ours", want: true},
		"another trust":                        {provider: "Organization/theirs"},
		"our code in another system":           {provider: "Organization/other-system"},
		"a deleted organisation":               {provider: "Organization/gone"},
		"a missing organisation":               {provider: "Organization/none"},
		"no service provider":                  {},
		"our code among several identifiers":   {provider: "Organization/two", want: true},
		"written in the same transaction":      {written: org("new", ods, "RXX"), provider: "Organization/new", want: true},
		"rewritten to another trust in the tx": {written: org("ours", ods, "RZZ"), provider: "Organization/ours"},
		"an absolute reference":                {provider: "http://test/fhir/Organization/ours"},
	} {
		err := st.Write(bg, func(tx store.Tx) error {
			now := time.Now()
			if tc.written != "" {
				obj, _ := fhir.Parse([]byte(tc.written), fhir.DefaultLimits)
				next := 1
				if cur, err := tx.Read(bg, "Organization", fhir.ID(obj)); err == nil {
					next = cur.VersionID + 1
				}
				v, index, err := e.stamp(obj, nil, "Organization", fhir.ID(obj), next, now, "PUT")
				if err != nil {
					return err
				}
				if err := tx.Put(bg, v, index); err != nil {
					return err
				}
			}
			obj, err := fhir.Parse([]byte(encounter(tc.provider)), fhir.DefaultLimits)
			if err != nil {
				return err
			}
			v, index, err := e.stamp(obj, nil, "Encounter", "enc", 1, now, "POST")
			if err != nil {
				return err
			}
			if err := tx.Put(bg, v, index); err != nil {
				return err
			}
			short := e.inBoundsAsWritten(ctx, tx, conds, index)
			searched, err := e.visible(ctx, tx, "Encounter", "enc", conds)
			if err != nil {
				return err
			}
			if short != tc.want || searched != tc.want {
				t.Errorf("%s: shortcut %v, search %v, want %v", name, short, searched, tc.want)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// A later entry of the transaction moves what an earlier one created to
	// another trust: the created version's own values no longer speak for
	// the record, and the check refuses it as the search does.
	err = st.Write(bg, func(tx store.Tx) error {
		now := time.Now()
		var first []fhir.IndexValue
		for vid, provider := range []string{"Organization/ours", "Organization/theirs"} {
			obj, _ := fhir.Parse([]byte(encounter(provider)), fhir.DefaultLimits)
			v, index, err := e.stamp(obj, nil, "Encounter", "moved", vid+1, now, "POST")
			if err != nil {
				return err
			}
			if err := tx.Put(bg, v, index); err != nil {
				return err
			}
			if first == nil {
				first = index
			}
		}
		if !e.inBoundsAsWritten(ctx, tx, conds, first) {
			t.Errorf("the first version's own values are not in bounds")
		}
		if err := e.mayWriteIndexed(ctx, tx, "Encounter", "moved", 1, fhir.PermCreate, first); fhir.KindOf(err) != fhir.Forbidden {
			t.Errorf("a create moved out of bounds by a later entry: %v, want Forbidden", err)
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
}
