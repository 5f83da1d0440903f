package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
	"crs/fhir/store/storetest"
)

// TestKeys checks that searches read the denormalised keys instead of the
// chains they hold, and that a database written without keys gets them built
// when it is opened with them.
func TestKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crs.db")
	reg := fsearch.Default()
	ctx := context.Background()
	s, err := Open(path, Options{NoKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, func(tx store.Tx) error {
		for _, res := range []string{
			`{"resourceType":"ServiceRequest","id":"sr1","status":"active","intent":"plan","subject":{"reference":"Patient/pa"},"performer":[{"reference":"Organization/o1"}]}`,
			`{"resourceType":"Patient","id":"pa","managingOrganization":{"reference":"Organization/o1"}}`,
			`{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/pa"}}`,
			`{"resourceType":"Goal","id":"g1","lifecycleStatus":"active","description":{"text":"tea"},"subject":{"reference":"Patient/pa"}}`,
			`{"resourceType":"Organization","id":"o1","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"P1"}]}`,
		} {
			obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
			if err != nil {
				return err
			}
			index, err := reg.Extract(fhir.ResourceType(obj), obj)
			if err != nil {
				return err
			}
			if err := tx.Put(ctx, store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}, index); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct{ typ, query, want, plan string }{
		{"Patient", "_has:ServiceRequest:subject:performer:Organization.identifier=https://fhir.nhs.uk/Id/ods-organization-code|P1&gender:missing=true", "pa",
			"drive: driving set _has:ServiceRequest:subject, 1 rows"},
		{"Goal", "subject:Patient._has:ServiceRequest:subject:performer:Organization.identifier=P1&lifecycle-status=active", "g1",
			"drive: driving set subject (chain), 1 rows"},
		{"ServiceRequest", "performer:Organization.identifier=P1&status=active", "sr1",
			"drive: driving set performer:Organization.identifier (key), 1 rows"},
		{"CarePlan", "subject:Patient.organization=Organization/o1&status=active", "cp1",
			"drive: driving set subject:Patient.organization (key), 1 rows"},
	} {
		q := parseQuery(t, reg, c.typ, c.query)
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ids(res), " "); got != c.want || res.Plan != c.plan {
			t.Errorf("%s?%s: [%s] by %q, want [%s] by %q", c.typ, c.query, got, res.Plan, c.want, c.plan)
		}
		rq := s.keys.rewrite(q)
		if rq == q {
			t.Errorf("%s?%s: no key used", c.typ, c.query)
		}
	}
}

// TestParseKeys checks the form of a key's chain.
func TestParseKeys(t *testing.T) {
	for _, bad := range [][]string{
		{"performer:Organization.identifier"},
		{"ServiceRequest?performer"},
		{"ServiceRequest?performer:Organization.identifier.x"},
		{"Patient?_has:ServiceRequest:subject:performer:Organization.identifier"},
		{"Patient?_has:ServiceRequest:subject"},
	} {
		if _, err := parseKeys(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	ks, err := parseKeys(keyChains)
	if err != nil || len(ks) != len(keyChains) {
		t.Fatalf("keyChains: %v", err)
	}
}

// reverseKeys are keyChains with the reverse keys the store supports but does
// not keep by default (their write cost), which the tests keep correct.
var reverseKeys = append(append([]string(nil), keyChains...),
	"Patient?_has:ServiceRequest:subject:performer:Organization.identifier",
	"Patient?_has:ServiceRequest:subject:requester:Organization.identifier")

// TestReverseKeys runs the keys' conformance group with reverse keys kept,
// and checks that a database reopened without them drops their rows.
func TestReverseKeys(t *testing.T) {
	ks, err := parseKeys(reverseKeys)
	if err != nil {
		t.Fatal(err)
	}
	storetest.RunGroups(t, func(t *testing.T) store.Store {
		s, err := openKeys(filepath.Join(t.TempDir(), "crs.db"), Options{}, ks)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, "DenormalisedKeys")
	path := filepath.Join(t.TempDir(), "crs.db")
	s, err := openKeys(path, Options{}, ks)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reg := fsearch.Default()
	for _, res := range []string{
		`{"resourceType":"Organization","id":"o1","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"P1"}]}`,
		`{"resourceType":"Patient","id":"pa"}`,
		`{"resourceType":"ServiceRequest","id":"sr1","status":"active","intent":"plan","subject":{"reference":"Patient/pa"},"performer":[{"reference":"Organization/o1"}]}`,
	} {
		obj, _ := fhir.Parse([]byte(res), fhir.DefaultLimits)
		index, _ := reg.Extract(fhir.ResourceType(obj), obj)
		v := store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}
		if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, index) }); err != nil {
			t.Fatal(err)
		}
	}
	count := func(s *Store) int {
		var n int
		if err := s.read.QueryRow(`SELECT COUNT(*) FROM idx_token WHERE type = 'Patient' AND param IN ('~k5', '~k6')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(s); n != 1 {
		t.Errorf("reverse key rows: %d, want 1", n)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := count(s); n != 0 {
		t.Errorf("reverse key rows after reopening without them: %d, want 0", n)
	}
}

// TestKeysCodedAtOpen checks that a database whose key rows name their chain
// as their param (written before keyCodes) has them rebuilt under the keys'
// codes at Open, and that searches then read the coded rows.
func TestKeysCodedAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crs.db")
	reg := fsearch.Default()
	ctx := context.Background()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []string{
		`{"resourceType":"Organization","id":"o1","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"P1"}]}`,
		`{"resourceType":"Patient","id":"pa","managingOrganization":{"reference":"Organization/o1"}}`,
		`{"resourceType":"ServiceRequest","id":"sr1","status":"active","intent":"plan","subject":{"reference":"Patient/pa"},"performer":[{"reference":"Organization/o1"}]}`,
		`{"resourceType":"CarePlan","id":"cp1","status":"active","intent":"plan","subject":{"reference":"Patient/pa"}}`,
	} {
		obj, _ := fhir.Parse([]byte(res), fhir.DefaultLimits)
		index, _ := reg.Extract(fhir.ResourceType(obj), obj)
		v := store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}
		if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(ctx, v, index) }); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// Rename the rows and keys_built entries to their chains, as an older
	// version of the store wrote them.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for chain, code := range keyCodes {
		typ, c, _ := strings.Cut(chain, "?")
		for _, q := range []string{`UPDATE idx_token SET param = ?1 WHERE type = ?2 AND param = ?3`, `UPDATE keys_built SET name = ?1 WHERE type = ?2 AND name = ?3`} {
			if _, err := db.Exec(q, c, typ, code); err != nil {
				t.Fatal(err)
			}
		}
	}
	var chained int
	if err := db.QueryRow(`SELECT COUNT(*) FROM idx_token WHERE param LIKE '%:%'`).Scan(&chained); err != nil || chained != 2 {
		t.Fatalf("chain-named rows before reopening: %d (%v), want 2", chained, err)
	}
	db.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	count := func(where string) int {
		var n int
		if err := s.read.QueryRow(`SELECT COUNT(*) FROM idx_token WHERE ` + where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`param LIKE '%:%'`); n != 0 {
		t.Errorf("chain-named rows after reopening: %d, want 0", n)
	}
	if n := count(`type = 'ServiceRequest' AND param = '~k1' AND system = '~ods' AND code = 'P1'`); n != 1 {
		t.Errorf("performer key rows: %d, want 1", n)
	}
	if n := count(`type = 'CarePlan' AND param = '~k4' AND code = 'o1'`); n != 1 {
		t.Errorf("care plan key rows: %d, want 1", n)
	}
	for _, c := range []struct{ typ, query, want string }{
		{"ServiceRequest", "performer:Organization.identifier=P1", "sr1"},
		{"ServiceRequest", "performer:Organization.identifier=https://fhir.nhs.uk/Id/ods-organization-code|P1", "sr1"},
		{"ServiceRequest", "performer:Organization.identifier=~ods|P1", ""},
		{"CarePlan", "subject:Patient.organization=Organization/o1", "cp1"},
	} {
		res, err := s.Search(ctx, parseQuery(t, reg, c.typ, c.query))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ids(res), " "); got != c.want {
			t.Errorf("%s?%s: [%s], want [%s]", c.typ, c.query, got, c.want)
		}
	}
}

// TestKeyCodes checks that every key has a code of its own that no search
// parameter could have.
func TestKeyCodes(t *testing.T) {
	seen := map[string]string{}
	for chain, code := range keyCodes {
		if !strings.HasPrefix(code, "~") {
			t.Errorf("%s: code %q does not start with ~", chain, code)
		}
		if other, dup := seen[code]; dup {
			t.Errorf("%s and %s share code %s", chain, other, code)
		}
		seen[code] = chain
	}
	for _, c := range reverseKeys {
		if keyCodes[c] == "" {
			t.Errorf("%s: no code", c)
		}
	}
	// keySystemCase, the SQL that builds rows, codes the ODS system only.
	if len(keySystems) != 1 || keySystems[odsSystem] != odsCode || !strings.Contains(keySystemCase, odsSystem) {
		t.Errorf("keySystems %v is not what keySystemCase codes", keySystems)
	}
}

// TestKeySystemNotSearchable checks that a search naming a system that
// starts with "~" reads the chain, not the key rows' coded systems.
func TestKeySystemNotSearchable(t *testing.T) {
	reg := fsearch.Default()
	q := parseQuery(t, reg, "ServiceRequest", "performer:Organization.identifier=~ods|P1")
	if rq := defaultKeys.rewrite(q); rq != q {
		t.Errorf("~ods|P1 read the key")
	}
	q = parseQuery(t, reg, "ServiceRequest", "performer:Organization.identifier="+odsSystem+"|P1")
	rq := defaultKeys.rewrite(q)
	if rq == q || rq.Params[0].Values[0].System != odsCode {
		t.Errorf("the ODS system was not coded: %+v", rq.Params[0])
	}
}
