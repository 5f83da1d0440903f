package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// TestKeyCacheOtherConnection checks the writer's cache of key targets'
// values against commits of another connection (another process on the same
// file): a new referral keyed after another store changed its provider's
// identifier takes the new identifier, not the cached one; and the writer's
// own commits keep the cache, so that a batch does not read again what the
// last one knew.
func TestKeyCacheOtherConnection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crs.db")
	reg := fsearch.Default()
	ctx := context.Background()
	put := func(s *Store, vid int, res string) {
		t.Helper()
		if err := s.Write(ctx, func(tx store.Tx) error { return putVersion(ctx, tx, reg, vid, "PUT", res) }); err != nil {
			t.Fatal(err)
		}
	}
	org := func(code string) string {
		return `{"resourceType":"Organization","id":"o1","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"` + code + `"}]}`
	}
	sr := func(id string) string {
		return `{"resourceType":"ServiceRequest","id":"` + id + `","status":"active","intent":"plan","subject":{"reference":"Patient/pa"},"performer":[{"reference":"Organization/o1"}]}`
	}
	s1, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	put(s1, 1, org("P1"))
	put(s1, 1, sr("sr1"))
	// Writes run on the writer goroutine: the cache is read after Write has
	// returned, when the writer waits for the next request.
	cached := func() bool {
		_, ok := s1.cache[cacheKey("Organization", "o1", "identifier")]
		return ok
	}
	put(s1, 1, `{"resourceType":"Patient","id":"pa"}`)
	if !cached() {
		t.Fatal("the writer's own commit emptied the cache of key targets' values")
	}

	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(s2, 2, org("P2"))
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	put(s1, 1, sr("sr2"))
	for _, c := range []struct{ code, want string }{{"P1", ""}, {"P2", "sr1 sr2"}} {
		q := parseQuery(t, reg, "ServiceRequest", "performer:Organization.identifier="+c.code+"&_sort=_id")
		res, err := s1.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(ids(res), " "); got != c.want {
			t.Errorf("performer's identifier %s: [%s], want [%s]", c.code, got, c.want)
		}
	}
}
