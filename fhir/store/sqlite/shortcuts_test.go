package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"crs/fhir"
	fsearch "crs/fhir/search"
	"crs/fhir/store"
)

// countingQuerier counts the page queries (QueryContext) and the single-row
// ones (samples, totals) a search runs.
type countingQuerier struct {
	querier
	pages, rows int
}

func (c *countingQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	c.pages++
	return c.querier.QueryContext(ctx, query, args...)
}

func (c *countingQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	c.rows++
	return c.querier.QueryRowContext(ctx, query, args...)
}

// TestEmptyDriverSkipsPage: a search whose driving identifier matches no
// index row answers empty without its page query; the same search for an
// identifier that exists, a chained or lone parameter, and a driver that is
// not the empty one still read their page, with the same matches as before.
// An _id parameter is ranked without a sample.
func TestEmptyDriverSkipsPage(t *testing.T) {
	s := openTemp(t)
	reg := fsearch.Default()
	ctx := context.Background()
	if err := s.Write(ctx, func(tx store.Tx) error {
		for i, res := range []string{
			`{"resourceType":"Organization","id":"o1","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"RR8"}]}`,
			`{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9449305552"}],"managingOrganization":{"reference":"Organization/o1"}}`,
			`{"resourceType":"Patient","id":"p2","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9000000009"}],"managingOrganization":{"reference":"Organization/o2"}}`,
		} {
			obj, err := fhir.Parse([]byte(res), fhir.DefaultLimits)
			if err != nil {
				return err
			}
			index, err := reg.Extract(fhir.ResourceType(obj), obj)
			if err != nil {
				return err
			}
			v := store.Version{Type: fhir.ResourceType(obj), ID: fhir.ID(obj), VersionID: 1, LastUpdated: time.Now(), Method: "POST", Body: []byte(res)}
			if err := tx.Put(ctx, v, index); err != nil {
				return fmt.Errorf("put %d: %w", i, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	nhs := "identifier=https://fhir.nhs.uk/Id/nhs-number|"
	for _, c := range []struct {
		query string
		want  string // ids found
		pages int    // page queries run
		rows  int    // single-row queries run (the samples), -1: not checked
	}{
		{nhs + "9999999999&organization=Organization/o1", "", 0, 1},
		{nhs + "9449305552&organization=Organization/o1", "p1", 1, 1},
		{nhs + "9000000009&organization=Organization/o1", "", 1, 1},                                                                // the driver has a row; the other condition refuses it
		{nhs + "9999999999", "", 1, 0},                                                                                             // a lone parameter is not sampled
		{"organization:Organization.identifier=https://fhir.nhs.uk/Id/ods-organization-code|XXX&" + nhs + "9449305552", "", 1, -1}, // the identifier drives (the chain is ranked by proxy)
		{"organization=Organization/o3&" + nhs + "9449305552", "", 0, 1},
		// _id drives unsampled (it names at most one resource per id), and
		// is read, whether or not the id exists.
		{"_id=p1&organization=Organization/o1", "p1", 1, 0},
		{"_id=p2&organization=Organization/o1", "", 1, 0},
		{"_id=nope&organization=Organization/o1", "", 1, 0},
		{"organization=Organization/o1&_id=p1,p2", "p1", 1, 1}, // the reference is sampled first (1 row): it drives
	} {
		q := parseQuery(t, reg, "Patient", c.query)
		q.Total = fhir.TotalNone
		cq := &countingQuerier{querier: s.read}
		res, err := search(ctx, cq, s.keys.rewrite(q), s.walkFrom)
		if err != nil {
			t.Fatalf("%s: %v", c.query, err)
		}
		var ids []string
		for _, m := range res.Matches {
			ids = append(ids, m.ID)
		}
		if got := strings.Join(ids, ","); got != c.want || cq.pages != c.pages || (c.rows >= 0 && cq.rows != c.rows) {
			t.Errorf("%s: found %q with %d page and %d single-row queries, want %q with %d and %d", c.query, got, cq.pages, cq.rows, c.want, c.pages, c.rows)
		}
		// The store's own search (with its total) agrees.
		full, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(full.Matches) != len(ids) {
			t.Errorf("%s: Store.Search found %d, search %d", c.query, len(full.Matches), len(ids))
		}
	}
}
